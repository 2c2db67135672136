//! `AnyCluster`: one provider's cluster behind the `Cluster` contract, so that a
//! scenario is written once and runs on every provider that offers what it needs.
//! Beyond the contract a cluster has abilities (`cluster::ability`): a provider's
//! cluster returns those it has from `ProviderCluster`'s accessors. The convenience
//! methods here go through them; one a cluster lacks answers
//! `ClusterError::Unsupported` (the runner skips such scenarios before they start,
//! so this is a safety net). Nothing here knows which provider it is.

use std::collections::BTreeMap;

use futures::future::BoxFuture;

use super::ability::{
    DevicePluginConfig, DevicePluginRestart, FrameCapture, LanNamespaces, LocalTopology,
    MultusFaults, NodeAccess, NodeFaults, Ovs, RunningCapture, Whereabouts, node_error,
};
use super::capability::{Capability, Offer};
use super::topology::Topology;
use super::{Cluster, ClusterError, DynCluster, ExecOutput, NodeResources, PodView};
use crate::contract::probe::ProbeError;
use crate::lab::Ns;
use crate::objects::{Object, Pod};
use crate::observe::record;
use crate::probe::ip::LinkFacts;
use crate::vm::Guests;

/// What every node of a cluster is, as the provider knows it: the facts scenarios
/// configure their networks from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub(crate) name: String,
    /// The macvtap/macvlan lower device (the node's uplink into the LAN).
    pub(crate) lower_device: String,
    /// The node's own address on the LAN, where the provider knows it.
    pub(crate) address: Option<std::net::Ipv4Addr>,
    /// Open vSwitch on the node, where the cluster has it.
    pub(crate) ovs: Option<OvsFacts>,
}

/// A node's Open vSwitch: the bridge the OVS networks use and its trunk into the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvsFacts {
    pub(crate) bridge: String,
    pub(crate) uplink: String,
}

/// How a scenario's cluster ends.
#[derive(Debug, Default)]
pub struct Ended {
    /// What tearing it down failed to remove (empty when kept).
    pub(crate) errors: Vec<String>,
}

/// One provider's cluster, as one scenario uses it: the contract, the nodes' facts,
/// the report's picture, its end, and its abilities (`None`: it lacks the ability).
pub trait ProviderCluster: DynCluster {
    /// Every node's facts, in `nodes()` order.
    fn node_facts(&self) -> Vec<NodeFacts>;
    /// What the report draws: nodes, pods and their interfaces.
    fn snapshot(&self) -> BoxFuture<'_, crate::observe::Topology>;
    /// Removes what the scenario made on it.
    fn teardown(self: Box<Self>) -> BoxFuture<'static, Ended>;
    /// Leaves everything in place for inspection (`--keep` after a failure).
    fn keep(self: Box<Self>);

    fn node_access(&self) -> Option<&dyn NodeAccess> {
        None
    }
    fn local_topology(&self) -> Option<&dyn LocalTopology> {
        None
    }
    fn node_faults(&self) -> Option<&dyn NodeFaults> {
        None
    }
    fn multus_faults(&self) -> Option<&dyn MultusFaults> {
        None
    }
    fn device_plugin_restart(&self) -> Option<&dyn DevicePluginRestart> {
        None
    }
    fn device_plugin_config(&self) -> Option<&dyn DevicePluginConfig> {
        None
    }
    fn ovs(&self) -> Option<&dyn Ovs> {
        None
    }
    fn frame_capture(&self) -> Option<&dyn FrameCapture> {
        None
    }
    fn lan_namespaces(&self) -> Option<&dyn LanNamespaces> {
        None
    }
    fn guests(&self) -> Option<&dyn Guests> {
        None
    }
    fn whereabouts(&self) -> Option<&dyn Whereabouts> {
        None
    }
}

/// A scenario's cluster, whichever provider made it.
pub struct AnyCluster {
    inner: Box<dyn ProviderCluster>,
}

