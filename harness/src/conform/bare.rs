//! The bare provider of a run (`--cluster bare --k8s-bin-dir DIR`): a real
//! Kubernetes brought up by secnet on this machine from release binaries
//! (`cluster::bare`), once for the run, on the netns topology. The images it needs
//! are written here (pause, the pod image, the plugins under test, components from
//! `--component-bin`), the component sets are installed the way the kind path
//! installs them (`real::RealCluster`: run namespace, conflict check, server-side
//! apply, capacity wait), and each scenario works on it in its own label scope (those
//! that share the nodes several at a time, the others alone: `sharing`), with the
//! abilities secnet has because it made the nodes
//! (`cluster::bare::abilities`). Everything carries the run id and is removed at
//! the end, on failure and on Ctrl-C (the bare cluster's sweep).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::json;

use super::Options;
use super::real::RealCluster;
use crate::cluster::any::AnyCluster;
use crate::cluster::bare::abilities::{BareShared, OnBare};
use crate::cluster::bare::oci::{self, Layer, PLUGIN_DIR};
use crate::cluster::bare::{BareCluster, BareOptions};
use crate::cluster::capability::{Capability, Offer};
use crate::cluster::kube::components::{
    Component, ComponentError, ComponentSet, Fetcher, SECNET_IMAGE, Source,
};
use crate::cluster::kube::{KubeCluster, KubeOptions};
use crate::scenario::provider::{ClusterProvider, ProviderError, Sharing};
use crate::scenario::{Body, Ctx, Deploy, Failure, Outcome, Scenario};

/// The sandbox image every node's containerd runs pods in (written by secnet).
pub const PAUSE_IMAGE: &str = "secnet.local/pause:bare";
/// The image of the scenarios' pods and the node probes, unless `--pod-image`.
pub const POD_IMAGE: &str = "secnet.local/busybox:bare";
/// The image of multus from `--component-bin multus=DIR`.
pub const MULTUS_IMAGE: &str = "secnet.local/multus:bare";
/// Thin multus's DaemonSet, secnet's own (fixtures/components/multus/).
pub const MULTUS_THIN: &str = "multus/multus-thin.yaml";
/// The multus files `--component-bin multus=DIR` must hold.
pub const MULTUS_BINARIES: [&str; 2] = ["multus", "thin_entrypoint"];
/// Scenarios that share the nodes, at once by default (`--jobs` overrides). Most
/// of their time is waiting on the kubelet (2 cores: the whole bare run took 166 s
/// with 4, 149 s with 8, every scenario green).
const JOBS: usize = 8;
/// The image of whereabouts from `--component-bin whereabouts=DIR`.
pub const WHEREABOUTS_IMAGE: &str = "secnet.local/whereabouts:bare";
/// The whereabouts files `--component-bin whereabouts=DIR` must hold.
pub const WHEREABOUTS_BINARIES: [&str; 2] = ["whereabouts", "ip-control-loop"];

#[derive(Debug, thiserror::Error)]
pub enum BareRunError {
    #[error(
        "--cluster bare needs --k8s-bin-dir DIR: a directory with kube-apiserver, kube-controller-manager, kube-scheduler and kubelet (the server binaries of kubernetes-server-linux-amd64.tar.gz)"
    )]
    NoBinDir,
    #[error(
        "--cluster bare brings up a real Kubernetes on this machine and needs root; run it as root, e.g. sudo -E secnet conform --cluster bare"
    )]
    NotRoot,
    #[error("--component-bin {component}={}: {what}", dir.display())]
    ComponentBin {
        component: String,
        dir: PathBuf,
        what: String,
    },
    #[error("failed to write image {reference} to {}: {message}", path.display())]
    Image {
        reference: String,
        path: PathBuf,
        message: String,
    },
    #[error("the plugin under test {name} is missing ({}); build it (cargo build --bins) or name it with --plugin {name}=PATH", path.display())]
    MissingPlugin { name: String, path: PathBuf },
    #[error("{0} was not on every node within {1:?}: {2}")]
    NotOnNodes(String, Duration, String),
}

/// What `--cluster bare` adds to the run's options.
#[derive(Debug, Clone, Default)]
pub struct BareRunOptions {
    /// `--k8s-bin-dir`: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet.
    pub k8s_bin_dir: Option<PathBuf>,
    /// `--component-bin NAME=DIR`: component binaries secnet puts into an image of
    /// its own (multus: `multus` and `thin_entrypoint`).
    pub component_bins: Vec<(Component, PathBuf)>,
}

