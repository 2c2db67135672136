//! `BareCluster`: a real Kubernetes brought up from binaries on the netns topology.
//! The fabric and the nodes' namespaces are the netns provider's; the control plane
//! gets its own namespace; every node runs containerd and a kubelet. Everything
//! carries the run id and is removed by [`sweep`], which `down`, `Drop` and a failed
//! `up` all use (so a Ctrl-C that drops the `up` future cleans up as well).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};

use super::cgroup;
use super::control_plane::{self, ControlPlane, ControlPlaneError};
use super::kubeconfig::Kubeconfig;
use super::node::{self, BareNode, NodeError};
use super::pki::{Pki, PkiError, PkiPlan, admin_identity};
use super::plan::NodePlan;
use super::plan::{Plan, PlanError, PlanInput};
use super::view::NodeView;
use crate::cluster::netns::fabric;
use crate::cluster::netns::topology::Topology;
use crate::cluster::netns::view::{privatize, unprivatize};
use crate::lab::{CommandError, Lab, Ns};

#[derive(Debug, thiserror::Error)]
pub enum BareError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("bare cluster network: {0}")]
    Network(Box<CommandError>),
    #[error(transparent)]
    ControlPlane(Box<ControlPlaneError>),
    #[error(transparent)]
    Node(Box<NodeError>),
    #[error("failed to prepare {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kube client for {kubeconfig}: {message}")]
    Client {
        kubeconfig: PathBuf,
        message: String,
    },
    #[error("missing {what} {path}: {fix}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        fix: &'static str,
    },
    #[error("{what} not within {waited:?}: {detail}")]
    Timeout {
        what: String,
        waited: Duration,
        detail: String,
    },
    #[error("add-on: {0}")]
    Addon(String),
    #[error("cleanup of run {run_id} left: {left}")]
    Cleanup { run_id: String, left: String },
}

impl From<CommandError> for BareError {
    fn from(e: CommandError) -> Self {
        BareError::Network(Box::new(e))
    }
}

impl From<ControlPlaneError> for BareError {
    fn from(e: ControlPlaneError) -> Self {
        BareError::ControlPlane(Box::new(e))
    }
}

impl From<NodeError> for BareError {
    fn from(e: NodeError) -> Self {
        BareError::Node(Box::new(e))
    }
}

/// The Kubernetes binaries `--k8s-bin-dir` must hold.
pub const K8S_BINARIES: [&str; 4] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
];

#[derive(Debug, Clone)]
pub struct BareOptions {
    pub run_id: String,
    pub topology: Topology,
    pub k8s_bin_dir: PathBuf,
    /// OCI archives imported into every node's containerd before its kubelet starts;
    /// the first holds [`BareOptions::pause_image`].
    pub images: Vec<PathBuf>,
    pub pause_image: String,
    /// How long bring-up may take before it fails.
    pub timeout: Duration,
    /// Documents server-side applied as soon as the API server is ready (the device
    /// plugin's ConfigMap and DaemonSet), before the nodes are Ready.
    pub addons: Vec<serde_json::Value>,
    /// An extended resource every node must offer (name, capacity) before `up`
    /// returns: the device plugin registered.
    pub wait_capacity: Option<(String, String)>,
    /// Userspace Open vSwitch on every node (`super::ovs`).
    pub ovs: bool,
}

/// How long each step of bring-up took, from the first process started.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Timings {
    /// Namespaces, PKI, files, containerd up, the images imported into every node
    /// and Open vSwitch up (the API server starts meanwhile).
    pub prepare: Duration,
    pub api_ready: Duration,
    pub nodes_ready: Duration,
    /// Every node offering [`BareOptions::wait_capacity`] (zero without it).
    pub(crate) capacity_ready: Duration,
}

