//! Faults survived (label `fault`): kubelet restart, device plugin killed, the lower
//! device down/deleted/recreated, the pod netns gone before DEL, and 50 pods at once.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;

use super::seed::{DATAPLANE, fixture_pod, named, with_any_cluster, with_cluster};
use super::{Ctx, Outcome, Scenario, ensure};
use crate::cluster::any::AnyCluster;
use crate::cluster::netns::NetnsCluster;
use crate::cluster::probe::{pod_iface, pod_link};
use crate::cluster::{Cluster, ClusterError, wait_allocatable};

const BACK: Duration = Duration::from_secs(5);

/// Why kubevirt/macvtap-cni's device plugin misses the `BACK` bound.
const SLOW_REGISTRATION: &str = "kubevirt/macvtap-cni's device plugin registers only ~10 s after it starts or after kubelet.sock comes back (a wait loop that never ends early), longer than the 5 s these faults allow";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::new(
            "fault/kubelet restart: resources back, allocations kept",
            "macvtap",
            "node",
            &["fault", "capacity"],
            |ctx| with_cluster(ctx, false, kubelet_restart),
        )
        .beyond_reference(SLOW_REGISTRATION),
        Scenario::new(
            "fault/device plugin SIGKILL and restart: capacity back, no stale links",
            "macvtap",
            "node",
            &["fault", "deviceplugin"],
            |ctx| with_any_cluster(ctx, plugin_killed),
        )
        .portable()
        .beyond_reference(SLOW_REGISTRATION),
        Scenario::new(
            "fault/lower device down, deleted, recreated: Unhealthy then Healthy",
            "macvtap",
            "node",
            &["fault", "capacity"],
            |ctx| with_cluster(ctx, false, lower_device_faults),
        )
        .beyond_reference(
            "kubevirt/macvtap-cni's device plugin does not notice a lower link going down (no Unhealthy); it sends an empty list only when the link is deleted",
        ),
        Scenario::new(
            "fault/pod netns deleted before CNI DEL: devices and leases freed",
            "macvtap",
            "pod",
            &["fault"],
            |ctx| with_cluster(ctx, false, netns_gone_before_del),
        )
        .beyond_reference(super::macvtap_cni::DEL_NETNS_GONE),
        Scenario::new(
            "fault/50 pods at once on one node: distinct devices and MACs",
            "macvtap",
            "pod",
            &["fault", "capacity", "concurrency"],
            |ctx| with_any_cluster(ctx, fifty_at_once),
        )
        .portable(),
    ]
}

fn e(err: ClusterError) -> String {
    err.to_string()
}

async fn allocated(cluster: &NetnsCluster, node: &str) -> Result<u64, String> {
    Ok(cluster
        .node_resources(node)
        .await
        .map_err(e)?
        .allocated
        .get(DATAPLANE)
        .copied()
        .unwrap_or(0))
}

async fn node_macvtaps(cluster: &NetnsCluster, node: &str) -> Result<Vec<String>, String> {
    let ns = cluster.node_netns(node).await.ok_or("no node")?;
    let out: Value = serde_json::from_str(
        &cluster
            .ip(&ns, &["-j", "-d", "link", "show", "type", "macvtap"])
            .await?,
    )
    .map_err(|e| e.to_string())?;
    Ok(out
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["ifname"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

async fn kubelet_restart(ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let a = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "before",
            Some(&node),
        ))
        .await
        .map_err(e)?;
    cluster.restart_kubelet(&node).await?;
    wait_allocatable(cluster, &node, DATAPLANE, 50, BACK)
        .await
        .map_err(|m| format!("after the kubelet restart: {m}"))?;
    ensure(allocated(cluster, &node).await? == 1, || {
        "the allocation of the pod made before the restart was lost".into()
    })?;
    pod_link(cluster, &a, "net1")
        .await
        .map_err(|m| format!("the pod lost net1 across the kubelet restart: {m}"))?;
    let b = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "after",
            Some(&node),
        ))
        .await
        .map_err(e)?;
    ensure(a.devices[DATAPLANE] != b.devices[DATAPLANE], || {
        format!("both pods got {:?}", a.devices[DATAPLANE])
    })
}

/// Portable: on a real cluster the device plugin's pod is deleted with no grace
/// period and the DaemonSet brings it back.
async fn plugin_killed(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let a = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "before",
            Some(&node),
        ))
        .await
        .map_err(e)?;
    cluster.restart_device_plugin(&node, DATAPLANE).await?;
    let back = if cluster.netns().is_some() {
        BACK
    } else {
        Duration::from_secs(120)
    };
    wait_allocatable(cluster, &node, DATAPLANE, 50, back)
        .await
        .map_err(|m| format!("after the plugin restart: {m}"))?;
    pod_iface(cluster, &a, "net1")
        .await
        .map_err(|m| format!("the pod lost net1 when the plugin died: {m}"))?;
    let b = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "after",
            Some(&node),
        ))
        .await
        .map_err(e)?;
    pod_iface(cluster, &b, "net1").await?;
    let Some(netns) = cluster.netns() else {
        ctx.observed
            .note("stale or duplicate macvtaps on the node: no node access on this provider");
        return Ok(());
    };
    let stale = node_macvtaps(netns, &node).await?;
    ensure(stale.is_empty(), || {
        format!("macvtaps left on the node (stale or duplicate): {stale:?}")
    })
}