/// The run's bare cluster once up.
struct Running {
    shared: Arc<BareShared>,
    real: RealCluster,
}

pub struct BareProvider {
    opts: Options,
    running: Mutex<Option<Running>>,
    /// How long bring-up and the components took (the bench reads them).
    pub timings: Mutex<Option<UpTimings>>,
}

/// What `start` measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct UpTimings {
    pub(crate) cluster: crate::cluster::bare::Timings,
    /// From the first process started to every node offering the device plugin's
    /// resource (and multus's config, when installed).
    pub(crate) ready: Duration,
}

/// What a bare cluster offers: everything secnet can do on nodes it made here (the
/// LAN's DHCP server and Open vSwitch on the nodes included), except what the netns
/// cluster's own kubelet double does (a device plugin config of the scenario's: on a
/// real kubelet a second plugin of the same resource would take the run's plugin's
/// registration over) and VMs (no KubeVirt on bare). Whereabouts where the run
/// deploys it (`BareProvider::offer`).
pub fn offer() -> Offer {
    use Capability::*;
    Offer::new(
        "bare",
        true,
        [
            NodeAccess,
            NodeFaults,
            DevicePluginRestart,
            FrameCapture,
            Dhcp,
            Ovs,
            PluginExec,
        ],
    )
}

