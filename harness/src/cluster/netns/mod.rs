//! The `netns` cluster: nodes are network namespaces on a fabric bridge, the
//! harness plays kubelet (device manager, admission, checkpoint) and multus, and the
//! real plugin binaries do the work.

mod abilities;
pub(crate) mod capture;
mod error;
pub mod fabric;
pub mod faults;
mod guests;
pub mod multus_daemon;
pub mod node;
pub mod ovs;
pub mod pod;
/// Where the topology lived before it became the contract's (`cluster::topology`).
pub use crate::cluster::topology;
pub mod view;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;

use super::{Cluster, ClusterError, ExecOutput, NodeResources, PodView};
use crate::cluster::topology::Topology;
use crate::cni::chain::BinDirs;
use crate::lab::wait::{Pace, Seen, poll_until};
use crate::lab::{Lab, Ns};
use crate::objects::{ConfigMap, NetworkAttachmentDefinition, Object, Pod};
use node::NetnsNode;
use pod::PodState;

pub use abilities::offer;
pub use error::NetnsError;

/// How the cluster is put together and what is under test.
#[derive(Debug, Clone)]
pub struct Options {
    pub run_id: String,
    pub topology: Topology,
    /// CNI binaries under test, searched before the reference plugins.
    pub cni_bin_dir: PathBuf,
    /// Debian's reference plugins (bridge, host-local, macvlan).
    pub reference_bin_dir: PathBuf,
    /// The device plugin command the DaemonSet runs on every node.
    pub device_plugin: Vec<String>,
    /// Start dnsmasq on the fabric.
    pub(crate) dhcp: bool,
    /// Start userspace Open vSwitch on every node (bridge `br1`, see `ovs.rs`).
    pub(crate) ovs: bool,
    /// The rules secnet's multus follows (`--multus-semantics`).
    pub(crate) multus: crate::multus::Semantics,
}

pub struct NetnsCluster {
    pub(crate) opts: Options,
    pub(crate) run_dir: PathBuf,
    pub(crate) fabric: Ns,
    /// secnet's multus on every node (by node index): outside `inner`, so that it
    /// can restart while a pod's ADD holds the cluster.
    multus: Vec<multus_daemon::MultusDaemon>,
    inner: Mutex<Inner>,
}

pub struct Inner {
    /// Open vSwitch daemons per node (killed when dropped).
    ovs: Vec<ovs::Ovs>,
    lab: Lab,
    nodes: Vec<NetnsNode>,
    config_maps: BTreeMap<(String, String), ConfigMap>,
    nads: BTreeMap<(String, String), NetworkAttachmentDefinition>,
    pods: BTreeMap<(String, String), PodState>,
    dhcp: Option<KillOnDrop>,
    uid_counter: u64,
    /// Why the device plugin DaemonSet did not come up (with its log), if it did not:
    /// the cluster stays up, pods that need its resource fail with this.
    pub(crate) device_plugin_failure: Option<String>,
}

/// How the diagnostics say that the device plugin never came up.
pub const DEVICE_PLUGIN_DOWN: &str = "the device plugin DaemonSet did not come up";
/// How an unschedulable pod says that what it asks for has no device plugin.
pub const NO_DEVICE_PLUGIN: &str = "no device plugin offers it";

fn up_err(message: impl Into<String>) -> ClusterError {
    ClusterError::Up {
        provider: "netns".into(),
        message: message.into(),
    }
}

