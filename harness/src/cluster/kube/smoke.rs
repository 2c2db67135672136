//! A provider-generic smoke scenario (the seed's macvtap pod), written only against
//! the `Cluster` trait: the first step towards running the scenarios on kind and
//! existing clusters. Tested here against the mocked API server.

use std::path::Path;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::objects::{self, Object};

pub const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

/// Applies the seed's `dataplane` NAD, checks every node advertises `resource`,
/// creates the seed's macvtap pod (named `macvtap-pod-<suffix>`), checks multus'
/// network-status has `net1` with a MAC on `dataplane` and the device is accounted
/// on its node, deletes it and checks the device is given back. Returns what it saw.
pub async fn seed_macvtap_pod<C: Cluster>(
    c: &C,
    fixtures: &Path,
    resource: &str,
    suffix: &str,
) -> Result<Vec<String>, String> {
    let mut seen = Vec::new();
    let load =
        |f: &str| objects::load_file(&fixtures.join("seed").join(f)).map_err(|e| e.to_string());
    c.apply(load("macvtap-nad.yaml")?)
        .await
        .map_err(|e| e.to_string())?;
    for node in c.nodes() {
        let r = c.node_resources(&node).await.map_err(|e| e.to_string())?;
        let (cap, alloc) = (
            r.capacity.get(resource).copied().unwrap_or(0),
            r.allocatable.get(resource).copied().unwrap_or(0),
        );
        if alloc == 0 {
            return Err(format!(
                "node {node} advertises no allocatable {resource} (capacity {cap}): is the device plugin running with a lower device on this node?"
            ));
        }
        seen.push(format!(
            "{node}: {resource} capacity {cap} allocatable {alloc}"
        ));
    }
    let mut pod = load("macvtap-pod.yaml")?
        .into_iter()
        .find_map(|o| match o {
            Object::Pod(p) => Some(p),
            _ => None,
        })
        .ok_or("fixtures/seed/macvtap-pod.yaml has no Pod")?;
    pod.metadata.name = format!("{}-{suffix}", pod.metadata.name);
    let view = c.create_pod(pod).await.map_err(|e| e.to_string())?;
    let status = view
        .annotations
        .get(NETWORK_STATUS)
        .ok_or_else(|| format!("pod {} has no {NETWORK_STATUS}", view.name))?;
    let entries: Vec<Value> = serde_json::from_str(status)
        .map_err(|e| format!("{NETWORK_STATUS} of {} is not a JSON list: {e}", view.name))?;
    let net1 = entries
        .iter()
        .find(|e| e["interface"] == "net1")
        .ok_or_else(|| format!("network-status has no net1: {status}"))?;
    let mac = net1["mac"].as_str().unwrap_or("");
    if !net1["name"].as_str().unwrap_or("").ends_with("/dataplane") || mac.is_empty() {
        return Err(format!("net1 is not on dataplane with a MAC: {net1}"));
    }
    seen.push(format!(
        "{}/{} on {}: net1 {mac}",
        view.namespace, view.name, view.node
    ));
    let before = c
        .node_resources(&view.node)
        .await
        .map_err(|e| e.to_string())?;
    let used = before.allocated.get(resource).copied().unwrap_or(0);
    if used == 0 {
        return Err(format!(
            "{} shows no {resource} allocated while the pod runs",
            view.node
        ));
    }
    c.delete_pod(&view.namespace, &view.name)
        .await
        .map_err(|e| e.to_string())?;
    let after = c
        .node_resources(&view.node)
        .await
        .map_err(|e| e.to_string())?;
    let left = after.allocated.get(resource).copied().unwrap_or(0);
    if left + 1 != used {
        return Err(format!(
            "{} still shows {left} {resource} allocated after the delete (was {used})",
            view.node
        ));
    }
    seen.push(format!("{}: allocated {used} → {left}", view.node));
    Ok(seen)
}
