//! What a run found, as `report.json` (its contract is the JSON Schema in
//! `harness/schemas/report.schema.json`, [`SCHEMA`]), `junit.xml` for CI and
//! `report.md` / `report.html` for people.
//!
//! Text that came from plugins (their stderr lands in failure messages) is cleaned
//! once, when the report is made or read: ANSI escapes removed and other control
//! characters written as `\xNN`, so no output format breaks or shows raw escapes.

pub mod html;
pub mod implementation;
pub mod junit;
pub mod markdown;
mod topology;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// A scenario's verdict. `failed`: the implementation under test is wrong.
/// `error`: the harness or the cluster broke, so the implementation was not judged.
/// `flaky`: failed, then passed on a retry (`--retries`), as nextest counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Error,
    Flaky,
    Skipped,
}

impl Status {
    /// The word every format uses: passed, failed, error, flaky, skipped.
    pub fn word(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Error => "error",
            Status::Flaky => "flaky",
            Status::Skipped => "skipped",
        }
    }

    /// Whether the scenario ran and did not pass (in the end).
    pub fn is_bad(self) -> bool {
        matches!(self, Status::Failed | Status::Error)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub(crate) backend: String,
    pub(crate) workload: String,
    pub(crate) labels: Vec<String>,
    pub status: Status,
    pub(crate) duration_s: f64,
    pub message: String,
    /// The scenario's stable short id (`--list`, `--focus`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// How many times it ran (more than 1 with `--retries` or `--repeat`), and
    /// what the attempts before the last said.
    #[serde(default, skip_serializing_if = "Attempts::is_single")]
    pub attempts: Attempts,
    /// Topology and reachability probes, when the scenario had a cluster.
    #[serde(default, flatten)]
    pub(crate) observed: crate::observe::Observations,
}

/// The runs of one scenario beyond the first: how many in all, and each earlier
/// attempt's status and message (a flaky scenario's failure stays readable).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempts {
    pub(crate) runs: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier: Vec<Attempt>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub(crate) status: Status,
    pub message: String,
}

impl Attempts {
    fn is_single(&self) -> bool {
        self.runs <= 1 && self.earlier.is_empty()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub(crate) passed: usize,
    pub failed: usize,
    pub(crate) skipped: usize,
    /// The harness or cluster broke (reports older than version 2 have none).
    #[serde(default)]
    pub errors: usize,
    /// Passed on a retry after failing.
    #[serde(default)]
    pub(crate) flaky: usize,
}

impl Summary {
    /// "3 passed, 1 failed, 1 error, 0 flaky, 2 skipped" (the terminal, md, html).
    pub fn line(&self) -> String {
        format!(
            "{} passed, {} failed, {} error, {} flaky, {} skipped",
            self.passed, self.failed, self.errors, self.flaky, self.skipped
        )
    }

