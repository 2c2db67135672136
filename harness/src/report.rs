//! What a run found, as `report.json` (the contract in DESIGN.md), `junit.xml` for CI
//! and `report.md` for people.

pub mod html;

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub name: String,
    pub backend: String,
    pub workload: String,
    pub labels: Vec<String>,
    pub status: Status,
    pub duration_s: f64,
    pub message: String,
    /// Topology and reachability probes, when the scenario had a cluster.
    #[serde(default, flatten)]
    pub observed: crate::observe::Observations,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub cluster: String,
    pub implementation: serde_json::Value,
    pub scenarios: Vec<ScenarioReport>,
    pub summary: Summary,
    pub wall_s: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("failed to write report file {path}: {source}")]
pub struct WriteError {
    pub path: String,
    pub source: std::io::Error,
}

impl Report {
    pub fn new(
        cluster: &str,
        implementation: serde_json::Value,
        scenarios: Vec<ScenarioReport>,
        wall_s: f64,
    ) -> Report {
        let mut summary = Summary::default();
        for s in &scenarios {
            match s.status {
                Status::Passed => summary.passed += 1,
                Status::Failed => summary.failed += 1,
                Status::Skipped => summary.skipped += 1,
            }
        }
        Report {
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
    pub fn read(dir: &Path) -> Result<Report, String> {
        let path = dir.join("report.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a secnet report: {e}", path.display()))
    }

    pub fn junit(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"secnet conform\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
            self.scenarios.len(),
            self.summary.failed,
            self.summary.skipped,
            self.wall_s
        );
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            xml_escape(&self.cluster),
            self.scenarios.len(),
            self.summary.failed,
            self.summary.skipped
        );
        for s in &self.scenarios {
            let _ = write!(
                x,
                "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(&s.backend),
                xml_escape(&s.workload),
                xml_escape(&s.name),
                s.duration_s
            );
            match s.status {
                Status::Passed => x.push_str("/>\n"),
                Status::Failed => {
                    let _ = writeln!(
                        x,
                        ">\n      <failure message=\"{}\"/>\n    </testcase>",
                        xml_escape(&s.message)
                    );
                }
                Status::Skipped => {
                    let _ = writeln!(
                        x,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml_escape(&s.message)
                    );
                }
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }

    pub fn markdown(&self) -> String {
        let mut m = format!(
            "# secnet conform on `{}`\n\n{} passed, {} failed, {} skipped in {:.1} s\n\n| scenario | backend | workload | status | time | message |\n|---|---|---|---|---|---|\n",
            self.cluster,
            self.summary.passed,
            self.summary.failed,
            self.summary.skipped,
            self.wall_s
        );
        for s in &self.scenarios {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {:?} | {:.2} s | {} |",
                s.name,
                s.backend,
                s.workload,
                s.status,
                s.duration_s,
                s.message.replace('|', "\\|").replace('\n', " ")
            );
        }
        m
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
            observed: Default::default(),
        };
        Report::new(
            "netns",
            serde_json::json!({"macvtap": "bundled"}),
            vec![s("one", Status::Passed), s("two", Status::Failed)],
            1.5,
        )
    }

    #[test]
    fn summary_counts_statuses() {
        let r = sample();
        assert_eq!(
            (r.summary.passed, r.summary.failed, r.summary.skipped),
            (1, 1, 0)
        );
    }

    #[test]
    fn json_matches_the_contract() {
        let v = serde_json::to_value(sample()).unwrap();
        for key in [
            "cluster",
            "implementation",
            "scenarios",
            "summary",
            "wall_s",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert_eq!(v["scenarios"][1]["status"], "failed");
        assert_eq!(v["scenarios"][0]["labels"][0], "mac");
    }

    #[test]
    fn junit_escapes_and_marks_failures() {
        let x = sample().junit();
        assert!(x.contains("failures=\"1\""));
        assert!(x.contains("MAC &lt;a&gt; &amp; &quot;b&quot;"));
        assert_eq!(x.matches("<testcase").count(), 2);
    }
}
