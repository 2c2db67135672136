//! `secnet conform --cluster kind|existing`: one real cluster for the whole run.
//! Up (kind creates it; `existing` connects), the component sets installed once
//! (server-side apply, run label), wait until every node advertises the macvtap
//! resource, then the portable scenarios, then down: the run's objects deleted by
//! label (and swept), the kind cluster deleted unless `--keep`.
//! `--dry-run` prints all of that as a plan without running anything (`plan.rs`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Options;
use crate::cluster::kube::cluster::{Foreign, vms};
use crate::cluster::kube::command::{Cmd, HostRunner, Runner};
use crate::cluster::kube::components::{
    self, CachedFetcher, Component, ComponentError, ComponentOptions, ComponentSet, CurlFetcher,
    Fetcher, MacvtapImpl,
};
use crate::cluster::kube::existing::{self, ExistingOptions};
use crate::cluster::kube::kind::{self, Kind, KindOptions};
use crate::cluster::kube::{KubeCluster, KubeOptions, RUN_LABEL, openvswitch, sweep};
use crate::cluster::provider::Provider;
use crate::cluster::{Cluster, ClusterError};
use crate::scenario::{Capability, Offer};

/// Why a real cluster could not be brought up or made ready.
#[derive(Debug, thiserror::Error)]
pub enum RealError {
    #[error(
        "kind not found on PATH: install kind (https://kind.sigs.k8s.io) and a container engine, or use --cluster existing"
    )]
    NoKind,
    /// The kube provider was asked for a cluster before the run's was up.
    #[error("the {0} cluster is not up yet (ClusterProvider::start first)")]
    NotStarted(Provider),
    /// Only the factory picks the provider; this one makes no real cluster.
    #[error("the {0} provider has no real cluster to bring up")]
    NotReal(Provider),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Component(#[from] ComponentError),
    #[error(transparent)]
    Kind(#[from] kind::KindError),
    #[error(transparent)]
    Existing(#[from] existing::ExistingError),
    #[error("failed to build the KubeVirt guest image: {0}")]
    GuestImage(String),
    #[error("the thread running kind failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(
        "timed out after {seconds} s waiting for {resource} on {}: is the device plugin running and is the lower device there?\n{diagnostics}",
        missing.join(", ")
    )]
    NoResource {
        resource: String,
        seconds: u64,
        /// The nodes without it.
        missing: Vec<String>,
        /// The run's and the components' pods: state, events, logs.
        diagnostics: String,
    },
    /// Objects the components would apply exist already and are not this run's.
    #[error(
        "{} object(s) this run would apply exist already and were not made by it; secnet never overwrites or deletes them, so nothing was applied:\n  {}\nTo run with them as they are (not applied, not labelled, never deleted), pass --adopt-existing; if a whole component is installed already, leave it out of --components (or list it in an inventory's preinstalled).",
        objects.len(),
        objects.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    )]
    Conflicts { objects: Vec<Foreign> },
    /// Bringing the cluster up failed and taking down what was made left notes.
    #[error("{source} ({})", notes.join("; "))]
    TornDown {
        source: Box<RealError>,
        notes: Vec<String>,
    },
}

impl RealError {
    /// `self`, with the notes of the teardown that followed it (if any).
    fn with_notes(self, notes: Vec<String>) -> RealError {
        if notes.is_empty() {
            self
        } else {
            RealError::TornDown {
                source: Box::new(self),
                notes,
            }
        }
    }
}

/// What `--cluster kind|existing` adds to the conform options.
#[derive(Debug, Clone)]
pub struct RealOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// kind's cluster config.
    pub kind_config: PathBuf,
    /// Run on this existing kind cluster instead of creating one (never deleted).
    pub kind_reuse: Option<String>,
    /// kind's node image (`--node-image`; pinned by digest by default).
    pub node_image: String,
    /// `--report`'s directory: kind's logs are exported under it.
    pub report_dir: Option<PathBuf>,
    /// `docker` or `podman`.
    pub engine: String,
    /// The bundled plugins' image (built from the Containerfile).
    pub image: String,
    /// Put kubevirt/macvtap-cni's image under test instead of the bundled plugins.
    pub upstream_macvtap: bool,
    /// The nodes' macvtap/macvlan lower device.
    pub lower_device: String,
    /// `--lower-device` was given (it then beats an inventory's).
    pub lower_device_given: bool,
    /// Nodes the scenarios may use (empty: all).
    pub nodes: Vec<String>,
    /// The nodes have /dev/kvm (KubeVirt without software emulation).
    pub kvm: bool,
    /// Component sets to install, in order.
    pub components: Vec<Component>,
    /// Component sets the cluster has already (an inventory's `preinstalled`): not
    /// applied, but what they bring is offered to the scenarios.
    pub preinstalled: Vec<Component>,
    /// What the cluster's owner does not allow (an inventory's `nodeAccess: none`):
    /// taken from the run's offer.
    pub withheld: BTreeSet<Capability>,
    /// Where fetched upstream manifests are kept (a warm cache runs offline).
    pub manifest_cache: PathBuf,
    /// How long to wait for pods, and for the device plugin on every node.
    pub timeout: Duration,
    /// Component objects that exist already without this run's label are used as
    /// found (not applied, not labelled, never deleted) instead of stopping the run.
    pub adopt_existing: bool,
    pub dry_run: bool,
    /// `--pod-image`: the image of the scenarios' pods and the node probes (an
    /// air-gapped cluster's mirror of busybox) instead of the pinned busybox.
    pub pod_image: Option<String>,
}

