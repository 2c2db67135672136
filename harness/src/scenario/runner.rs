//! The lifecycle of one scenario, the same for every scenario and provider: the
//! cluster (or node lab) up, the scenario's deployment applied, the assessment, the
//! topology and reachability picture, diagnostics on failure, `--keep`, teardown.
//! Each step is recorded as a phase. The leak check and the run loop are in
//! `conform`.

use std::time::Instant;

use super::provider::ClusterProvider;
use super::{Body, Ctx, Failure, Outcome, Scenario};
use crate::cluster::Cluster;
use crate::cluster::any::AnyCluster;
use crate::lab::node::NodeLab;
use crate::lab::{Lab, Ns};
use crate::objects::{Object, load_file};
use crate::observe::{InterfaceSnap, NodeSnap, Topology, WorkloadSnap};
use crate::probe::ip::LinkFacts;

/// Runs `s` in `ctx` from set-up to teardown, on a cluster of `provider`'s.
pub async fn run(s: &Scenario, ctx: &Ctx, provider: &dyn ClusterProvider) -> Outcome {
    match &s.body {
        Body::Plain(body) => timed(ctx, "assess", body(ctx)).await,
        Body::NodeLab(body) => {
            // Set-up that breaks is the harness's error, not the implementation's.
            let mut lab = timed(ctx, "lab up", async { ctx.node_lab() })
                .await
                .map_err(Failure::harness)?;
            let outcome = timed(ctx, "assess", body(ctx, &mut lab)).await;
            ctx.observed.topology(lab_snapshot(&lab));
            let t = Instant::now();
            let outcome = finish_lab(ctx, &mut lab.lab, outcome);
            drop(lab);
            ctx.observed.phase("teardown", t.elapsed());
            outcome
        }
        Body::Cluster(body) => {
            let cluster = provider.up(s, ctx).await.map_err(Failure::harness)?;
            let outcome = async {
                has_what_it_needs(s, &cluster).map_err(Failure::harness)?;
                timed(
                    ctx,
                    "deploy",
                    deploy(ctx, &cluster, provider.deploy_files(&s.deploy)),
                )
                .await
                .map_err(Failure::harness)?;
                let outcome = timed(ctx, "assess", body(ctx, &cluster)).await;
                super::uniqueness::after_scenario(ctx, &cluster, outcome).await
            }
            .await;
            // The device plugin's logs and state, only where they bear on the
            // failure: never under a CNI's own error message.
            let outcome = match outcome {
                Err(f) if wants_device_plugin_logs(s, &f) => {
                    Err(f.with_diagnostics(cluster.diagnostics().await))
                }
                other => other,
            };
            let t = Instant::now();
            let outcome = finish(ctx, provider, cluster, outcome).await;
            ctx.observed.phase("teardown", t.elapsed());
            outcome
        }
    }
}

/// Whether a failure bears on the device plugin: a pod could not get its resource
/// (unschedulable, an allocatable that never came), the device plugin did not come
/// up, or the scenario is about the device plugin (`deviceplugin`, `capacity`).
pub fn wants_device_plugin_logs(s: &Scenario, f: &Failure) -> bool {
    use crate::cluster::ClusterError;
    use crate::cluster::netns::{DEVICE_PLUGIN_DOWN, NO_DEVICE_PLUGIN};
    let about_resources =
        std::iter::successors(Some(f as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .any(|e| match e.downcast_ref::<ClusterError>() {
            Some(ClusterError::Unschedulable { .. }) => true,
            Some(ClusterError::Timeout { what, .. }) => what.contains("allocatable"),
            _ => false,
        });
    about_resources
        || f.message().contains(NO_DEVICE_PLUGIN)
        || f.message().contains(DEVICE_PLUGIN_DOWN)
        || s.labels
            .iter()
            .any(|l| matches!(*l, "deviceplugin" | "capacity"))
}

/// Times `step` as phase `phase` of the scenario.
pub async fn timed<T>(ctx: &Ctx, phase: &str, step: impl Future<Output = T>) -> T {
    tracing::info!(scope = %ctx.scope, "{phase}");
    let t = Instant::now();
    let out = step.await;
    ctx.observed.phase(phase, t.elapsed());
    out
}

/// The provider's offer selected the scenario; its cluster must have the
/// abilities it promised (else the offer and the cluster have drifted apart).
fn has_what_it_needs(s: &Scenario, cluster: &AnyCluster) -> Outcome {
    let lacking: Vec<String> = s
        .needs
        .iter()
        .filter(|cap| AnyCluster::is_ability(**cap) && !cluster.offers(**cap))
        .map(ToString::to_string)
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    super::fail(format!(
        "the {} provider offered {} but its cluster lacks the ability: its offer and its abilities disagree",
        cluster.provider(),
        lacking.join(", ")
    ))
}

/// Applies the scenario's deployment: `files`, in order.
async fn deploy(ctx: &Ctx, cluster: &AnyCluster, files: Vec<&'static str>) -> Outcome {
    for rel in files {
        let objects: Vec<Object> = load_file(&ctx.fixtures_dir.join(rel))?;
        cluster.apply(objects).await?;
    }
    Ok(())
}

/// Ends a scenario's cluster: kept after a failure with `--keep` (the message says
/// how to look inside), else torn down, a teardown error failing a passed scenario.
async fn finish(
    ctx: &Ctx,
    provider: &dyn ClusterProvider,
    cluster: AnyCluster,
    outcome: Outcome,
) -> Outcome {
    let keep = ctx.keep && outcome.is_err();
    let ended = cluster.end(keep).await;
    if keep {
        return outcome.map_err(|f| f.with_line(provider.kept_hint(ctx)));
    }
    match outcome {
        Ok(()) if !ended.errors.is_empty() => {
            super::fail(format!("teardown failed: {}", ended.errors.join("; ")))
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
    let links = |ns: &Ns| -> Vec<LinkFacts> {
        lab.lab
            .ip(ns, &["-j", "-d", "link", "show"])
            .ok()
            .and_then(|out| crate::probe::ip::links(&out).ok())
            .unwrap_or_default()
    };
    let uplink = links(&lab.node)
        .into_iter()
        .find(|l| l.kind == "veth")
        .map(|l| l.name)
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
                .into_iter()
                .filter(|l| l.name != "lo")
                .map(|l| InterfaceSnap {
                    name: l.name,
                    network: String::new(),
                    mac: l.mac,
                    ips: Vec::new(),
                    attachment: (!l.kind.is_empty()).then_some(l.kind),
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
