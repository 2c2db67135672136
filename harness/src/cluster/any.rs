//! `AnyCluster`: one of the providers behind the `Cluster` contract, so that a
//! scenario is written once and runs on every provider that offers what it needs.
//! Beyond the contract, the abilities a scenario may need (node access, faults,
//! OVS, DHCP) are methods here, each gated by its `Capability`: a provider that
//! lacks one answers `ClusterError::Unsupported` (the runner skips such scenarios
//! before they start, so this is a safety net).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::capability::{Capability, Offer, Provider};
use super::capture::FrameCapture;
use super::kube::KubeCluster;
use super::netns::NetnsCluster;
use super::netns::topology::Topology;
use super::{Cluster, ClusterError, ExecOutput, NodeResources, PodView};
use crate::lab::Ns;
use crate::objects::{Object, Pod};
use crate::probe::pod::ProbeError;

pub enum AnyCluster {
    Netns(Box<NetnsCluster>),
    Kube(Arc<KubeCluster>),
}

impl AnyCluster {
    pub fn provider_kind(&self) -> Provider {
        self.offer().provider()
    }

    /// What this cluster offers the scenarios.
    pub fn offer(&self) -> Offer {
        match self {
            AnyCluster::Netns(_) => Offer::new(Provider::Netns),
            AnyCluster::Kube(c) => c.offer(),
        }
    }

    /// Whether this cluster offers `cap` (for optional, extra checks).
    pub fn offers(&self, cap: Capability) -> bool {
        self.offer().offers(cap)
    }

    fn netns_for(&self, cap: Capability) -> Result<&NetnsCluster, ClusterError> {
        match self {
            AnyCluster::Netns(c) => Ok(c),
            AnyCluster::Kube(c) => Err(ClusterError::Unsupported {
                provider: c.provider().to_string(),
                capability: cap,
            }),
        }
    }

    /// The nodes' lower device (macvtap/macvlan master).
    pub fn lower_device(&self) -> String {
        match self {
            AnyCluster::Netns(c) => c.topology().nodes[0].uplink.clone(),
            AnyCluster::Kube(c) => c.lower_device().to_string(),
        }
    }

    /// The cluster's topology (nodes, uplinks, addresses, the LAN's gateway): only
    /// where secnet made the nodes (the netns cluster).
    pub fn topology(&self) -> Result<&Topology, ClusterError> {
        Ok(self.netns_for(Capability::NodeAccess)?.topology())
    }

    /// What the report draws: nodes, pods and their interfaces.
    pub async fn snapshot(&self) -> crate::observe::Topology {
        match self {
            AnyCluster::Netns(c) => c.snapshot().await,
            AnyCluster::Kube(c) => c.snapshot().await,
        }
    }

