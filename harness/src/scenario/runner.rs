//! The lifecycle of one scenario, the same for every scenario and provider: the
//! cluster (or node lab) up, the scenario's deployment applied, the assessment, the
//! topology and reachability picture, diagnostics on failure, `--keep`, teardown.
//! Each step is recorded as a phase. The leak check and the run loop are in
//! `conform`.

use std::sync::Arc;
use std::time::Instant;

use super::{Body, Capability, Ctx, Deploy, Failure, Outcome, Scenario, Target};
use crate::cluster::Cluster;
use crate::cluster::any::AnyCluster;
use crate::cluster::kube::KubeCluster;
use crate::cluster::netns::NetnsCluster;
use crate::lab::node::NodeLab;
use crate::lab::{Lab, Ns};
use crate::objects::{Object, load_file};
use crate::observe::{InterfaceSnap, NodeSnap, Topology, WorkloadSnap};
use serde_json::Value;

/// The seed's device plugin: a component on real clusters (installed with the run).
const SEED_DEVICE_PLUGIN: [&str; 2] = [
    "seed/macvtap-deviceplugin-config.yaml",
    "seed/macvtap-daemonset.yaml",
];
const SEED_NAD: &str = "seed/macvtap-nad.yaml";

/// Runs `s` in `ctx` from set-up to teardown.
pub async fn run(s: &Scenario, ctx: &Ctx) -> Outcome {
    match &s.body {
        Body::Plain(body) => timed(ctx, "assess", body(ctx)).await,
        Body::NodeLab(body) => {
            let mut lab = timed(ctx, "lab up", async { ctx.node_lab() }).await?;
            let outcome = timed(ctx, "assess", body(ctx, &mut lab)).await;
            ctx.observed.topology(lab_snapshot(&lab));
            let t = Instant::now();
            let outcome = finish_lab(ctx, &mut lab.lab, outcome);
            drop(lab);
            ctx.observed.phase("teardown", t.elapsed());
            outcome
        }
        Body::Cluster(body) => {
            // A real cluster came up once for the run; here it is only scoped.
            let cluster = if ctx.provider().is_local() {
                timed(ctx, "cluster up", cluster_for(s, ctx)).await?
            } else {
                cluster_for(s, ctx).await?
            };
            let outcome = async {
                timed(ctx, "deploy", deploy(ctx, &cluster, &s.deploy)).await?;
                let outcome = timed(ctx, "assess", body(ctx, &cluster)).await;
                ctx.observed.topology(cluster.snapshot().await);
                outcome
            }
            .await;
            let outcome = match outcome {
                Err(f) => Err(f.with_diagnostics(cluster.diagnostics().await)),
                ok => ok,
            };
            let t = Instant::now();
            let outcome = match cluster {
                AnyCluster::Netns(c) => finish_netns(ctx, *c, outcome).await,
                AnyCluster::Kube(c) => finish_kube(ctx, &c, outcome).await,
            };
            ctx.observed.phase("teardown", t.elapsed());
            outcome
        }
    }
}

async fn timed<T>(ctx: &Ctx, phase: &str, step: impl Future<Output = T>) -> T {
    let t = Instant::now();
    let out = step.await;
    ctx.observed.phase(phase, t.elapsed());
    out
}

/// The scenario's cluster: a fresh netns cluster with what it needs (DHCP, OVS), or
/// the run's real cluster seen through the scenario's scope.
async fn cluster_for(s: &Scenario, ctx: &Ctx) -> Result<AnyCluster, Failure> {
    match &ctx.target {
        Target::Netns => {
            let dhcp = s.needs.contains(&Capability::Dhcp);
            let ovs = s.needs.contains(&Capability::Ovs);
            let cluster = ctx.netns_cluster(dhcp, ovs).await?;
            Ok(AnyCluster::Netns(Box::new(cluster)))
        }
        Target::Kube(run) => Ok(AnyCluster::Kube(Arc::new(run.scoped(&ctx.scope)))),
    }
}

/// Applies the scenario's deployment. A real cluster already runs the device plugin
/// (a component of the run), so there only the seed's NAD is applied.
async fn deploy(ctx: &Ctx, cluster: &AnyCluster, deploy: &Deploy) -> Outcome {
    let mut files: Vec<&str> = Vec::new();
    if deploy.macvtap_seed {
        if ctx.provider().is_local() {
            files.extend(SEED_DEVICE_PLUGIN);
        }
        files.push(SEED_NAD);
    }
    files.extend(deploy.fixtures.iter().copied());
    for rel in files {
        let objects: Vec<Object> = load_file(&ctx.fixtures_dir.join(rel))?;
        cluster.apply(objects).await?;
    }
    Ok(())
}