impl Default for RealOptions {
    fn default() -> Self {
        RealOptions {
            kubeconfig: None,
            context: None,
            kind_config: crate::bins::fixtures_dir()
                .parent()
                .map_or_else(|| PathBuf::from("clusters"), |p| p.join("clusters"))
                .join("kind-2node.yaml"),
            kind_reuse: None,
            node_image: kind::KIND_NODE_IMAGE.into(),
            report_dir: None,
            engine: "docker".into(),
            image: components::SECNET_IMAGE.into(),
            upstream_macvtap: false,
            lower_device: crate::cluster::kube::DEFAULT_LOWER_DEVICE.into(),
            lower_device_given: false,
            nodes: Vec::new(),
            kvm: false,
            components: vec![Component::Multus, Component::Macvtap],
            preinstalled: Vec::new(),
            withheld: BTreeSet::new(),
            manifest_cache: default_cache(),
            timeout: Duration::from_secs(180),
            adopt_existing: false,
            dry_run: false,
            pod_image: None,
        }
    }
}

/// `$XDG_CACHE_HOME/secnet/manifests`, else `~/.cache/secnet/manifests`.
fn default_cache() -> PathBuf {
    let var = |name| std::env::var_os(name).map(PathBuf::from);
    var("XDG_CACHE_HOME")
        .or_else(|| var("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"))
        .join("secnet/manifests")
}

/// The component sets a run installs when `--components` is not given: on kind (a
/// throwaway cluster) everything the scenarios use, so that every portable scenario
/// runs; on an existing (maybe shared) cluster only multus and the macvtap plugins.
pub fn default_components(cluster: Provider) -> Vec<Component> {
    match cluster {
        Provider::Kind => vec![
            Component::Multus,
            Component::Macvtap,
            Component::Openvswitch,
            Component::OvsCni,
            Component::Kubevirt,
        ],
        _ => vec![Component::Multus, Component::Macvtap],
    }
}

/// What the run's cluster offers: the provider's own capabilities, plus those the
/// component sets bring that the run deploys or the inventory declares preinstalled.
pub fn offer(opts: &Options) -> Offer {
    let offer = crate::cluster::kube::base_offer(&opts.cluster.to_string());
    let real = &opts.real;
    let present: Vec<Component> = real
        .components
        .iter()
        .chain(&real.preinstalled)
        .copied()
        .collect();
    let mut brought = brought_by(&present);
    // Frames are captured in the openvswitch set's pods: Open vSwitch preinstalled on
    // the hosts has none (its ports are read on the host through the probe pods).
    if !real.components.contains(&Component::Openvswitch) {
        brought.remove(&Capability::FrameCapture);
    }
    let offer = offer.with(brought).without(real.withheld.iter().copied());
    // A run kept to one node has nowhere to move a guest to.
    if real.nodes.len() == 1 {
        return offer.without([Capability::LiveMigration, Capability::NicHotplug]);
    }
    offer
}

/// The capabilities component sets bring to a real cluster's scenarios.
pub fn brought_by(components: &[Component]) -> BTreeSet<Capability> {
    let mut caps = BTreeSet::new();
    // Pods on OVS networks need the plugin and the switch; the scenarios read the
    // bridge and capture frames from the openvswitch set's pods.
    if [Component::OvsCni, Component::Openvswitch]
        .iter()
        .all(|c| components.contains(c))
    {
        caps.extend([Capability::Ovs, Capability::FrameCapture]);
    }
    // KubeVirt moves guests and plugs NICs through its own API (the cluster
    // withdraws both on fewer than two schedulable nodes once connected).
    if components.contains(&Component::Kubevirt) {
        caps.extend([
            Capability::Vm,
            Capability::LiveMigration,
            Capability::NicHotplug,
        ]);
    }
    if components.contains(&Component::Whereabouts) {
        caps.insert(Capability::Whereabouts);
    }
    caps
}

/// How long KubeVirt may take to be Available (its operator rolls out several
/// components; under emulation on kind that takes minutes).
pub fn kubevirt_timeout(real: &RealOptions) -> Duration {
    real.timeout.max(Duration::from_secs(600))
}

/// Where the kind provider writes the guest image's build context.
pub fn guest_context_dir(real: &RealOptions) -> PathBuf {
    real.manifest_cache.join("guest-image")
}

/// The container engine's build of the KubeVirt guest image (kernel + initramfs,
/// booted by kernelBoot) from its context; `kind load` then puts it on the nodes.
pub fn guest_image_build_cmd(real: &RealOptions) -> Cmd {
    let dir = guest_context_dir(real).display().to_string();
    let file = format!("{dir}/Containerfile");
    Cmd::new(
        &real.engine,
        &["build", "-t", &vms::guest_image(), "-f", &file, &dir],
    )
}

