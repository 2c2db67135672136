//! Abilities: what a provider's cluster can do beyond the `Cluster` contract, one
//! trait each. A cluster that has an ability returns it from its accessor
//! (`ProviderCluster::node_access()` …); one that lacks it returns `None`. So having
//! an ability means having its methods, and what a cluster offers cannot drift from
//! what it can do (`AnyCluster::offers` is `is_some()`).
//!
//! The traits are object-safe (boxed futures): a scenario holds `&dyn NodeAccess`,
//! never the provider behind it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use super::topology::Topology;
use super::{ClusterError, PodView};
use crate::lab::Ns;

/// A future borrowing the ability (and its arguments) for `'a`.
pub type Fut<'a, T> = BoxFuture<'a, Result<T, ClusterError>>;

/// Read the nodes themselves: their links, the pods' links as the node sees them,
/// device IDs from admission, the pod network's leases, the pods' sandboxes.
pub trait NodeAccess: Send + Sync {
    /// Runs `ip <args>` on `node` with the node's own iproute2; its stdout.
    fn node_ip<'a>(&'a self, node: &'a str, args: &'a [&'a str]) -> Fut<'a, String>;
    /// Runs `ip <args>` in `pod`'s network namespace as its node sees it.
    fn pod_ip<'a>(&'a self, pod: &'a PodView, args: &'a [&'a str]) -> Fut<'a, String>;
    /// The pod's device IDs per resource, as allocated at admission.
    fn pod_devices<'a>(&'a self, pod: &'a PodView) -> Fut<'a, BTreeMap<String, Vec<String>>>;
    /// The addresses host-local has leased on `node`'s pod network (eth0).
    fn pod_network_leases<'a>(&'a self, node: &'a str) -> Fut<'a, Vec<String>>;
    /// Whether the node still holds a sandbox (network namespace) for the pod.
    fn pod_sandbox_exists<'a>(&'a self, namespace: &'a str, name: &'a str) -> Fut<'a, bool>;
    /// Whether a pod's links are read from its node rather than in the pod (a real
    /// cluster's busybox pods have no `ip -j`; the netns cluster's pods use ours).
    fn reads_pod_links_from_node(&self) -> bool;
}

/// Nodes secnet made on this machine from a topology: the topology itself (uplinks,
/// addresses, the LAN's gateway and DHCP range) and the nodes' and pods' network
/// namespaces, to run programs of this machine in.
pub trait LocalTopology: Send + Sync {
    fn topology(&self) -> &Topology;
    /// A node's network namespace.
    fn node_namespace<'a>(&'a self, node: &'a str) -> Fut<'a, Ns>;
    /// A pod's network namespace as the node sees it.
    fn pod_namespace<'a>(&'a self, pod: &'a PodView) -> Fut<'a, Ns>;
    /// Runs `ip <args>` in one of this cluster's namespaces; its stdout.
    fn ns_ip<'a>(&'a self, ns: &'a Ns, args: &'a [&'a str]) -> Fut<'a, String>;
}

/// Break a node on purpose.
pub trait NodeFaults: Send + Sync {
    /// Restarts the kubelet's device manager on `node`.
    fn restart_kubelet<'a>(&'a self, node: &'a str) -> Fut<'a, ()>;
    /// Takes `node`'s uplink away (deleted).
    fn unplug_uplink<'a>(&'a self, node: &'a str) -> Fut<'a, ()>;
    /// Gives `node` its uplink back.
    fn plug_uplink<'a>(&'a self, node: &'a str) -> Fut<'a, ()>;
    /// Deletes a pod's network namespace behind the runtime's back.
    fn lose_pod_netns<'a>(&'a self, pod: &'a PodView) -> Fut<'a, ()>;
    /// Everything the device plugin on `node` has logged so far: where an operator
    /// learns why a fault took the node's devices away.
    fn device_plugin_log<'a>(&'a self, node: &'a str) -> Fut<'a, String>;
}

/// Break a node's multus: its daemon restarted under a pod's ADD, the node's CNI
/// config dir rewritten (where multus finds the primary network).
pub trait MultusFaults: Send + Sync {
    /// Restarts multus on `node` as soon as a pod's ADD is in flight there (waiting
    /// for one up to `wait_for_add`), down for `down_for`; its config is read anew.
    fn restart_multus<'a>(
        &'a self,
        node: &'a str,
        wait_for_add: Duration,
        down_for: Duration,
    ) -> Fut<'a, ()>;
    /// Writes `text` as the file `file` of `node`'s CNI config dir (replacing it).
    fn write_cni_config<'a>(&'a self, node: &'a str, file: &'a str, text: &'a str) -> Fut<'a, ()>;
    /// The text of the file `file` of `node`'s CNI config dir.
    fn read_cni_config<'a>(&'a self, node: &'a str, file: &'a str) -> Fut<'a, String>;
    /// The file of `node`'s CNI config dir multus takes the primary network from.
    fn primary_cni_config<'a>(&'a self, node: &'a str) -> Fut<'a, String>;
}

