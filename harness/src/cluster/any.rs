//! `AnyCluster`: one of the providers behind the `Cluster` contract, so that a
//! portable scenario is written once and runs on the netns cluster here and on kind
//! or an existing cluster elsewhere. Node-level checks (the node's own links and
//! addresses) exist only where secnet owns the nodes: `netns()` says when.

use std::sync::Arc;

use super::kube::KubeCluster;
use super::netns::NetnsCluster;
use super::{Cluster, ClusterError, ExecOutput, NodeResources, PodView};
use crate::objects::{Object, Pod};

pub enum AnyCluster {
    Netns(Box<NetnsCluster>),
    Kube(Arc<KubeCluster>),
}

impl AnyCluster {
    /// The netns cluster, for node-level checks a real cluster cannot offer.
    pub fn netns(&self) -> Option<&NetnsCluster> {
        match self {
            AnyCluster::Netns(c) => Some(c.as_ref()),
            AnyCluster::Kube(_) => None,
        }
    }
}

impl AnyCluster {
    /// The nodes' lower device (macvtap/macvlan master).
    pub fn lower_device(&self) -> String {
        match self {
            AnyCluster::Netns(c) => c.topology().nodes[0].uplink.clone(),
            AnyCluster::Kube(c) => c.lower_device().to_string(),
        }
    }

    /// Kills the device plugin on `node` and has it back: on the netns cluster a
    /// SIGKILL and a restart with the same environment (waiting until `resource` is
    /// registered again); on a real cluster its pod deleted with no grace period and
    /// the DaemonSet's new one Running.
    pub async fn restart_device_plugin(&self, node: &str, resource: &str) -> Result<(), String> {
        match self {
            AnyCluster::Netns(c) => {
                c.kill_device_plugin(node).await?;
                c.start_device_plugin_again(node, resource).await
            }
            AnyCluster::Kube(c) => c
                .restart_device_plugin(node)
                .await
                .map_err(|e| e.to_string()),
        }
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
