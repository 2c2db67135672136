//! Node capacity, allocatable and allocated extended resources, read as
//! `kubectl describe node` shows them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod as KPod};
use kube::api::{Api, ListParams};

use super::KubeCluster;
use crate::cluster::{ClusterError, NodeResources};

/// The resources of `node`: capacity and allocatable from its status, allocated as the
/// sum of its non-terminated pods' extended-resource requests.
pub(super) async fn of_node(c: &KubeCluster, node: &str) -> Result<NodeResources, ClusterError> {
    let nodes: Api<Node> = Api::all(c.client.clone());
    let n = nodes
        .get_opt(node)
        .await
        .map_err(|e| ClusterError::api(format!("get node {node}"), e))?
        .ok_or_else(|| ClusterError::NoSuchNode(node.to_string()))?;
    let status = n.status.unwrap_or_default();
    let mut res = NodeResources {
        capacity: quantities(status.capacity.as_ref()),
        allocatable: quantities(status.allocatable.as_ref()),
        allocated: BTreeMap::new(),
    };
    // "Allocated resources" as kubectl describe node: requests of the node's
    // non-terminated pods; extended resources only (requests == limits there).
    let pods: Api<KPod> = Api::all(c.client.clone());
    let fields = format!("spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed");
    let list = pods
        .list(&ListParams::default().fields(&fields))
        .await
        .map_err(|e| ClusterError::api(format!("list the pods on {node}"), e))?;
    for p in list.items {
        for c in p.spec.iter().flat_map(|s| &s.containers) {
            let Some(r) = &c.resources else { continue };
            let mut mine = quantities(r.limits.as_ref());
            mine.extend(quantities(r.requests.as_ref()));
            for (k, n) in mine.into_iter().filter(|(k, _)| k.contains('/')) {
                *res.allocated.entry(k).or_insert(0) += n;
            }
        }
    }
    // As `kubectl describe node`: an extended resource no pod uses shows 0.
    let extended: Vec<String> = res
        .capacity
        .keys()
        .chain(res.allocatable.keys())
        .filter(|k| k.contains('/'))
        .cloned()
        .collect();
    for k in extended {
        res.allocated.entry(k).or_insert(0);
    }
    Ok(res)
}

/// Parses a Kubernetes quantity into a whole number (`50`, `4Ki`, `2G`, `1500m` → 2);
/// `None` for what is not a quantity.
pub fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some((num * mult).ceil() as u64)
}

fn quantities(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, u64> {
    map.into_iter()
        .flatten()
        .filter_map(|(k, v)| parse_quantity(&v.0).map(|n| (k.clone(), n)))
        .collect()
}