/// Kill the device plugin on a node and have it back.
pub trait DevicePluginRestart: Send + Sync {
    /// Kills the device plugin on `node` and has it started again (registering
    /// `resource` anew).
    fn restart_device_plugin<'a>(&'a self, node: &'a str, resource: &'a str) -> Fut<'a, ()>;
    /// How long the restarted plugin may take to advertise its devices again.
    fn back_within(&self) -> Duration;
}

/// Deploy the device plugin with a config of the scenario's.
pub trait DevicePluginConfig: Send + Sync {
    /// Why the device plugin did not come up, if it did not.
    fn device_plugin_failure(&self) -> Fut<'_, Option<String>>;
    /// The device plugin's process on `node` and where its sockets are, as seen
    /// from this machine (to measure it and to talk to it as the kubelet does).
    fn device_plugin_process<'a>(&'a self, node: &'a str) -> Fut<'a, DevicePluginProcess>;
}

/// A node's running device plugin.
#[derive(Debug, Clone)]
pub struct DevicePluginProcess {
    pub(crate) pid: u32,
    /// The node's `/var/lib/kubelet/device-plugins`, a path on this machine.
    pub(crate) socket_dir: std::path::PathBuf,
}

/// Open vSwitch on every node, one bridge trunked into the LAN.
pub trait Ovs: Send + Sync {
    /// The ports of OVS bridge `bridge` on `node`.
    fn ovs_ports<'a>(&'a self, node: &'a str, bridge: &'a str) -> Fut<'a, Vec<String>>;
    /// The node's own trunk port into the LAN (not a pod's).
    fn uplink_port(&self) -> &str;
}

/// Capture the frames on a pod's interface as the node sees them.
pub trait FrameCapture: Send + Sync {
    /// Starts capturing the frames matching `filter` on `pod`'s `iface`; returns
    /// once the capture listens.
    fn start_capture<'a>(
        &'a self,
        pod: &'a PodView,
        iface: &'a str,
        filter: &'a str,
    ) -> Fut<'a, Box<dyn RunningCapture<'a> + 'a>>;
}

/// A capture started by `FrameCapture::start_capture`, living as long as the
/// cluster it runs on.
pub trait RunningCapture<'a>: Send {
    /// Stops the capture; the lines it printed (`tcpdump -e`).
    fn stop(self: Box<Self>) -> Fut<'a, String>;
}

/// Extra network namespaces on the cluster's LAN side, removed with the cluster
/// (the seed's manual macvlan lab with a DHCP server on the LAN).
pub trait LanNamespaces: Send + Sync {
    fn extra_namespace<'a>(&'a self, name: &'a str) -> Fut<'a, Ns>;
}

/// Whereabouts (cluster-wide IPAM) on a cluster with an API server: what its
/// IPPools hold, and pods deleted the way a node's pods vanish.
pub trait Whereabouts: Send + Sync {
    /// Every address the cluster's IPPools hold, with whom it is held for.
    fn allocations(&self) -> Fut<'_, Vec<IpAllocation>>;
    /// Deletes a pod at once (no grace period, as `kubectl delete --force
    /// --grace-period=0`): its API object is gone before its node tears the
    /// sandbox down.
    fn force_delete_pod<'a>(&'a self, namespace: &'a str, name: &'a str) -> Fut<'a, ()>;
}

/// One address of an IPPool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpAllocation {
    /// The pool's range (`10.252.0.0/24`).
    pub(crate) pool: String,
    pub(crate) ip: std::net::IpAddr,
    /// `namespace/name` of the pod it is held for.
    pub(crate) pod: String,
    pub(crate) ifname: String,
}

/// `ClusterError::Node` for `what` failing on `node`.
pub fn node_error(node: &str, what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Node {
        node: node.to_string(),
        what: what.to_string(),
        message: e.to_string(),
    }
}