    /// The node side of this cluster, if it offers NodeAccess: its network
    /// namespaces (netns), or the nodes' probe pods (kube).
    fn node_side(&self) -> Result<NodeSide<'_>, ClusterError> {
        match self {
            AnyCluster::Netns(c) => Ok(NodeSide::Netns(c)),
            AnyCluster::Kube(c) if c.offer().offers(Capability::NodeAccess) => {
                Ok(NodeSide::Kube(c))
            }
            AnyCluster::Kube(c) => Err(ClusterError::Unsupported {
                provider: c.provider().to_string(),
                capability: Capability::NodeAccess,
            }),
        }
    }

    /// A node's network namespace, to run node-side programs in (the netns
    /// cluster's nodes only).
    pub async fn node_namespace(&self, node: &str) -> Result<Ns, ClusterError> {
        self.netns_for(Capability::NodeAccess)?
            .node_netns(node)
            .await
            .ok_or_else(|| ClusterError::NoSuchNode(node.to_string()))
    }

    /// A pod's network namespace as the node sees it (the netns cluster only; see
    /// `pod_ip` for the portable form).
    pub async fn pod_namespace(&self, pod: &PodView) -> Result<Ns, ClusterError> {
        self.netns_for(Capability::NodeAccess)?
            .pod_netns(&pod.namespace, &pod.name)
            .await
            .ok_or_else(|| ClusterError::NoSuchPod(format!("{}/{}", pod.namespace, pod.name)))
    }

    /// Runs `ip <args>` on `node` and returns its stdout (NodeAccess): in the node's
    /// namespace, or through its probe pod with the node's own `ip`.
    pub async fn node_ip(&self, node: &str, args: &[&str]) -> Result<String, ClusterError> {
        match self.node_side()? {
            NodeSide::Netns(netns) => {
                let ns = self.node_namespace(node).await?;
                netns
                    .ip(&ns, args)
                    .await
                    .map_err(|e| node_error(node, "ip", e))
            }
            NodeSide::Kube(c) => {
                let argv: Vec<&str> = std::iter::once("ip").chain(args.iter().copied()).collect();
                c.node_output(node, &argv).await
            }
        }
    }

    /// `ip -j -d link show <name>` on `node`, the one link's JSON (NodeAccess).
    pub async fn node_link(&self, node: &str, name: &str) -> Result<Value, ClusterError> {
        let out = self
            .node_ip(node, &["-j", "-d", "link", "show", name])
            .await?;
        let v: Value = serde_json::from_str(&out).map_err(|e| node_error(node, "ip -j link", e))?;
        v.get(0)
            .cloned()
            .ok_or_else(|| node_error(node, "ip -j link", format!("no link {name}")))
    }

    /// Runs `ip <args>` in a pod's network namespace as its node sees it, with the
    /// node's iproute2 (NodeAccess): the netns cluster's pod namespace, or on a real
    /// cluster the pod's sandbox entered from the node's probe pod.
    pub async fn pod_ip(&self, pod: &PodView, args: &[&str]) -> Result<String, ClusterError> {
        match self.node_side()? {
            NodeSide::Netns(netns) => {
                let ns = self.pod_namespace(pod).await?;
                netns
                    .ip(&ns, args)
                    .await
                    .map_err(|e| node_error(&pod.node, "ip", e))
            }
            NodeSide::Kube(c) => c.pod_ip(pod, args).await,
        }
    }

    /// `ip -j -d link show <ifname>` of the pod: run in the pod where it has
    /// iproute2 (the netns cluster's pods, or any pod without NodeAccess), else from
    /// its node (a real cluster's busybox pods have no `ip -j`).
    pub async fn pod_link(&self, pod: &PodView, ifname: &str) -> Result<Value, ProbeError> {
        let Ok(NodeSide::Kube(_)) = self.node_side() else {
            return crate::probe::pod::pod_link(self, pod, ifname).await;
        };
        let args = ["-j", "-d", "link", "show", ifname];
        let out = self.pod_ip(pod, &args).await?;
        crate::probe::ip::links(&out)
            .map_err(|source| ProbeError::Parse {
                command: format!("ip {} (from node {})", args.join(" "), pod.node),
                pod: pod.name.clone(),
                source,
            })?
            .into_iter()
            .next()
            .ok_or_else(|| ProbeError::NoLink {
                ifname: ifname.to_string(),
                pod: pod.name.clone(),
            })
    }

    /// The pod's device IDs per resource, as allocated at admission (NodeAccess):
    /// the netns kubelet's record, or the real kubelet's checkpoint on the node.
    pub async fn pod_devices(
        &self,
        pod: &PodView,
    ) -> Result<BTreeMap<String, Vec<String>>, ClusterError> {
        match self.node_side()? {
            NodeSide::Netns(_) => Ok(pod.devices.clone()),
            NodeSide::Kube(c) => c.pod_devices(pod).await,
        }
    }

    /// Runs `ip <args>` in a namespace of this cluster (the netns cluster only).
    pub async fn ns_ip(&self, ns: &Ns, args: &[&str]) -> Result<String, ClusterError> {
        self.netns_for(Capability::NodeAccess)?
            .ip(ns, args)
            .await
            .map_err(|e| node_error(&ns.name, "ip", e))
    }

    /// An extra namespace on the cluster's LAN side, removed with the cluster (Dhcp:
    /// the seed's manual macvlan lab).
    pub async fn extra_namespace(&self, name: &str) -> Result<Ns, ClusterError> {
        self.netns_for(Capability::Dhcp)?
            .extra_netns(name)
            .await
            .map_err(|e| node_error(name, "creating a namespace", e))
    }

    /// The ports of OVS bridge `bridge` on `node` (Ovs): on a real cluster from the
    /// node's Open vSwitch pod (the openvswitch component).
    pub async fn ovs_ports(&self, node: &str, bridge: &str) -> Result<Vec<String>, ClusterError> {
        match self {
            AnyCluster::Netns(c) => c
                .ovs_ports(node, bridge)
                .await
                .map_err(|e| node_error(node, "ovs-vsctl list-ports", e)),
            AnyCluster::Kube(c) => super::kube::openvswitch::ports(c, node, bridge).await,
        }
    }

    /// Why the device plugin did not come up, if it did not (DevicePluginConfig).
    pub async fn device_plugin_failure(&self) -> Result<Option<String>, ClusterError> {
        Ok(self
            .netns_for(Capability::DevicePluginConfig)?
            .device_plugin_failure()
            .await)
    }

    /// Restarts the kubelet's device manager on `node` (NodeFaults).
    pub async fn restart_kubelet(&self, node: &str) -> Result<(), ClusterError> {
        self.netns_for(Capability::NodeFaults)?
            .restart_kubelet(node)
            .await
            .map_err(|e| node_error(node, "restarting the kubelet", e))
    }

    /// Takes `node`'s uplink away (deleted) (NodeFaults).
    pub async fn unplug_uplink(&self, node: &str) -> Result<(), ClusterError> {
        self.netns_for(Capability::NodeFaults)?
            .unplug_uplink(node)
            .await
            .map_err(|e| node_error(node, "unplugging the uplink", e))
    }

    /// Gives `node` its uplink back (NodeFaults).
    pub async fn plug_uplink(&self, node: &str) -> Result<(), ClusterError> {
        self.netns_for(Capability::NodeFaults)?
            .plug_uplink(node)
            .await
            .map_err(|e| node_error(node, "plugging the uplink", e))
    }

    /// Deletes a pod's network namespace behind the runtime's back (NodeFaults).
    pub async fn lose_pod_netns(&self, pod: &PodView) -> Result<(), ClusterError> {
        self.netns_for(Capability::NodeFaults)?
            .lose_pod_netns(&pod.namespace, &pod.name)
            .await
            .map_err(|e| node_error(&pod.node, "deleting the pod's netns", e))
    }

    /// Kills the device plugin on `node` and has it back: on the netns cluster a
    /// SIGKILL and a restart with the same environment (waiting until `resource` is
    /// registered again); on a real cluster its pod deleted with no grace period and
    /// the DaemonSet's new one Running (DevicePluginRestart).
    pub async fn restart_device_plugin(
        &self,
        node: &str,
        resource: &str,
    ) -> Result<(), ClusterError> {
        match self {
            AnyCluster::Netns(c) => {
                c.kill_device_plugin(node)
                    .await
                    .map_err(|e| node_error(node, "killing the device plugin", e))?;
                c.start_device_plugin_anew(node, resource)
                    .await
                    .map_err(|e| node_error(node, "starting the device plugin", e))
            }
            AnyCluster::Kube(c) => c.restart_device_plugin(node).await,
        }
    }

    /// Starts a VM (Vm): QEMU in a virt-launcher pod on the netns cluster, KubeVirt
    /// on a real one; the scenarios talk to either through `RunningVm`.
    pub async fn start_vm(
        &self,
        vm: &crate::vm::kubevirt::VirtualMachine,
        node: Option<&str>,
        nads: &[crate::objects::NetworkAttachmentDefinition],
        opts: &crate::vm::VmOptions,
    ) -> Result<crate::vm::RunningVm, crate::vm::VmError> {
        crate::vm::start(self, vm, node, nads, opts).await
    }

    /// The addresses host-local has leased on `node`'s pod network (eth0), read
    /// from the node's CNI state (NodeAccess).
    pub async fn pod_network_leases(&self, node: &str) -> Result<Vec<String>, ClusterError> {
        let netns = match self.node_side()? {
            NodeSide::Netns(netns) => netns,
            NodeSide::Kube(c) => return c.pod_network_leases(node).await,
        };
        let dir = netns
            .run_dir
            .join("nodes")
            .join(node)
            .join("cni/networks")
            .join(super::netns::pod::POD_NETWORK);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // No lease was ever taken on this node.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(node_error(node, &format!("reading {}", dir.display()), e)),
        };
        // host-local keeps one file per leased address, named by it, next to its
        // `lock` and `last_reserved_ip.*` files.
        Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
            .collect())
    }

    /// The ports pods hold on OVS bridge `bridge` of `node`: every port but the
    /// node's own trunk into the LAN (Ovs).
    pub async fn ovs_pod_ports(
        &self,
        node: &str,
        bridge: &str,
    ) -> Result<Vec<String>, ClusterError> {
        let ports = self.ovs_ports(node, bridge).await?;
        Ok(ports
            .into_iter()
            .filter(|p| p != super::netns::ovs::UPLINK)
            .collect())
    }

    /// Starts capturing the frames matching `filter` on `pod`'s `iface` as the node
    /// sees them; returns once the capture listens (FrameCapture).
    pub async fn start_capture(
        &self,
        pod: &PodView,
        iface: &str,
        filter: &str,
    ) -> Result<FrameCapture, ClusterError> {
        match self {
            AnyCluster::Netns(_) => {
                let ns = self.pod_namespace(pod).await?;
                FrameCapture::local(&pod.node, &ns, iface, filter).await
            }
            AnyCluster::Kube(c) => Ok(FrameCapture::Kube(
                super::kube::openvswitch::Capture::start(c, pod, iface, filter).await?,
            )),
        }
    }

    /// Whether the node still holds a network namespace for pod `namespace/name`
    /// (NodeAccess): a pod whose start failed must leave none behind. On a real
    /// cluster: a ready sandbox that `crictl` lists on the node.
    pub async fn pod_sandbox_exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ClusterError> {
        match self.node_side()? {
            NodeSide::Netns(netns) => Ok(netns.pod_netns(namespace, name).await.is_some()),
            NodeSide::Kube(c) => c.pod_sandbox_exists(namespace, name).await,
        }
    }
}