impl BareProvider {
    pub fn new(opts: &Options) -> BareProvider {
        BareProvider {
            opts: opts.clone(),
            running: Mutex::default(),
            timings: Mutex::default(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn multus_dir(&self) -> Option<&Path> {
        self.component_dir(Component::Multus)
    }

    fn whereabouts_dir(&self) -> Option<&Path> {
        self.component_dir(Component::Whereabouts)
    }

    fn component_dir(&self, component: Component) -> Option<&Path> {
        self.opts
            .bare
            .component_bins
            .iter()
            .find(|(c, _)| *c == component)
            .map(|(_, d)| d.as_path())
    }

    /// The provider's offer and what the run deploys (whereabouts).
    fn run_offer(&self) -> Offer {
        match self.whereabouts_dir() {
            Some(_) => offer().with([Capability::Whereabouts]),
            None => offer(),
        }
    }

    /// The pods' image: `--pod-image`, else the busybox image secnet writes.
    fn pod_image(&self) -> String {
        self.opts
            .real
            .pod_image
            .clone()
            .unwrap_or_else(|| POD_IMAGE.into())
    }

    /// The component sets of the run: thin multus (secnet's manifest) when its
    /// binaries are given, the device plugin set with the plugins under test.
    fn sets(&self, api: &str) -> Vec<ComponentSet> {
        let mut sets = Vec::new();
        if self.multus_dir().is_some() {
            let (host, port) = api.rsplit_once(':').unwrap_or((api, "6443"));
            sets.push(ComponentSet {
                name: Component::Multus,
                version: "thin (--component-bin)".into(),
                sources: vec![Source::Local(MULTUS_THIN.into())],
                vars: [
                    ("MULTUS_IMAGE", MULTUS_IMAGE),
                    ("API_HOST", host),
                    ("API_PORT", port),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                log_selectors: vec![("kube-system".into(), "app=secnet-multus".into())],
            });
        }
        if self.whereabouts_dir().is_some() {
            let (host, port) = api.rsplit_once(':').unwrap_or((api, "6443"));
            let mut set = crate::cluster::kube::components::whereabouts_set(
                WHEREABOUTS_IMAGE,
                PLUGIN_DIR,
                host,
                port,
            );
            set.version = "--component-bin".into();
            sets.push(set);
        }
        let mut real = self.opts.real.clone();
        // The ovs CNI goes onto the nodes by its DaemonSet's install-cni; OVS itself
        // runs on the nodes (secnet started it at bring-up).
        real.components = vec![Component::Macvtap, Component::OvsCni];
        real.image = SECNET_IMAGE.into();
        real.upstream_macvtap = false;
        real.lower_device = self.lower_device();
        sets.extend(super::real::selected_sets(&real));
        sets
    }

    fn lower_device(&self) -> String {
        self.opts
            .topology
            .nodes
            .first()
            .map(|n| n.uplink.clone())
            .unwrap_or_else(|| crate::cluster::kube::DEFAULT_LOWER_DEVICE.into())
    }

    /// The images every node imports before its kubelet starts, written under `dir`.
    fn write_images(&self, dir: &Path) -> Result<(Vec<PathBuf>, Vec<String>), BareRunError> {
        std::fs::create_dir_all(dir).map_err(|e| BareRunError::Image {
            reference: "(all)".into(),
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        let s = |r: Result<oci::ImageSpec, oci::OciError>| r.map_err(|e| e.to_string());
        let mut specs = vec![
            (s(oci::pause(PAUSE_IMAGE)), "pause.tar"),
            (
                self.plugins_image().map_err(|e| e.to_string()),
                "plugins.tar",
            ),
        ];
        if self.opts.real.pod_image.is_none() {
            specs.push((s(oci::busybox(POD_IMAGE)), "busybox.tar"));
        }
        if let Some(multus) = self.multus_dir() {
            specs.push((s(multus_image(multus)), "multus.tar"));
        }
        if let Some(dir) = self.whereabouts_dir() {
            specs.push((s(whereabouts_image(dir)), "whereabouts.tar"));
        }
        let mut paths = Vec::new();
        let mut refs = Vec::new();
        for (spec, file) in specs {
            let path = dir.join(file);
            let fail = |message: String| BareRunError::Image {
                reference: file.into(),
                path: path.clone(),
                message,
            };
            let spec = spec.map_err(fail)?;
            let written = spec.write(&path).map_err(|e| fail(e.to_string()))?;
            refs.push(format!(
                "{} ({})",
                written.reference, written.manifest_digest
            ));
            paths.push(path);
        }
        Ok((paths, refs))
    }

    /// The plugins under test at the paths the component sets run them from.
    fn plugins_image(&self) -> Result<oci::ImageSpec, BareRunError> {
        let imp = &self.opts.implementation;
        let mut layer = Layer::new();
        let image = |e: oci::OciError| BareRunError::Image {
            reference: SECNET_IMAGE.into(),
            path: PathBuf::new(),
            message: e.to_string(),
        };
        layer.busybox(&oci::busybox_program()).map_err(image)?;
        for name in crate::conform::implementation::CNIS {
            if let (Some(path), _) = imp.cni(name) {
                layer
                    .program(&path, &format!("{PLUGIN_DIR}/{name}"))
                    .map_err(image)?;
            }
        }
        let plugin = |name: &str, path: PathBuf| {
            if path.is_file() {
                Ok(path)
            } else {
                Err(BareRunError::MissingPlugin {
                    name: name.into(),
                    path,
                })
            }
        };
        let dp = imp
            .device_plugin
            .first()
            .map(PathBuf::from)
            .unwrap_or_default();
        let dp = plugin("macvtap-deviceplugin", dp)?;
        layer
            .program(&dp, &format!("{PLUGIN_DIR}/macvtap-deviceplugin"))
            .map_err(image)?;
        let install = plugin("install-cni", crate::bins::bin_dir().join("install-cni"))?;
        layer
            .program(&install, &format!("{PLUGIN_DIR}/install-cni"))
            .map_err(image)?;
        layer.dir("/tmp").map_err(image)?;
        Ok(oci::ImageSpec::new(SECNET_IMAGE, layer))
    }

    async fn bring_up(&self, run_id: &str) -> Result<Running, ProviderError> {
        let bin = self
            .opts
            .bare
            .k8s_bin_dir
            .clone()
            .ok_or(BareRunError::NoBinDir)?;
        let images_dir = crate::cluster::bare::cluster::run_dir(run_id).join("bare/images");
        let (images, refs) = self.write_images(&images_dir)?;
        progress(&format!("images written: {}", refs.join(", ")));
        let t0 = Instant::now();
        let bopts = BareOptions {
            run_id: run_id.to_string(),
            topology: self.opts.topology.clone(),
            k8s_bin_dir: bin,
            images,
            pause_image: PAUSE_IMAGE.into(),
            timeout: self.opts.real.timeout.min(Duration::from_secs(120)),
            // Without multus the NAD kind still exists (the scenarios apply NADs).
            addons: match self.multus_dir() {
                Some(_) => Vec::new(),
                None => {
                    let mut crd = crate::cluster::bare::multus::nad_crd();
                    crd["metadata"]["labels"] = json!({crate::cluster::kube::RUN_LABEL: run_id});
                    vec![crd]
                }
            },
            wait_capacity: None,
            // Open vSwitch on the nodes, for the scenarios that need it (Ovs).
            ovs: Capability::Ovs
                .programs()
                .iter()
                .all(|p| crate::prereq::find_program(p).is_some()),
        };
        progress(&format!(
            "bringing up a real Kubernetes from {} on {} ({} nodes)",
            bopts.k8s_bin_dir.display(),
            self.opts.topology.name,
            self.opts.topology.nodes.len()
        ));
        let bare = BareCluster::up(&bopts).await?;
        let t = bare.timings.clone();
        progress(&format!(
            "API server ready after {:.1} s, every node Ready after {:.1} s, images and Open vSwitch on every node after {:.1} s",
            t.api_ready.as_secs_f64(),
            t.nodes_ready.as_secs_f64(),
            t.prepare.as_secs_f64()
        ));
        let api = format!(
            "{}:{}",
            bare.plan.control_plane.fabric_ip,
            crate::cluster::bare::plan::APISERVER_PORT
        );
        let sets = self.sets(&api);
        let kopts = KubeOptions {
            pod_timeout: self.opts.real.timeout,
            lower_device: self.lower_device(),
            device_plugin_pods: Some(("kube-system".into(), "app=secnet-macvtap".into())),
            log_selectors: sets.iter().flat_map(|s| s.log_selectors.clone()).collect(),
            pod_image: self.pod_image(),
            offer: Some(self.run_offer()),
            ..KubeOptions::default()
        };
        let kube = KubeCluster::connect(bare.client.clone(), "bare", run_id, kopts).await?;
        let shared = BareShared::new(bare, self.opts.topology.clone());
        let mut opts = self.opts.clone();
        opts.real.adopt_existing = false;
        let real = RealCluster::on(kube)
            .set_up(&opts, &sets, &LocalOnly(self.opts.fixtures_dir.clone()))
            .await?;
        if self.multus_dir().is_some() {
            progress("waiting for multus's config on every node");
            wait_multus(&shared, self.opts.real.timeout).await?;
        }
        if self.whereabouts_dir().is_some() {
            progress("waiting for whereabouts on every node");
            wait_files(
                &shared,
                "whereabouts's CNI and its config",
                &[
                    ("/opt/cni/bin", "whereabouts"),
                    ("/etc/cni/net.d", "whereabouts.d/whereabouts.conf"),
                ],
                self.opts.real.timeout,
            )
            .await?;
        }
        let ready = t0.elapsed();
        progress(&format!(
            "bare cluster ready (device plugin registered on every node) after {:.1} s",
            ready.as_secs_f64()
        ));
        *self.timings.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(UpTimings { cluster: t, ready });
        Ok(Running { shared, real })
    }
}

/// The multus image: `multus` and `thin_entrypoint` from `dir` at /usr/local/bin.
fn multus_image(dir: &Path) -> Result<oci::ImageSpec, oci::OciError> {
    let mut layer = Layer::new();
    for name in MULTUS_BINARIES {
        layer.program(&dir.join(name), &format!("{PLUGIN_DIR}/{name}"))?;
    }
    layer.dir("/tmp")?;
    Ok(oci::ImageSpec::new(MULTUS_IMAGE, layer))
}

/// The whereabouts image: busybox (its install step's shell) and `whereabouts` and
/// `ip-control-loop` from `dir` at /usr/local/bin.
fn whereabouts_image(dir: &Path) -> Result<oci::ImageSpec, oci::OciError> {
    let mut layer = Layer::new();
    layer.busybox(&oci::busybox_program())?;
    for name in WHEREABOUTS_BINARIES {
        layer.program(&dir.join(name), &format!("{PLUGIN_DIR}/{name}"))?;
    }
    layer.dir("/tmp")?;
    Ok(oci::ImageSpec::new(WHEREABOUTS_IMAGE, layer))
}

/// Waits until every node has `files`: (a node's private directory, a path in it).
async fn wait_files(
    shared: &BareShared,
    what: &str,
    files: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), BareRunError> {
    let start = Instant::now();
    loop {
        let missing: Vec<String> = shared
            .nodes
            .iter()
            .filter(|n| {
                files.iter().any(|(dir, file)| {
                    !crate::cluster::bare::node::backing(n, dir)
                        .join(file)
                        .is_file()
                })
            })
            .map(|n| n.name.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(BareRunError::NotOnNodes(
                what.into(),
                timeout,
                format!("missing on {}", missing.join(", ")),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks `--component-bin` before anything starts.
fn check_component_bins(bins: &[(Component, PathBuf)]) -> Result<(), BareRunError> {
    for (component, dir) in bins {
        let fail = |what: String| BareRunError::ComponentBin {
            component: component.to_string(),
            dir: dir.clone(),
            what,
        };
        match component {
            Component::Multus => {
                for name in MULTUS_BINARIES {
                    if !dir.join(name).is_file() {
                        return Err(fail(format!(
                            "no {name} in it (build multus-cni's cmd/multus and cmd/thin_entrypoint into it)"
                        )));
                    }
                }
            }
            Component::Whereabouts => {
                for name in WHEREABOUTS_BINARIES {
                    if !dir.join(name).is_file() {
                        return Err(fail(format!(
                            "no {name} in it (build whereabouts' cmd (as whereabouts) and cmd/controlloop (as ip-control-loop) into it)"
                        )));
                    }
                }
            }
            other => {
                return Err(fail(format!(
                    "{other} has no binaries secnet packs (only multus and whereabouts do)"
                )));
            }
        }
    }
    Ok(())
}

/// Waits until multus's config is first in every node's `/etc/cni/net.d`.
async fn wait_multus(shared: &BareShared, timeout: Duration) -> Result<(), BareRunError> {
    let start = Instant::now();
    loop {
        let missing: Vec<String> = shared
            .nodes
            .iter()
            .filter(|n| {
                // `.conflist` when the pod network's config is a list (ours is).
                let dir = crate::cluster::bare::node::backing(n, "/etc/cni/net.d");
                !["00-multus.conf", "00-multus.conflist"]
                    .iter()
                    .any(|f| dir.join(f).is_file())
            })
            .map(|n| n.name.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(BareRunError::NotOnNodes(
                "multus's 00-multus.conf(list)".into(),
                timeout,
                format!("missing on {}", missing.join(", ")),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Component manifests come from the fixtures: nothing is fetched on bare.
struct LocalOnly(PathBuf);

impl Fetcher for LocalOnly {
    fn fetch(&self, url: &str) -> Result<String, ComponentError> {
        Err(ComponentError::NotCached {
            url: url.to_string(),
            dir: self.0.clone(),
        })
    }
}

impl ClusterProvider for BareProvider {
    fn offer(&self) -> Offer {
        self.run_offer()
    }

    /// The scenarios share the nodes: those known to share them (their own objects,
    /// nothing node-wide read) and those that do not use the cluster run `JOBS` at
    /// a time, the others alone on the cluster (`sharing`). Most of a scenario's time on a real kubelet is waiting (a
    /// pod's deletion takes ~2 s of the kubelet's housekeeping), not CPU.
    fn jobs(&self, asked: usize) -> usize {
        match asked {
            0 => JOBS,
            n => n,
        }
    }

    /// A node lab or a plain check does not touch the cluster; a scenario known
    /// to share the nodes runs beside the others; the rest alone.
    fn sharing(&self, s: &Scenario) -> Sharing {
        match s.body {
            Body::NodeLab(_) | Body::Plain(_) => Sharing::Own,
            Body::Cluster(_) if s.shares_nodes => match s.sharing_group {
                Some(group) => Sharing::BesideOthers(group),
                None => Sharing::Beside,
            },
            Body::Cluster(_) => Sharing::Alone,
        }
    }

    fn preflight(&self) -> Result<(), ProviderError> {
        if !crate::prereq::is_root() {
            return Err(Box::new(BareRunError::NotRoot));
        }
        if self.opts.bare.k8s_bin_dir.is_none() {
            return Err(Box::new(BareRunError::NoBinDir));
        }
        check_component_bins(&self.opts.bare.component_bins)?;
        Ok(())
    }

    fn plan(&self, run_id: &str, selected: &[&Scenario]) -> Result<String, ProviderError> {
        let mut plan = format!(
            "# secnet conform --cluster bare: the plan of run {run_id} (nothing was run)\n\n"
        );
        plan.push_str(&format!(
            "A real Kubernetes from {} (etcd, containerd and runc from the distribution) on topology {}:\n  control plane in namespace {run_id}-cp; nodes:",
            self.opts
                .bare
                .k8s_bin_dir
                .as_ref()
                .map_or("--k8s-bin-dir (not given)".into(), |d| d.display().to_string()),
            self.opts.topology.name
        ));
        for node in &self.opts.topology.nodes {
            plan.push_str(&format!(" {} (uplink {})", node.name, node.uplink));
        }
        plan.push_str(&format!(
            "\nImages written by secnet: {PAUSE_IMAGE}, {SECNET_IMAGE} (the plugins under test), {}{}\nComponents: {}\n\nScenarios ({}):\n",
            self.pod_image(),
            [
                (self.multus_dir(), MULTUS_IMAGE),
                (self.whereabouts_dir(), WHEREABOUTS_IMAGE),
            ]
            .iter()
            .filter(|(dir, _)| dir.is_some())
            .map(|(_, image)| format!(", {image}"))
            .collect::<String>(),
            self.sets("API:6443")
                .iter()
                .map(|s| s.name.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            selected.len()
        ));
        for s in selected {
            let why = s
                .unsupported_on(&self.offer())
                .map_or(String::new(), |w| format!("  (skipped: {w})"));
            plan.push_str(&format!("  {}{why}\n", s.name));
        }
        Ok(plan)
    }

    fn start<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let running = self.bring_up(run_id).await?;
            *self.running() = Some(running);
            Ok(())
        })
    }

    fn up<'a>(
        &'a self,
        s: &'a Scenario,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, Result<AnyCluster, Failure>> {
        let view = self.running().as_ref().map(|r| {
            let kube = r.real.cluster.scoped(&ctx.scope);
            OnBare::new(kube, r.shared.clone(), &ctx.scope)
        });
        Box::pin(async move {
            let view = view.ok_or_else(|| Failure::msg("the bare cluster is not up"))?;
            // The LAN's DHCP server (and its IPv6 router advertisements) only while
            // a scenario that needs it runs, as on netns: the others' pods on the
            // LAN would take SLAAC addresses they do not expect.
            if s.needs.contains(&Capability::Dhcp) {
                view.start_dhcp()?;
            }
            Ok(AnyCluster::offering(&self.run_offer(), Box::new(view)))
        })
    }

    /// The device plugin came with the run's components.
    fn deploy_files(&self, deploy: &Deploy) -> Vec<&'static str> {
        deploy.files(true)
    }

    fn kept_hint(&self, ctx: &Ctx) -> String {
        format!(
            "  kept: the whole bare cluster (kubeconfig {}/bare/admin.kubeconfig); remove with: secnet clean --cluster bare --run {}",
            crate::cluster::bare::cluster::run_dir(&ctx.run_id).display(),
            ctx.run_id
        )
    }

    /// A scenario's leftovers on the cluster are its scope's objects: the teardown
    /// checks those; the cluster's own processes and namespaces are checked at `stop`.
    fn leaks(&self, _ctx: &Ctx, outcome: Outcome) -> Outcome {
        outcome
    }

    fn stop(&self, failed: bool, keep: bool) -> BoxFuture<'_, Vec<String>> {
        let running = self.running().take();
        Box::pin(async move {
            let Some(Running { shared, real }) = running else {
                return Vec::new();
            };
            if keep && failed {
                let run_id = real.cluster.run_id().to_string();
                std::mem::forget(shared);
                return vec![format!(
                    "kept the bare cluster of run {run_id}: KUBECONFIG={}/bare/admin.kubeconfig; remove with: secnet clean --cluster bare --run {run_id}",
                    crate::cluster::bare::cluster::run_dir(&run_id).display()
                )];
            }
            let t0 = std::time::Instant::now();
            // Not `real.down`: the whole cluster goes next (every process by its
            // cgroup, etcd's data with the run dir, then the leftovers check).
            // Deleting the run's objects through the API first and waiting for its
            // namespace to finalise took ~6 s and removed nothing the sweep does not.
            drop(real);
            let mut notes = Vec::new();
            let run_id = {
                let c = shared.cluster.lock().unwrap_or_else(|p| p.into_inner());
                c.plan.run_id.clone()
            };
            match Arc::try_unwrap(shared) {
                Ok(shared) => {
                    let cluster = shared
                        .cluster
                        .into_inner()
                        .unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = tokio::task::spawn_blocking(move || cluster.down())
                        .await
                        .unwrap_or_else(|e| {
                            Err(crate::cluster::bare::BareError::Addon(e.to_string()))
                        })
                    {
                        notes.push(e.to_string());
                    }
                    tracing::info!(secs = t0.elapsed().as_secs_f64(), "the bare cluster down");
                }
                Err(_) => {
                    notes.push("the bare cluster is still in use; swept by its run id".into())
                }
            }
            let left = crate::cluster::bare::leftovers(&run_id);
            if !left.is_empty() {
                notes.push(format!(
                    "left after the bare cluster went down: {}",
                    left.join("; ")
                ));
                notes.extend(crate::cluster::bare::sweep(&run_id));
            }
            notes
        })
    }

    fn implementation(&self, run_id: &str) -> serde_json::Value {
        let mut described = self.opts.implementation.describe();
        described["run_id"] = json!(run_id);
        described["image"] = json!(SECNET_IMAGE);
        described["pod_image"] = json!(self.pod_image());
        described["k8s_bin_dir"] = json!(self.opts.bare.k8s_bin_dir);
        described["components"] = json!(
            self.sets("API:6443")
                .iter()
                .map(|s| format!("{} {}", s.name, s.version))
                .collect::<Vec<_>>()
        );
        described
    }

    fn under_test(&self) -> Option<String> {
        Some(self.opts.implementation.summary())
    }
}

fn progress(msg: &str) {
    eprintln!("secnet conform: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_bins_name_what_is_missing() {
        let dir = crate::lab::ScratchDir::new("secnet-bare-cbin").unwrap();
        let bins = vec![(Component::Multus, dir.path().to_path_buf())];
        let err = check_component_bins(&bins).unwrap_err().to_string();
        assert!(err.contains("no multus in it"), "{err}");
        for name in MULTUS_BINARIES {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        check_component_bins(&bins).unwrap();
        let err = check_component_bins(&[(Component::Kubevirt, dir.path().to_path_buf())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("only multus and whereabouts"), "{err}");
    }

    #[test]
    fn the_plan_names_the_images_components_and_skips() {
        let mut opts = Options::bundled();
        opts.cluster = crate::cluster::provider::Provider::Bare;
        opts.bare.component_bins = vec![(Component::Multus, "/opt/multus".into())];
        let p = BareProvider::new(&opts);
        let selected: Vec<&Scenario> = crate::scenario::all().iter().collect();
        let plan = p.plan("sn000001", &selected).unwrap();
        assert!(plan.contains("--k8s-bin-dir (not given)"), "{plan}");
        assert!(
            plan.contains(MULTUS_IMAGE) && plan.contains(POD_IMAGE),
            "{plan}"
        );
        assert!(plan.contains("Components: multus, macvtap"), "{plan}");
        assert!(plan.contains("(skipped: needs Vm"), "{plan}");
        let sets = p.sets("10.0.0.254:6443");
        assert_eq!(sets[0].vars["API_HOST"], "10.0.0.254");
        assert_eq!(sets[0].vars["API_PORT"], "6443");
        assert!(!ClusterProvider::offer(&p).offers(Capability::Whereabouts));
        assert!(plan.contains("(skipped: needs Whereabouts"), "{plan}");
    }

    #[test]
    fn whereabouts_binaries_bring_its_set_image_and_capability() {
        let dir = crate::lab::ScratchDir::new("secnet-bare-wb").unwrap();
        let bins = vec![(Component::Whereabouts, dir.path().to_path_buf())];
        let err = check_component_bins(&bins).unwrap_err().to_string();
        assert!(err.contains("no whereabouts in it"), "{err}");
        for name in WHEREABOUTS_BINARIES {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        check_component_bins(&bins).unwrap();
        let mut opts = Options::bundled();
        opts.cluster = crate::cluster::provider::Provider::Bare;
        opts.bare.component_bins = bins;
        let p = BareProvider::new(&opts);
        assert!(ClusterProvider::offer(&p).offers(Capability::Whereabouts));
        let wb = p
            .sets("10.0.0.254:6443")
            .into_iter()
            .find(|s| s.name == Component::Whereabouts)
            .expect("a whereabouts set");
        assert_eq!(wb.vars["WHEREABOUTS_IMAGE"], WHEREABOUTS_IMAGE);
        assert_eq!(wb.vars["WHEREABOUTS_BIN_DIR"], PLUGIN_DIR);
        assert_eq!(wb.vars["API_HOST"], "10.0.0.254");
        let selected: Vec<&Scenario> = crate::scenario::all().iter().collect();
        let plan = p.plan("sn000001", &selected).unwrap();
        assert!(plan.contains(WHEREABOUTS_IMAGE), "{plan}");
        assert!(!plan.contains("(skipped: needs Whereabouts"), "{plan}");
    }
}
