//! A bare cluster as one scenario's cluster (`OnBare`): the `Cluster` contract is
//! the kube provider's, against the real API server secnet brought up; the abilities
//! are what secnet has because it made the nodes on this machine. Node commands run
//! in the node's network namespace (`ip -n`), a pod's sandbox is found through the
//! node's containerd (CRI) and entered by its pause process, the kubelet's
//! checkpoint and host-local's leases are read from the node's own directories, and
//! faults act on the real processes: the kubelet stopped and started again, the
//! device plugin's pod deleted, the uplink deleted and made again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use super::cluster::BareCluster;
use super::cri::Cri;
use super::plan::NodePlan;
use super::process::Daemon;
use crate::cluster::ability::{
    DevicePluginRestart, FrameCapture, Fut, LanNamespaces, LocalTopology, NodeAccess, NodeFaults,
    Ovs, RunningCapture, Whereabouts, node_error,
};
use crate::cluster::any::{Ended, NodeFacts, OvsFacts, ProviderCluster};
use crate::cluster::kube::KubeCluster;
use crate::cluster::netns::topology::Topology;
use crate::cluster::{Cluster, ClusterError, ExecOutput, NodeResources, PodView};
use crate::lab::{Cmd, Lab, Ns};
use crate::objects::{Object, Pod};

/// The deleted device plugin's pod is made again by the DaemonSet: its image is on
/// the node already, so it is back well within this.
const PLUGIN_BACK_WITHIN: Duration = Duration::from_secs(30);
/// How long a node command may take.
const T: Duration = Duration::from_secs(20);
/// The kubelet's device-manager checkpoint, relative to the node's `/var/lib/kubelet`.
const CHECKPOINT: &str = "device-plugins/kubelet_internal_checkpoint";
/// The default pod network's name (host-local keeps its leases under it).
const POD_NETWORK: &str = "secnet-pods";

/// What every scenario's view of the run's bare cluster shares.
pub struct BareShared {
    pub(crate) cluster: Mutex<BareCluster>,
    pub(crate) topology: Topology,
    /// The nodes' plans (paths, namespaces, sockets), read without the lock.
    pub(crate) nodes: Vec<NodePlan>,
}

impl BareShared {
    pub fn new(cluster: BareCluster, topology: Topology) -> Arc<BareShared> {
        let nodes = cluster.plan.nodes.clone();
        Arc::new(BareShared {
            cluster: Mutex::new(cluster),
            topology,
            nodes,
        })
    }