/// Builds the guest image from this machine's cached guest (built first if needed).
fn build_guest_image(real: &RealOptions) -> Result<(), RealError> {
    let cache = std::env::var_os("SECNET_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::vm::image::DEFAULT_CACHE.into());
    let img = crate::vm::image::ensure(&cache).map_err(|e| RealError::GuestImage(e.to_string()))?;
    let dir = guest_context_dir(real);
    vms::write_guest_context(&img, &dir)
        .map_err(|e| RealError::GuestImage(format!("{}: {e}", dir.display())))?;
    HostRunner
        .run(&guest_image_build_cmd(real))
        .map_err(|e| RealError::GuestImage(e.to_string()))?;
    Ok(())
}

/// The component sets `--components` selects, in the order given.
pub fn selected_sets(real: &RealOptions) -> Vec<ComponentSet> {
    let all = components::sets(&component_options(real));
    real.components
        .iter()
        .filter_map(|c| all.iter().find(|s| s.name == *c).cloned())
        .collect()
}

fn component_options(real: &RealOptions) -> ComponentOptions {
    ComponentOptions {
        macvtap: if real.upstream_macvtap {
            MacvtapImpl::Upstream
        } else {
            MacvtapImpl::Secnet
        },
        image: real.image.clone(),
        lower_device: real.lower_device.clone(),
        kvm: real.kvm,
    }
}

/// The cluster's options for a run installing `sets`.
fn kube_options(opts: &Options, sets: &[ComponentSet]) -> KubeOptions {
    KubeOptions {
        pod_timeout: opts.real.timeout,
        lower_device: opts.real.lower_device.clone(),
        device_plugin_pods: sets
            .iter()
            .find(|s| s.name == Component::Macvtap)
            .and_then(|s| s.log_selectors.first().cloned()),
        log_selectors: sets.iter().flat_map(|s| s.log_selectors.clone()).collect(),
        offer: Some(offer(opts)),
        pod_image: opts
            .real
            .pod_image
            .clone()
            .unwrap_or_else(|| components::POD_IMAGE.into()),
        ..KubeOptions::default()
    }
}

pub(super) fn kind_options(opts: &Options, run_id: &str) -> KindOptions {
    let real = &opts.real;
    let mut k = KindOptions::new(run_id);
    k.config = real.kind_config.clone();
    k.images = vec![real.image.clone()];
    // Upstream's macvtap image is pulled from quay.io by the nodes; ovs-cni still
    // comes from ours.
    if real.upstream_macvtap && !real.components.contains(&Component::OvsCni) {
        k.images.clear();
    }
    if real.components.contains(&Component::Openvswitch) {
        k.images.push(components::OPENVSWITCH_IMAGE.into());
    }
    if real.components.contains(&Component::Kubevirt) {
        k.images.push(vms::guest_image());
    }
    k.keep = opts.keep;
    k.engine = real.engine.clone();
    k.node_image = Some(real.node_image.clone());
    k.lower_device = real.lower_device.clone();
    k.reuse = real.kind_reuse.clone();
    // Next to the run's report; without --report, in the temporary directory (the
    // failure's notes say where).
    let logs = format!("kind-logs-{run_id}");
    k.logs_dir = match &real.report_dir {
        Some(dir) => dir.join(logs),
        None => std::env::temp_dir().join(format!("secnet-{logs}")),
    };
    k
}

/// The run's real cluster and how to take it down.
pub struct RealCluster {
    pub(crate) cluster: Arc<KubeCluster>,
    kind: Option<Kind<HostRunner>>,
}

impl RealCluster {
    /// A cluster that is up already (not brought up or taken down by this run).
    pub fn on(cluster: KubeCluster) -> RealCluster {
        RealCluster {
            cluster: Arc::new(cluster),
            kind: None,
        }
    }

    /// Brings the cluster up (kind) or connects (existing), installs the components
    /// and waits for the device plugin on every node. On failure what was made is removed.
    pub async fn up(opts: &Options, run_id: &str) -> Result<RealCluster, RealError> {
        let real = &opts.real;
        let sets = selected_sets(real);
        let kopts = kube_options(opts, &sets);
        let (cluster, kind) = match opts.cluster {
            Provider::Kind => {
                let kind = Kind::new(kind_options(opts, run_id), HostRunner);
                if crate::prereq::find_program(&kind.opts.kind_bin).is_none() {
                    return Err(RealError::NoKind);
                }
                if real.components.contains(&Component::Kubevirt) {
                    progress("building the KubeVirt guest image");
                    let r = real.clone();
                    tokio::task::spawn_blocking(move || build_guest_image(&r)).await??;
                }
                progress(&format!(
                    "creating kind cluster {} from {}",
                    kind.cluster_name(),
                    kind.opts.config.display()
                ));
                let (kind, up) = tokio::task::spawn_blocking(move || {
                    let up = kind.bring_up();
                    (kind, up)
                })
                .await?;
                let up = up?;
                for img in &up.images {
                    let id = if img.id.is_empty() {
                        "unknown"
                    } else {
                        &img.id
                    };
                    progress(&format!("loaded {} (image ID {id})", img.image));
                }
                match kind::connect(&up.kubeconfig, run_id, kopts).await {
                    Ok(c) => (c, Some(kind)),
                    Err(e) => return Err(RealError::from(e).with_notes(kind.down(true))),
                }
            }
            Provider::Existing => {
                let eo = ExistingOptions {
                    kubeconfig: real.kubeconfig.clone(),
                    context: real.context.clone(),
                };
                (existing::connect(&eo, run_id, kopts).await?, None)
            }
            Provider::Netns | Provider::Bare => return Err(RealError::NotReal(opts.cluster)),
        };
        let mut cluster = cluster;
        if !real.nodes.is_empty() {
            cluster.restrict_nodes(&real.nodes)?;
        }
        let rc = RealCluster {
            cluster: Arc::new(cluster),
            kind,
        };
        let fetcher = CachedFetcher {
            dir: real.manifest_cache.clone(),
            inner: CurlFetcher,
        };
        rc.set_up(opts, &sets, &fetcher).await
    }

    /// On the connected cluster: the run namespace first (scenario objects and node
    /// probes go there), then the components. On failure what was made is removed.
    pub async fn set_up(
        self,
        opts: &Options,
        sets: &[ComponentSet],
        fetcher: &(dyn Fetcher + Sync),
    ) -> Result<RealCluster, RealError> {
        progress(&format!(
            "creating namespace {}",
            self.cluster.run_namespace()
        ));
        let made = match self.cluster.create_run_namespace().await {
            Ok(()) => self.deploy(opts, sets, fetcher).await,
            Err(e) => Err(e.into()),
        };
        match made {
            Ok(()) => Ok(self),
            Err(e) => Err(e.with_notes(self.down(true, false).await)),
        }
    }

    async fn deploy(
        &self,
        opts: &Options,
        sets: &[ComponentSet],
        fetcher: &(dyn Fetcher + Sync),
    ) -> Result<(), RealError> {
        let dir = opts.fixtures_dir.join("components");
        let mut rendered = Vec::new();
        for set in sets {
            rendered.push((set, components::render(set, &dir, fetcher)?));
        }
        // Before anything is applied: what exists without this run's label stops
        // the run, or with --adopt-existing is used as found.
        let all: Vec<serde_json::Value> = rendered.iter().flat_map(|(_, d)| d.clone()).collect();
        let foreign = self.cluster.foreign_objects(&all).await?;
        if !foreign.is_empty() && !opts.real.adopt_existing {
            return Err(RealError::Conflicts { objects: foreign });
        }
        for f in &foreign {
            progress(&format!("using as found (--adopt-existing): {f}"));
        }
        for (set, docs) in rendered {
            progress(&format!("installing {} {}", set.name, set.version));
            let applied =
                components::apply_rendered(&self.cluster, set, docs, |d| is_adopted(d, &foreign))
                    .await?;
            progress(&format!("{}: {applied} object(s) applied", set.name));
        }
        if sets.iter().any(|s| s.name == Component::Macvtap) {
            self.wait_for_resource(crate::scenario::seed::DATAPLANE, opts.real.timeout)
                .await?;
        }
        if sets.iter().any(|s| s.name == Component::Openvswitch) {
            progress("waiting for Open vSwitch on every node");
            let nodes = self.cluster.nodes();
            openvswitch::wait_ready(&self.cluster, &nodes, opts.real.timeout).await?;
        }
        if sets.iter().any(|s| s.name == Component::Kubevirt) {
            progress("waiting for KubeVirt to be Available");
            self.cluster
                .wait_kubevirt_available(kubevirt_timeout(&opts.real))
                .await?;
        }
        Ok(())
    }

    /// Polls until every node has some allocatable `resource` (the device plugin
    /// registered); a timeout names the nodes without it and carries diagnostics.
    async fn wait_for_resource(&self, resource: &str, timeout: Duration) -> Result<(), RealError> {
        progress(&format!("waiting for {resource} on every node"));
        let start = Instant::now();
        loop {
            let mut missing = Vec::new();
            for node in self.cluster.nodes() {
                let r = self.cluster.node_resources(&node).await?;
                if r.allocatable.get(resource).copied().unwrap_or(0) == 0 {
                    missing.push(node);
                }
            }
            if missing.is_empty() {
                progress(&format!(
                    "{resource} on every node after {:.1} s",
                    start.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(RealError::NoResource {
                    resource: resource.to_string(),
                    seconds: timeout.as_secs(),
                    missing,
                    diagnostics: self.cluster.diagnostics().await,
                });
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Deletes what the run made (unless it failed and `keep`), then the kind
    /// cluster (unless `keep`). Returns notes; never fails.
    pub async fn down(self, failed: bool, keep: bool) -> Vec<String> {
        let mut notes = Vec::new();
        if keep && failed {
            notes.push(format!(
                "kept the run's objects: kubectl get all,network-attachment-definitions -A -l {RUN_LABEL}={}; remove with: secnet clean --cluster {} --run {}",
                self.cluster.run_id(),
                self.cluster.provider(),
                self.cluster.run_id()
            ));
        } else {
            let done = self.cluster.teardown().await;
            notes.extend(done.errors);
            // The run namespace, waited for: whatever a scenario left in it goes too.
            if let Err(e) = self.cluster.delete_run_namespace().await {
                notes.push(e);
            }
            // Anything else of the run (a killed body): swept by the run label.
            let swept = sweep::sweep(self.cluster.client(), Some(self.cluster.run_id())).await;
            notes.extend(swept.errors);
        }
        if let Some(kind) = self.kind {
            let more = tokio::task::spawn_blocking(move || kind.down(failed))
                .await
                .unwrap_or_else(|e| vec![e.to_string()]);
            notes.extend(more);
        }
        notes
    }
}

/// Whether a rendered document is one of the adopted (foreign) objects.
fn is_adopted(doc: &serde_json::Value, foreign: &[Foreign]) -> bool {
    let kind = doc["kind"].as_str().unwrap_or("");
    let name = doc["metadata"]["name"].as_str().unwrap_or("");
    let namespace = doc["metadata"]["namespace"].as_str();
    foreign.iter().any(|f| {
        f.kind == kind
            && f.name == name
            && (f.namespace.is_none() || f.namespace.as_deref() == namespace.or(Some("default")))
    })
}

fn progress(msg: &str) {
    eprintln!("secnet conform: {msg}");
}

/// Why a scenario does not run on kind/existing clusters.
pub const SKIP_REASON: &str =
    "needs node-level access that only the netns cluster gives (node links, processes, faults)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_come_in_the_order_given() {
        let real = RealOptions {
            components: vec![Component::OvsCni, Component::Multus],
            ..RealOptions::default()
        };
        let names: Vec<Component> = selected_sets(&real).iter().map(|s| s.name).collect();
        assert_eq!(names, [Component::OvsCni, Component::Multus]);
    }

    #[test]
    fn ovs_is_offered_when_the_plugin_and_the_switch_are_both_there() {
        use Component::*;
        assert!(brought_by(&[Multus, OvsCni]).is_empty());
        assert!(brought_by(&[Openvswitch]).is_empty());
        assert_eq!(
            brought_by(&[OvsCni, Multus, Openvswitch]),
            BTreeSet::from([Capability::Ovs, Capability::FrameCapture])
        );
        // Preinstalled counts as present.
        let mut opts = Options::bundled();
        opts.cluster = Provider::Existing;
        opts.real.components = vec![Multus, OvsCni];
        assert!(!offer(&opts).offers(Capability::Ovs));
        opts.real.preinstalled = vec![Openvswitch];
        assert!(offer(&opts).offers(Capability::Ovs));
        // Frames are captured in the deployed switch's pods, which the hosts' own lacks.
        assert!(!offer(&opts).offers(Capability::FrameCapture));
        opts.real.preinstalled.clear();
        opts.real.components.push(Openvswitch);
        assert!(offer(&opts).offers(Capability::FrameCapture));
    }

    #[test]
    fn kind_loads_the_ovs_image_when_the_run_deploys_openvswitch() {
        let mut opts = Options::bundled();
        opts.cluster = Provider::Kind;
        assert_eq!(
            kind_options(&opts, "sn000001").images,
            [components::SECNET_IMAGE]
        );
        opts.real.components = vec![Component::Openvswitch, Component::OvsCni];
        opts.real.upstream_macvtap = true;
        // ovs-cni comes from our image even when macvtap is upstream's.
        assert_eq!(
            kind_options(&opts, "sn000001").images,
            [components::SECNET_IMAGE, components::OPENVSWITCH_IMAGE]
        );
    }

    /// `secnet conform --cluster kind --components multus,macvtap,ovs-cni,openvswitch
    /// --dry-run`: the four OVS scenarios are runnable and the OVS image is loaded.
    #[test]
    fn the_kind_plan_with_openvswitch_runs_the_ovs_scenarios() {
        let cache = crate::lab::ScratchDir::new("secnet-plan-test").unwrap();
        let mut opts = Options::bundled();
        opts.cluster = Provider::Kind;
        opts.real.manifest_cache = cache.path().to_path_buf();
        opts.real.components = vec![
            Component::Multus,
            Component::Macvtap,
            Component::OvsCni,
            Component::Openvswitch,
        ];
        let all = crate::scenario::all();
        let selected: Vec<&crate::scenario::Scenario> = all.iter().collect();
        let plan = crate::conform::plan::plan(&opts, "sn000001", &selected).unwrap();
        // The OVS scenarios that need no binaries run on a node secnet owns.
        let ovs: Vec<&str> = plan
            .lines()
            .filter(|l| l.contains(" ovs/") && !l.contains("needs PluginExec"))
            .collect();
        assert_eq!(ovs.len(), 4, "{ovs:#?}");
        for line in ovs {
            assert!(line.contains("] run   ovs/"), "{line}");
        }
        assert!(
            plan.contains(
                "$ kind load docker-image localhost/secnet-ovs:dev --name secnet-sn000001"
            ),
            "{plan}"
        );
        assert!(plan.contains("### openvswitch dev"), "{plan}");
        assert!(
            plan.contains("every node has a Ready Open vSwitch pod"),
            "{plan}"
        );
        // Without the switch, the same scenarios are skipped, naming what is missing.
        opts.real.components.pop();
        let plan = crate::conform::plan::plan(&opts, "sn000001", &selected).unwrap();
        let skipped = plan
            .lines()
            .filter(|l| l.contains("skip  ovs/") && l.contains("needs Ovs"))
            .count();
        assert_eq!(skipped, 4, "{plan}");
    }

    mod against_a_mocked_api_server {
        use serde_json::{Value, json};

        use crate::cluster::kube::components::ComponentError;

        use super::*;
        use crate::cluster::kube::mock::{MockApi, Recorded, Reply, list, not_found};

        const MULTUS: &str = "https://raw.githubusercontent.com/k8snetworkplumbingwg/multus-cni/v4.3.0/deployments/multus-daemonset-thick.yml";

        fn node(name: &str, devices: u32) -> Value {
            let res =
                json!({"cpu": "2", "macvtap.network.kubevirt.io/dataplane": devices.to_string()});
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                "status": {"capacity": res, "allocatable": res}})
        }

        /// Nodes with `devices` each; applies echo; labelled lists hold one
        /// DaemonSet of the run; deletes succeed.
        fn api(devices: u32) -> MockApi {
            MockApi::new(move |r: &Recorded| {
                let nodes = || vec![node("node-a", devices), node("node-b", devices)];
                match (r.method.as_str(), r.path.as_str()) {
                    ("GET", "/api/v1/nodes") => list("NodeList", nodes()),
                    ("GET", p) if p.starts_with("/api/v1/nodes/") => {
                        let name = p.rsplit('/').next().unwrap_or("");
                        Reply::Json(200, node(name, devices))
                    }
                    ("PATCH", _) => Reply::Json(200, r.body.clone()),
                    ("GET", p)
                        if r.query.contains("labelSelector") && p.ends_with("/daemonsets") =>
                    {
                        list(
                            "DaemonSetList",
                            vec![json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                            "metadata": {"name": "secnet-macvtap", "namespace": "kube-system", "uid": "ds-1",
                                "labels": {"secnet.run": "sn0000aa"}}})],
                        )
                    }
                    ("GET", _)
                        if r.query.contains("labelSelector")
                            || r.query.contains("fieldSelector") =>
                    {
                        list("List", vec![])
                    }
                    ("DELETE", _) => {
                        Reply::Json(200, json!({"kind": "Status", "status": "Success"}))
                    }
                    _ => not_found(&r.path),
                }
            })
        }

        async fn real_cluster(mock: &MockApi) -> RealCluster {
            let kopts = KubeOptions {
                pod_timeout: Duration::from_secs(1),
                ..KubeOptions::default()
            };
            let cluster = KubeCluster::connect(mock.client(), "existing", "sn0000aa", kopts)
                .await
                .unwrap();
            RealCluster {
                cluster: Arc::new(cluster),
                kind: None,
            }
        }

        fn options(timeout: Duration) -> Options {
            let mut opts = Options::bundled();
            opts.cluster = Provider::Existing;
            opts.real.timeout = timeout;
            opts
        }

        /// The multus manifest as a warm cache would hold it.
        struct OneManifest;

        impl Fetcher for OneManifest {
            fn fetch(&self, url: &str) -> Result<String, ComponentError> {
                assert_eq!(url, MULTUS, "only multus is remote in the default sets");
                Ok("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: multus\n  namespace: kube-system\n".into())
            }
        }

        #[tokio::test]
        async fn deploy_applies_every_set_with_the_run_label_and_down_deletes_by_it() {
            let mock = api(50);
            let rc = real_cluster(&mock).await;
            let opts = options(Duration::from_secs(5));
            let sets = selected_sets(&opts.real);
            rc.deploy(&opts, &sets, &OneManifest).await.unwrap();
            let applied: Vec<String> = mock
                .requests()
                .into_iter()
                .filter(|r| r.method == "PATCH")
                .map(|r| {
                    assert_eq!(
                        r.body["metadata"]["labels"]["secnet.run"], "sn0000aa",
                        "{}",
                        r.path
                    );
                    assert!(r.query_has("fieldManager=secnet"), "{}", r.query);
                    r.path
                })
                .collect();
            assert_eq!(
                applied,
                [
                    "/api/v1/namespaces/kube-system/serviceaccounts/multus",
                    "/api/v1/namespaces/kube-system/configmaps/macvtap-deviceplugin-config",
                    "/apis/apps/v1/namespaces/kube-system/daemonsets/secnet-macvtap",
                ]
            );
            let notes = rc.down(false, false).await;
            assert!(notes.is_empty(), "{notes:?}");
            let deletes: Vec<Recorded> = mock
                .requests()
                .into_iter()
                .filter(|r| r.method == "DELETE")
                .collect();
            assert!(!deletes.is_empty());
            for d in &deletes {
                assert_eq!(
                    d.path,
                    "/apis/apps/v1/namespaces/kube-system/daemonsets/secnet-macvtap"
                );
                assert_eq!(d.body["preconditions"]["uid"], "ds-1");
            }
        }

        #[tokio::test]
        async fn a_device_plugin_that_never_registers_times_out_naming_the_nodes() {
            let mock = api(0);
            let rc = real_cluster(&mock).await;
            let opts = options(Duration::from_millis(500));
            let sets = selected_sets(&opts.real);
            let err = rc
                .deploy(&opts, &sets, &OneManifest)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("node-a, node-b") && err.contains("is the device plugin running"),
                "{err}"
            );
        }

        #[tokio::test]
        async fn a_failed_kept_run_leaves_its_objects_and_says_how_to_remove_them() {
            let mock = api(50);
            let rc = real_cluster(&mock).await;
            let notes = rc.down(true, true).await;
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains("secnet clean --cluster existing --run sn0000aa")),
                "{notes:?}"
            );
            assert!(mock.requests().iter().all(|r| r.method != "DELETE"));
        }

        /// A run's cluster on the fake API server, connected as `up` connects, with
        /// the macvtap component only (a local manifest: nothing to fetch).
        async fn fake_run(
            mock: &MockApi,
            run_id: &str,
            adopt_existing: bool,
        ) -> (Options, Vec<ComponentSet>, RealCluster) {
            let mut opts = options(Duration::from_secs(5));
            opts.real.components = vec![Component::Macvtap];
            opts.real.adopt_existing = adopt_existing;
            // No exec on this mock, so no node probe pods (see cluster/node_tests.rs).
            opts.real.withheld.insert(Capability::NodeAccess);
            let sets = selected_sets(&opts.real);
            let cluster = KubeCluster::connect(
                mock.client(),
                "existing",
                run_id,
                kube_options(&opts, &sets),
            )
            .await
            .unwrap();
            let rc = RealCluster {
                cluster: Arc::new(cluster),
                kind: None,
            };
            (opts, sets, rc)
        }

        /// No manifest is fetched: the macvtap component is a local file.
        struct NoFetch;

        impl Fetcher for NoFetch {
            fn fetch(&self, url: &str) -> Result<String, ComponentError> {
                panic!("nothing is fetched here: {url}")
            }
        }

        /// The portable capacity scenarios (faults need exec, which the fake cannot serve).
        fn capacity_scenarios(opts: &mut Options) -> Vec<&'static crate::scenario::Scenario> {
            opts.labels = vec!["capacity".into()];
            opts.skip_labels = vec!["fault".into()];
            crate::conform::select(opts, crate::scenario::all()).unwrap()
        }

        async fn run_capacity_scenarios(
            opts: &mut Options,
            run_id: &str,
            rc: RealCluster,
        ) -> crate::report::Report {
            let selected = capacity_scenarios(opts);
            let ctx = crate::conform::context(opts, run_id);
            let provider = crate::conform::kube::KubeProvider::new(opts);
            *provider.running() = Some(rc);
            let provider: Arc<dyn crate::scenario::provider::ClusterProvider> = Arc::new(provider);
            crate::conform::run_selected(opts, run_id, ctx, selected, provider, Instant::now())
                .await
                .unwrap()
        }

        #[tokio::test]
        async fn conform_runs_the_portable_scenarios_and_skips_the_others() {
            use crate::cluster::kube::fake::{self, NAMESPACES, PODS};
            let (mock, state) = fake::fake_api_server_bare(true);
            let run_id = "sn0000bb";
            let (mut opts, sets, rc) = fake_run(&mock, run_id, false).await;
            let rc = rc.set_up(&opts, &sets, &NoFetch).await.unwrap();
            {
                // Up: the run namespace, labelled and privileged; the device plugin
                // rolled out on both nodes; nothing forced.
                let s = state.lock().unwrap();
                let ns = s
                    .get(NAMESPACES, "", "secnet-sn0000bb")
                    .expect("the run namespace");
                assert_eq!(ns["metadata"]["labels"]["secnet.run"], run_id);
                assert_eq!(
                    ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
                    "privileged"
                );
                assert_eq!(s.plugin_pods().len(), 2);
                let ds = s
                    .get(fake::DAEMONSETS, "kube-system", "secnet-macvtap")
                    .unwrap();
                assert_eq!(ds["metadata"]["labels"]["secnet.run"], run_id);
                assert_eq!(ds["status"]["desiredNumberScheduled"], 2);
                assert_eq!(ds["status"]["numberReady"], 2);
            }
            assert!(
                mock.requests()
                    .iter()
                    .filter(|r| r.method == "PATCH")
                    .all(|r| !r.query.contains("force"))
            );
            let selected = capacity_scenarios(&mut opts);
            let portable: Vec<&str> = selected
                .iter()
                .filter(|s| s.portable_on(&opts.offer()))
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(
                portable,
                [
                    "seed/device plugin DaemonSet: capacity 50 on every node",
                    "seed/capacity accounting: allocate, release, Insufficient"
                ]
            );
            let report = run_capacity_scenarios(&mut opts, run_id, rc).await;
            for s in &report.scenarios {
                let expected = if portable.contains(&s.name.as_str()) {
                    crate::report::Status::Passed
                } else {
                    crate::report::Status::Skipped
                };
                assert_eq!(s.status, expected, "{}: {}", s.name, s.message);
            }
            assert_eq!(report.summary.passed, 2);
            assert_eq!(report.summary.skipped, selected.len() - 2);
            assert!(report.summary.skipped > 0);
            // Nothing of the run is left, of any kind, scope or namespace: the run
            // namespace is gone, and with the DaemonSet its pods.
            let s = state.lock().unwrap();
            assert_eq!(s.labelled(None), Vec::<String>::new());
            assert!(s.get(NAMESPACES, "", "secnet-sn0000bb").is_none());
            assert_eq!(s.all(PODS, None), Vec::<serde_json::Value>::new());
            let namespaces: Vec<String> = s.names(NAMESPACES, "");
            assert_eq!(namespaces, ["default", "kube-system"]);
            // The scenarios' pods went into the run namespace, with the fixtures'
            // network selection resolved there.
            let posts: Vec<Recorded> = mock
                .requests()
                .into_iter()
                .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
                .collect();
            assert!(!posts.is_empty());
            assert!(
                posts
                    .iter()
                    .all(|p| p.path == "/api/v1/namespaces/secnet-sn0000bb/pods"),
                "{:?}",
                posts.iter().map(|p| &p.path).collect::<Vec<_>>()
            );
        }

        #[tokio::test]
        async fn a_foreign_device_plugin_daemonset_stops_the_run_before_anything_is_applied() {
            use crate::cluster::kube::fake::{
                self, DAEMONSETS, Key, NAMESPACES, PLUGIN_DS, PLUGIN_NS,
            };
            let (mock, state) = fake::fake_api_server(true);
            // What a killed secnet run left, next to the user's own DaemonSet.
            state.lock().unwrap().create(
                Key::new("v1/configmaps", "kube-system", "macvtap-deviceplugin-config"),
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "macvtap-deviceplugin-config", "labels": {"secnet.run": "sn111111"}}}),
                "secnet",
            );
            let before = state
                .lock()
                .unwrap()
                .get(DAEMONSETS, PLUGIN_NS, PLUGIN_DS)
                .cloned()
                .unwrap();
            let (opts, sets, rc) = fake_run(&mock, "sn0000cc", false).await;
            let err = match rc.set_up(&opts, &sets, &NoFetch).await {
                Ok(_) => panic!("the run went on over foreign objects"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.starts_with(
                    "2 object(s) this run would apply exist already and were not made by it"
                ),
                "{err}"
            );
            assert!(
                err.contains("ConfigMap kube-system/macvtap-deviceplugin-config (managed by secnet; left by secnet run sn111111: if that run is not running any more, `secnet clean --cluster existing --run sn111111` removes it)"),
                "{err}"
            );
            assert!(
                err.contains("DaemonSet kube-system/secnet-macvtap (managed by kubectl)"),
                "{err}"
            );
            assert!(err.contains("pass --adopt-existing"), "{err}");
            assert!(
                !mock.requests().iter().any(|r| r.method == "PATCH"),
                "nothing applied"
            );
            let s = state.lock().unwrap();
            assert_eq!(s.get(DAEMONSETS, PLUGIN_NS, PLUGIN_DS), Some(&before));
            assert!(
                s.get(NAMESPACES, "", "secnet-sn0000cc").is_none(),
                "the run namespace went"
            );
        }

        #[tokio::test]
        async fn adopt_existing_runs_on_the_users_daemonset_and_leaves_it_untouched() {
            use crate::cluster::kube::fake::{self, DAEMONSETS, PLUGIN_DS, PLUGIN_NS};
            let (mock, state) = fake::fake_api_server(true);
            let before = state
                .lock()
                .unwrap()
                .get(DAEMONSETS, PLUGIN_NS, PLUGIN_DS)
                .cloned()
                .unwrap();
            let plugin_pods = state.lock().unwrap().plugin_pods();
            let run_id = "sn0000dd";
            let (mut opts, sets, rc) = fake_run(&mock, run_id, true).await;
            let rc = rc.set_up(&opts, &sets, &NoFetch).await.unwrap();
            let applied: Vec<String> = mock
                .requests()
                .into_iter()
                .filter(|r| r.method == "PATCH")
                .map(|r| r.path)
                .collect();
            assert_eq!(
                applied,
                ["/api/v1/namespaces/kube-system/configmaps/macvtap-deviceplugin-config"],
                "only what is not there yet is applied"
            );
            let report = run_capacity_scenarios(&mut opts, run_id, rc).await;
            assert_eq!(report.summary.passed, 2, "{:?}", report.scenarios);
            assert_eq!(report.summary.failed, 0);
            let s = state.lock().unwrap();
            assert_eq!(
                s.get(DAEMONSETS, PLUGIN_NS, PLUGIN_DS),
                Some(&before),
                "same resourceVersion and fields"
            );
            assert_eq!(s.plugin_pods(), plugin_pods);
            assert_eq!(s.labelled(None), Vec::<String>::new());
            assert!(
                !mock
                    .requests()
                    .iter()
                    .any(|r| r.method == "DELETE" && r.path.contains("daemonsets")),
                "the adopted DaemonSet is never deleted"
            );
        }
    }
}
