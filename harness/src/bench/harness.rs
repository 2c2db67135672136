//! The harness's own speed: a full `secnet conform` broken down by phase, and how the
//! cost of attaching a pod grows with the number of pods on a node.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::scale::ScalePoint;
use super::stats::Stats;
use super::{BenchError, Row};
use crate::cluster::Cluster;
use crate::cluster::netns::{NetnsCluster, Options as ClusterOptions};
use crate::conform::{self, Options};
use crate::objects::{Object, load_file};

fn single(name: &str, operation: &str, took: Duration) -> Row {
    Row {
        name: name.into(),
        operation: operation.into(),
        stats: Stats::of(&[took]),
        ratio_to_reference: None,
        reference: None,
    }
}

/// A whole conform run on the bundled implementations; one row for the wall time and
/// one per phase summed over the scenarios.
pub async fn conform_phases(quick: bool) -> Result<Vec<Row>, BenchError> {
    let mut opts = Options::bundled();
    if quick {
        opts.skip_labels = vec!["fault".into(), "dhcp".into()];
    }
    let report = conform::run(&opts).await?;
    if report.summary.failed + report.summary.errors > 0 {
        return Err(BenchError::ScenariosFailed(
            report.summary.failed + report.summary.errors,
        ));
    }
    let mut rows = vec![single(
        &format!("secnet conform ({} scenarios)", report.scenarios.len()),
        "wall",
        Duration::from_secs_f64(report.wall_s),
    )];
    let mut phases: BTreeMap<String, f64> = BTreeMap::new();
    for s in &report.scenarios {
        for p in &s.observed.phases {
            *phases.entry(p.name.clone()).or_default() += p.seconds;
        }
    }
    for (name, secs) in phases {
        rows.push(single(
            &format!("secnet conform: {name} (all scenarios)"),
            "phase",
            Duration::from_secs_f64(secs),
        ));
    }
    Ok(rows)
}

/// Time to attach `n` macvtap pods at once on one node, for growing `n`; the row's
/// median is the per-pod cost.
pub async fn pods_per_node(quick: bool) -> Result<(Vec<Row>, Vec<ScalePoint>), BenchError> {
    let opts = Options::bundled();
    let counts: &[usize] = if quick { &[1, 10] } else { &[1, 10, 50] };
    let mut rows = Vec::new();
    let mut points = Vec::new();
    for &n in counts {
        let cluster = NetnsCluster::up(ClusterOptions {
            run_id: format!("{}-bench{n}", crate::lab::new_run_id()),
            topology: opts.topology.clone(),
            cni_bin_dir: opts.implementation.cni_bin_dir.clone(),
            reference_bin_dir: opts.reference_bin_dir.clone(),
            device_plugin: opts.implementation.device_plugin.clone(),
            dhcp: false,
            ovs: false,
            multus: Default::default(),
        })
        .await?;
        let measured = async {
            super::apply_seed(&cluster, &opts.fixtures_dir).await?;
            let Some(Object::Pod(base)) =
                load_file(&opts.fixtures_dir.join("seed/macvtap-pod.yaml"))?
                    .into_iter()
                    .next()
            else {
                return Err(BenchError::NoPod("seed/macvtap-pod.yaml".into()));
            };
            let node = cluster.nodes()[0].clone();
            let started = Instant::now();
            let made = join_all((0..n).map(|i| {
                let mut p = base.clone();
                p.metadata.name = format!("scale-{i}");
                p.spec.node_name = Some(node.clone());
                cluster.create_pod(p)
            }))
            .await;
            let took = started.elapsed();
            for r in made {
                r?;
            }
            Ok(took)
        }
        .await;
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
            nodes: 1,
            total_ms: took.as_secs_f64() * 1e3,
            per_pod_ms: took.as_secs_f64() * 1e3 / n as f64,
        });
        let per_pod: Vec<Duration> = vec![took / n as u32];
        rows.push(Row {
            name: format!("attach {n} macvtap pod(s) on one node: per pod"),
            operation: "scale".into(),
            stats: Stats::of(&per_pod),
            ratio_to_reference: None,
            reference: None,
        });
    }
    // Flat means each pod costs the same however many share the node.
    if let (Some(first), Some(last)) = (
        rows.first().map(|r| r.stats.median_ms),
        rows.last().map(|r| r.stats.median_ms),
    ) {
        rows.last_mut().expect("rows").ratio_to_reference = Some(last / first);
        rows.last_mut().expect("rows").reference = Some("per-pod cost at 1 pod".into());
    }
    Ok((rows, points))
}