    fn node(&self, name: &str) -> Result<&NodePlan, ClusterError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| ClusterError::NoSuchNode(name.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BareCluster> {
        self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One scenario's view of the run's bare cluster.
pub struct OnBare {
    kube: KubeCluster,
    shared: Arc<BareShared>,
    /// Pods' sandboxes given a name under `/run/netns` (`ip netns attach`) for
    /// `pod_namespace`; detached at teardown.
    attached: Mutex<Vec<String>>,
    /// The scenario's extra namespaces on the LAN side (Dhcp), deleted at teardown.
    lan: Mutex<Lab>,
    /// The LAN's DHCP server while a scenario that needs it runs (`start_dhcp`).
    dhcp: Mutex<Option<Daemon>>,
}

impl OnBare {
    pub fn new(kube: KubeCluster, shared: Arc<BareShared>, scope: &str) -> OnBare {
        let lan = Lab::scoped(kube.run_id(), scope);
        OnBare {
            kube,
            shared,
            attached: Mutex::default(),
            lan: Mutex::new(lan),
            dhcp: Mutex::default(),
        }
    }

    /// Starts the LAN's DHCP server (dnsmasq on the fabric) for this scenario;
    /// stopped at its teardown.
    pub fn start_dhcp(&self) -> Result<(), ClusterError> {
        let daemon = {
            let c = self.shared.lock();
            let fabric = Ns {
                name: c.plan.fabric_netns.clone(),
            };
            super::dhcp::start(&c.plan, &self.shared.topology, &fabric)
        };
        let daemon = daemon.map_err(|e| ClusterError::Operation {
            provider: "bare".into(),
            what: "starting the LAN's DHCP server".into(),
            message: e.to_string(),
        })?;
        *self.dhcp.lock().unwrap_or_else(|p| p.into_inner()) = Some(daemon);
        Ok(())
    }

    /// The pod's ready sandbox, as its node's containerd tells it (CRI).
    async fn sandbox(&self, pod: &PodView) -> Result<super::cri::SandboxStatus, ClusterError> {
        let node = self.shared.node(&pod.node)?;
        let what = format!("finding pod {}/{}'s sandbox", pod.namespace, pod.name);
        let cri = Cri::connect(&node.containerd_socket, T)
            .await
            .map_err(|e| node_error(&pod.node, &what, e))?;
        let sandboxes = cri
            .list_pod_sandboxes()
            .await
            .map_err(|e| node_error(&pod.node, &what, e))?;
        let id = sandboxes
            .iter()
            .filter(|s| s.state == 0) // SANDBOX_READY
            .find(|s| s.metadata.as_ref().is_some_and(|m| m.uid == pod.uid))
            .map(|s| s.id.clone())
            .ok_or_else(|| {
                node_error(&pod.node, &what, "containerd has no ready sandbox for it")
            })?;
        cri.pod_sandbox_status(&id)
            .await
            .map_err(|e| node_error(&pod.node, &what, e))
    }

    /// The pid of the pause process of the pod's ready sandbox.
    async fn sandbox_pid(&self, pod: &PodView) -> Result<u32, ClusterError> {
        let status = self.sandbox(pod).await?;
        status.pid().ok_or_else(|| {
            node_error(
                &pod.node,
                "finding the sandbox's pause process",
                format!("sandbox {} has no pid", status.id),
            )
        })
    }

    async fn ip_in(&self, node: &str, netns: &str, args: &[&str]) -> Result<String, ClusterError> {
        let out = Cmd::new("nsenter")
            .arg(format!("--net={netns}"))
            .arg("--")
            .arg("ip")
            .args(args.iter().copied())
            .timeout(T)
            .output_async()
            .await
            .and_then(|o| o.check())
            .map_err(|e| node_error(node, &format!("ip {}", args.join(" ")), e))?;
        Ok(out.stdout_text())
    }

    fn leases(&self, node: &str) -> Result<Vec<String>, ClusterError> {
        let plan = self.shared.node(node)?;
        let dir = super::node::backing(plan, "/var/lib/cni")
            .join("networks")
            .join(POD_NETWORK);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(node_error(node, &format!("reading {}", dir.display()), e)),
        };
        Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
            .collect())
    }

    fn checkpoint(&self, node: &str) -> PathBuf {
        self.shared
            .node(node)
            .map(|n| super::node::backing(n, "/var/lib/kubelet").join(CHECKPOINT))
            .unwrap_or_default()
    }
}

impl Cluster for OnBare {
    fn provider(&self) -> &str {
        Cluster::provider(&self.kube)
    }

    fn nodes(&self) -> Vec<String> {
        Cluster::nodes(&self.kube)
    }

    async fn apply(&self, objects: Vec<Object>) -> Result<(), ClusterError> {
        Cluster::apply(&self.kube, objects).await
    }

    async fn create_pod(&self, pod: Pod) -> Result<PodView, ClusterError> {
        Cluster::create_pod(&self.kube, pod).await
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        Cluster::delete_pod(&self.kube, namespace, name).await
    }

    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        argv: &[&str],
    ) -> Result<ExecOutput, ClusterError> {
        Cluster::exec(&self.kube, namespace, pod, argv).await
    }

    async fn node_resources(&self, node: &str) -> Result<NodeResources, ClusterError> {
        Cluster::node_resources(&self.kube, node).await
    }

    async fn live_pods(&self) -> Result<Vec<PodView>, ClusterError> {
        Cluster::live_pods(&self.kube).await
    }

