//! `secnet compare`: the same scenarios on a baseline (A) and a candidate (B)
//! implementation in one run on the same machine, interleaved (A then B per
//! scenario, so both see the same load), and what changed: regressions (passed on
//! A, failed on B) and fixes (failed on A, passed on B).

pub mod clusters;
pub mod diff;
pub mod explained;
mod junit;
pub mod normalise;
pub mod render;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::conform::{self, ConformError, Options, Position};
use crate::report::{ScenarioReport, Status, WriteError};
use crate::scenario;
use crate::scenario::provider::ClusterProvider;

/// One implementation's outcome of one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Side {
    pub(crate) status: Status,
    pub(crate) duration_s: f64,
    pub(crate) message: String,
}

impl From<ScenarioReport> for Side {
    fn from(r: ScenarioReport) -> Side {
        Side {
            status: r.status,
            duration_s: r.duration_s,
            message: r.message,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub(crate) name: String,
    pub(crate) backend: String,
    pub(crate) a: Side,
    pub(crate) b: Side,
}

impl Row {
    pub fn regressed(&self) -> bool {
        self.a.status == Status::Passed && self.b.status == Status::Failed
    }

    pub fn fixed(&self) -> bool {
        self.a.status == Status::Failed && self.b.status == Status::Passed
    }
}

/// `compare.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    pub(crate) run_id: String,
    /// What A and B were: per plugin its file and where it came from.
    pub(crate) a: Value,
    pub(crate) b: Value,
    pub(crate) scenarios: Vec<Row>,
    pub regressions: Vec<String>,
    pub(crate) fixed: Vec<String>,
    pub(crate) wall_s: f64,
}

impl Comparison {
    pub fn new(run_id: &str, a: Value, b: Value, scenarios: Vec<Row>, wall_s: f64) -> Comparison {
        let names = |keep: fn(&Row) -> bool| {
            scenarios
                .iter()
                .filter(|r| keep(r))
                .map(|r| r.name.clone())
                .collect()
        };
        Comparison {
            run_id: run_id.to_string(),
            regressions: names(Row::regressed),
            fixed: names(Row::fixed),
            a,
            b,
            scenarios,
            wall_s,
        }
    }

    /// Rows as people read them: regressions first, then fixes, then the rest in
    /// run order.
    pub fn ordered(&self) -> Vec<&Row> {
        let rank = |r: &Row| {
            if r.regressed() {
                0
            } else if r.fixed() {
                1
            } else {
                2
            }
        };
        let mut rows: Vec<&Row> = self.scenarios.iter().collect();
        rows.sort_by_key(|r| rank(r));
        rows
    }

    /// `compare.json`, `compare.md`, `compare.html` and `junit.xml` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), WriteError> {
        crate::report::write_files(
            dir,
            &[
                (
                    "compare.json",
                    serde_json::to_string_pretty(self).expect("comparison serializes"),
                ),
                ("compare.md", render::markdown(self)),
                ("compare.html", render::html(self)),
                ("junit.xml", junit::render(self)),
            ],
        )
    }
}