impl NetnsCluster {
    /// Brings up the fabric and the nodes. On failure everything made so far is removed.
    pub async fn up(opts: Options) -> Result<NetnsCluster, ClusterError> {
        let run_dir = node::run_dir_for(&opts.run_id);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| up_err(format!("failed to create {}: {e}", run_dir.display())))?;
        let mut lab = Lab::scoped(&opts.run_id, "");
        let partial = async {
            view::privatize(&run_dir)?;
            let fabric = fabric::up(&mut lab, &opts.topology)?;
            let mut nodes = Vec::new();
            for (i, spec) in opts.topology.nodes.iter().enumerate() {
                let ns = lab.netns(&spec.name)?;
                fabric::plug(&lab, &fabric, &ns, &spec.uplink, &format!("port{i}"))?;
                lab.ip(
                    &ns,
                    &[
                        "addr",
                        "add",
                        &format!("{}/24", spec.address),
                        "dev",
                        &spec.uplink,
                    ],
                )?;
                let view = view::MountView::create(&run_dir.join("nodes").join(&spec.name))?;
                nodes.push(NetnsNode {
                    name: spec.name.clone(),
                    index: i,
                    ns,
                    uplink: spec.uplink.clone(),
                    address: spec.address,
                    pod_subnet: opts.topology.pod_subnet(i),
                    view,
                    device_manager: None,
                    device_plugin: None,
                    device_plugin_env: None,
                });
            }
            let dhcp = match opts.dhcp {
                true => Some(KillOnDrop(fabric::start_dhcp(
                    &fabric,
                    &opts.topology,
                    &run_dir,
                )?)),
                false => None,
            };
            let ovs = match opts.ovs {
                true => ovs::up(&lab, &fabric, &nodes)?,
                false => Vec::new(),
            };
            let multus = nodes
                .iter()
                .map(|n| {
                    multus_daemon::MultusDaemon::start(
                        &n.name,
                        &n.view.dir,
                        pod::POD_NETWORK,
                        &n.pod_subnet,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, NetnsError>((fabric, nodes, dhcp, ovs, multus))
        }
        .await;
        match partial {
            Ok((fabric, nodes, dhcp, ovs, multus)) => Ok(NetnsCluster {
                opts,
                run_dir,
                fabric,
                multus,
                inner: Mutex::new(Inner {
                    ovs,
                    lab,
                    nodes,
                    config_maps: BTreeMap::new(),
                    nads: BTreeMap::new(),
                    pods: BTreeMap::new(),
                    dhcp,
                    uid_counter: 0,
                    device_plugin_failure: None,
                }),
            }),
            Err(e) => {
                drop(lab);
                cleanup_run_dir(&run_dir, &[]);
                Err(up_err(e.to_string()))
            }
        }
    }

    pub fn bin_dirs(&self) -> BinDirs {
        BinDirs(vec![
            self.opts.cni_bin_dir.clone(),
            self.opts.reference_bin_dir.clone(),
        ])
    }

    /// Why the device plugin DaemonSet did not come up, if it did not.
    pub async fn device_plugin_failure(&self) -> Option<String> {
        self.inner.lock().await.device_plugin_failure.clone()
    }

    pub fn topology(&self) -> &Topology {
        &self.opts.topology
    }

    /// The namespace of a pod (for scenario probes that need it).
    pub async fn pod_netns(&self, namespace: &str, name: &str) -> Option<Ns> {
        let inner = self.inner.lock().await;
        inner
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .map(|p| p.netns.clone())
    }

    /// The namespace of a node.
    pub async fn node_netns(&self, node: &str) -> Option<Ns> {
        let inner = self.inner.lock().await;
        inner
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.ns.clone())
    }

    /// Runs `ip` inside a namespace of this cluster.
    pub async fn ip(&self, ns: &Ns, args: &[&str]) -> Result<String, NetnsError> {
        let inner = self.inner.lock().await;
        Ok(inner.lab.ip(ns, args)?)
    }

    /// The ports on OVS bridge `bridge` of `node` (empty list without OVS).
    pub async fn ovs_ports(&self, node: &str, bridge: &str) -> Result<Vec<String>, NetnsError> {
        let inner = self.inner.lock().await;
        let index = inner
            .nodes
            .iter()
            .position(|n| n.name == node)
            .ok_or_else(|| NetnsError::NoSuchNode(node.into()))?;
        match inner.ovs.get(index) {
            Some(o) => Ok(o.ports(bridge)?),
            None => Ok(Vec::new()),
        }
    }

    /// Makes an extra namespace of this run (e.g. for the manual macvlan lab).
    pub async fn extra_netns(&self, name: &str) -> Result<Ns, NetnsError> {
        let mut inner = self.inner.lock().await;
        Ok(inner.lab.netns(name)?)
    }

    /// Removes everything: pods (CNI DEL), plugins, views, namespaces, the run dir.
    pub async fn teardown(self) -> Vec<String> {
        let mut errors = Vec::new();
        let keys: Vec<(String, String)> = self.inner.lock().await.pods.keys().cloned().collect();
        // Pods go concurrently, as a kubelet tears down a node's pods.
        let this = &self;
        let deleted = futures::future::join_all(
            keys.iter()
                .map(|(ns, name)| async move { this.delete_pod(ns, name).await }),
        )
        .await;
        errors.extend(
            deleted
                .into_iter()
                .filter_map(|r| r.err())
                .map(|e| e.to_string()),
        );
        let mut inner = self.inner.into_inner();
        // All plugins stop in parallel.
        for node in inner.nodes.iter_mut() {
            node.signal_device_plugin();
        }
        for o in inner.ovs.iter_mut() {
            o.signal();
        }
        for node in inner.nodes.iter_mut() {
            node.reap_device_plugin(Duration::from_secs(3));
            if let Some(dm) = node.device_manager.take() {
                dm.halt().await;
            }
        }
        for o in inner.ovs.iter_mut() {
            o.reap(Duration::from_secs(2));
        }
        inner.ovs.clear();
        drop(inner.dhcp.take());
        let views: Vec<_> = inner
            .nodes
            .drain(..)
            .map(|mut n| std::mem::take(&mut n.view))
            .collect();
        for e in inner.lab.teardown() {
            errors.push(e.to_string());
        }
        errors.extend(cleanup_run_dir(&self.run_dir, &views));
        errors
    }
}

/// A daemon leading its own process group (dnsmasq), stopped with its group when
/// dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        crate::lab::command::stop_group(&mut self.0, Duration::from_secs(2));
    }
}

