//! Scenarios as data: a name, labels, the capabilities they need, what to deploy,
//! and an assessment. The runner (`runner.rs`) owns everything else: the cluster,
//! deploying, phases, the topology and reachability picture, diagnostics, `--keep`,
//! teardown and the leak check. Suites and `secnet conform` run the same list.

pub mod bad_input;
pub mod degradation;
pub mod faults;
pub mod filter;
pub mod hotplug;
pub mod invariant;
pub mod ipv6;
pub mod kit;
pub mod macvtap_cni;
pub mod migration;
pub mod ovs;
pub mod provider;
pub mod reach;
pub mod runner;
pub mod security;
pub mod seed;
pub mod spec;
pub mod spec_clauses;
pub mod spec_side_by_side;
pub mod uniqueness;
pub mod vm;
pub mod whereabouts;

pub use crate::cluster::Blame;
use crate::cluster::any::AnyCluster;
pub use crate::cluster::capability::{Capability, Offer};
use crate::cluster::netns::topology::Topology;
use crate::cluster::netns::{self, NetnsCluster};
use crate::lab::Lab;
use crate::lab::node::NodeLab;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

/// Why a scenario failed: what went wrong, the error it came from (kept as the
/// source), whose fault it is (the implementation under test: `failed`; the
/// harness or cluster: `error`), and the cluster's diagnostics (plugin logs and
/// state) when there are.
#[derive(Debug)]
pub struct Failure {
    message: String,
    diagnostics: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    blame: Blame,
}

impl Failure {
    /// The implementation under test did something wrong (a `failed` scenario).
    pub fn msg(message: impl std::fmt::Display) -> Failure {
        Failure {
            message: message.to_string(),
            diagnostics: None,
            source: None,
            blame: Blame::Implementation,
        }
    }

    /// The harness or the cluster broke: the scenario could not judge the
    /// implementation (an `error`, not a `failed`).
    pub fn error(message: impl std::fmt::Display) -> Failure {
        Failure {
            blame: Blame::Harness,
            ..Failure::msg(message)
        }
    }

    /// The same failure, blamed on the harness or cluster (a set-up step broke).
    pub fn harness(mut self) -> Failure {
        self.blame = Blame::Harness;
        self
    }

    pub fn blame(&self) -> Blame {
        self.blame
    }

    /// Whether the harness or cluster broke (rather than the implementation).
    pub fn is_error(&self) -> bool {
        self.blame == Blame::Harness
    }