/// Where node-side reads go.
enum NodeSide<'a> {
    Netns(&'a NetnsCluster),
    Kube(&'a KubeCluster),
}

fn node_error(node: &str, what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Node {
        node: node.to_string(),
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Calls the same method on whichever provider it is.
macro_rules! each {
    ($self:ident, $c:ident => $e:expr) => {
        match $self {
            AnyCluster::Netns($c) => $e,
            AnyCluster::Kube($c) => $e,
        }
    };
}

impl Cluster for AnyCluster {
    fn provider(&self) -> &str {
        each!(self, c => c.provider())
    }

    fn nodes(&self) -> Vec<String> {
        each!(self, c => c.nodes())
    }

    async fn apply(&self, objects: Vec<Object>) -> Result<(), ClusterError> {
        each!(self, c => c.apply(objects).await)
    }

    async fn create_pod(&self, pod: Pod) -> Result<PodView, ClusterError> {
        each!(self, c => c.create_pod(pod).await)
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        each!(self, c => c.delete_pod(namespace, name).await)
    }

    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        argv: &[&str],
    ) -> Result<ExecOutput, ClusterError> {
        each!(self, c => c.exec(namespace, pod, argv).await)
    }

    async fn node_resources(&self, node: &str) -> Result<NodeResources, ClusterError> {
        each!(self, c => c.node_resources(node).await)
    }

    async fn diagnostics(&self) -> String {
        each!(self, c => c.diagnostics().await)
    }
}
