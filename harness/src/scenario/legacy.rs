//! The hand-written set-up and teardown that scenario families used before the
//! runner owned the lifecycle. Kept only while families move onto `runner`; new
//! scenarios use `Scenario::on_cluster` / `on_node_lab`.

use std::time::Instant;

use super::{Ctx, Outcome};
use crate::cluster::Cluster;
use crate::cluster::netns::NetnsCluster;

pub use super::kit::{DATAPLANE, expect_reach, fixture, fixture_pod, named};

/// Setup (cluster up, seed's ConfigMap + DaemonSet + NAD applied), Assess (`body`),
/// Teardown (always, unless --keep and failed).
pub(super) async fn with_cluster<F>(ctx: Ctx, dhcp: bool, body: F) -> Outcome
where
    F: AsyncFnOnce(&Ctx, &NetnsCluster) -> Outcome,
{
    with_cluster_seeded(ctx, dhcp, true, body).await
}

/// As `with_cluster`, with the seed's ConfigMap, DaemonSet and NAD applied or not.
pub(super) async fn with_cluster_seeded<F>(ctx: Ctx, dhcp: bool, seeded: bool, body: F) -> Outcome
where
    F: AsyncFnOnce(&Ctx, &NetnsCluster) -> Outcome,
{
    let t = Instant::now();
    let cluster = ctx.netns_cluster(dhcp).await?;
    ctx.observed.phase("cluster up", t.elapsed());
    let outcome = async {
        if seeded {
            let t = Instant::now();
            apply_seed(&cluster, &ctx).await?;
            ctx.observed.phase("deploy", t.elapsed());
        }
        let t = Instant::now();
        let outcome = body(&ctx, &cluster).await;
        ctx.observed.phase("assess", t.elapsed());
        ctx.observed.topology(cluster.snapshot().await);
        outcome
    }
    .await;
    let outcome = match outcome {
        Err(f) => Err(f.with_diagnostics(cluster.diagnostics().await)),
        ok => ok,
    };
    let t = Instant::now();
    let outcome = ctx.finish_cluster(cluster, outcome).await;
    ctx.observed.phase("teardown", t.elapsed());
    outcome
}

async fn apply_seed(cluster: &NetnsCluster, ctx: &Ctx) -> Outcome {
    for rel in [
        "seed/macvtap-deviceplugin-config.yaml",
        "seed/macvtap-daemonset.yaml",
        "seed/macvtap-nad.yaml",
    ] {
        cluster.apply(fixture(ctx, rel)?).await?;
    }
    Ok(())
}