/// How a provider's accessor answers: `Some(ability)` exactly when the offer of the
/// run the cluster belongs to names `cap`. Each provider keeps one list (its `Offer`):
/// selection reads it before any cluster is up, and the accessors (so
/// `AnyCluster::offers`) are derived from it, so the two cannot drift.
pub fn if_offered<'a, A: ?Sized>(offer: &Offer, cap: Capability, ability: &'a A) -> Option<&'a A> {
    offer.capabilities().contains(&cap).then_some(ability)
}

/// Every capability that is a cluster's ability (answered by `AnyCluster::offers`).
pub const ABILITIES: [Capability; 10] = [
    Capability::NodeAccess,
    Capability::NodeFaults,
    Capability::MultusFaults,
    Capability::DevicePluginRestart,
    Capability::DevicePluginConfig,
    Capability::Ovs,
    Capability::FrameCapture,
    Capability::Dhcp,
    Capability::Vm,
    Capability::Whereabouts,
];

impl AnyCluster {
    pub fn new(cluster: Box<dyn ProviderCluster>) -> AnyCluster {
        AnyCluster { inner: cluster }
    }

    /// A cluster of a run that offers `offer`. Its abilities must be exactly those the
    /// offer names (a provider whose accessors and list disagree is a bug in the
    /// provider: it fails here, in every run and test, not as a scenario skipped or
    /// run for the wrong reason).
    pub fn offering(offer: &Offer, cluster: Box<dyn ProviderCluster>) -> AnyCluster {
        let any = AnyCluster::new(cluster);
        if let Some(cap) = any.disagrees_with(offer) {
            panic!(
                "provider {}: its offer {} {cap} but its cluster's accessor says otherwise: derive the accessor from the offer (cluster::any::if_offered)",
                any.inner.provider(),
                if offer.capabilities().contains(&cap) {
                    "names"
                } else {
                    "lacks"
                },
            );
        }
        any
    }

    /// The first ability on which this cluster and `offer` disagree.
    pub fn disagrees_with(&self, offer: &Offer) -> Option<Capability> {
        let named = offer.capabilities();
        ABILITIES
            .into_iter()
            .find(|cap| named.contains(cap) != self.offers(*cap))
    }

    /// Whether this cluster has the ability `cap` names. Programs and the plugins'
    /// direct execution are not abilities of a cluster (see `Offer`).
    pub fn offers(&self, cap: Capability) -> bool {
        let c = &self.inner;
        match cap {
            Capability::NodeAccess => c.node_access().is_some(),
            Capability::NodeFaults => c.node_faults().is_some(),
            Capability::MultusFaults => c.multus_faults().is_some(),
            Capability::DevicePluginRestart => c.device_plugin_restart().is_some(),
            Capability::DevicePluginConfig => c.device_plugin_config().is_some(),
            Capability::Ovs => c.ovs().is_some(),
            Capability::FrameCapture => c.frame_capture().is_some(),
            Capability::Dhcp => c.lan_namespaces().is_some(),
            Capability::Vm => c.guests().is_some(),
            Capability::LiveMigration => c.guests().is_some_and(|g| g.live_migration().is_some()),
            Capability::LanWatch => c
                .guests()
                .and_then(|g| g.live_migration())
                .is_some_and(|m| m.lan().is_some()),
            Capability::NicHotplug => c.guests().is_some_and(|g| g.hotplug().is_some()),
            Capability::Whereabouts => c.whereabouts().is_some(),
            Capability::PluginExec | Capability::Program(_) => false,
        }
    }

    /// Whether `cap` is a cluster's ability (and so answered by `offers`).
    pub fn is_ability(cap: Capability) -> bool {
        !matches!(cap, Capability::PluginExec | Capability::Program(_))
    }

    fn lacks(&self, capability: Capability) -> ClusterError {
        ClusterError::Unsupported {
            provider: self.inner.provider().to_string(),
            capability,
        }
    }

    pub fn node_access(&self) -> Result<&dyn NodeAccess, ClusterError> {
        self.inner
            .node_access()
            .ok_or_else(|| self.lacks(Capability::NodeAccess))
    }

    pub fn node_faults(&self) -> Result<&dyn NodeFaults, ClusterError> {
        self.inner
            .node_faults()
            .ok_or_else(|| self.lacks(Capability::NodeFaults))
    }