pub struct BareCluster {
    pub plan: Plan,
    pub pki: Pki,
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    pub(crate) timings: Timings,
    pub(crate) nodes: Vec<BareNode>,
    pub(crate) control_plane: Option<ControlPlane>,
    /// Each node's Open vSwitch daemons, when asked for.
    ovs: Vec<crate::cluster::netns::ovs::Ovs>,
    lab: Lab,
    swept: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BareError + '_ {
    move |source| BareError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The run's directory (shared with the netns provider's layout).
pub fn run_dir(run_id: &str) -> PathBuf {
    crate::cluster::netns::node::run_dir_for(run_id)
}

/// Removes what a bare run `run_id` made, found by name: processes (by the run's
/// cgroup), mount views, namespaces (and the host link with the control plane's),
/// cgroups, the run's `bare/` directory. Idempotent; returns what it could not remove.
pub fn sweep(run_id: &str) -> Vec<String> {
    let mut left = Vec::new();
    let cg = format!("/secnet-{run_id}");
    if let Err(e) = cgroup::kill_all(&cg, Duration::from_secs(10)) {
        left.push(e.to_string());
    }
    let dir = run_dir(run_id);
    let bare = dir.join("bare");
    if let Ok(nodes) = std::fs::read_dir(bare.join("nodes")) {
        for n in nodes.flatten() {
            let mnt = n.path().join("mnt");
            if is_mount_point(&mnt)
                && let Err(e) = NodeView::destroy(&mnt)
            {
                left.push(e.to_string());
            }
        }
    }
    if let Err(e) = cgroup::remove(&cg) {
        left.push(e.to_string());
    }
    // The host end of the control plane's veth, deleted here rather than left to the
    // kernel: a namespace's links go asynchronously after `ip netns del`, and a leak
    // check right after would still see them.
    for link in host_links(run_id) {
        if crate::lab::run("ip", &["link", "del", &link], Duration::from_secs(10)).is_err()
            && host_links(run_id).contains(&link)
        {
            left.push(format!("host link {link} could not be deleted"));
        }
    }
    let prefix = format!("{run_id}-");
    if let Ok(out) = crate::lab::run("ip", &["netns", "list"], Duration::from_secs(10)) {
        for name in out.lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(&prefix)
                && let Err(e) =
                    crate::lab::run("ip", &["netns", "del", name], Duration::from_secs(10))
            {
                left.push(e.to_string());
            }
        }
    }
    if bare.exists()
        && let Err(e) = std::fs::remove_dir_all(&bare)
    {
        left.push(format!("{}: {e}", bare.display()));
    }
    if is_mount_point(&dir)
        && let Err(e) = unprivatize(&dir)
    {
        left.push(e.to_string());
    }
    // The run directory goes when nothing else of the run is in it.
    let _ = std::fs::remove_dir(&dir);
    left
}

/// Names of the host's links that carry the run id (`ip -o link`: `N: name@ifM: …`).
fn host_links(run_id: &str) -> Vec<String> {
    crate::lab::run("ip", &["-o", "link"], Duration::from_secs(10))
        .map(|out| {
            out.lines()
                .filter_map(|l| l.split(": ").nth(1))
                .map(|n| n.split('@').next().unwrap_or(n).to_string())
                .filter(|n| n.starts_with(run_id))
                .collect()
        })
        .unwrap_or_default()
}

fn is_mount_point(path: &Path) -> bool {
    let p = path.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(p.as_str())))
        .unwrap_or(false)
}

