//! Scale: up to 10 nodes × 50 macvtap pods on the netns cluster. For each pod count
//! a fresh 10-node cluster; the pods are spread round-robin over the nodes and
//! created at once; timed until every pod is attached. Flat means the per-pod cost
//! stays within 2x of the cost at 1 pod.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde::Serialize;

use super::stats::Stats;
use super::{BenchError, Row};
use crate::cluster::Cluster;
use crate::cluster::netns::{NetnsCluster, Options as ClusterOptions};
use crate::cluster::topology::{NodeSpec, Topology};
use crate::conform::Options;
use crate::objects::{Object, load_file};

/// One measured pod count.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ScalePoint {
    pub(crate) pods: usize,
    pub(crate) nodes: usize,
    pub(crate) total_ms: f64,
    pub(crate) per_pod_ms: f64,
}

/// The default topology plus `node3..nodeN` on the same fabric (.139, .140, ...).
pub fn topology(nodes: usize) -> Topology {
    let mut t = Options::bundled().topology;
    let base = t.nodes[0].address.octets();
    while t.nodes.len() < nodes {
        let k = t.nodes.len() + 1;
        t.nodes.push(NodeSpec {
            name: format!("node{k}"),
            uplink: t.nodes[0].uplink.clone(),
            address: std::net::Ipv4Addr::new(base[0], base[1], base[2], base[3] + k as u8 - 1),
        });
    }
    t.name = format!("netns-{nodes}node");
    t
}

/// The flatness ratio per point: per-pod cost over the per-pod cost at the first.
pub fn ratios(points: &[ScalePoint]) -> Vec<f64> {
    let first = points.first().map(|p| p.per_pod_ms).unwrap_or(0.0);
    points
        .iter()
        .map(|p| {
            if first > 0.0 {
                p.per_pod_ms / first
            } else {
                0.0
            }
        })
        .collect()
}

pub async fn run(
    counts: &[usize],
    nodes: usize,
) -> Result<(Vec<Row>, Vec<ScalePoint>), BenchError> {
    let opts = Options::bundled();
    let topo = topology(nodes);
    let mut points = Vec::new();
    for &n in counts {
        let cluster = NetnsCluster::up(ClusterOptions {
            run_id: format!("{}-scale{n}", crate::lab::new_run_id()),
            topology: topo.clone(),
            cni_bin_dir: opts.implementation.cni_bin_dir.clone(),
            reference_bin_dir: opts.reference_bin_dir.clone(),
            device_plugin: opts.implementation.device_plugin.clone(),
            dhcp: false,
            ovs: false,
            multus: Default::default(),
        })
        .await?;
        let measured = attach(&cluster, &opts, n).await;
        let errors = cluster.teardown().await;
        let took = measured?;
        if !errors.is_empty() {
            return Err(BenchError::Teardown {
                pods: n,
                errors: errors.join("; "),
            });
        }
        points.push(ScalePoint {
            pods: n,
            nodes: n.min(nodes),
            total_ms: took.as_secs_f64() * 1e3,
            per_pod_ms: took.as_secs_f64() * 1e3 / n as f64,
        });
    }
    let mut rows = Vec::new();
    for (p, ratio) in points.iter().zip(ratios(&points)) {
        for (what, ms) in [("all attached", p.total_ms), ("per pod", p.per_pod_ms)] {
            rows.push(Row {
                name: format!(
                    "{} macvtap pod(s) over {} node(s) ({nodes}-node cluster): {what}",
                    p.pods, p.nodes
                ),
                operation: "scale".into(),
                stats: Stats::of(&[Duration::from_secs_f64(ms / 1e3)]),
                ratio_to_reference: (what == "per pod").then_some(ratio),
                reference: (what == "per pod").then(|| "per-pod cost at 1 pod".into()),
            });
        }
    }
    Ok((rows, points))
}

/// Creates `n` pods at once, round-robin over the nodes; the time until all are up.
async fn attach(cluster: &NetnsCluster, opts: &Options, n: usize) -> Result<Duration, BenchError> {
    super::apply_seed(cluster, &opts.fixtures_dir).await?;
    let Some(Object::Pod(base)) = load_file(&opts.fixtures_dir.join("seed/macvtap-pod.yaml"))?
        .into_iter()
        .next()
    else {
        return Err(BenchError::NoPod("seed/macvtap-pod.yaml".into()));
    };
    let nodes = cluster.nodes();
    let started = Instant::now();
    let made = join_all((0..n).map(|i| {
        let mut p = base.clone();
        p.metadata.name = format!("scale-{i}");
        p.spec.node_name = Some(nodes[i % nodes.len()].clone());
        cluster.create_pod(p)
    }))
    .await;
    let took = started.elapsed();
    for r in made {
        r?;
    }
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_node_topology_extends_the_default() {
        let t = topology(10);
        assert_eq!(t.nodes.len(), 10);
        assert_eq!(t.nodes[2].name, "node3");
        assert_eq!(t.nodes[2].address.to_string(), "192.168.159.139");
        assert_eq!(t.nodes[9].address.to_string(), "192.168.159.146");
        assert!(t.nodes.iter().all(|n| n.uplink == "ens33"));
    }

    #[test]
    fn ratios_against_the_first_point() {
        let p = |pods, per_pod_ms| ScalePoint {
            pods,
            nodes: 1,
            total_ms: 0.0,
            per_pod_ms,
        };
        assert_eq!(
            ratios(&[p(1, 10.0), p(10, 5.0), p(500, 25.0)]),
            vec![1.0, 0.5, 2.5]
        );
        assert!(ratios(&[]).is_empty());
    }
}