    /// Scenarios that ran (passed, failed, error or flaky): 0 means nothing ran.
    pub fn ran(&self) -> usize {
        self.passed + self.failed + self.errors + self.flaky
    }
}

/// Version of the `report.json` layout; bumped on incompatible changes. Reports
/// written before it existed read as 0. Version 2: statuses `error` and `flaky`.
pub const SCHEMA_VERSION: u32 = 2;

/// The JSON Schema every `report.json` validates against.
pub const SCHEMA: &str = include_str!("../schemas/report.schema.json");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub(crate) schema_version: u32,
    /// When the run started, RFC 3339 in UTC.
    #[serde(default)]
    pub(crate) started_at: String,
    /// The machine the run ran on.
    #[serde(default)]
    pub(crate) host: String,
    #[serde(default)]
    pub(crate) secnet_version: String,
    pub(crate) cluster: String,
    pub(crate) implementation: serde_json::Value,
    pub scenarios: Vec<ScenarioReport>,
    pub summary: Summary,
    pub wall_s: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to write report file {path}: {source}")]
pub struct WriteError {
    pub(crate) path: String,
    pub(crate) source: std::io::Error,
}

/// Writes each `(file name, text)` into `dir`, made first if missing.
pub(crate) fn write_files(dir: &Path, files: &[(&str, String)]) -> Result<(), WriteError> {
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |source| WriteError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(err(dir))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(err(&path))?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a secnet report: {source}")]
    NotAReport {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Report {
    pub fn new(
        cluster: &str,
        implementation: serde_json::Value,
        scenarios: Vec<ScenarioReport>,
        wall_s: f64,
    ) -> Report {
        let mut scenarios = scenarios;
        scenarios.iter_mut().for_each(ScenarioReport::clean);
        let mut summary = Summary::default();
        for s in &scenarios {
            match s.status {
                Status::Passed => summary.passed += 1,
                Status::Failed => summary.failed += 1,
                Status::Error => summary.errors += 1,
                Status::Flaky => summary.flaky += 1,
                Status::Skipped => summary.skipped += 1,
            }
        }
        let started = SystemTime::now()
            .checked_sub(Duration::from_secs_f64(wall_s.max(0.0)))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        Report {
            schema_version: SCHEMA_VERSION,
            started_at: chrono::DateTime::<chrono::Utc>::from(started)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            host: host_name(),
            secnet_version: env!("CARGO_PKG_VERSION").to_string(),
            cluster: cluster.to_string(),
            implementation,
            scenarios,
            summary,
            wall_s,
        }
    }

    pub fn write(&self, dir: &Path) -> Result<(), WriteError> {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| WriteError {
                path: path.display().to_string(),
                source,
            })
        };
        std::fs::create_dir_all(dir).map_err(|source| WriteError {
            path: dir.display().to_string(),
            source,
        })?;
        write(
            "report.json",
            serde_json::to_string_pretty(self).expect("report serializes"),
        )?;
        write("junit.xml", self.junit())?;
        write("report.md", self.markdown())?;
        write("report.html", html::render(self))?;
        Ok(())
    }

    /// Reads a report.json written by an earlier run (for `secnet report`).
    pub fn load(dir: &Path) -> Result<Report, ReadError> {
        let path = dir.join("report.json");
        let text = std::fs::read_to_string(&path).map_err(|source| ReadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut report: Report =
            serde_json::from_str(&text).map_err(|source| ReadError::NotAReport {
                path: path.display().to_string(),
                source,
            })?;
        report.scenarios.iter_mut().for_each(ScenarioReport::clean);
        Ok(report)
    }

    /// JUnit XML: one testsuite per scenario group (`seed`, `ovs`, `vm`, …), the
    /// group as classname, a failure's whole text in the element body, the
    /// scenario's phases and notes in system-out and the run's facts as properties.
    pub fn junit(&self) -> String {
        junit::render(self)
    }

    /// report.md: header, summary, failures.
    pub fn markdown(&self) -> String {
        markdown::render(self)
    }

    /// The header every report shows: when, which secnet, where, on what.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let mut facts = vec![
            ("date", self.started_at.clone()),
            ("secnet", self.secnet_version.clone()),
            ("host", self.host.clone()),
            ("cluster", self.cluster.clone()),
        ];
        if let Some(id) = implementation::run_id(&self.implementation) {
            facts.push(("run", id.to_string()));
        }
        facts.push((
            "implementation",
            implementation::summary(&self.implementation),
        ));
        facts
    }
}

impl ScenarioReport {
    /// The scenario's group: its name up to the first `/` (`seed`, `ovs`, `vm`,
    /// `fault`, `macvtap-cni`, `bad-input`, …).
    pub fn group(&self) -> &str {
        self.name.split_once('/').map_or("other", |(g, _)| g)
    }

    fn clean(&mut self) {
        self.message = clean_text(&self.message);
        for a in &mut self.attempts.earlier {
            a.message = clean_text(&a.message);
        }
        for note in &mut self.observed.notes {
            *note = clean_text(note);
        }
    }