    async fn diagnostics(&self) -> String {
        let mut out = Cluster::diagnostics(&self.kube).await;
        let c = self.shared.lock();
        for n in &c.nodes {
            if let Some(k) = &n.kubelet {
                out.push_str(&format!(
                    "\n--- kubelet on {} ({}):\n{}",
                    n.plan.name,
                    k.log.display(),
                    k.log_tail(15)
                ));
            }
        }
        out
    }
}

impl ProviderCluster for OnBare {
    fn node_facts(&self) -> Vec<NodeFacts> {
        self.shared
            .nodes
            .iter()
            .map(|n| NodeFacts {
                name: n.name.clone(),
                lower_device: n.uplink.clone(),
                address: Some(n.address),
                ovs: Some(OvsFacts {
                    bridge: crate::cluster::netns::ovs::BRIDGE.into(),
                    uplink: crate::cluster::netns::ovs::UPLINK.into(),
                }),
            })
            .collect()
    }

    fn snapshot(&self) -> BoxFuture<'_, crate::observe::Topology> {
        ProviderCluster::snapshot(&self.kube)
    }

    fn teardown(self: Box<Self>) -> BoxFuture<'static, Ended> {
        let attached =
            std::mem::take(&mut *self.attached.lock().unwrap_or_else(|p| p.into_inner()));
        let mut lan = self.lan.into_inner().unwrap_or_else(|p| p.into_inner());
        let dhcp = self.dhcp.into_inner().unwrap_or_else(|p| p.into_inner());
        let kube = Box::new(self.kube);
        Box::pin(async move {
            let mut ended = kube.teardown().await;
            for name in attached {
                if let Err(e) = crate::lab::run("ip", &["netns", "del", &name], T) {
                    ended.errors.push(e.to_string());
                }
            }
            let lan_errors = tokio::task::spawn_blocking(move || {
                drop(dhcp);
                lan.teardown()
            })
            .await
            .unwrap_or_else(|e| vec![e.to_string()]);
            ended.errors.extend(lan_errors);
            ended
        })
    }

    fn keep(self: Box<Self>) {
        // The whole cluster is kept with the run (see the provider's `stop`).
    }

    fn node_access(&self) -> Option<&dyn NodeAccess> {
        Some(self)
    }
    fn local_topology(&self) -> Option<&dyn LocalTopology> {
        Some(self)
    }
    fn node_faults(&self) -> Option<&dyn NodeFaults> {
        Some(self)
    }
    fn device_plugin_restart(&self) -> Option<&dyn DevicePluginRestart> {
        Some(self)
    }
    fn frame_capture(&self) -> Option<&dyn FrameCapture> {
        Some(self)
    }
    fn lan_namespaces(&self) -> Option<&dyn LanNamespaces> {
        Some(self)
    }
    fn ovs(&self) -> Option<&dyn Ovs> {
        Some(self)
    }
    /// Where the run deployed whereabouts (the run's offer, which the kube
    /// cluster's options carry, names it).
    fn whereabouts(&self) -> Option<&dyn Whereabouts> {
        ProviderCluster::whereabouts(&self.kube)
    }
}

impl Ovs for OnBare {
    /// `ovs-vsctl list-ports` against the node's ovsdb-server.
    fn ovs_ports<'a>(&'a self, node: &'a str, bridge: &'a str) -> Fut<'a, Vec<String>> {
        Box::pin(async move {
            let socket = super::ovs::socket(self.shared.node(node)?);
            let out = Cmd::new("ovs-vsctl")
                .arg(format!("--db=unix:{}", socket.display()))
                .args(["--timeout=10", "list-ports", bridge])
                .timeout(T)
                .output_async()
                .await
                .and_then(|o| o.check())
                .map_err(|e| node_error(node, "ovs-vsctl list-ports", e))?;
            Ok(out
                .stdout_text()
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect())
        })
    }

    fn uplink_port(&self) -> &str {
        crate::cluster::netns::ovs::UPLINK
    }
}

impl LanNamespaces for OnBare {
    /// A namespace of the run and scope, removed at teardown; the scenario plugs it
    /// into the LAN itself (e.g. a macvlan on a node's uplink moved into it).
    fn extra_namespace<'a>(&'a self, name: &'a str) -> Fut<'a, Ns> {
        Box::pin(async move {
            self.lan
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .netns(name)
                .map_err(|e| node_error(name, "creating a namespace", e))
        })
    }
}

