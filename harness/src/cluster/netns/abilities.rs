//! The netns cluster as a provider's cluster: its nodes' facts from the topology,
//! and every ability (secnet made the nodes, so it can read, break and extend them).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{NetnsCluster, capture, ovs};
use crate::cluster::ability::{
    DevicePluginConfig, DevicePluginRestart, FrameCapture, Fut, LanNamespaces, LocalTopology,
    MultusFaults, NodeAccess, NodeFaults, Ovs, RunningCapture, node_error,
};
use crate::cluster::any::{Ended, NodeFacts, OvsFacts, ProviderCluster, if_offered};
use crate::cluster::capability::{Capability, Offer};
use crate::cluster::topology::Topology;
use crate::cluster::{ClusterError, PodView};
use crate::lab::Ns;
use crate::vm::Guests;

/// How soon the device plugin, started again at once, advertises its devices.
const PLUGIN_BACK_WITHIN: Duration = Duration::from_secs(5);

/// What a netns cluster offers (programs aside: they are looked up on this machine).
pub fn offer() -> Offer {
    use Capability::*;
    Offer::new(
        "netns",
        true,
        [
            NodeAccess,
            NodeFaults,
            MultusFaults,
            DevicePluginRestart,
            DevicePluginConfig,
            Ovs,
            FrameCapture,
            Dhcp,
            Vm,
            LiveMigration,
            LanWatch,
            NicHotplug,
            PluginExec,
        ],
    )
}

impl ProviderCluster for NetnsCluster {
    fn node_facts(&self) -> Vec<NodeFacts> {
        self.opts
            .topology
            .nodes
            .iter()
            .map(|n| NodeFacts {
                name: n.name.clone(),
                lower_device: n.uplink.clone(),
                address: Some(n.address),
                ovs: self.opts.ovs.then(|| OvsFacts {
                    bridge: ovs::BRIDGE.into(),
                    uplink: ovs::UPLINK.into(),
                }),
            })
            .collect()
    }

    fn snapshot(&self) -> BoxFuture<'_, crate::observe::Topology> {
        Box::pin(NetnsCluster::snapshot(self))
    }

    fn teardown(self: Box<Self>) -> BoxFuture<'static, Ended> {
        Box::pin(async move {
            Ended {
                errors: NetnsCluster::teardown(*self).await,
            }
        })
    }

    fn keep(self: Box<Self>) {
        // The namespaces, processes and files stay for inspection;
        // `secnet clean --run` removes them.
        std::mem::forget(self);
    }

    // secnet made the nodes: it has every ability, as `offer()` lists them.
    fn node_access(&self) -> Option<&dyn NodeAccess> {
        if_offered(&offer(), Capability::NodeAccess, self)
    }
    fn local_topology(&self) -> Option<&dyn LocalTopology> {
        Some(self)
    }
    fn node_faults(&self) -> Option<&dyn NodeFaults> {
        if_offered(&offer(), Capability::NodeFaults, self)
    }
    fn multus_faults(&self) -> Option<&dyn MultusFaults> {
        if_offered(&offer(), Capability::MultusFaults, self)
    }
    fn device_plugin_restart(&self) -> Option<&dyn DevicePluginRestart> {
        if_offered(&offer(), Capability::DevicePluginRestart, self)
    }
    fn device_plugin_config(&self) -> Option<&dyn DevicePluginConfig> {
        if_offered(&offer(), Capability::DevicePluginConfig, self)
    }
    fn ovs(&self) -> Option<&dyn Ovs> {
        if_offered(&offer(), Capability::Ovs, self)
    }
    fn frame_capture(&self) -> Option<&dyn FrameCapture> {
        if_offered(&offer(), Capability::FrameCapture, self)
    }
    fn lan_namespaces(&self) -> Option<&dyn LanNamespaces> {
        if_offered(&offer(), Capability::Dhcp, self)
    }
    fn guests(&self) -> Option<&dyn Guests> {
        if_offered(&offer(), Capability::Vm, self)
    }
}

