//! A real cluster as a provider's cluster: its nodes' facts from the run's options,
//! and the abilities its offer names (node access through probe pods, the device
//! plugin restart, and what the run's component sets bring: Open vSwitch and frame
//! capture from the openvswitch pods, KubeVirt guests).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use super::KubeCluster;
use super::vms::KubevirtGuest;
use crate::cluster::ability::{
    DevicePluginRestart, FrameCapture, Fut, NodeAccess, Ovs, RunningCapture, Whereabouts,
};
use crate::cluster::any::{Ended, NodeFacts, OvsFacts, ProviderCluster, if_offered};
use crate::cluster::capability::{Capability, Offer};
use crate::cluster::kube::openvswitch;
use crate::cluster::{DynCluster, PodView};
use crate::objects::NetworkAttachmentDefinition;
use crate::vm::kubevirt::VirtualMachine;
use crate::vm::{GuestHost, Guests, RunningVm, VmError, VmOptions};

/// A real cluster pulls and schedules the DaemonSet's new pod before the plugin
/// advertises its devices again.
const PLUGIN_BACK_WITHIN: Duration = Duration::from_secs(120);

/// What a real cluster offers before the run's component sets: node access through
/// short-lived privileged probe pods (`kubectl debug node`'s way), and the device
/// plugin's pod deleted for the DaemonSet to make a new one.
pub fn base_offer(provider: &str) -> Offer {
    Offer::new(
        provider,
        false,
        [Capability::NodeAccess, Capability::DevicePluginRestart],
    )
}

impl KubeCluster {
    fn has(&self, cap: Capability) -> bool {
        self.offer().capabilities().contains(&cap)
    }
}

impl ProviderCluster for KubeCluster {
    fn node_facts(&self) -> Vec<NodeFacts> {
        let ovs = self.has(Capability::Ovs).then(|| OvsFacts {
            bridge: openvswitch::BRIDGE.into(),
            uplink: openvswitch::UPLINK.into(),
        });
        crate::cluster::Cluster::nodes(self)
            .into_iter()
            .map(|name| NodeFacts {
                name,
                lower_device: self.lower_device().to_string(),
                address: None,
                ovs: ovs.clone(),
            })
            .collect()
    }

    fn snapshot(&self) -> BoxFuture<'_, crate::observe::Topology> {
        Box::pin(KubeCluster::snapshot(self))
    }

    /// Deletes what the scenario made (its scope label) and waits until its pods
    /// are gone.
    fn teardown(self: Box<Self>) -> BoxFuture<'static, Ended> {
        Box::pin(async move {
            let mut errors = KubeCluster::teardown(&self).await.errors;
            if let Err(e) = self.wait_pods_gone().await {
                errors.push(e.to_string());
            }
            Ended { errors }
        })
    }

    fn keep(self: Box<Self>) {
        // Everything carries the run's and the scope's labels; `secnet clean`
        // finds it.
    }

    fn node_access(&self) -> Option<&dyn NodeAccess> {
        if_offered(&self.offer(), Capability::NodeAccess, self)
    }
    fn device_plugin_restart(&self) -> Option<&dyn DevicePluginRestart> {
        if_offered(&self.offer(), Capability::DevicePluginRestart, self)
    }
    fn ovs(&self) -> Option<&dyn Ovs> {
        if_offered(&self.offer(), Capability::Ovs, self)
    }
    fn frame_capture(&self) -> Option<&dyn FrameCapture> {
        if_offered(&self.offer(), Capability::FrameCapture, self)
    }
    fn guests(&self) -> Option<&dyn Guests> {
        if_offered(&self.offer(), Capability::Vm, self)
    }
    fn whereabouts(&self) -> Option<&dyn Whereabouts> {
        if_offered(&self.offer(), Capability::Whereabouts, self)
    }
}

impl NodeAccess for KubeCluster {
    /// Through the node's probe pod, with the node's own `ip`.
    fn node_ip<'a>(&'a self, node: &'a str, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(async move {
            let argv: Vec<&str> = std::iter::once("ip").chain(args.iter().copied()).collect();
            self.node_output(node, &argv).await
        })
    }

    /// The pod's sandbox entered from the node's probe pod.
    fn pod_ip<'a>(&'a self, pod: &'a PodView, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(KubeCluster::pod_ip(self, pod, args))
    }

    /// From the real kubelet's checkpoint on the node.
    fn pod_devices<'a>(&'a self, pod: &'a PodView) -> Fut<'a, BTreeMap<String, Vec<String>>> {
        Box::pin(KubeCluster::pod_devices(self, pod))
    }

    fn pod_network_leases<'a>(&'a self, node: &'a str) -> Fut<'a, Vec<String>> {
        Box::pin(KubeCluster::pod_network_leases(self, node))
    }

    /// A ready sandbox that `crictl` lists on the node.
    fn pod_sandbox_exists<'a>(&'a self, namespace: &'a str, name: &'a str) -> Fut<'a, bool> {
        Box::pin(KubeCluster::pod_sandbox_exists(self, namespace, name))
    }

    fn reads_pod_links_from_node(&self) -> bool {
        true
    }
}

