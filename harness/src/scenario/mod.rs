//! Scenarios as data (name, backend, workload, labels) plus an async body that
//! returns what went wrong. Suites and `secnet conform` run the same list.

pub mod bad_input;
pub mod faults;
pub mod filter;
pub mod macvtap_cni;
pub mod ovs;
pub mod security;
pub mod seed;
pub mod vm;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::cluster::kube::KubeCluster;
use crate::cluster::netns::topology::Topology;
use crate::cluster::netns::{self, NetnsCluster};
use crate::lab::Lab;
use crate::lab::node::NodeLab;

pub type Outcome = Result<(), String>;
type Body = Box<dyn Fn(Ctx) -> Pin<Box<dyn Future<Output = Outcome> + Send>> + Send + Sync>;

/// Where the scenarios run.
#[derive(Clone, Default)]
pub enum Target {
    /// A fresh netns cluster per scenario, made by secnet (the default).
    #[default]
    Netns,
    /// A real cluster shared by the run, its components (multus, the macvtap device
    /// plugin + CNI) installed before the first scenario. Only portable scenarios run.
    Kube(Arc<KubeCluster>),
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Netns => f.write_str("netns"),
            Target::Kube(cluster) => {
                use crate::cluster::Cluster;
                write!(f, "{} (run {})", cluster.provider(), cluster.run_id())
            }
        }
    }
}

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
    /// Debian's reference plugins (bridge, host-local, macvlan).
    pub reference_bin_dir: PathBuf,
    /// The device plugin command the DaemonSet runs.
    pub device_plugin: Vec<String>,
    pub topology: Topology,
    pub fixtures_dir: PathBuf,
    /// Scratch files of the run (removed at its end).
    pub work_dir: PathBuf,
    /// What the scenario saw (topology, probes), for the report.
    pub observed: crate::observe::Recorder,
    pub target: Target,
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

    /// A netns cluster named after this run and scenario.
    pub async fn netns_cluster(&self, dhcp: bool) -> Result<NetnsCluster, String> {
        self.netns_cluster_with(dhcp, false).await
    }

    /// The same with userspace Open vSwitch on every node when `ovs`.
    pub async fn netns_cluster_with(&self, dhcp: bool, ovs: bool) -> Result<NetnsCluster, String> {
        let opts = netns::Options {
            run_id: format!("{}-{}", self.run_id, self.scope),
            topology: self.topology.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
            reference_bin_dir: self.reference_bin_dir.clone(),
            device_plugin: self.device_plugin.clone(),
            dhcp,
            ovs,
        };
        NetnsCluster::up(opts).await.map_err(|e| e.to_string())
    }

    /// Tears the cluster down, or keeps it after a failure with `--keep`.
    pub async fn finish_cluster(&self, cluster: NetnsCluster, outcome: Outcome) -> Outcome {
        if self.keep && outcome.is_err() {
            let hint = format!(
                "\n  kept: nodes are `ip netns exec {}-{}-<node> …`; remove with: secnet clean --run {}",
                self.run_id, self.scope, self.run_id
            );
            std::mem::forget(cluster);
            return outcome.map_err(|m| m + &hint);
        }
        let errors = cluster.teardown().await;
        match outcome {
            Ok(()) if !errors.is_empty() => Err(format!("teardown failed: {}", errors.join("; "))),
            other => other,
        }
    }

    /// Ends a scenario on a real cluster: deletes what the scenario made (its scope
    /// label) and waits until its pods are gone, or keeps it after a failure.
    pub async fn finish_kube(&self, cluster: &KubeCluster, outcome: Outcome) -> Outcome {
        if self.keep && outcome.is_err() {
            let hint = format!(
                "\n  kept: kubectl get pods,network-attachment-definitions -A -l secnet.run={},secnet.scope={}; remove with: secnet clean --cluster existing --run {}",
                self.run_id, self.scope, self.run_id
            );
            return outcome.map_err(|m| m + &hint);
        }
        let done = cluster.teardown().await;
        let mut errors = done.errors;
        if let Err(e) = cluster.wait_pods_gone().await {
            errors.push(e.to_string());
        }
        match outcome {
            Ok(()) if !errors.is_empty() => Err(format!("teardown failed: {}", errors.join("; "))),
            other => other,
        }
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
    /// Written against the `Cluster` contract only: runs on kind/existing clusters
    /// too. The others need node-level access that only the netns cluster gives.
    pub portable: bool,
    /// A CNI spec version (of a plugin) the scenario needs: an implementation whose
    /// VERSION answer does not claim it has the scenario skipped, saying so.
    pub needs_cni_version: Option<(&'static str, &'static str)>,
    /// Added to a failure: what is checked goes beyond what the reference
    /// implementation (kubevirt/macvtap-cni, ovs-cni) claims, and what it does instead.
    pub beyond_reference: Option<&'static str>,
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
            portable: false,
            needs_cni_version: None,
            beyond_reference: None,
            body: Box::new(move |ctx| Box::pin(body(ctx))),
        }
    }

    /// Marks a scenario whose body uses only the `Cluster` contract.
    pub fn portable(mut self) -> Scenario {
        self.portable = true;
        self
    }

    /// Needs `plugin` to claim CNI spec `version` in its VERSION answer.
    pub fn needs_cni_version(mut self, plugin: &'static str, version: &'static str) -> Scenario {
        self.needs_cni_version = Some((plugin, version));
        self
    }

    /// Says, on failure, how this goes beyond the reference implementation.
    pub fn beyond_reference(mut self, note: &'static str) -> Scenario {
        self.beyond_reference = Some(note);
        self
    }

    /// Why the implementation under test is not asked to pass this scenario, from
    /// what it declares itself (its VERSION answer), if so.
    pub fn not_claimed(&self, ctx: &Ctx) -> Option<String> {
        let (plugin, version) = self.needs_cni_version?;
        let path = ctx.plugin(plugin);
        let claimed = crate::conform::implementation::cni_versions(&path).ok()?;
        (!claimed.iter().any(|v| v == version)).then(|| {
            format!(
                "not claimed: {plugin} under test ({}) does not claim CNI {version}; its VERSION answer lists {}",
                std::fs::canonicalize(&path).unwrap_or(path).display(),
                claimed.join(", ")
            )
        })
    }

    /// Whether the label filters select this scenario.
    pub fn selected(&self, only: &[String], skip: &[String]) -> bool {
        let own = self.selection_labels();
        let has = |l: &String| own.contains(&l.as_str());
        (only.is_empty() || only.iter().any(has)) && !skip.iter().any(has)
    }

    /// The scenario's group: its name up to the first `/` (`seed`, `ovs`, `vm`, …).
    pub fn group(&self) -> &str {
        self.name.split_once('/').map_or("other", |(g, _)| g)
    }

    /// What label filters see: the labels, the backend and the group.
    pub fn selection_labels(&self) -> Vec<&str> {
        let mut all = self.labels.clone();
        for extra in [self.backend, self.group()] {
            if !all.contains(&extra) {
                all.push(extra);
            }
        }
        all
    }
}

/// Every scenario this build knows, in run order.
pub fn all() -> Vec<Scenario> {
    let mut list = macvtap_cni::scenarios();
    list.extend(seed::scenarios());
    list.extend(ovs::scenarios());
    list.extend(vm::scenarios());
    list.extend(faults::scenarios());
    list.extend(bad_input::scenarios());
    list.extend(security::scenarios());
    list
}

/// `Err(msg)` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { Err(msg()) }
}