impl NetnsCluster {
    async fn node_ns(&self, node: &str) -> Result<Ns, ClusterError> {
        self.node_netns(node)
            .await
            .ok_or_else(|| ClusterError::NoSuchNode(node.to_string()))
    }

    async fn pod_ns(&self, pod: &PodView) -> Result<Ns, ClusterError> {
        self.pod_netns(&pod.namespace, &pod.name)
            .await
            .ok_or_else(|| ClusterError::NoSuchPod(format!("{}/{}", pod.namespace, pod.name)))
    }

    /// host-local's leases on `node`'s pod network: one file per leased address,
    /// named by it, next to its `lock` and `last_reserved_ip.*` files.
    fn leases(&self, node: &str) -> Result<Vec<String>, ClusterError> {
        let dir = self
            .run_dir
            .join("nodes")
            .join(node)
            .join("cni/networks")
            .join(super::pod::POD_NETWORK);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // No lease was ever taken on this node.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(node_error(node, &format!("reading {}", dir.display()), e)),
        };
        Ok(entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
            .collect())
    }
}

impl NodeAccess for NetnsCluster {
    fn node_ip<'a>(&'a self, node: &'a str, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(async move {
            let ns = self.node_ns(node).await?;
            self.ip(&ns, args)
                .await
                .map_err(|e| node_error(node, "ip", e))
        })
    }

    fn pod_ip<'a>(&'a self, pod: &'a PodView, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(async move {
            let ns = self.pod_ns(pod).await?;
            self.ip(&ns, args)
                .await
                .map_err(|e| node_error(&pod.node, "ip", e))
        })
    }

    fn pod_devices<'a>(&'a self, pod: &'a PodView) -> Fut<'a, BTreeMap<String, Vec<String>>> {
        // secnet's kubelet recorded them at admission.
        Box::pin(async move { Ok(pod.devices.clone()) })
    }

    fn pod_network_leases<'a>(&'a self, node: &'a str) -> Fut<'a, Vec<String>> {
        Box::pin(async move { self.leases(node) })
    }

    fn pod_sandbox_exists<'a>(&'a self, namespace: &'a str, name: &'a str) -> Fut<'a, bool> {
        Box::pin(async move { Ok(self.pod_netns(namespace, name).await.is_some()) })
    }

    fn reads_pod_links_from_node(&self) -> bool {
        false
    }
}

impl LocalTopology for NetnsCluster {
    fn topology(&self) -> &Topology {
        &self.opts.topology
    }

    fn node_namespace<'a>(&'a self, node: &'a str) -> Fut<'a, Ns> {
        Box::pin(self.node_ns(node))
    }

    fn pod_namespace<'a>(&'a self, pod: &'a PodView) -> Fut<'a, Ns> {
        Box::pin(self.pod_ns(pod))
    }

    fn ns_ip<'a>(&'a self, ns: &'a Ns, args: &'a [&'a str]) -> Fut<'a, String> {
        Box::pin(async move {
            self.ip(ns, args)
                .await
                .map_err(|e| node_error(&ns.name, "ip", e))
        })
    }
}

impl NodeFaults for NetnsCluster {
    fn restart_kubelet<'a>(&'a self, node: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            NetnsCluster::restart_kubelet(self, node)
                .await
                .map_err(|e| node_error(node, "restarting the kubelet", e))
        })
    }

    fn unplug_uplink<'a>(&'a self, node: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            NetnsCluster::unplug_uplink(self, node)
                .await
                .map_err(|e| node_error(node, "unplugging the uplink", e))
        })
    }

    fn plug_uplink<'a>(&'a self, node: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            NetnsCluster::plug_uplink(self, node)
                .await
                .map_err(|e| node_error(node, "plugging the uplink", e))
        })
    }

    fn lose_pod_netns<'a>(&'a self, pod: &'a PodView) -> Fut<'a, ()> {
        Box::pin(async move {
            NetnsCluster::lose_pod_netns(self, &pod.namespace, &pod.name)
                .await
                .map_err(|e| node_error(&pod.node, "deleting the pod's netns", e))
        })
    }

    fn device_plugin_log<'a>(&'a self, node: &'a str) -> Fut<'a, String> {
        Box::pin(async move {
            NetnsCluster::device_plugin_log_of(self, node)
                .await
                .map_err(|e| node_error(node, "reading the device plugin's log", e))
        })
    }
}