    /// A failure caused by `source`, described as `message`.
    pub fn caused(
        message: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Failure {
        Failure {
            message: format!("{message}: {source}"),
            diagnostics: None,
            source: Some(Box::new(source)),
            blame: Blame::Implementation,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn diagnostics(&self) -> Option<&str> {
        self.diagnostics.as_deref()
    }

    /// Attaches the cluster's diagnostics (kept once: the first set wins).
    pub fn with_diagnostics(mut self, diagnostics: String) -> Failure {
        let d = diagnostics.trim();
        if self.diagnostics.is_none() && !d.is_empty() {
            self.diagnostics = Some(d.to_string());
        }
        self
    }

    /// Adds a line to the message (a hint, what was kept, a note).
    pub fn with_line(mut self, line: impl std::fmt::Display) -> Failure {
        self.message = format!("{}\n{line}", self.message);
        self
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        if let Some(d) = &self.diagnostics {
            write!(f, "\n{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::msg(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::msg(message)
    }
}

/// The typed errors of the layers below keep their source; a cluster error says
/// whose fault it is, the others are the implementation's unless the runner met
/// them setting up.
macro_rules! failure_from {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                Failure {
                    message: e.to_string(),
                    diagnostics: None,
                    source: Some(Box::new(e)),
                    blame: Blame::Implementation,
                }
            }
        }
    )*};
}

impl From<crate::cluster::ClusterError> for Failure {
    fn from(e: crate::cluster::ClusterError) -> Failure {
        Failure {
            message: e.to_string(),
            diagnostics: None,
            blame: e.blame(),
            source: Some(Box::new(e)),
        }
    }
}

failure_from!(
    crate::lab::command::CommandError,
    crate::cni::ExecError,
    crate::contract::probe::ProbeError,
    crate::probe::ParseError,
    crate::probe::ping::PingError,
    crate::multus::MultusError,
    crate::cni::chain::ChainError,
    crate::vm::VmError,
    crate::vm::binding::BindingError,
    crate::vm::image::ImageError,
    crate::vm::qemu::QemuError,
    crate::vm::kubevirt::KubevirtError,
    crate::cluster::netns::NetnsError,
    crate::cluster::netns::ovs::OvsError,
    crate::objects::FixtureError,
    std::io::Error,
    serde_json::Error,
);

pub type Outcome = Result<(), Failure>;

/// `Err(Failure)` with `message`: `return fail(format!(…))`.
pub fn fail<T>(message: impl std::fmt::Display) -> Result<T, Failure> {
    Err(Failure::msg(message))
}

/// What a scenario body may use: the implementation under test and run options.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Directory holding the CNI binaries under test (`macvtap`, ...).
    pub(crate) cni_bin_dir: PathBuf,
    /// Keep the namespaces of a failed scenario and say how to enter them.
    pub(crate) keep: bool,
    /// The run's id: every namespace carries it, so `secnet clean --run` finds them.
    pub(crate) run_id: String,
    /// This scenario's part of namespace names (`s<n>`), set by the runner.
    pub(crate) scope: String,
    /// Debian's reference plugins (bridge, host-local, macvlan).
    pub(crate) reference_bin_dir: PathBuf,
    /// The device plugin command the DaemonSet runs.
    pub(crate) device_plugin: Vec<String>,
    pub(crate) topology: Topology,
    pub(crate) fixtures_dir: PathBuf,
    /// Scratch files of the run (removed at its end).
    pub(crate) work_dir: PathBuf,
    /// What the scenario saw (topology, probes), for the report.
    pub(crate) observed: crate::observe::Recorder,
    /// The multus under test: secnet's emulation with these semantics on netns,
    /// the cluster's own multus (`Multus`) elsewhere.
    pub(crate) multus: crate::multus::Semantics,
    /// The cluster runs its own multus (a real one), not secnet's emulation.
    pub(crate) cluster_multus: bool,
}

impl Ctx {
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.cni_bin_dir.join(name)
    }

    /// A node lab named after this run and scenario.
    pub fn node_lab(&self) -> Result<NodeLab, Failure> {
        NodeLab::in_lab(Lab::scoped(&self.run_id, &self.scope))
            .map_err(|e| Failure::caused("failed to set up the node lab", e))
    }

    /// A netns cluster named after this run and scenario; userspace Open vSwitch on
    /// every node when `ovs`, dnsmasq on the LAN when `dhcp`.
    pub async fn netns_cluster(&self, dhcp: bool, ovs: bool) -> Result<NetnsCluster, Failure> {
        let opts = netns::Options {
            run_id: format!("{}-{}", self.run_id, self.scope),
            topology: self.topology.clone(),
            cni_bin_dir: self.cni_bin_dir.clone(),
            reference_bin_dir: self.reference_bin_dir.clone(),
            device_plugin: self.device_plugin.clone(),
            dhcp,
            ovs,
            multus: self.multus,
        };
        Ok(NetnsCluster::up(opts).await?)
    }
}

type Assess<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;
type ClusterAssess = dyn for<'a> Fn(&'a Ctx, &'a AnyCluster) -> Assess<'a> + Send + Sync;
type LabAssess = dyn for<'a> Fn(&'a Ctx, &'a mut NodeLab) -> Assess<'a> + Send + Sync;

/// What the runner hands the scenario's assessment.
pub enum Body {
    /// A cluster from the run's provider, with the scenario's deployment applied.
    Cluster(Box<ClusterAssess>),
    /// A node lab (a node namespace with its lower device): the plugins are called
    /// directly, as a container runtime would.
    NodeLab(Box<LabAssess>),
    /// Nothing but the run's context (fixture and CLI checks).
    Plain(Box<dyn for<'a> Fn(&'a Ctx) -> Assess<'a> + Send + Sync>),
}

/// What the runner deploys on the scenario's cluster before the assessment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deploy {
    /// The seed's macvtap device plugin (its ConfigMap and DaemonSet) and the
    /// `dataplane` NAD. On a real cluster the device plugin came with the run's
    /// components and only the NAD is applied.
    pub(crate) macvtap_seed: bool,
    /// Fixture files (relative to the fixtures directory) applied in order.
    pub(crate) fixtures: Vec<&'static str>,
}