/// Tears a netns cluster down, or keeps it after a failure with `--keep`.
pub async fn finish_netns(ctx: &Ctx, cluster: NetnsCluster, outcome: Outcome) -> Outcome {
    if ctx.keep && outcome.is_err() {
        std::mem::forget(cluster);
        return outcome.map_err(|f| {
            f.with_line(format!(
                "  kept: nodes are `ip netns exec {}-{}-<node> …`; remove with: secnet clean --run {}",
                ctx.run_id, ctx.scope, ctx.run_id
            ))
        });
    }
    let errors = cluster.teardown().await;
    match outcome {
        Ok(()) if !errors.is_empty() => {
            super::fail(format!("teardown failed: {}", errors.join("; ")))
        }
        other => other,
    }
}

/// Ends a scenario on a real cluster: deletes what the scenario made (its scope
/// label) and waits until its pods are gone, or keeps it after a failure.
pub async fn finish_kube(ctx: &Ctx, cluster: &KubeCluster, outcome: Outcome) -> Outcome {
    if ctx.keep && outcome.is_err() {
        return outcome.map_err(|f| {
            f.with_line(format!(
                "  kept: kubectl get pods,network-attachment-definitions -A -l secnet.run={},secnet.scope={}; remove with: secnet clean --cluster existing --run {}",
                ctx.run_id, ctx.scope, ctx.run_id
            ))
        });
    }
    let done = cluster.teardown().await;
    let mut errors = done.errors;
    if let Err(e) = cluster.wait_pods_gone().await {
        errors.push(e.to_string());
    }
    match outcome {
        Ok(()) if !errors.is_empty() => {
            super::fail(format!("teardown failed: {}", errors.join("; ")))
        }
        other => other,
    }
}

/// Ends a node-lab scenario: on failure with `--keep`, the lab outlives the run and
/// the message says how to look inside.
pub fn finish_lab(ctx: &Ctx, lab: &mut Lab, outcome: Outcome) -> Outcome {
    match outcome {
        Err(f) if ctx.keep => {
            let hints: Vec<String> = lab
                .forget()
                .iter()
                .map(|n| format!("ip netns exec {n} ip -d link"))
                .collect();
            Err(f.with_line(format!(
                "  kept for inspection: {}\n  remove with: secnet clean --run {}",
                hints.join(" ; "),
                ctx.run_id
            )))
        }
        other => other,
    }
}

/// The node lab as the report draws it: the node with its uplink, and every other
/// namespace (but the fabric) as a pod with its links.
fn lab_snapshot(lab: &NodeLab) -> Topology {
    let links = |ns: &Ns| -> Vec<Value> {
        lab.lab
            .ip(ns, &["-j", "-d", "link", "show"])
            .ok()
            .and_then(|out| serde_json::from_str::<Value>(&out).ok())
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    };
    let uplink = links(&lab.node)
        .iter()
        .find(|l| l["linkinfo"]["info_kind"] == "veth")
        .and_then(|l| l["ifname"].as_str().map(str::to_string))
        .unwrap_or_default();
    let prefix = format!("{}-", lab.lab.prefix());
    let workloads = lab
        .lab
        .namespaces()
        .iter()
        .filter(|ns| ns.name != lab.node.name && ns.name != lab.fabric.name)
        .map(|ns| WorkloadSnap {
            name: ns
                .name
                .strip_prefix(&prefix)
                .unwrap_or(&ns.name)
                .to_string(),
            kind: "pod".into(),
            node: "node".into(),
            interfaces: links(ns)
                .iter()
                .filter(|l| l["ifname"] != "lo")
                .map(|l| InterfaceSnap {
                    name: l["ifname"].as_str().unwrap_or_default().to_string(),
                    network: String::new(),
                    mac: l["address"].as_str().map(str::to_string),
                    ips: Vec::new(),
                    attachment: l["linkinfo"]["info_kind"].as_str().map(str::to_string),
                    via: None,
                })
                .collect(),
        })
        .collect();
    Topology {
        fabric: "lab".into(),
        nodes: vec![NodeSnap {
            name: "node".into(),
            uplink,
            address: String::new(),
            bridges: Vec::new(),
            ovs_bridges: Vec::new(),
        }],
        workloads,
    }
}