async fn lower_device_faults(ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let ns = cluster.node_netns(&node).await.ok_or("no node")?;
    let existing = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "existing",
            Some(&node),
        ))
        .await
        .map_err(e)?;
    let try_pod = |name: &str| {
        named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml").expect("fixture"),
            name,
            Some(&node),
        )
    };
    cluster.ip(&ns, &["link", "set", "ens33", "down"]).await?;
    wait_allocatable(cluster, &node, DATAPLANE, 0, BACK)
        .await
        .map_err(|m| format!("ens33 down: {m}"))?;
    match cluster.create_pod(try_pod("while-down")).await {
        Err(ClusterError::Unschedulable { message, .. }) if message.contains("Insufficient") => {}
        other => {
            return Err(format!(
                "a pod must wait while the lower device is down, got {other:?}"
            ));
        }
    }
    let link = pod_link(cluster, &existing, "net1").await?;
    let state = link["operstate"].as_str().unwrap_or("");
    ensure(state != "UP", || {
        format!("the existing pod's net1 claims {state} while its lower device is down")
    })?;
    cluster.ip(&ns, &["link", "set", "ens33", "up"]).await?;
    wait_allocatable(cluster, &node, DATAPLANE, 50, BACK)
        .await
        .map_err(|m| format!("ens33 up again: {m}"))?;
    cluster.create_pod(try_pod("after-up")).await.map_err(e)?;
    cluster.unplug_uplink(&node).await?;
    wait_allocatable(cluster, &node, DATAPLANE, 0, BACK)
        .await
        .map_err(|m| format!("ens33 deleted: {m}"))?;
    cluster.plug_uplink(&node).await?;
    wait_allocatable(cluster, &node, DATAPLANE, 50, BACK)
        .await
        .map_err(|m| format!("ens33 recreated: {m}"))?;
    let p = cluster
        .create_pod(try_pod("after-recreate"))
        .await
        .map_err(e)?;
    pod_link(cluster, &p, "net1").await.map(|_| ())
}

async fn netns_gone_before_del(ctx: &Ctx, cluster: &NetnsCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let pod = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "rebooted",
            Some(&node),
        ))
        .await
        .map_err(e)?;
    cluster.lose_pod_netns(&pod.namespace, &pod.name).await?;
    cluster
        .delete_pod(&pod.namespace, &pod.name)
        .await
        .map_err(|err| format!("DEL after the netns vanished must succeed: {err}"))?;
    ensure(allocated(cluster, &node).await? == 0, || {
        "the device was not freed".into()
    })?;
    // The pod network's host-local lease is freed too.
    let leases: Vec<String> = std::fs::read_dir(
        cluster
            .run_dir
            .join("nodes")
            .join(&node)
            .join("cni/networks/secnet-pod-network"),
    )
    .map(|rd| {
        rd.filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("10."))
            .collect()
    })
    .unwrap_or_default();
    ensure(leases.is_empty(), || {
        format!("host-local leases left: {leases:?}")
    })
}

/// Portable: on a real cluster the scheduler and the kubelet place the 50 pods.
async fn fifty_at_once(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    let created = join_all(
        (0..50).map(|i| cluster.create_pod(named(base.clone(), &format!("p{i:02}"), Some(&node)))),
    )
    .await;
    let mut pods = Vec::new();
    for (i, r) in created.into_iter().enumerate() {
        pods.push(r.map_err(|err| format!("pod p{i:02}: {err}"))?);
    }
    if cluster.netns().is_some() {
        // Device IDs come from the kubelet's admission, which only the netns cluster shows.
        let devices: BTreeSet<&String> = pods.iter().flat_map(|p| &p.devices[DATAPLANE]).collect();
        ensure(devices.len() == 50, || {
            format!("{} distinct devices for 50 pods", devices.len())
        })?;
    } else {
        ctx.observed.note(
            "distinct device IDs: the kubelet's allocations are not visible on this provider",
        );
    }
    let mut macs = BTreeSet::new();
    for p in &pods {
        macs.insert(pod_iface(cluster, p, "net1").await?.mac);
    }
    ensure(macs.len() == 50, || {
        format!("{} distinct MACs for 50 pods", macs.len())
    })?;
    match cluster.create_pod(named(base, "p50", Some(&node))).await {
        Err(ClusterError::Unschedulable { .. }) => Ok(()),
        other => Err(format!("the 51st pod must not fit, got {other:?}")),
    }
}