    pub fn multus_faults(&self) -> Result<&dyn MultusFaults, ClusterError> {
        self.inner
            .multus_faults()
            .ok_or_else(|| self.lacks(Capability::MultusFaults))
    }

    pub fn ovs(&self) -> Result<&dyn Ovs, ClusterError> {
        self.inner.ovs().ok_or_else(|| self.lacks(Capability::Ovs))
    }

    pub fn whereabouts(&self) -> Result<&dyn Whereabouts, ClusterError> {
        self.inner
            .whereabouts()
            .ok_or_else(|| self.lacks(Capability::Whereabouts))
    }

    pub fn guests(&self) -> Result<&dyn Guests, ClusterError> {
        self.inner
            .guests()
            .ok_or_else(|| self.lacks(Capability::Vm))
    }

    /// secnet's own nodes on this machine, where the cluster is made of them.
    pub fn local_topology(&self) -> Option<&dyn LocalTopology> {
        self.inner.local_topology()
    }

    /// Every node's facts.
    pub fn node_facts(&self) -> Vec<NodeFacts> {
        self.inner.node_facts()
    }

    /// The nodes' lower device (macvtap/macvlan master).
    pub fn lower_device(&self) -> String {
        self.inner
            .node_facts()
            .into_iter()
            .next()
            .map(|n| n.lower_device)
            .unwrap_or_default()
    }

    /// The topology secnet made the nodes from (LocalTopology).
    pub fn topology(&self) -> Result<&Topology, ClusterError> {
        Ok(self.local()?.topology())
    }

    fn local(&self) -> Result<&dyn LocalTopology, ClusterError> {
        self.inner
            .local_topology()
            .ok_or_else(|| ClusterError::NotLocal {
                provider: self.inner.provider().to_string(),
            })
    }

    /// What the report draws: nodes, pods and their interfaces.
    pub async fn snapshot(&self) -> crate::observe::Topology {
        self.inner.snapshot().await
    }

    /// Removes what the scenario made, or keeps it (`keep`).
    pub async fn end(self, keep: bool) -> Ended {
        if keep {
            self.inner.keep();
            return Ended::default();
        }
        self.inner.teardown().await
    }

    /// A node's network namespace (LocalTopology).
    pub async fn node_namespace(&self, node: &str) -> Result<Ns, ClusterError> {
        self.local()?.node_namespace(node).await
    }

    /// A pod's network namespace as the node sees it (LocalTopology; see `pod_ip`
    /// for the portable form).
    pub async fn pod_namespace(&self, pod: &PodView) -> Result<Ns, ClusterError> {
        self.local()?.pod_namespace(pod).await
    }

    /// Runs `ip <args>` in a namespace of this cluster (LocalTopology).
    pub async fn ns_ip(&self, ns: &Ns, args: &[&str]) -> Result<String, ClusterError> {
        self.local()?.ns_ip(ns, args).await
    }

    /// Runs `ip <args>` on `node` and returns its stdout (NodeAccess).
    pub async fn node_ip(&self, node: &str, args: &[&str]) -> Result<String, ClusterError> {
        self.node_access()?.node_ip(node, args).await
    }

    /// `ip -j -d link show <name>` on `node`, the one link (NodeAccess).
    pub async fn node_link(&self, node: &str, name: &str) -> Result<LinkFacts, ClusterError> {
        let out = self
            .node_ip(node, &["-j", "-d", "link", "show", name])
            .await?;
        let links = crate::probe::ip::links(&out).map_err(|e| node_error(node, "ip -j link", e))?;
        links
            .into_iter()
            .next()
            .ok_or_else(|| node_error(node, "ip -j link", format!("no link {name}")))
    }

    /// Runs `ip <args>` in a pod's network namespace as its node sees it, with the
    /// node's iproute2 (NodeAccess).
    pub async fn pod_ip(&self, pod: &PodView, args: &[&str]) -> Result<String, ClusterError> {
        self.node_access()?.pod_ip(pod, args).await
    }

