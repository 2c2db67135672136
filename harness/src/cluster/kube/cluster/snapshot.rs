//! The report's picture of a real cluster: nodes and this run's pods with the
//! interfaces multus reported.

use k8s_openapi::api::core::v1::{Node, Pod as KPod};
use kube::api::{Api, ListParams};

use super::KubeCluster;
use crate::multus::NETWORK_STATUS_ANNOTATION;

impl KubeCluster {
    /// What the report draws for a scenario on a real cluster: the nodes (with the
    /// lower device and InternalIP) and this run's/scope's pods with the interfaces
    /// multus' network-status lists. Best effort: what cannot be read is left out.
    pub async fn snapshot(&self) -> crate::observe::Topology {
        use crate::observe::{InterfaceSnap, NodeSnap, Topology, WorkloadSnap};
        let nodes_api: Api<Node> = Api::all(self.client.clone());
        let mut nodes = match nodes_api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(_) => Vec::new(),
        };
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let address = |n: &Node| {
            let addrs = n.status.as_ref().and_then(|s| s.addresses.clone());
            addrs
                .into_iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address)
                .unwrap_or_default()
        };
        let mut snap = Topology {
            fabric: format!("{} cluster", self.provider),
            nodes: nodes
                .iter()
                .map(|n| NodeSnap {
                    name: n.metadata.name.clone().unwrap_or_default(),
                    uplink: self.opts.lower_device.clone(),
                    address: address(n),
                    bridges: Vec::new(),
                    ovs_bridges: Vec::new(),
                })
                .collect(),
            workloads: Vec::new(),
        };
        let pods: Api<KPod> = Api::all(self.client.clone());
        let list = match pods
            .list(&ListParams::default().labels(&self.selector()))
            .await
        {
            Ok(list) => list.items,
            Err(_) => return snap,
        };
        for p in list {
            let status = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NETWORK_STATUS_ANNOTATION))
                .and_then(|s| crate::multus::status::parse_annotation(s).ok())
                .unwrap_or_default();
            snap.workloads.push(WorkloadSnap {
                name: p.metadata.name.clone().unwrap_or_default(),
                kind: "pod".into(),
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                interfaces: status
                    .into_iter()
                    .map(|s| InterfaceSnap {
                        name: s.interface.unwrap_or_default(),
                        network: s.name,
                        mac: s.mac,
                        ips: s.ips,
                        attachment: None,
                        via: None,
                    })
                    .collect(),
            });
        }
        snap
    }
}
