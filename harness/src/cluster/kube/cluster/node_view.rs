//! What a node shows about its pods on a real cluster, read through the node's
//! probe pod with the node's own programs: a pod's sandbox (`crictl`), its links as
//! seen in the sandbox's network namespace (the node's iproute2, which has `-j`
//! where the pods' busybox does not), its device IDs (the kubelet's checkpoint, as
//! multus reads them) and the addresses host-local leased on the pod network.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod as KPod;
use kube::api::Api;
use serde_json::Value;

use super::KubeCluster;
use crate::cluster::{ClusterError, PodView};
use crate::kubelet::checkpoint::{Checkpoint, FILE_NAME};

/// The kubelet's device-manager checkpoint on a node.
pub const CHECKPOINT: &str = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint";
/// host-local's default data directory: one directory per network name.
pub const HOST_LOCAL_DIR: &str = "/var/lib/cni/networks";
/// The pod network's name on kind (kindnet's CNI config, host-local IPAM).
pub const KIND_POD_NETWORK: &str = "kindnet";

/// `^text$` with the regex metacharacters of Kubernetes names escaped: crictl's
/// `--name` and `--namespace` filters are regular expressions.
fn exactly(text: &str) -> String {
    format!("^{}$", text.replace('.', "\\."))
}

/// The network namespace of a sandbox from `crictl inspectp -o json`: the OCI
/// spec's network namespace path, else the sandbox process's.
pub fn sandbox_netns(inspect: &Value) -> Option<String> {
    let info = &inspect["info"];
    let from_spec = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["type"] == "network")
        .and_then(|n| n["path"].as_str())
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    from_spec.or_else(|| {
        info["pid"]
            .as_u64()
            .filter(|pid| *pid > 0)
            .map(|pid| format!("/proc/{pid}/ns/net"))
    })
}

/// A pod's device IDs per resource from the kubelet checkpoint's text.
pub fn devices_in_checkpoint(
    text: &str,
    pod_uid: &str,
) -> Result<BTreeMap<String, Vec<String>>, serde_json::Error> {
    let checkpoint: Checkpoint = serde_json::from_str(text)?;
    let mut devices: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in checkpoint
        .data
        .pod_device_entries
        .iter()
        .filter(|e| e.pod_uid == pod_uid)
    {
        devices
            .entry(entry.resource_name.clone())
            .or_default()
            .extend(entry.all_device_ids());
    }
    Ok(devices)
}

impl KubeCluster {
    /// `argv` on `node`: its stdout, or an error with its stderr.
    pub async fn node_output(&self, node: &str, argv: &[&str]) -> Result<String, ClusterError> {
        let out = self.node_exec(node, argv).await?;
        if !out.success {
            return Err(ClusterError::Node {
                node: node.to_string(),
                what: format!("`{}`", argv.join(" ")),
                message: out.stderr.trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// The IDs of the ready sandboxes of pod `namespace/name` on `node`.
    async fn ready_sandboxes(
        &self,
        node: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<String>, ClusterError> {
        let (ns, pod) = (exactly(namespace), exactly(name));
        let argv = [
            "crictl",
            "pods",
            "--namespace",
            &ns,
            "--name",
            &pod,
            "--state",
            "ready",
            "-q",
        ];
        let out = self.node_output(node, &argv).await?;
        Ok(out.split_whitespace().map(str::to_string).collect())
    }

    /// Whether a node still holds a ready sandbox (a network namespace) for pod
    /// `namespace/name`: its node if the API server still knows it, else any node.
    pub async fn pod_sandbox_exists(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<bool, ClusterError> {
        let api: Api<KPod> = Api::namespaced(self.client.clone(), namespace);
        let known = api
            .get_opt(name)
            .await
            .map_err(|e| ClusterError::api(format!("read pod {namespace}/{name}"), e))?;
        let nodes = match known.and_then(|p| p.spec?.node_name) {
            Some(node) => vec![node],
            None => self.nodes.clone(),
        };
        for node in nodes {
            if !self
                .ready_sandboxes(&node, namespace, name)
                .await?
                .is_empty()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The path of the pod's network namespace on its node.
    async fn pod_netns_path(&self, pod: &PodView) -> Result<String, ClusterError> {
        let ids = self
            .ready_sandboxes(&pod.node, &pod.namespace, &pod.name)
            .await?;
        let id = ids.first().ok_or_else(|| ClusterError::Node {
            node: pod.node.clone(),
            what: format!("finding pod {}/{}'s sandbox", pod.namespace, pod.name),
            message: "crictl lists no ready sandbox for it".into(),
        })?;
        let text = self
            .node_output(&pod.node, &["crictl", "inspectp", "-o", "json", id])
            .await?;
        let inspect: Value = serde_json::from_str(&text).map_err(|e| ClusterError::Node {
            node: pod.node.clone(),
            what: format!("`crictl inspectp -o json {id}`"),
            message: format!("not JSON: {e}"),
        })?;
        sandbox_netns(&inspect).ok_or_else(|| ClusterError::Node {
            node: pod.node.clone(),
            what: format!("`crictl inspectp -o json {id}`"),
            message: "neither a network namespace path nor a pid in its info".into(),
        })
    }

    /// `ip <args>` in the pod's network namespace, run on its node; the stdout.
    pub async fn pod_ip(&self, pod: &PodView, args: &[&str]) -> Result<String, ClusterError> {
        let netns = format!("--net={}", self.pod_netns_path(pod).await?);
        let mut argv = vec!["nsenter", netns.as_str(), "--", "ip"];
        argv.extend_from_slice(args);
        self.node_output(&pod.node, &argv).await
    }

    /// The pod's device IDs per resource, as the kubelet allocated them at
    /// admission (its checkpoint on the pod's node).
    pub async fn pod_devices(
        &self,
        pod: &PodView,
    ) -> Result<BTreeMap<String, Vec<String>>, ClusterError> {
        let text = self.node_output(&pod.node, &["cat", CHECKPOINT]).await?;
        devices_in_checkpoint(&text, &pod.uid).map_err(|e| ClusterError::Node {
            node: pod.node.clone(),
            what: format!("reading {FILE_NAME}"),
            message: e.to_string(),
        })
    }

    /// The addresses host-local has leased on `node`'s pod network (kindnet).
    pub async fn pod_network_leases(&self, node: &str) -> Result<Vec<String>, ClusterError> {
        let dir = format!("{HOST_LOCAL_DIR}/{KIND_POD_NETWORK}");
        let out = self.node_exec(node, &["ls", "-1", &dir]).await?;
        if !out.success {
            if out.stderr.contains("No such file") {
                return Ok(Vec::new()); // no lease was ever taken on this node
            }
            return Err(ClusterError::Node {
                node: node.to_string(),
                what: format!("`ls -1 {dir}`"),
                message: out.stderr.trim().to_string(),
            });
        }
        // One file per leased address, next to `lock` and `last_reserved_ip.*`.
        Ok(out
            .stdout
            .lines()
            .filter(|name| name.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_string)
            .collect())
    }
}
