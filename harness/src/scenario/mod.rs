//! Scenarios as data (name, backend, workload, labels) plus an async body that
//! returns what went wrong. Suites and `secnet conform` run the same list.

pub mod macvtap_cni;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::lab::Lab;
use crate::lab::node::NodeLab;

pub type Outcome = Result<(), String>;
type Body = Box<dyn Fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// What a scenario body may use: the implementation under test and run options.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Directory holding the CNI binaries under test (`macvtap`, ...).
    pub cni_bin_dir: PathBuf,
    /// Keep the namespaces of a failed scenario and say how to enter them.
    pub keep: bool,
    /// The run's id: every namespace carries it, so `secnet clean --run` finds them.
    pub run_id: String,
    /// This scenario's part of namespace names (`s<n>`), set by the runner.
    pub scope: String,
}

impl Ctx {
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.cni_bin_dir.join(name)
    }

    /// A node lab named after this run and scenario.
    pub fn node_lab(&self) -> Result<NodeLab, String> {
        NodeLab::in_lab(Lab::scoped(&self.run_id, &self.scope))
            .map_err(|e| format!("failed to set up the node lab: {e}"))
    }

    /// Ends a scenario: on failure with `keep`, the lab outlives the run and the
    /// message says how to look inside.
    pub fn finish(&self, lab: &mut Lab, outcome: Outcome) -> Outcome {
        match outcome {
            Err(msg) if self.keep => {
                let names = lab.forget();
                let hints: Vec<String> = names
                    .iter()
                    .map(|n| format!("ip netns exec {n} ip -d link"))
                    .collect();
                Err(format!(
                    "{msg}\n  kept for inspection: {}\n  remove with: secnet clean",
                    hints.join(" ; ")
                ))
            }
            other => other,
        }
    }
}

pub struct Scenario {
    pub name: String,
    pub backend: &'static str,
    pub workload: &'static str,
    pub labels: Vec<&'static str>,
    pub body: Body,
}

impl Scenario {
    pub fn new<F, Fut>(
        name: impl Into<String>,
        backend: &'static str,
        workload: &'static str,
        labels: &[&'static str],
        body: F,
    ) -> Scenario
    where
        F: Fn(Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        Scenario {
            name: name.into(),
            backend,
            workload,
            labels: labels.to_vec(),
            body: Box::new(move |ctx| Box::pin(body(ctx))),
        }
    }

    /// Whether the label filters select this scenario.
    pub fn selected(&self, only: &[String], skip: &[String]) -> bool {
        let has = |l: &String| self.labels.iter().any(|x| x == l) || self.backend == l;
        (only.is_empty() || only.iter().any(has)) && !skip.iter().any(has)
    }
}

/// Every scenario this build knows, in run order.
pub fn all() -> Vec<Scenario> {
    macvtap_cni::scenarios()
}

/// `Err(msg)` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(msg()) }
}