impl DevicePluginRestart for KubeCluster {
    /// Its pod deleted with no grace period and the DaemonSet's new one Running.
    fn restart_device_plugin<'a>(&'a self, node: &'a str, _resource: &'a str) -> Fut<'a, ()> {
        Box::pin(KubeCluster::restart_device_plugin(self, node))
    }

    fn back_within(&self) -> Duration {
        PLUGIN_BACK_WITHIN
    }
}

impl Ovs for KubeCluster {
    /// From the node's Open vSwitch pod (the openvswitch component), or the host's
    /// ovs-vsctl where Open vSwitch is preinstalled.
    fn ovs_ports<'a>(&'a self, node: &'a str, bridge: &'a str) -> Fut<'a, Vec<String>> {
        Box::pin(openvswitch::ports(self, node, bridge))
    }

    fn uplink_port(&self) -> &str {
        openvswitch::UPLINK
    }
}

impl FrameCapture for KubeCluster {
    /// tcpdump from the node's Open vSwitch pod.
    fn start_capture<'a>(
        &'a self,
        pod: &'a PodView,
        iface: &'a str,
        filter: &'a str,
    ) -> Fut<'a, Box<dyn RunningCapture<'a> + 'a>> {
        Box::pin(async move {
            let capture = openvswitch::Capture::start(self, pod, iface, filter).await?;
            Ok(Box::new(OnCluster {
                cluster: self,
                capture,
            }) as Box<dyn RunningCapture<'a> + 'a>)
        })
    }
}

/// A capture in an Open vSwitch pod, with the cluster that stops it.
struct OnCluster<'a> {
    cluster: &'a KubeCluster,
    capture: openvswitch::Capture,
}

impl<'a> RunningCapture<'a> for OnCluster<'a> {
    fn stop(self: Box<Self>) -> Fut<'a, String> {
        let OnCluster { cluster, capture } = *self;
        Box::pin(async move {
            // The last frames of the traffic are still on their way.
            tokio::time::sleep(Duration::from_millis(300)).await;
            capture.stop(cluster).await
        })
    }
}

impl Guests for KubeCluster {
    /// KubeVirt runs the VM; the guest's container image is pulled by the nodes.
    fn start_vm<'a>(
        &'a self,
        vm: &'a VirtualMachine,
        node: Option<&'a str>,
        _nads: &'a [NetworkAttachmentDefinition],
        opts: &'a VmOptions,
    ) -> BoxFuture<'a, Result<RunningVm, VmError>> {
        Box::pin(KubeCluster::start_vm(self, vm, node, opts))
    }

    fn boots_local_image(&self) -> bool {
        false
    }

    /// KubeVirt's VirtualMachineInstanceMigration.
    fn live_migration(&self) -> Option<&dyn crate::vm::migrate::LiveMigration> {
        if_offered(&self.offer(), Capability::LiveMigration, self)
    }

    /// KubeVirt's dynamic networks: the VirtualMachine patched.
    fn hotplug(&self) -> Option<&dyn crate::vm::hotplug::NicHotplug> {
        if_offered(&self.offer(), Capability::NicHotplug, self)
    }
}

impl GuestHost for KubevirtGuest {
    fn boot_failed(&mut self, transcript: String) -> BoxFuture<'_, (String, String)> {
        Box::pin(async move {
            let (state, logged) = self.failure_report().await;
            let stop = match KubevirtGuest::stop(self).await {
                Ok(()) => "the VM was deleted".to_string(),
                Err(e) => format!("deleting the VM failed too: {e}"),
            };
            let console = format!(
                "{}\n--- the serial console as virt-launcher logged it ---\n{logged}",
                transcript.trim_end()
            );
            (format!("{state}; {stop}"), console)
        })
    }

    fn stop<'a>(
        &'a mut self,
        _vm: &'a str,
        _pod: &'a PodView,
        _cluster: &'a dyn DynCluster,
    ) -> BoxFuture<'a, Result<(), VmError>> {
        Box::pin(KubevirtGuest::stop(self))
    }

    fn console(&self, transcript: String) -> String {
        transcript
    }
}