/// What of run `run_id` is still there (for leak checks): processes of its cgroup,
/// cgroups, namespaces, host links, mounts, its `bare/` directory.
pub fn leftovers(run_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    let cg = format!("/secnet-{run_id}");
    let pids = cgroup::pids(&cg);
    if !pids.is_empty() {
        out.push(format!("processes {pids:?}"));
    }
    if cgroup::exists(&cg) {
        out.push(format!("cgroup {cg}"));
    }
    if let Ok(ns) = crate::lab::run("ip", &["netns", "list"], Duration::from_secs(10)) {
        out.extend(
            ns.lines()
                .filter(|l| l.starts_with(&format!("{run_id}-")))
                .map(|l| format!("netns {l}")),
        );
    }
    if let Ok(links) = crate::lab::run("ip", &["-o", "link"], Duration::from_secs(10)) {
        out.extend(
            links
                .lines()
                .filter(|l| l.contains(run_id))
                .map(|l| format!("link {l}")),
        );
    }
    if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
        out.extend(
            m.lines()
                .filter(|l| l.contains(run_id))
                .map(|l| format!("mount {l}")),
        );
    }
    let bare = run_dir(run_id).join("bare");
    if bare.exists() {
        out.push(format!("directory {}", bare.display()));
    }
    out
}

/// Sweeps unless disarmed: `up`'s guard, so that an error or a dropped future
/// (Ctrl-C) leaves nothing behind.
struct SweepGuard<'a>(&'a str, bool);

impl Drop for SweepGuard<'_> {
    fn drop(&mut self) {
        if !self.1 {
            for e in sweep(self.0) {
                eprintln!("secnet: bare cleanup: {e}");
            }
        }
    }
}

fn check_binaries(dir: &Path) -> Result<(), BareError> {
    for b in K8S_BINARIES {
        let p = dir.join(b);
        if !p.is_file() {
            return Err(BareError::Missing {
                what: "Kubernetes binary",
                path: p,
                fix: "point --k8s-bin-dir (SECNET_K8S_BIN_DIR) at a directory with kube-apiserver, kube-controller-manager, kube-scheduler and kubelet (the server binaries of kubernetes-server-linux-amd64.tar.gz)",
            });
        }
    }
    for (program, package) in [
        ("etcd", "etcd-server"),
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("ctr", "containerd"),
    ] {
        if crate::prereq::find_program(program).is_none() {
            return Err(BareError::Missing {
                what: "program",
                path: program.into(),
                fix: match package {
                    "etcd-server" => "apt-get install etcd-server",
                    "runc" => "apt-get install runc",
                    _ => "apt-get install containerd",
                },
            });
        }
    }
    Ok(())
}