    /// `ip -j -d link show <ifname>` of the pod: run in the pod where it has
    /// iproute2, else from its node (a real cluster's busybox pods have no `ip -j`).
    pub async fn pod_link(&self, pod: &PodView, ifname: &str) -> Result<LinkFacts, ProbeError> {
        let from_node = self
            .inner
            .node_access()
            .filter(|n| n.reads_pod_links_from_node());
        let Some(node) = from_node else {
            return crate::contract::probe::pod_link(self, pod, ifname).await;
        };
        let args = ["-j", "-d", "link", "show", ifname];
        let out = node.pod_ip(pod, &args).await?;
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

    /// The pod's device IDs per resource, as allocated at admission (NodeAccess).
    pub async fn pod_devices(
        &self,
        pod: &PodView,
    ) -> Result<BTreeMap<String, Vec<String>>, ClusterError> {
        self.node_access()?.pod_devices(pod).await
    }

    /// An extra namespace on the cluster's LAN side, removed with the cluster (Dhcp).
    pub async fn extra_namespace(&self, name: &str) -> Result<Ns, ClusterError> {
        self.inner
            .lan_namespaces()
            .ok_or_else(|| self.lacks(Capability::Dhcp))?
            .extra_namespace(name)
            .await
    }

    /// The ports of OVS bridge `bridge` on `node` (Ovs).
    pub async fn ovs_ports(&self, node: &str, bridge: &str) -> Result<Vec<String>, ClusterError> {
        self.ovs()?.ovs_ports(node, bridge).await
    }

    /// The ports pods hold on OVS bridge `bridge` of `node`: every port but the
    /// node's own trunk into the LAN (Ovs).
    pub async fn ovs_pod_ports(
        &self,
        node: &str,
        bridge: &str,
    ) -> Result<Vec<String>, ClusterError> {
        let ovs = self.ovs()?;
        let ports = ovs.ovs_ports(node, bridge).await?;
        Ok(ports
            .into_iter()
            .filter(|p| p != ovs.uplink_port())
            .collect())
    }

    /// Why the device plugin did not come up, if it did not (DevicePluginConfig).
    pub async fn device_plugin_failure(&self) -> Result<Option<String>, ClusterError> {
        self.inner
            .device_plugin_config()
            .ok_or_else(|| self.lacks(Capability::DevicePluginConfig))?
            .device_plugin_failure()
            .await
    }

    /// The device plugin's process on `node` (DevicePluginConfig).
    pub async fn device_plugin_process(
        &self,
        node: &str,
    ) -> Result<super::ability::DevicePluginProcess, ClusterError> {
        self.inner
            .device_plugin_config()
            .ok_or_else(|| self.lacks(Capability::DevicePluginConfig))?
            .device_plugin_process(node)
            .await
    }

    /// Restarts the kubelet's device manager on `node` (NodeFaults).
    pub async fn restart_kubelet(&self, node: &str) -> Result<(), ClusterError> {
        self.node_faults()?.restart_kubelet(node).await
    }

    /// Takes `node`'s uplink away (deleted) (NodeFaults).
    pub async fn unplug_uplink(&self, node: &str) -> Result<(), ClusterError> {
        self.node_faults()?.unplug_uplink(node).await
    }

    /// Gives `node` its uplink back (NodeFaults).
    pub async fn plug_uplink(&self, node: &str) -> Result<(), ClusterError> {
        self.node_faults()?.plug_uplink(node).await
    }

    /// Deletes a pod's network namespace behind the runtime's back (NodeFaults).
    pub async fn lose_pod_netns(&self, pod: &PodView) -> Result<(), ClusterError> {
        self.node_faults()?.lose_pod_netns(pod).await
    }

    /// What the device plugin on `node` has logged so far (NodeFaults).
    pub async fn device_plugin_log(&self, node: &str) -> Result<String, ClusterError> {
        self.node_faults()?.device_plugin_log(node).await
    }

    /// The device plugin restart (DevicePluginRestart).
    pub fn device_plugin_restart(&self) -> Result<&dyn DevicePluginRestart, ClusterError> {
        self.inner
            .device_plugin_restart()
            .ok_or_else(|| self.lacks(Capability::DevicePluginRestart))
    }

    /// Kills the device plugin on `node` and has it back, registering `resource`
    /// again (DevicePluginRestart).
    pub async fn restart_device_plugin(
        &self,
        node: &str,
        resource: &str,
    ) -> Result<(), ClusterError> {
        self.device_plugin_restart()?
            .restart_device_plugin(node, resource)
            .await
    }

    /// Starts a VM (Vm); the scenarios talk to it through `RunningVm`.
    pub async fn start_vm(
        &self,
        vm: &crate::vm::kubevirt::VirtualMachine,
        node: Option<&str>,
        nads: &[crate::objects::NetworkAttachmentDefinition],
        opts: &crate::vm::VmOptions,
    ) -> Result<crate::vm::RunningVm, crate::vm::VmError> {
        let guests = self
            .guests()
            .map_err(|source| crate::vm::VmError::LauncherPod {
                vm: vm.name.clone(),
                source,
            })?;
        guests.start_vm(vm, node, nads, opts).await
    }

    /// The addresses host-local has leased on `node`'s pod network (NodeAccess).
    pub async fn pod_network_leases(&self, node: &str) -> Result<Vec<String>, ClusterError> {
        self.node_access()?.pod_network_leases(node).await
    }

    /// Starts capturing the frames matching `filter` on `pod`'s `iface` as the node
    /// sees them; returns once the capture listens (FrameCapture).
    pub async fn start_capture<'a>(
        &'a self,
        pod: &'a PodView,
        iface: &'a str,
        filter: &'a str,
    ) -> Result<Box<dyn RunningCapture<'a> + 'a>, ClusterError> {
        self.inner
            .frame_capture()
            .ok_or_else(|| self.lacks(Capability::FrameCapture))?
            .start_capture(pod, iface, filter)
            .await
    }

