//! `secnet compare`'s `junit.xml`, built from `report::junit`'s pieces.

use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{TestCase, TestSuite};

use super::Comparison;
use crate::report;
use crate::report::junit::{implementation_properties, status, suite_for};

/// `secnet compare`'s junit.xml: a case per scenario with B's (the candidate's)
/// outcome, a regression named as such; A's outcome in system-out; both
/// implementations as properties (`a.plugin.macvtap`, `b.plugin.macvtap`, …).
pub fn render(c: &Comparison) -> String {
    let mut junit = quick_junit::Report::new("secnet compare");
    junit.set_time(Duration::from_secs_f64(c.wall_s.max(0.0)));
    let mut props = vec![
        ("secnet".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("run".to_string(), c.run_id.clone()),
        ("host".to_string(), report::host_name()),
        ("cluster".to_string(), "netns".to_string()),
    ];
    props.extend(implementation_properties("a.", &c.a));
    props.extend(implementation_properties("b.", &c.b));
    let mut suites: Vec<TestSuite> = Vec::new();
    for r in &c.scenarios {
        let group = r.name.split_once('/').map_or("other", |(g, _)| g);
        let message = if r.regressed() {
            format!(
                "REGRESSION: passed on A, failed on B\n{}",
                report::clean_text(&r.b.message)
            )
        } else {
            report::clean_text(&r.b.message)
        };
        let mut case = TestCase::new(r.name.as_str(), status(r.b.status, &message));
        case.set_classname(group)
            .set_time(Duration::from_secs_f64(r.b.duration_s.max(0.0)));
        let mut out = format!(
            "backend: {}\nA: {:?} in {:.2} s\n",
            r.backend, r.a.status, r.a.duration_s
        );
        if !r.a.message.is_empty() {
            let _ = writeln!(out, "A's message: {}", report::clean_text(&r.a.message));
        }
        if r.fixed() {
            out.push_str("FIXED: failed on A, passed on B\n");
        }
        case.set_system_out(out);
        suite_for(&mut suites, group, &props).add_test_case(case);
    }
    junit.add_test_suites(suites);
    junit.to_string().expect("JUnit serializes to a String")
}