fn cleanup_run_dir(run_dir: &std::path::Path, views: &[view::MountView]) -> Vec<String> {
    let mut errors = Vec::new();
    for v in views {
        if let Err(e) = v.destroy() {
            errors.push(e.to_string());
        }
    }
    let _ = view::unprivatize(run_dir);
    // EBUSY right after the unmount: another scenario's new mount namespace still
    // holds a copy; it lets go within moments (bounded retry).
    let mut removed = std::fs::remove_dir_all(run_dir);
    for _ in 0..20 {
        match &removed {
            Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(50));
                let _ = view::unprivatize(run_dir);
                removed = std::fs::remove_dir_all(run_dir);
            }
            _ => break,
        }
    }
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        errors.push(format!("failed to remove {}: {e}", run_dir.display()));
    }
    let _ = std::fs::remove_dir(run_dir.parent().unwrap_or(run_dir));
    errors
}

/// The ConfigMap a DaemonSet takes its environment from (`envFrom.configMapRef`).
fn daemonset_config_map(raw: &Value) -> Option<String> {
    raw.pointer("/spec/template/spec/containers")?
        .as_array()?
        .iter()
        .flat_map(|c| {
            c.get("envFrom")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .find_map(|e| {
            e.pointer("/configMapRef/name")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
}

/// Resource names a device plugin config announces (best effort: the plugin itself
/// reports config errors).
fn announced_resources(conf: &str) -> Vec<String> {
    serde_json::from_str::<Value>(conf)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.get("name").and_then(Value::as_str))
        .map(|n| format!("macvtap.network.kubevirt.io/{n}"))
        .collect()
}

impl Cluster for NetnsCluster {
    fn provider(&self) -> &str {
        "netns"
    }

    fn nodes(&self) -> Vec<String> {
        self.opts
            .topology
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    async fn apply(&self, objects: Vec<Object>) -> Result<(), ClusterError> {
        for object in objects {
            let kind = object.kind().to_string();
            let name = object.name().to_string();
            let fail = |message: String| ClusterError::Apply {
                kind: kind.clone(),
                name: name.clone(),
                message,
            };
            match object {
                Object::ConfigMap(c) => {
                    let key = (c.metadata.namespace.clone(), c.metadata.name.clone());
                    self.inner.lock().await.config_maps.insert(key, c);
                }
                Object::Nad(n) => {
                    let key = (n.metadata.namespace.clone(), n.metadata.name.clone());
                    self.inner.lock().await.nads.insert(key, n);
                }
                Object::Pod(p) => {
                    self.create_pod(p).await?;
                }
                Object::Other { kind: k, raw, .. } if k == "DaemonSet" => {
                    let ns = raw
                        .pointer("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or("default")
                        .to_string();
                    let cm_name = daemonset_config_map(&raw).ok_or_else(|| fail("the netns cluster plays DaemonSets that take their environment from a ConfigMap (envFrom.configMapRef); this one has none".into()))?;
                    let env = {
                        let inner = self.inner.lock().await;
                        inner
                            .config_maps
                            .get(&(ns.clone(), cm_name.clone()))
                            .map(|c| c.data.clone())
                            .ok_or_else(|| fail(format!("ConfigMap {ns}/{cm_name} does not exist; apply it before the DaemonSet")))?
                    };
                    // As on a real node, a device plugin that does not come up leaves
                    // the cluster up: only pods that need its resource fail (pod.rs).
                    let failure = self.start_daemonset(env).await.err().map(|e| e.to_string());
                    self.inner.lock().await.device_plugin_failure = failure;
                }
                Object::Other { kind: k, .. } => {
                    return Err(fail(format!(
                        "kind {k} is not supported by the netns cluster (it plays ConfigMap, NetworkAttachmentDefinition, Pod and the device plugin DaemonSet)"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn create_pod(&self, pod: Pod) -> Result<PodView, ClusterError> {
        pod::create(self, pod).await
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        pod::delete(self, namespace, name).await
    }

    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        argv: &[&str],
    ) -> Result<ExecOutput, ClusterError> {
        pod::exec(self, namespace, pod, argv).await
    }

    async fn node_resources(&self, node: &str) -> Result<NodeResources, ClusterError> {
        let inner = self.inner.lock().await;
        let n = inner
            .nodes
            .iter()
            .find(|n| n.name == node)
            .ok_or_else(|| ClusterError::NoSuchNode(node.into()))?;
        let mut out = NodeResources::default();
        if let Some(dm) = &n.device_manager {
            for (name, view) in dm.snapshot().resources {
                out.capacity.insert(name.clone(), view.capacity() as u64);
                out.allocatable
                    .insert(name.clone(), view.allocatable() as u64);
                out.allocated
                    .insert(name.clone(), n.allocated_ids(&name).len() as u64);
            }
        }
        Ok(out)
    }

    async fn live_pods(&self) -> Result<Vec<PodView>, ClusterError> {
        // A pod is in the table from its sandbox up to its deletion.
        let inner = self.inner.lock().await;
        Ok(inner.pods.values().map(|p| p.view.clone()).collect())
    }

    async fn diagnostics(&self) -> String {
        let inner = self.inner.lock().await;
        let mut out = String::new();
        if let Some(failure) = &inner.device_plugin_failure {
            out.push_str(&format!("{DEVICE_PLUGIN_DOWN}: {failure}\n"));
        }
        for n in &inner.nodes {
            out.push_str(&format!(
                "--- node {} device plugin log ---\n{}\n",
                n.name,
                n.device_plugin_log()
            ));
            if let Some(dm) = &n.device_manager {
                for (name, view) in dm.snapshot().resources {
                    out.push_str(&format!(
                        "resource {name}: capacity {} allocatable {} last error {:?}\n",
                        view.capacity(),
                        view.allocatable(),
                        view.last_error
                    ));
                }
            }
        }
        for ((ns, name), p) in &inner.pods {
            out.push_str(&format!(
                "pod {ns}/{name} on {}: network-status {}\n",
                p.view.node,
                p.view
                    .annotations
                    .get(crate::multus::NETWORK_STATUS_ANNOTATION)
                    .map(String::as_str)
                    .unwrap_or("-")
            ));
        }
        out
    }
}

impl NetnsCluster {
    /// The DaemonSet's pod on every node: the device plugin with the ConfigMap as its
    /// environment; waits until each node's kubelet sees the announced resources.
    async fn start_daemonset(&self, env: BTreeMap<String, String>) -> Result<(), NetnsError> {
        let expected =
            announced_resources(env.get("DP_MACVTAP_CONF").map(String::as_str).unwrap_or(""));
        let mut inner = self.inner.lock().await;
        for node in inner.nodes.iter_mut() {
            node.start_device_plugin(&self.opts.device_plugin, &env)?;
        }
        // One bound for all nodes: they started their plugins together.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        for node in inner.nodes.iter_mut() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let pace = Pace::every(Duration::from_millis(20));
            let waited = poll_until(left, pace, || {
                // Every check is on this process's own state: no await inside.
                let seen = match node.device_plugin_exit() {
                    Some(status) => Err(NetnsError::DevicePluginExited {
                        node: node.name.clone(),
                        status,
                        log: node.device_plugin_log().trim().to_string(),
                    }),
                    None => {
                        let snapshot = node
                            .device_manager
                            .as_ref()
                            .map(|d| d.snapshot())
                            .unwrap_or_default();
                        let ready = if expected.is_empty() {
                            !snapshot.resources.is_empty()
                        } else {
                            expected.iter().all(|r| {
                                snapshot
                                    .resource(r)
                                    .is_some_and(|v| v.streaming && v.capacity() > 0)
                            })
                        };
                        Ok(if ready {
                            Seen::Ready(())
                        } else {
                            Seen::NotYet(snapshot.resources.keys().cloned().collect::<Vec<_>>())
                        })
                    }
                };
                std::future::ready(seen)
            })
            .await?;
            if let Err(seen) = waited {
                return Err(NetnsError::DevicePluginNotRegistered {
                    node: node.name.clone(),
                    expected,
                    seen,
                    log: node.device_plugin_log().trim().to_string(),
                });
            }
        }
        Ok(())
    }
}

impl NetnsCluster {
    /// The cluster as the report draws it: nodes, bridges, pods and their interfaces.
    pub async fn snapshot(&self) -> crate::observe::Topology {
        use crate::observe::{InterfaceSnap, NodeSnap, Topology, WorkloadSnap};
        let inner = self.inner.lock().await;
        // Every node's OVS: br1 with its ens34 trunk into the fabric.
        let ovs_bridges = match self.opts.ovs {
            true => vec![crate::observe::OvsBridgeSnap {
                name: ovs::BRIDGE.to_string(),
                trunks: vec![ovs::UPLINK.to_string()],
            }],
            false => Vec::new(),
        };
        let nodes = inner
            .nodes
            .iter()
            .map(|n| {
                let bridges = inner
                    .lab
                    .ip(&n.ns, &["-j", "link", "show", "type", "bridge"])
                    .ok()
                    .and_then(|out| crate::probe::ip::links(&out).ok())
                    .map(|links| crate::probe::ip::link_names(&links))
                    .unwrap_or_default();
                NodeSnap {
                    name: n.name.clone(),
                    uplink: n.uplink.clone(),
                    address: n.address.to_string(),
                    bridges,
                    ovs_bridges: ovs_bridges.clone(),
                }
            })
            .collect();
        let workloads = inner
            .pods
            .values()
            .map(|p| {
                // The device plugin's macvtaps sit on the node's uplink.
                let uplink = inner
                    .nodes
                    .iter()
                    .find(|n| n.name == p.view.node)
                    .map_or("?", |n| n.uplink.as_str());
                let statuses = pod::network_status(&p.view).unwrap_or_default();
                let interfaces = statuses
                    .iter()
                    .map(|s| {
                        let attachment = if s.default {
                            Some("cni0 (pod network)".to_string())
                        } else {
                            s.name
                                .split_once('/')
                                .and_then(|(ns, name)| {
                                    inner.nads.get(&(ns.to_string(), name.to_string()))
                                })
                                .and_then(|nad| {
                                    let c: Value = serde_json::from_str(&nad.spec.config).ok()?;
                                    let kind = c["type"].as_str().unwrap_or("?").to_string();
                                    let lower = c["master"]
                                        .as_str()
                                        .or(c["bridge"].as_str())
                                        .map(str::to_string)
                                        .or_else(|| {
                                            nad.resource_name()
                                                .map(|_| format!("{uplink} (device plugin)"))
                                        });
                                    let vlan = c["vlan"]
                                        .as_u64()
                                        .map(|v| format!(" vlan {v}"))
                                        .unwrap_or_default();
                                    Some(format!(
                                        "{kind} on {}{vlan}",
                                        lower.unwrap_or_else(|| "?".into())
                                    ))
                                })
                        };
                        // The node device it hangs off: what the attachment names.
                        let via = attachment.as_deref().and_then(|a| {
                            let device = a.split_once(" on ").map_or(a, |(_, on)| on);
                            device.split_whitespace().next().map(str::to_string)
                        });
                        InterfaceSnap {
                            name: s.interface.clone().unwrap_or_default(),
                            network: s.name.clone(),
                            mac: s.mac.clone(),
                            ips: s.ips.clone(),
                            attachment,
                            via,
                        }
                    })
                    .collect();
                WorkloadSnap {
                    name: p.view.name.clone(),
                    kind: "pod".into(),
                    node: p.view.node.clone(),
                    interfaces,
                }
            })
            .collect();
        Topology {
            fabric: format!(
                "{} ({}, gateway {})",
                fabric::BRIDGE,
                self.opts.topology.fabric.subnet,
                self.opts.topology.fabric.gateway
            ),
            nodes,
            workloads,
        }
    }
}
