//! `junit.xml` for CI systems (written with `quick-junit`, as nextest does): one
//! testsuite per scenario group, and on every suite the run's facts as properties
//! (secnet version, date, host, cluster, run id, each plugin's file and origin).

use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestRerun, TestSuite};

use super::{Attempt, Report, ScenarioReport, Status, implementation};

/// The properties every suite of `report` carries.
fn properties(report: &Report) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = report
        .facts()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    props.extend(implementation_properties("", &report.implementation));
    props
}

/// `<prefix>plugin.<name>` = `path (from)` and `<prefix><fact>` for the other facts.
pub fn implementation_properties(
    prefix: &str,
    implementation: &serde_json::Value,
) -> Vec<(String, String)> {
    let mut props: Vec<(String, String)> = implementation::plugins(implementation)
        .into_iter()
        .map(|p| {
            let value = if p.path.is_empty() {
                format!("{} ({})", p.versions, p.from)
            } else if p.versions.is_empty() {
                format!("{} ({})", p.path, p.from)
            } else {
                format!("{} ({}; CNI {})", p.path, p.from, p.versions)
            };
            (format!("{prefix}plugin.{}", p.name), value)
        })
        .collect();
    props.extend(
        implementation::facts(implementation)
            .into_iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v)),
    );
    props
}

pub fn suite_for<'a>(
    suites: &'a mut Vec<TestSuite>,
    group: &str,
    props: &[(String, String)],
) -> &'a mut TestSuite {
    match suites.iter().position(|t| t.name.as_str() == group) {
        Some(i) => &mut suites[i],
        None => {
            let mut suite = TestSuite::new(group);
            for (k, v) in props {
                suite.add_property((k.as_str(), v.as_str()));
            }
            suites.push(suite);
            suites.last_mut().expect("just pushed")
        }
    }
}

pub fn render(report: &Report) -> String {
    let mut junit = quick_junit::Report::new("secnet conform");
    junit.set_time(Duration::from_secs_f64(report.wall_s.max(0.0)));
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(&report.started_at) {
        junit.set_timestamp(t);
    }
    let props = properties(report);
    let mut suites: Vec<TestSuite> = Vec::new();
    for s in &report.scenarios {
        suite_for(&mut suites, s.group(), &props).add_test_case(case(s));
    }
    junit.add_test_suites(suites);
    junit.to_string().expect("JUnit serializes to a String")
}

/// `<failure>` when the implementation is wrong, `<error>` when the harness or
/// cluster broke, a success with `<flakyFailure>`s when a retry passed.
pub fn status(status: Status, message: &str) -> TestCaseStatus {
    let first_line = message.lines().next().unwrap_or_default();
    match status {
        Status::Passed | Status::Flaky => TestCaseStatus::success(),
        Status::Failed | Status::Error => {
            let kind = if status == Status::Error {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut st = TestCaseStatus::non_success(kind);
            st.set_message(first_line).set_description(message);
            st
        }
        Status::Skipped => {
            let mut st = TestCaseStatus::skipped();
            st.set_message(first_line);
            st
        }
    }
}

/// An earlier attempt of a retried scenario: `<flakyFailure>`/`<flakyError>` under a
/// case that passed in the end, `<rerunFailure>`/`<rerunError>` under one that did not.
fn rerun(a: &Attempt) -> TestRerun {
    let kind = if a.status == Status::Error {
        NonSuccessKind::Error
    } else {
        NonSuccessKind::Failure
    };
    let mut r = TestRerun::new(kind);
    r.set_message(a.message.lines().next().unwrap_or_default())
        .set_description(a.message.as_str());
    r
}

fn case(s: &ScenarioReport) -> TestCase {
    let mut st = status(s.status, &s.message);
    st.add_reruns(
        s.attempts
            .earlier
            .iter()
            .filter(|a| a.status.is_bad())
            .map(rerun),
    );
    let mut case = TestCase::new(s.name.as_str(), st);
    case.set_classname(s.group())
        .set_time(Duration::from_secs_f64(s.duration_s.max(0.0)));
    let mut out = format!(
        "status: {}\nbackend: {}\nworkload: {}\nlabels: {}\n",
        s.status.word(),
        s.backend,
        s.workload,
        s.labels.join(", ")
    );
    if !s.id.is_empty() {
        let _ = writeln!(out, "id: {}", s.id);
    }
    if s.attempts.runs > 1 {
        let _ = writeln!(out, "runs: {}", s.attempts.runs);
    }
    for p in &s.observed.phases {
        let _ = writeln!(out, "phase {}: {:.3} s", p.name, p.seconds);
    }
    for n in &s.observed.notes {
        let _ = writeln!(out, "note: {n}");
    }
    if let Some(u) = &s.observed.uniqueness {
        let _ = writeln!(
            out,
            "uniqueness: {} attachment(s), {} duplicate(s)",
            u.attachments,
            u.duplicates.len()
        );
        for d in &u.duplicates {
            let _ = writeln!(out, "duplicate: {d}");
        }
    }
    case.set_system_out(out);
    case
}