/// Runs the scenarios `a` selects on A, then on B, one scenario at a time. `a` and
/// `b` differ only in their implementation.
pub async fn run(a: &Options, b: &Options) -> Result<Comparison, ConformError> {
    // Both implementations run side by side on this machine's nodes.
    let (provider_a, provider_b): (Arc<dyn ClusterProvider>, Arc<dyn ClusterProvider>) =
        (Arc::from(a.provider()), Arc::from(b.provider()));
    if !provider_a.offer().nodes_here() {
        return Err(ConformError::CompareNeedsNetns);
    }
    let all = scenario::all();
    let selected = conform::select(a, all)?;
    conform::preflight(a)?;
    conform::preflight(b)?;
    let run_id = crate::lab::new_run_id();
    let total = selected.len();
    eprintln!("secnet compare: run {run_id}, {total} scenario(s), each on A then on B");
    eprintln!("secnet compare: A: {}", a.implementation.summary());
    eprintln!("secnet compare: B: {}", b.implementation.summary());
    let started = Instant::now();
    let mut ctx_a = conform::context_named(a, &run_id, "a");
    let mut ctx_b = conform::context_named(b, &run_id, "b");
    let mut rows = Vec::new();
    for (i, s) in selected.into_iter().enumerate() {
        let mut sides = Vec::new();
        for (side, ctx, provider) in [
            ("A", &mut ctx_a, &provider_a),
            ("B", &mut ctx_b, &provider_b),
        ] {
            let at = Position {
                tag: format!("{:>2}/{total} {side}", i + 1),
                scope: format!("{}{}", side.to_lowercase(), i + 1),
            };
            sides.push(conform::run_scenario(&run_id, ctx, provider, s, &at).await?);
        }
        let b_side = sides.pop().expect("two sides");
        let a_side = sides.pop().expect("two sides");
        rows.push(Row {
            name: s.name.clone(),
            backend: s.backend.to_string(),
            a: a_side.into(),
            b: b_side.into(),
        });
    }
    let _ = std::fs::remove_dir_all(&ctx_a.work_dir);
    let describe = |o: &Options| {
        let mut d = o.implementation.describe();
        d["reference_bin_dir"] = json!(o.reference_bin_dir.display().to_string());
        d
    };
    Ok(Comparison::new(
        &run_id,
        describe(a),
        describe(b),
        rows,
        started.elapsed().as_secs_f64(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(status: Status, message: &str) -> Side {
        Side {
            status,
            duration_s: 1.0,
            message: message.into(),
        }
    }

    fn row(name: &str, a: Status, b: Status) -> Row {
        Row {
            name: name.into(),
            backend: "macvtap".into(),
            a: side(a, ""),
            b: side(
                b,
                if b == Status::Failed {
                    "B <broke> it"
                } else {
                    ""
                },
            ),
        }
    }

    #[test]
    fn regressions_and_fixes_are_named_and_listed_first() {
        use Status::*;
        let c = Comparison::new(
            "sn000000",
            json!({"plugins": {}}),
            json!({"plugins": {}}),
            vec![
                row("same", Passed, Passed),
                row("fixed", Failed, Passed),
                row("both fail", Failed, Failed),
                row("broke", Passed, Failed),
                row("skipped on B", Passed, Skipped),
            ],
            3.0,
        );
        assert_eq!(c.regressions, vec!["broke"]);
        assert_eq!(c.fixed, vec!["fixed"]);
        let order: Vec<&str> = c.ordered().iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            order,
            ["broke", "fixed", "same", "both fail", "skipped on B"]
        );
        let dir = crate::lab::ScratchDir::new("secnet-compare-test").unwrap();
        c.write(dir.path()).unwrap();
        let json: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("compare.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["scenarios"][3]["a"]["status"], "passed");
        assert_eq!(json["scenarios"][3]["b"]["status"], "failed");
        assert_eq!(json["regressions"][0], "broke");
        let md = std::fs::read_to_string(dir.path().join("compare.md")).unwrap();
        let first_row = md
            .lines()
            .find(|l| l.starts_with("| ") && !l.starts_with("| scenario"))
            .unwrap();
        assert!(
            first_row.contains("broke") && first_row.contains("REGRESSION"),
            "{md}"
        );
        let html = std::fs::read_to_string(dir.path().join("compare.html")).unwrap();
        assert!(
            html.contains("B &lt;broke&gt; it"),
            "messages are escaped: {html}"
        );
        assert!(html.find("broke").unwrap() < html.find("same").unwrap());
        let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
        let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed");
        let failures: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("failure"))
            .map(|n| n.parent().unwrap().attribute("name").unwrap())
            .collect();
        assert_eq!(
            failures,
            ["both fail", "broke"],
            "B's outcome, in run order"
        );
        let props: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("property"))
            .map(|n| n.attribute("name").unwrap())
            .collect();
        assert!(
            props.contains(&"run") && props.contains(&"secnet"),
            "{props:?}"
        );
    }
}