impl BareCluster {
    pub async fn up(opts: &BareOptions) -> Result<BareCluster, BareError> {
        check_binaries(&opts.k8s_bin_dir)?;
        let dir = run_dir(&opts.run_id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut guard = SweepGuard(&opts.run_id, false);
        let etcd = crate::prereq::find_program("etcd").expect("checked");
        let containerd = crate::prereq::find_program("containerd").expect("checked");
        let plan = Plan::new(&PlanInput {
            run_id: &opts.run_id,
            topology: &opts.topology,
            k8s_bin_dir: &opts.k8s_bin_dir,
            run_dir: &dir,
            pause_image: &opts.pause_image,
            etcd: &etcd,
            containerd: &containerd,
            reference_cni_dir: Path::new(super::plan::REFERENCE_CNI_DIR),
        })?;
        let t0 = Instant::now();
        if !is_mount_point(&dir) {
            privatize(&dir).map_err(|e| BareError::Io {
                path: dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        let pki = Pki::generate(&PkiPlan {
            apiserver_ips: plan.apiserver_ips(),
            nodes: plan
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.address))
                .collect(),
        })?;
        pki.write(&plan.pki_dir)?;
        cgroup::create(&plan.cgroup).map_err(|e| BareError::Io {
            path: plan.cgroup.clone().into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let mut lab = Lab::scoped(&opts.run_id, "");
        let fabric_ns = fabric::up(&mut lab, &opts.topology).map_err(|e| BareError::Io {
            path: "fabric".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let cp_ns = control_plane::network(&mut lab, &fabric_ns, &plan.control_plane)?;
        let mut cp = control_plane::start(&plan, &pki, cp_ns)?;
        let admin = Kubeconfig::new(
            &plan.run_id,
            &plan.host_server(),
            &pki.ca.cert_pem,
            &admin_identity().user,
            &pki.admin,
        );
        admin
            .write(&plan.admin_kubeconfig)
            .map_err(io(&plan.admin_kubeconfig))?;
        let mut nodes = Vec::new();
        for n in &plan.nodes {
            let ns = node::network(
                &mut lab,
                &fabric_ns,
                &cp.ns,
                plan.control_plane.fabric_ip,
                n,
                &opts.topology,
            )?;
            nodes.push(node::start(&plan, n, &pki, ns)?);
        }
        // Every kubelet starts as soon as its containerd answers: no pod comes to a
        // node before `up` returns, and the images are in by then.
        futures::future::try_join_all(nodes.iter_mut().map(|n| async move {
            n.wait_containerd(opts.timeout).await?;
            n.start_kubelet()
        }))
        .await?;
        // Meanwhile, off the async runtime: the images into every node at once and
        // Open vSwitch on the nodes, while the API server's readiness is polled.
        let prepared = tokio::task::spawn_blocking({
            let nodes: Vec<(NodePlan, Ns)> = nodes
                .iter()
                .map(|n| (n.plan.clone(), n.ns.clone()))
                .collect();
            let (images, fabric_ns) = (opts.images.clone(), fabric_ns.clone());
            let (run_id, cgroup, with_ovs) = (opts.run_id.clone(), plan.cgroup.clone(), opts.ovs);
            move || prepare_nodes(&run_id, &fabric_ns, &cgroup, &nodes, &images, with_ovs, t0)
        });
        let names: Vec<String> = plan.nodes.iter().map(|n| n.name.clone()).collect();
        let api = async {
            let client = client_for(&plan.admin_kubeconfig).await?;
            cp.wait_ready(&client, opts.timeout).await?;
            let api_ready = t0.elapsed();
            // The ServiceAccount admission refuses pods until their namespace's
            // "default" account exists; the controller-manager makes it seconds later.
            for doc in &[default_account("kube-system"), default_account("default")] {
                apply(&client, doc).await?;
            }
            wait_nodes_ready(&client, &names, &mut nodes, opts.timeout).await?;
            Ok::<_, BareError>((client, api_ready, t0.elapsed()))
        };
        let (prepared, api) = tokio::join!(prepared, api);
        let (ovs, prepare) =
            prepared.map_err(|e| BareError::Addon(format!("preparing the nodes: {e}")))??;
        let (client, api_ready, nodes_ready) = api?;
        // Add-ons once every node has the images their pods run.
        for doc in &opts.addons {
            apply(&client, doc).await?;
        }
        let capacity_ready = match &opts.wait_capacity {
            Some((resource, quantity)) => {
                wait_capacity(&client, &names, resource, quantity, opts.timeout).await?;
                t0.elapsed()
            }
            None => Duration::ZERO,
        };
        guard.1 = true;
        Ok(BareCluster {
            kubeconfig: plan.admin_kubeconfig.clone(),
            plan,
            pki,
            client,
            timings: Timings {
                prepare,
                api_ready,
                nodes_ready,
                capacity_ready,
            },
            nodes,
            control_plane: Some(cp),
            ovs,
            lab,
            swept: false,
        })
    }

    /// Resident memory of every component, in KiB: (component, node or "", KiB).
    pub fn memory(&self) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        if let Some(cp) = &self.control_plane {
            for d in &cp.daemons {
                out.push((d.name.clone(), String::new(), d.rss_kib().unwrap_or(0)));
            }
        }
        for n in &self.nodes {
            out.push((
                "containerd".into(),
                n.plan.name.clone(),
                n.containerd.rss_kib().unwrap_or(0),
            ));
            if let Some(k) = &n.kubelet {
                out.push((
                    "kubelet".into(),
                    n.plan.name.clone(),
                    k.rss_kib().unwrap_or(0),
                ));
            }
        }
        out
    }

    /// Thin multus on every node (see [`super::multus`]), and the NAD CRD.
    pub async fn install_multus_thin(&self, multus_bin: &Path) -> Result<(), BareError> {
        super::multus::install_thin(
            &self.plan,
            multus_bin,
            &self.pki.ca.cert_pem,
            &self.pki.multus,
        )
        .map_err(|e| BareError::Addon(e.to_string()))?;
        let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_json::from_value(super::multus::nad_crd()).expect("a valid CRD");
        let api: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(self.client.clone());
        api.patch(
            "network-attachment-definitions.k8s.cni.cncf.io",
            &kube::api::PatchParams::apply("secnet"),
            &kube::api::Patch::Apply(&crd),
        )
        .await
        .map_err(|e| BareError::Addon(format!("NAD CRD: {e}")))?;
        Ok(())
    }

    /// Stops everything and removes what the run made; names what is left.
    pub fn down(mut self) -> Result<(), BareError> {
        let left = self.teardown();
        if left.is_empty() {
            Ok(())
        } else {
            Err(BareError::Cleanup {
                run_id: self.plan.run_id.clone(),
                left: left.join("; "),
            })
        }
    }

    fn teardown(&mut self) -> Vec<String> {
        if self.swept {
            return Vec::new();
        }
        self.swept = true;
        // Kill by cgroup first (containers, shims and daemons at once), then reap.
        let mut left = sweep_processes(&self.plan.run_id);
        for n in &mut self.nodes {
            n.stop_kubelet(Duration::ZERO);
            n.containerd.stop(Duration::ZERO);
        }
        if let Some(mut cp) = self.control_plane.take() {
            for d in &mut cp.daemons {
                d.stop(Duration::ZERO);
            }
        }
        self.ovs.clear();
        self.nodes.clear();
        left.extend(self.lab.teardown());
        left.extend(sweep(&self.plan.run_id));
        left
    }
}

/// The images imported into every node's containerd (the nodes at once, each
/// node's images in turn: ten `ctr import`s at once took 8.5 s where two at a time
/// took 7.7, a small image 5 s instead of 0.2) and, when asked for, Open vSwitch
/// on the nodes; returns OVS and when all was done.
fn prepare_nodes(
    run_id: &str,
    fabric_ns: &Ns,
    cgroup: &str,
    nodes: &[(NodePlan, Ns)],
    images: &[PathBuf],
    with_ovs: bool,
    t0: Instant,
) -> Result<(Vec<crate::cluster::netns::ovs::Ovs>, Duration), BareError> {
    std::thread::scope(|s| {
        let imports: Vec<_> = nodes
            .iter()
            .map(|(n, _)| {
                s.spawn(move || {
                    images.iter().try_for_each(|i| {
                        let t = Instant::now();
                        let r = node::import(n, i);
                        tracing::debug!(node = %n.name, image = %i.display(), secs = t.elapsed().as_secs_f64(), "image imported");
                        r
                    })
                })
            })
            .collect();
        let t = Instant::now();
        let ovs = match with_ovs {
            // A lab that owns none of the namespaces: the run's lab removes them.
            true => super::ovs::up(&Lab::scoped(run_id, ""), fabric_ns, cgroup, nodes)
                .map_err(|e| BareError::Addon(e.to_string())),
            false => Ok(Vec::new()),
        };
        tracing::debug!(
            secs = t.elapsed().as_secs_f64(),
            "Open vSwitch up on every node"
        );
        for i in imports {
            i.join()
                .map_err(|_| BareError::Addon("an image import panicked".into()))??;
        }
        Ok((ovs?, t0.elapsed()))
    })
}

fn sweep_processes(run_id: &str) -> Vec<String> {
    match cgroup::kill_all(&format!("/secnet-{run_id}"), Duration::from_secs(10)) {
        Ok(()) => Vec::new(),
        Err(e) => vec![e.to_string()],
    }
}

impl Drop for BareCluster {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("secnet: bare cleanup: {e}");
        }
    }
}

pub async fn client_for(kubeconfig: &Path) -> Result<kube::Client, BareError> {
    let err = |message: String| BareError::Client {
        kubeconfig: kubeconfig.to_path_buf(),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| err(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| err(e.to_string()))
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn wait_nodes_ready(
    client: &kube::Client,
    names: &[String],
    nodes: &mut [BareNode],
    timeout: Duration,
) -> Result<(), BareError> {
    let api: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let list = api.list(&ListParams::default()).await;
        let ready: Vec<String> = match &list {
            Ok(l) => l
                .items
                .iter()
                .filter(|n| node_ready(n))
                .filter_map(|n| n.metadata.name.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        if names.iter().all(|n| ready.contains(n)) {
            return Ok(());
        }
        for n in nodes.iter_mut() {
            if let Some(k) = &mut n.kubelet
                && let Some(status) = k.exited()
            {
                return Err(BareError::Timeout {
                    what: format!("node {} Ready", n.plan.name),
                    waited: start.elapsed(),
                    detail: format!(
                        "its kubelet exited ({status}); {} ends:\n{}",
                        k.log.display(),
                        k.log_tail(20)
                    ),
                });
            }
        }
        if start.elapsed() > timeout {
            let tails: Vec<String> = nodes
                .iter()
                .filter_map(|n| n.kubelet.as_ref())
                .map(|k| format!("{}:\n{}", k.log.display(), k.log_tail(10)))
                .collect();
            return Err(BareError::Timeout {
                what: "every node Ready".into(),
                waited: timeout,
                detail: format!("ready: {ready:?} of {names:?}\n{}", tails.join("\n")),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn default_account(namespace: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "default", "namespace": namespace}
    })
}

/// Server-side apply of one document (field manager `secnet`).
pub async fn apply(client: &kube::Client, doc: &serde_json::Value) -> Result<(), BareError> {
    use kube::api::{DynamicObject, Patch, PatchParams};
    use kube::core::{ApiResource, GroupVersionKind};
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let name = doc["metadata"]["name"].as_str().unwrap_or_default();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = match kind {
        "NetworkAttachmentDefinition" => {
            ApiResource::from_gvk_with_plural(&gvk, "network-attachment-definitions")
        }
        _ => ApiResource::from_gvk(&gvk),
    };
    let obj: DynamicObject = serde_json::from_value(doc.clone())
        .map_err(|e| BareError::Addon(format!("{kind} {name}: not an object: {e}")))?;
    let api: Api<DynamicObject> = match doc["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None if kind == "CustomResourceDefinition" || kind == "Namespace" => {
            Api::all_with(client.clone(), &ar)
        }
        None => Api::default_namespaced_with(client.clone(), &ar),
    };
    api.patch(name, &PatchParams::apply("secnet"), &Patch::Apply(&obj))
        .await
        .map_err(|e| BareError::Addon(format!("apply {kind} {name}: {e}")))?;
    Ok(())
}

async fn wait_capacity(
    client: &kube::Client,
    names: &[String],
    resource: &str,
    quantity: &str,
    timeout: Duration,
) -> Result<(), BareError> {
    let api: Api<Node> = Api::all(client.clone());
    let start = Instant::now();
    loop {
        let mut seen = Vec::new();
        if let Ok(list) = api.list(&ListParams::default()).await {
            for n in &list.items {
                let q = n
                    .status
                    .as_ref()
                    .and_then(|s| s.capacity.as_ref())
                    .and_then(|c| c.get(resource))
                    .map(|q| q.0.clone());
                seen.push((n.metadata.name.clone().unwrap_or_default(), q));
            }
        }
        let ok = names.iter().all(|name| {
            seen.iter()
                .any(|(n, q)| n == name && q.as_deref() == Some(quantity))
        });
        if ok {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(BareError::Timeout {
                what: format!("{resource}={quantity} on every node"),
                waited: timeout,
                detail: format!("capacity seen: {seen:?}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