impl NodeAccess for OnBare {
    /// In the node's network namespace, with this machine's iproute2.
    fn node_ip<'a>(&'a self, node: &'a str, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(async move {
            let plan = self.shared.node(node)?;
            let path = format!("/run/netns/{}", plan.netns);
            self.ip_in(node, &path, args).await
        })
    }

    /// In the sandbox's network namespace, entered by its pause process.
    fn pod_ip<'a>(&'a self, pod: &'a PodView, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(async move {
            let pid = self.sandbox_pid(pod).await?;
            self.ip_in(&pod.node, &format!("/proc/{pid}/ns/net"), args)
                .await
        })
    }

    /// From the real kubelet's checkpoint in the node's `/var/lib/kubelet`.
    fn pod_devices<'a>(&'a self, pod: &'a PodView) -> Fut<'a, BTreeMap<String, Vec<String>>> {
        Box::pin(async move {
            let path = self.checkpoint(&pod.node);
            let what = format!("reading {}", path.display());
            let text =
                std::fs::read_to_string(&path).map_err(|e| node_error(&pod.node, &what, e))?;
            let checkpoint: crate::kubelet::checkpoint::Checkpoint =
                serde_json::from_str(&text).map_err(|e| node_error(&pod.node, &what, e))?;
            let mut devices: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for entry in checkpoint
                .data
                .pod_device_entries
                .iter()
                .filter(|e| e.pod_uid == pod.uid)
            {
                devices
                    .entry(entry.resource_name.clone())
                    .or_default()
                    .extend(entry.all_device_ids());
            }
            Ok(devices)
        })
    }

    fn pod_network_leases<'a>(&'a self, node: &'a str) -> Fut<'a, Vec<String>> {
        Box::pin(async move { self.leases(node) })
    }

    /// A ready sandbox of that pod in any node's containerd.
    fn pod_sandbox_exists<'a>(&'a self, namespace: &'a str, name: &'a str) -> Fut<'a, bool> {
        Box::pin(async move {
            let namespace = self.kube.scenario_namespace(namespace);
            for node in &self.shared.nodes {
                let what = format!("listing sandboxes for {namespace}/{name}");
                let cri = Cri::connect(&node.containerd_socket, T)
                    .await
                    .map_err(|e| node_error(&node.name, &what, e))?;
                let found = cri
                    .list_pod_sandboxes()
                    .await
                    .map_err(|e| node_error(&node.name, &what, e))?
                    .iter()
                    .filter(|s| s.state == 0)
                    .any(|s| {
                        s.metadata
                            .as_ref()
                            .is_some_and(|m| m.name == name && m.namespace == namespace)
                    });
                if found {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    fn reads_pod_links_from_node(&self) -> bool {
        true
    }
}

impl LocalTopology for OnBare {
    fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    fn node_namespace<'a>(&'a self, node: &'a str) -> Fut<'a, Ns> {
        Box::pin(async move {
            Ok(Ns {
                name: self.shared.node(node)?.netns.clone(),
            })
        })
    }

    /// The sandbox's namespace under a name of the run (`ip netns attach`), so that
    /// programs of this machine can run in it; detached at teardown.
    fn pod_namespace<'a>(&'a self, pod: &'a PodView) -> Fut<'a, Ns> {
        Box::pin(async move {
            let pid = self.sandbox_pid(pod).await?;
            let uid: String = pod.uid.chars().filter(|c| *c != '-').take(8).collect();
            let name = format!("{}-pod{uid}", self.kube.run_id());
            let known = self
                .attached
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&name);
            if !known {
                crate::lab::run("ip", &["netns", "attach", &name, &pid.to_string()], T)
                    .map_err(|e| node_error(&pod.node, "ip netns attach", e))?;
                self.attached
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(name.clone());
            }
            Ok(Ns { name })
        })
    }

    fn ns_ip<'a>(&'a self, ns: &'a Ns, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(async move { self.ip_in(&ns.name, &ns.path_str(), args).await })
    }
}

impl NodeFaults for OnBare {
    /// The real kubelet stopped (SIGTERM) and started again with the same config:
    /// the pods keep running, the device manager comes back from its checkpoint.
    fn restart_kubelet<'a>(&'a self, node: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            let mut c = self.shared.lock();
            let n = c
                .nodes
                .iter_mut()
                .find(|n| n.plan.name == node)
                .ok_or_else(|| ClusterError::NoSuchNode(node.to_string()))?;
            n.stop_kubelet(super::process::STOP_GRACE);
            n.start_kubelet()
                .map_err(|e| node_error(node, "restarting the kubelet", e))
        })
    }

    /// The node's uplink deleted (its fabric port goes with it).
    fn unplug_uplink<'a>(&'a self, node: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            let plan = self.shared.node(node)?;
            let path = format!("/run/netns/{}", plan.netns);
            self.ip_in(node, &path, &["link", "del", &plan.uplink])
                .await
                .map(|_| ())
        })
    }

    /// A new uplink, address and routes as at bring-up.
    fn plug_uplink<'a>(&'a self, node: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            let plan = self.shared.node(node)?.clone();
            let topology = self.shared.topology.clone();
            let run_id = self.kube.run_id().to_string();
            tokio::task::spawn_blocking(move || {
                super::node::replug(&run_id, &plan, &topology)
                    .map_err(|e| node_error(&plan.name, "plugging the uplink", e))
            })
            .await
            .map_err(|e| node_error(node, "plugging the uplink", e))?
        })
    }

    /// The sandbox's network namespace file unmounted and deleted in the node's
    /// mount view, behind containerd's back (what a node reboot leaves).
    fn lose_pod_netns<'a>(&'a self, pod: &'a PodView) -> Fut<'a, ()> {
        Box::pin(async move {
            let status = self.sandbox(pod).await?;
            let what = "deleting the pod's netns";
            let path = status.netns_path().ok_or_else(|| {
                node_error(
                    &pod.node,
                    what,
                    format!("sandbox {} names no netns", status.id),
                )
            })?;
            let view = self
                .shared
                .lock()
                .nodes
                .iter()
                .find(|n| n.plan.name == pod.node)
                .map(|n| n.view.ns_file.clone());
            let view = view.ok_or_else(|| ClusterError::NoSuchNode(pod.node.clone()))?;
            let script = format!("umount {path} && rm -f {path}");
            Cmd::new("nsenter")
                .arg(format!("--mount={}", view.display()))
                .args(["--", "sh", "-c", &script])
                .timeout(T)
                .output_async()
                .await
                .and_then(|o| o.check())
                .map(|_| ())
                .map_err(|e| node_error(&pod.node, what, e))
        })
    }

    /// The device plugin's DaemonSet pod on the node, through the API server.
    fn device_plugin_log<'a>(&'a self, node: &'a str) -> Fut<'a, String> {
        Box::pin(self.kube.device_plugin_log(node))
    }
}

impl DevicePluginRestart for OnBare {
    /// The device plugin's pod deleted with no grace period; the DaemonSet's new
    /// pod Running.
    fn restart_device_plugin<'a>(&'a self, node: &'a str, _resource: &'a str) -> Fut<'a, ()> {
        Box::pin(self.kube.restart_device_plugin(node))
    }

    fn back_within(&self) -> Duration {
        PLUGIN_BACK_WITHIN
    }
}

impl FrameCapture for OnBare {
    /// tcpdump on this machine in the pod's sandbox.
    fn start_capture<'a>(
        &'a self,
        pod: &'a PodView,
        iface: &'a str,
        filter: &'a str,
    ) -> Fut<'a, Box<dyn RunningCapture<'a> + 'a>> {
        Box::pin(async move {
            let ns = LocalTopology::pod_namespace(self, pod).await?;
            let running =
                crate::cluster::netns::capture::LocalCapture::start(&pod.node, &ns, iface, filter)
                    .await?;
            Ok(Box::new(running) as Box<dyn RunningCapture<'a> + 'a>)
        })
    }
}