    /// Whether the node still holds a network namespace for pod `namespace/name`
    /// (NodeAccess): a pod whose start failed must leave none behind.
    pub async fn pod_sandbox_exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ClusterError> {
        self.node_access()?
            .pod_sandbox_exists(namespace, name)
            .await
    }
}

impl Cluster for AnyCluster {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn nodes(&self) -> Vec<String> {
        self.inner.nodes()
    }

    async fn apply(&self, objects: Vec<Object>) -> Result<(), ClusterError> {
        self.inner.apply(objects).await
    }

    async fn create_pod(&self, pod: Pod) -> Result<PodView, ClusterError> {
        let (namespace, name) = (pod.metadata.namespace.clone(), pod.metadata.name.clone());
        let mut created = self.inner.create_pod(pod).await;
        // `secnet compare --a-cluster/--b-cluster` compares what each cluster handed out;
        // a real cluster's device IDs come from its kubelet's checkpoint.
        if record::recording()
            && let Ok(view) = &mut created
            && view.devices.is_empty()
            && let Ok(access) = self.node_access()
            && let Ok(devices) = access.pod_devices(view).await
        {
            view.devices = devices;
        }
        let handed_out = created.as_ref().ok().map(|v| record::PodHandedOut {
            namespace: v.namespace.clone(),
            node: v.node.clone(),
            network_status: v
                .annotations
                .get(crate::multus::NETWORK_STATUS_ANNOTATION)
                .cloned(),
            devices: v.devices.clone(),
        });
        record::pod_created(&namespace, &name, handed_out);
        created
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        self.inner.delete_pod(namespace, name).await
    }

    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        argv: &[&str],
    ) -> Result<ExecOutput, ClusterError> {
        self.inner.exec(namespace, pod, argv).await
    }

    async fn node_resources(&self, node: &str) -> Result<NodeResources, ClusterError> {
        let read = self.inner.node_resources(node).await;
        if let Ok(r) = &read {
            record::node_resources(
                node,
                record::ResourcesObs {
                    node: node.into(),
                    capacity: r.capacity.clone(),
                    allocatable: r.allocatable.clone(),
                    allocated: r.allocated.clone(),
                },
            );
        }
        read
    }

    async fn diagnostics(&self) -> String {
        self.inner.diagnostics().await
    }

    async fn live_pods(&self) -> Result<Vec<PodView>, ClusterError> {
        self.inner.live_pods().await
    }
}