/// The seed's device plugin: a component on real clusters (installed with the run).
const SEED_DEVICE_PLUGIN: [&str; 2] = [
    "seed/macvtap-deviceplugin-config.yaml",
    "seed/macvtap-daemonset.yaml",
];
const SEED_NAD: &str = "seed/macvtap-nad.yaml";

impl Deploy {
    /// The fixture files to apply, in order; the seed's device plugin among them
    /// unless the cluster runs it already (`device_plugin_installed`).
    pub fn files(&self, device_plugin_installed: bool) -> Vec<&'static str> {
        let mut files = Vec::new();
        if self.macvtap_seed {
            if !device_plugin_installed {
                files.extend(SEED_DEVICE_PLUGIN);
            }
            files.push(SEED_NAD);
        }
        files.extend(self.fixtures.iter().copied());
        files
    }
}

pub struct Scenario {
    pub name: String,
    pub backend: &'static str,
    pub(crate) workload: &'static str,
    pub labels: Vec<&'static str>,
    /// What the cluster must offer; the runner skips the scenario, naming the
    /// missing capability, where it does not.
    pub needs: Vec<Capability>,
    pub(crate) deploy: Deploy,
    /// A CNI spec version (of a plugin) the scenario needs: an implementation whose
    /// VERSION answer does not claim it has the scenario skipped, saying so.
    pub(crate) needs_cni_version: Option<(&'static str, &'static str)>,
    /// Added to a failure: what is checked goes beyond what the reference
    /// implementation (kubevirt/macvtap-cni, ovs-cni) claims, and what it does instead.
    pub(crate) beyond_reference: Option<&'static str>,
    /// Makes only objects of its own (names, subnets) and reads nothing node-wide
    /// (capacity, links, leases): a cluster shared by the run may run it beside
    /// others (see `ClusterProvider::runs_alone`).
    pub shares_nodes: bool,
    /// Shares the nodes, but not with the other scenarios of this group (see
    /// `Sharing::BesideOthers`).
    pub sharing_group: Option<&'static str>,
    pub body: Body,
}