    /// What the scenario proves: its name after the group.
    pub fn claim(&self) -> &str {
        self.name
            .split_once('/')
            .map_or(&self.name, |(_, what)| what)
    }
}

/// Text for HTML and SVG: the markup characters as entities.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Removes ANSI escape sequences (CSI like colours, OSC like titles and links, and
/// two-character ones) and writes every other control character but newline and tab
/// as `\xNN`, so that plugin output is safe in XML, Markdown and HTML and still shows
/// what it held. A lone ESC is shown, not allowed to swallow the text after it.
pub fn clean_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}'
            && let Some(len) = escape_sequence_len(rest)
        {
            rest = &rest[len..];
            continue;
        }
        if c.is_control() && c != '\n' && c != '\t' {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The byte length of the ANSI escape sequence at the start of `s` (which starts
/// with ESC), or None when it is not a complete one.
fn escape_sequence_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    match b.get(1)? {
        // CSI: parameter bytes, intermediate bytes, one final byte.
        b'[' => {
            let mut i = 2;
            while matches!(b.get(i)?, 0x20..=0x3f) {
                i += 1;
            }
            matches!(b[i], 0x40..=0x7e).then_some(i + 1)
        }
        // OSC: up to BEL or ESC \.
        b']' => {
            let body = &s[2..];
            let bel = body.find('\u{7}').map(|i| i + 1);
            let st = body.find("\u{1b}\\").map(|i| i + 2);
            let end = match (bel, st) {
                (Some(x), Some(y)) => x.min(y),
                (x, y) => x.or(y)?,
            };
            Some(2 + end)
        }
        // Two-character sequences (ESC 7, ESC =, ESC M, …).
        0x30..=0x5a | 0x5c..=0x5f | 0x60..=0x7e => Some(2),
        _ => None,
    }
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let s = |name: &str, status| ScenarioReport {
            name: name.into(),
            backend: "macvtap".into(),
            workload: "pod".into(),
            labels: vec!["mac".into()],
            status,
            duration_s: 0.25,
            message: "MAC <a> & \"b\"".into(),
            id: crate::scenario::filter::short_id(name),
            attempts: Default::default(),
            observed: Default::default(),
        };
        Report::new(
            "netns",
            serde_json::json!({"macvtap": "bundled"}),
            vec![s("one", Status::Passed), s("two", Status::Failed)],
            1.5,
        )
    }

    /// One scenario of every status: passed, failed, error, flaky (failed, then
    /// passed on its retry) and skipped.
    fn every_status() -> Report {
        let mut r = sample();
        let mut error = r.scenarios[1].clone();
        error.name = "seed/three".into();
        error.status = Status::Error;
        error.message = "the API server answered ServiceUnavailable (503)".into();
        let mut flaky = r.scenarios[0].clone();
        flaky.name = "seed/four".into();
        flaky.status = Status::Flaky;
        flaky.attempts = Attempts {
            runs: 2,
            earlier: vec![Attempt {
                status: Status::Failed,
                message: "first run: no reply from b".into(),
            }],
        };
        let mut skipped = r.scenarios[0].clone();
        skipped.name = "seed/five".into();
        skipped.status = Status::Skipped;
        skipped.message = "needs OVS".into();
        r.scenarios.extend([error, flaky, skipped]);
        Report::new(&r.cluster, r.implementation.clone(), r.scenarios, 1.5)
    }

    #[test]
    fn every_format_tells_passed_failed_error_flaky_and_skipped_apart() {
        let r = every_status();
        let s = &r.summary;
        assert_eq!(
            (s.passed, s.failed, s.errors, s.flaky, s.skipped),
            (1, 1, 1, 1, 1)
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_valid(&v);
        let statuses: Vec<&str> = v["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["passed", "failed", "error", "flaky", "skipped"]);
        assert_eq!(v["scenarios"][3]["attempts"]["runs"], 2);
        assert!(
            v["scenarios"][0].get("attempts").is_none(),
            "one run: no attempts"
        );

        let xml = r.junit();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let case = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
                .unwrap_or_else(|| panic!("no case {name}: {xml}"))
        };
        let kids = |name: &str| -> Vec<String> {
            case(name)
                .children()
                .filter(|n| n.is_element() && !n.has_tag_name("system-out"))
                .map(|n| n.tag_name().name().to_string())
                .collect()
        };
        assert_eq!(kids("one"), Vec::<String>::new());
        assert_eq!(kids("two"), ["failure"]);
        assert_eq!(kids("seed/three"), ["error"]);
        assert_eq!(kids("seed/four"), ["flakyFailure"]);
        assert_eq!(kids("seed/five"), ["skipped"]);
        assert!(xml.contains("first run: no reply from b"), "{xml}");

        let md = r.markdown();
        for needle in [
            "**1 passed, 1 failed, 1 error, 1 flaky, 1 skipped**",
            "| **error** |",
            "| **flaky** |",
            "## Errors\n\n### seed/three",
            "## Flaky\n\n### seed/four",
            "- **observed**: first run: no reply from b",
            "- **runs**: 2 (failed, flaky)",
            &format!("`secnet conform --focus {}`", r.scenarios[2].id),
        ] {
            assert!(md.contains(needle), "{needle:?} missing:\n{md}");
        }

        let html = html::render(&r);
        for needle in [
            "1 error</span>",
            "1 flaky</span>",
            "<span class=\"error\">error</span>",
            "<span class=\"flaky\">flaky</span>",
            "<span class=\"failed\">failed</span>",
            "<span class=\"skipped\">skipped</span>",
            "Run 1 of 2: failed",
        ] {
            assert!(html.contains(needle), "{needle:?} missing: {html}");
        }
    }

    #[test]
    fn summary_counts_statuses() {
        let r = sample();
        assert_eq!(
            (r.summary.passed, r.summary.failed, r.summary.skipped),
            (1, 1, 0)
        );
    }

    /// Validates a report.json value against the committed schema.
    pub(crate) fn assert_valid(value: &serde_json::Value) {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("schema compiles");
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "report.json breaks its schema: {errors:#?}"
        );
    }

    #[test]
    fn json_matches_the_schema() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_valid(&v);
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["scenarios"][1]["status"], "failed");
        assert_eq!(v["scenarios"][0]["labels"][0], "mac");
        assert!(chrono::DateTime::parse_from_rfc3339(v["started_at"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn the_schema_refuses_what_breaks_the_contract() {
        let schema: serde_json::Value = serde_json::from_str(SCHEMA).unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let good = serde_json::to_value(sample()).unwrap();
        assert!(validator.is_valid(&good));
        let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            edit(&mut v);
            validator.is_valid(&v)
        };
        assert!(!broken(&|v| v["scenarios"][0]["status"] = "ok".into()));
        assert!(!broken(
            &|v| v["scenarios"][0]["message"] = "\u{1b}[31mred".into()
        ));
        assert!(!broken(&|v| v["started_at"] = "yesterday".into()));
        assert!(!broken(&|v| {
            v.as_object_mut().unwrap().remove("summary");
        }));
        assert!(!broken(&|v| v["surprise"] = 1.into()));
    }

    /// A plugin that colours its stderr and prints binary garbage: every output
    /// stays well-formed and readable.
    fn hostile_message() -> String {
        let garbage: String = (1u8..=31)
            .filter(|b| *b != b'\n')
            .map(char::from)
            .chain("\u{7f}\u{fffd}\u{9b}".chars())
            .collect();
        format!(
            "CNI ADD failed: \u{1b}[31merror\u{1b}[0m: bad <mac> & \"x\"\nplugin stderr:\n\u{1b}[1;33mwarn\u{1b}[0m {garbage}\nlast line"
        )
    }

    #[test]
    fn junit_is_well_formed_with_ansi_and_garbage_and_carries_the_failure_text() {
        let mut r = sample();
        r.scenarios[1].message = hostile_message();
        r.scenarios[1].name = "seed/two".into();
        r.scenarios.push(ScenarioReport {
            name: "ovs/three".into(),
            status: Status::Skipped,
            message: "needs OVS".into(),
            ..r.scenarios[0].clone()
        });
        let r = Report::new(&r.cluster, r.implementation.clone(), r.scenarios, 1.5);
        let xml = r.junit();
        let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
        let suites: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testsuite"))
            .map(|n| n.attribute("name").unwrap().to_string())
            .collect();
        assert_eq!(suites, ["other", "seed", "ovs"]);
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .expect("a failure element");
        let case = failure.parent().unwrap();
        assert_eq!(case.attribute("classname"), Some("seed"));
        assert_eq!(case.attribute("name"), Some("seed/two"));
        let body = failure.text().unwrap_or_default();
        assert!(body.contains("bad <mac> & \"x\""), "{body}");
        assert!(
            body.contains("last line"),
            "the whole text is in the body: {body}"
        );
        assert!(!body.contains('\u{1b}'), "{body:?}");
        assert!(
            body.contains("\\x07"),
            "control characters shown escaped: {body:?}"
        );
        assert_eq!(
            failure.attribute("message"),
            Some("CNI ADD failed: error: bad <mac> & \"x\"")
        );
        let out = case
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .unwrap_or_default();
        assert!(out.contains("labels: mac"), "{out}");
        assert!(doc.descendants().any(|n| n.has_tag_name("skipped")));
    }

    #[test]
    fn markdown_html_and_json_carry_no_escape_sequences() {
        let mut r = sample();
        r.scenarios[1].message = hostile_message();
        let r = Report::new(&r.cluster, r.implementation.clone(), r.scenarios, 1.5);
        let json = serde_json::to_string(&r).unwrap();
        assert_valid(&serde_json::from_str(&json).unwrap());
        for (what, text) in [
            ("md", r.markdown()),
            ("html", html::render(&r)),
            ("json", json),
        ] {
            assert!(
                !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains("\\u001b"),
                "{what} holds a raw control character"
            );
        }
    }

    #[test]
    fn clean_text_removes_sequences_and_shows_other_controls() {
        assert_eq!(clean_text("\u{1b}[1;31mred\u{1b}[0m ok"), "red ok");
        assert_eq!(clean_text("\u{1b}]0;title\u{7}after"), "after");
        assert_eq!(clean_text("\u{1b}]8;;http://x\u{1b}\\link"), "link");
        assert_eq!(clean_text("a\u{1b}"), "a\\x1b");
        assert_eq!(clean_text("lone \u{1b}\u{1}x"), "lone \\x1b\\x01x");
        assert_eq!(clean_text("c1 \u{9b}31m"), "c1 \\x9b31m");
        assert_eq!(clean_text("tab\tnew\nline\r"), "tab\tnew\nline\\x0d");
        assert_eq!(clean_text("ünïcode ✓"), "ünïcode ✓");
    }

    #[test]
    fn reading_an_old_report_cleans_it_too() {
        let dir = crate::lab::ScratchDir::new("report-read").unwrap();
        let mut v = serde_json::to_value(sample()).unwrap();
        v["scenarios"][0]["message"] = "\u{1b}[32mok\u{1b}[0m".into();
        v.as_object_mut().unwrap().remove("schema_version");
        std::fs::write(dir.path().join("report.json"), v.to_string()).unwrap();
        let r = Report::load(dir.path()).unwrap();
        assert_eq!(r.scenarios[0].message, "ok");
        assert_eq!(r.schema_version, 0);
    }

    #[test]
    fn markdown_has_the_header_a_summary_and_a_failures_section() {
        let mut r = sample();
        r.implementation = serde_json::json!({"run_id": "sn0a1b2c", "plugins": {
            "macvtap": {"path": "/b/macvtap", "from": "--plugin", "cni_versions": ["1.0.0"]}}});
        r.scenarios[1].name = "seed/two: MAC as asked".into();
        r.scenarios[1].message =
            "net1 has MAC 02:00:00:00:00:01 | not 02:23\nplugin log:\n```\nadd: ok".into();
        r.scenarios[1]
            .observed
            .reachability
            .push(crate::observe::Probe {
                from: "a".into(),
                to: "b".into(),
                expected: true,
                observed: false,
                protocol: "icmp".into(),
            });
        let md = r.markdown();
        for needle in [
            "- **date**: ",
            &format!("- **secnet**: {}", env!("CARGO_PKG_VERSION")),
            &format!("- **host**: {}", r.host),
            "- **cluster**: netns",
            "- **run**: sn0a1b2c",
            "| macvtap | `/b/macvtap` | --plugin | 1.0.0 |",
            "## Summary",
            "**1 passed, 1 failed, 0 error, 0 flaky, 0 skipped**",
            "| seed/two: MAC as asked | macvtap | pod | **failed** | 0.25 s | see Failures |",
            "## Failures\n\n### seed/two: MAC as asked",
            "- **expected**: two: MAC as asked",
            "- **observed**: net1 has MAC 02:00:00:00:00:01 | not 02:23",
            "- **reachability**: a → b: expected reach, observed no reply",
            "secnet clean --run sn0a1b2c",
            "````text\nnet1 has MAC",
        ] {
            assert!(md.contains(needle), "{needle:?} missing:\n{md}");
        }
    }

    #[test]
    fn html_lists_each_scenario_once_with_the_header_and_a_plugin_table() {
        let mut r = sample();
        r.implementation = serde_json::json!({"run_id": "sn0a1b2c", "cni_bin_dir": "/b", "plugins": {
            "ovs": {"path": "/b/ovs", "from": "bundled", "cni_versions": ["0.4.0", "1.0.0"]}}});
        let html = html::render(&r);
        for s in &r.scenarios {
            assert_eq!(html.matches(&format!(">{} ", s.name)).count(), 1, "{html}");
        }
        for needle in [
            "<th>date</th>",
            "<th>host</th>",
            &format!("<th>secnet</th><td>{}</td>", env!("CARGO_PKG_VERSION")),
            "<td>ovs</td><td><code>/b/ovs</code></td><td>bundled</td><td>0.4.0, 1.0.0</td>",
            "class=\"time\">0.25 s",
        ] {
            assert!(html.contains(needle), "{needle:?} missing: {html}");
        }
        assert!(!html.contains("{\""), "no raw JSON: {html}");
        assert!(
            html::STYLE.contains(".time{white-space:nowrap"),
            "the time column does not wrap"
        );
    }

    #[test]
    fn junit_carries_the_runs_facts_as_properties() {
        let mut r = sample();
        r.implementation = serde_json::json!({"run_id": "sn0a1b2c", "plugins": {
            "macvtap": {"path": "/b/macvtap", "from": "--plugin", "cni_versions": ["1.0.0"]}}});
        let xml = r.junit();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let props: std::collections::BTreeMap<&str, &str> = doc
            .descendants()
            .filter(|n| n.has_tag_name("property"))
            .map(|n| (n.attribute("name").unwrap(), n.attribute("value").unwrap()))
            .collect();
        assert_eq!(props["secnet"], env!("CARGO_PKG_VERSION"));
        assert_eq!(props["cluster"], "netns");
        assert_eq!(props["run"], "sn0a1b2c");
        assert_eq!(props["host"], r.host);
        assert_eq!(props["plugin.macvtap"], "/b/macvtap (--plugin; CNI 1.0.0)");
        assert!(props.contains_key("date"));
    }

    #[test]
    fn junit_escapes_and_marks_failures() {
        let x = sample().junit();
        assert!(x.contains("failures=\"1\""));
        assert!(x.contains("MAC &lt;a&gt; &amp; &quot;b&quot;"));
        assert_eq!(x.matches("<testcase").count(), 2);
    }
}