impl MultusFaults for NetnsCluster {
    fn restart_multus<'a>(
        &'a self,
        node: &'a str,
        wait_for_add: Duration,
        down_for: Duration,
    ) -> Fut<'a, ()> {
        Box::pin(async move {
            NetnsCluster::restart_multus(self, node, wait_for_add, down_for)
                .await
                .map_err(|e| node_error(node, "restarting multus", e))
        })
    }

    fn write_cni_config<'a>(&'a self, node: &'a str, file: &'a str, text: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            NetnsCluster::write_cni_config(self, node, file, text)
                .map_err(|e| node_error(node, "writing a CNI config", e))
        })
    }

    fn read_cni_config<'a>(&'a self, node: &'a str, file: &'a str) -> Fut<'a, String> {
        Box::pin(async move {
            NetnsCluster::read_cni_config(self, node, file)
                .map_err(|e| node_error(node, "reading a CNI config", e))
        })
    }

    fn primary_cni_config<'a>(&'a self, node: &'a str) -> Fut<'a, String> {
        Box::pin(async move {
            NetnsCluster::primary_cni_config(self, node)
                .map_err(|e| node_error(node, "finding the primary CNI config", e))
        })
    }
}

impl DevicePluginRestart for NetnsCluster {
    /// SIGKILL, then a restart with the same environment, waiting until `resource`
    /// is registered again.
    fn restart_device_plugin<'a>(&'a self, node: &'a str, resource: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            self.kill_device_plugin(node)
                .await
                .map_err(|e| node_error(node, "killing the device plugin", e))?;
            self.start_device_plugin_anew(node, resource)
                .await
                .map_err(|e| node_error(node, "starting the device plugin", e))
        })
    }

    fn back_within(&self) -> Duration {
        PLUGIN_BACK_WITHIN
    }
}

impl DevicePluginConfig for NetnsCluster {
    fn device_plugin_failure(&self) -> Fut<'_, Option<String>> {
        Box::pin(async move { Ok(NetnsCluster::device_plugin_failure(self).await) })
    }

    fn device_plugin_process<'a>(
        &'a self,
        node: &'a str,
    ) -> Fut<'a, crate::cluster::ability::DevicePluginProcess> {
        Box::pin(async move {
            NetnsCluster::device_plugin_process(self, node)
                .await
                .map_err(|e| node_error(node, "finding the device plugin", e))
        })
    }
}

impl Ovs for NetnsCluster {
    fn ovs_ports<'a>(&'a self, node: &'a str, bridge: &'a str) -> Fut<'a, Vec<String>> {
        Box::pin(async move {
            NetnsCluster::ovs_ports(self, node, bridge)
                .await
                .map_err(|e| node_error(node, "ovs-vsctl list-ports", e))
        })
    }

    fn uplink_port(&self) -> &str {
        ovs::UPLINK
    }
}

impl FrameCapture for NetnsCluster {
    /// tcpdump on this machine in the pod's network namespace.
    fn start_capture<'a>(
        &'a self,
        pod: &'a PodView,
        iface: &'a str,
        filter: &'a str,
    ) -> Fut<'a, Box<dyn RunningCapture<'a> + 'a>> {
        Box::pin(async move {
            let ns = self.pod_ns(pod).await?;
            let running = capture::LocalCapture::start(&pod.node, &ns, iface, filter).await?;
            Ok(Box::new(running) as Box<dyn RunningCapture<'a> + 'a>)
        })
    }
}

impl LanNamespaces for NetnsCluster {
    fn extra_namespace<'a>(&'a self, name: &'a str) -> Fut<'a, Ns> {
        Box::pin(async move {
            self.extra_netns(name)
                .await
                .map_err(|e| node_error(name, "creating a namespace", e))
        })
    }
}