impl Scenario {
    fn with_body(
        name: impl Into<String>,
        backend: &'static str,
        workload: &'static str,
        labels: &[&'static str],
        needs: Vec<Capability>,
        body: Body,
    ) -> Scenario {
        Scenario {
            name: name.into(),
            backend,
            workload,
            labels: labels.to_vec(),
            needs,
            deploy: Deploy::default(),
            needs_cni_version: None,
            beyond_reference: None,
            shares_nodes: false,
            sharing_group: None,
            body,
        }
    }

    /// A scenario assessed on a cluster: `|ctx, cluster| Box::pin(assess(ctx, cluster))`.
    pub fn on_cluster<F>(
        name: impl Into<String>,
        backend: &'static str,
        workload: &'static str,
        labels: &[&'static str],
        assess: F,
    ) -> Scenario
    where
        F: for<'a> Fn(&'a Ctx, &'a AnyCluster) -> Assess<'a> + Send + Sync + 'static,
    {
        Self::with_body(
            name,
            backend,
            workload,
            labels,
            Vec::new(),
            Body::Cluster(Box::new(assess)),
        )
    }

    /// A scenario that calls the plugins itself on a node lab:
    /// `|ctx, lab| Box::pin(assess(ctx, lab))`.
    pub fn on_node_lab<F>(
        name: impl Into<String>,
        backend: &'static str,
        workload: &'static str,
        labels: &[&'static str],
        assess: F,
    ) -> Scenario
    where
        F: for<'a> Fn(&'a Ctx, &'a mut NodeLab) -> Assess<'a> + Send + Sync + 'static,
    {
        Self::with_body(
            name,
            backend,
            workload,
            labels,
            vec![Capability::PluginExec],
            Body::NodeLab(Box::new(assess)),
        )
    }

    /// A scenario that needs no cluster: `|ctx| Box::pin(assess(ctx))`.
    pub fn plain<F>(
        name: impl Into<String>,
        backend: &'static str,
        workload: &'static str,
        labels: &[&'static str],
        assess: F,
    ) -> Scenario
    where
        F: for<'a> Fn(&'a Ctx) -> Assess<'a> + Send + Sync + 'static,
    {
        Self::with_body(
            name,
            backend,
            workload,
            labels,
            Vec::new(),
            Body::Plain(Box::new(assess)),
        )
    }

    /// Adds capabilities the scenario needs.
    pub fn needs(mut self, caps: &[Capability]) -> Scenario {
        for c in caps {
            if !self.needs.contains(c) {
                self.needs.push(*c);
            }
        }
        self
    }

    /// Deploys the seed's macvtap device plugin and `dataplane` NAD first.
    pub fn deploy_macvtap_seed(mut self) -> Scenario {
        self.deploy.macvtap_seed = true;
        self
    }

    /// Applies these fixture files first (after the seed, when it is deployed).
    pub fn deploy(mut self, fixtures: &[&'static str]) -> Scenario {
        self.deploy.fixtures.extend_from_slice(fixtures);
        self
    }

    /// A rough weight of the scenario's run time, from what it declares (guests to
    /// boot, OVS daemons to start, many pods): a parallel run starts the heavy ones
    /// first so that the light ones fill the gaps at the end.
    pub fn weight(&self) -> u32 {
        let mut w = 1;
        if self.needs.contains(&Capability::Vm) {
            w += 4;
        }
        if self.needs.contains(&Capability::Ovs) {
            w += 2;
        }
        if self.labels.contains(&"concurrency") {
            w += 4;
        }
        w
    }

    /// Whether a cluster offering `offer` can host the scenario.
    pub fn portable_on(&self, offer: &Offer) -> bool {
        offer.missing(&self.needs).is_none()
    }

    /// Why a cluster offering `offer` cannot host this scenario, naming the
    /// missing capability.
    pub fn unsupported_on(&self, offer: &Offer) -> Option<String> {
        let cap = offer.missing(&self.needs)?;
        Some(format!(
            "needs {cap}: {} (not offered by the {offer} cluster)",
            cap.hint()
        ))
    }

    /// Needs `plugin` to claim CNI spec `version` in its VERSION answer.
    pub fn needs_cni_version(mut self, plugin: &'static str, version: &'static str) -> Scenario {
        self.needs_cni_version = Some((plugin, version));
        self
    }

    /// May run beside other scenarios on a shared cluster (see `shares_nodes`).
    pub fn shares_nodes(mut self) -> Scenario {
        self.shares_nodes = true;
        self
    }

    /// May run beside other scenarios on a shared cluster, but never beside another
    /// of `group`: they share pod names, addresses or a bridge's ports.
    pub fn shares_nodes_but_not_within(mut self, group: &'static str) -> Scenario {
        self.shares_nodes = true;
        self.sharing_group = Some(group);
        self
    }

    /// Reads something node-wide after all (e.g. every qdisc of the node): runs
    /// alone on a shared cluster.
    pub fn reads_node_wide(mut self) -> Scenario {
        self.shares_nodes = false;
        self.sharing_group = None;
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
        let claimed = crate::cni::version::cni_versions(&path).ok()?;
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

    /// The scenario's stable short id (from its name): shown by `--list`, taken by
    /// `--focus`, printed in the rerun command of a failure.
    pub fn id(&self) -> String {
        filter::short_id(&self.name)
    }

    /// Labelled `quarantine`: known flaky, left out unless asked for by label.
    pub fn is_quarantined(&self) -> bool {
        self.labels.contains(&filter::QUARANTINE)
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
pub fn all() -> &'static [Scenario] {
    static ALL: std::sync::LazyLock<Vec<Scenario>> = std::sync::LazyLock::new(build_all);
    &ALL
}

fn build_all() -> Vec<Scenario> {
    let mut list = macvtap_cni::scenarios();
    list.extend(seed::scenarios());
    list.extend(ovs::scenarios());
    list.extend(vm::scenarios());
    list.extend(faults::scenarios());
    list.extend(degradation::scenarios());
    list.extend(bad_input::scenarios());
    list.extend(security::scenarios());
    list.extend(ipv6::scenarios());
    list.extend(spec::scenarios());
    list.extend(migration::scenarios());
    list.extend(hotplug::scenarios());
    list.extend(whereabouts::scenarios());
    list
}

/// A failure with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond { Ok(()) } else { fail(msg()) }
}
