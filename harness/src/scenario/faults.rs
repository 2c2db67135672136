//! Faults survived (label `fault`): kubelet restart, device plugin killed, the lower
//! device down/deleted/recreated, the pod netns gone before DEL, and 50 pods at once.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt as _;
use futures::future::{BoxFuture, join_all};

use super::kit::{DATAPLANE, DEL_NETNS_GONE, PodIface, fixture_pod, named, pod_iface, pod_link};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, ClusterError, wait_allocatable};
use crate::lab::wait::{Pace, Seen, poll_until};

const BACK: Duration = Duration::from_secs(5);

/// Why kubevirt/macvtap-cni's device plugin misses the `BACK` bound.
const SLOW_REGISTRATION: &str = "kubevirt/macvtap-cni's device plugin registers only ~10 s after it starts or after kubelet.sock comes back (a wait loop that never ends early), longer than the 5 s these faults allow";

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "fault/kubelet restart: resources back, allocations kept",
            "macvtap",
            "node",
            &["fault", "capacity"],
            |ctx, c| Box::pin(kubelet_restart(ctx, c)),
        )
        .needs(&[Capability::NodeFaults])
        .deploy_macvtap_seed()
        .beyond_reference(SLOW_REGISTRATION),
        Scenario::on_cluster(
            "fault/device plugin SIGKILL and restart: capacity back, no stale links",
            "macvtap",
            "node",
            &["fault", "deviceplugin"],
            |ctx, c| Box::pin(plugin_killed(ctx, c)),
        )
        .needs(&[Capability::DevicePluginRestart])
        .deploy_macvtap_seed()
        .beyond_reference(SLOW_REGISTRATION),
        Scenario::on_cluster(
            "fault/lower device down, deleted, recreated: Unhealthy then Healthy",
            "macvtap",
            "node",
            &["fault", "capacity"],
            |ctx, c| Box::pin(lower_device_faults(ctx, c)),
        )
        .needs(&[Capability::NodeFaults, Capability::NodeAccess])
        .deploy_macvtap_seed()
        .beyond_reference(
            "kubevirt/macvtap-cni's device plugin does not notice a lower link going down (no Unhealthy); it sends an empty list only when the link is deleted",
        ),
        Scenario::on_cluster(
            "fault/pod netns deleted before CNI DEL: devices and leases freed",
            "macvtap",
            "pod",
            &["fault"],
            |ctx, c| Box::pin(netns_gone_before_del(ctx, c)),
        )
        .needs(&[Capability::NodeFaults, Capability::NodeAccess])
        .deploy_macvtap_seed()
        .beyond_reference(DEL_NETNS_GONE),
        Scenario::on_cluster(
            "fault/50 pods at once on one node: distinct devices and MACs",
            "macvtap",
            "pod",
            &["fault", "capacity", "concurrency"],
            |ctx, c| Box::pin(fifty_at_once(ctx, c)),
        )
        .deploy_macvtap_seed(),
    ]
}

async fn allocated(cluster: &AnyCluster, node: &str) -> Result<u64, Failure> {
    Ok(cluster
        .node_resources(node)
        .await?
        .allocated
        .get(DATAPLANE)
        .copied()
        .unwrap_or(0))
}

/// The macvtaps on `node` itself (not in a pod) (NodeAccess).
async fn node_macvtaps(cluster: &AnyCluster, node: &str) -> Result<Vec<String>, Failure> {
    let out = cluster
        .node_ip(node, &["-j", "-d", "link", "show", "type", "macvtap"])
        .await?;
    let links = crate::probe::ip::links(&out)?;
    Ok(crate::probe::ip::link_names(&links))
}

/// Waits until `node` offers `allocatable` of the seed's resource, saying after what.
async fn wait_dataplane(
    cluster: &AnyCluster,
    node: &str,
    allocatable: u64,
    within: Duration,
    after: &str,
) -> Outcome {
    wait_allocatable(cluster, node, DATAPLANE, allocatable, within)
        .await
        .map_err(|m| Failure::msg(format!("{after}: {m}")))
}

async fn kubelet_restart(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    let a = cluster
        .create_pod(named(base.clone(), "before", Some(&node)))
        .await?;
    cluster.restart_kubelet(&node).await?;
    wait_dataplane(cluster, &node, 50, BACK, "after the kubelet restart").await?;
    ensure(allocated(cluster, &node).await? == 1, || {
        "the allocation of the pod made before the restart was lost".into()
    })?;
    pod_link(cluster, &a, "net1")
        .await
        .map_err(|f| Failure::caused("the pod lost net1 across the kubelet restart", f))?;
    let b = cluster
        .create_pod(named(base, "after", Some(&node)))
        .await?;
    if !cluster.offers(Capability::NodeAccess) {
        ctx.observed.note(
            "distinct device IDs: the kubelet's allocations are not visible on this provider",
        );
        return Ok(());
    }
    // Device IDs come from the kubelet's admission, which only node access shows.
    let (da, db) = (
        cluster.pod_devices(&a).await?,
        cluster.pod_devices(&b).await?,
    );
    let (da, db) = (da.get(DATAPLANE), db.get(DATAPLANE));
    ensure(da.is_some() && da != db, || {
        format!("the pods got devices {da:?} and {db:?}")
    })
}

/// Portable: on a real cluster the device plugin's pod is deleted with no grace
/// period and the DaemonSet brings it back.
async fn plugin_killed(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    let a = cluster
        .create_pod(named(base.clone(), "before", Some(&node)))
        .await?;
    let restart = cluster.device_plugin_restart()?;
    restart.restart_device_plugin(&node, DATAPLANE).await?;
    // A real cluster pulls and schedules the DaemonSet's new pod first; where
    // secnet runs the nodes, the plugin is started again at once.
    let back = restart.back_within();
    wait_dataplane(cluster, &node, 50, back, "after the plugin restart").await?;
    pod_iface(cluster, &a, "net1")
        .await
        .map_err(|f| Failure::caused("the pod lost net1 when the plugin died", f))?;
    let b = cluster
        .create_pod(named(base, "after", Some(&node)))
        .await?;
    pod_iface(cluster, &b, "net1").await?;
    if !cluster.offers(Capability::NodeAccess) {
        ctx.observed
            .note("stale or duplicate macvtaps on the node: no node access on this provider");
        return Ok(());
    }
    let stale = node_macvtaps(cluster, &node).await?;
    ensure(stale.is_empty(), || {
        format!("macvtaps left on the node (stale or duplicate): {stale:?}")
    })
}

async fn lower_device_faults(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let lower = cluster.lower_device();
    let base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    let try_pod = |name: &str| named(base.clone(), name, Some(&node));
    let existing = cluster.create_pod(try_pod("existing")).await?;
    let said = last_said(cluster, &node, &lower).await?;
    cluster
        .node_ip(&node, &["link", "set", &lower, "down"])
        .await?;
    wait_dataplane(cluster, &node, 0, BACK, &format!("{lower} down")).await?;
    let said = says_why(cluster, &node, &lower, said, "went down").await?;
    match cluster.create_pod(try_pod("while-down")).await {
        Err(ClusterError::Unschedulable { message, .. }) if message.contains("Insufficient") => {}
        other => {
            return fail(format!(
                "a pod must wait while the lower device {lower} is down, got {other:?}"
            ));
        }
    }
    let link = pod_link(cluster, &existing, "net1").await?;
    let state = link.operstate.as_str();
    ensure(state != "UP", || {
        format!("the existing pod's net1 claims {state} while its lower device {lower} is down")
    })?;
    cluster
        .node_ip(&node, &["link", "set", &lower, "up"])
        .await?;
    wait_dataplane(cluster, &node, 50, BACK, &format!("{lower} up again")).await?;
    says_why(cluster, &node, &lower, said, "came up again").await?;
    cluster.create_pod(try_pod("after-up")).await?;
    cluster.unplug_uplink(&node).await?;
    wait_dataplane(cluster, &node, 0, BACK, &format!("{lower} deleted")).await?;
    cluster.plug_uplink(&node).await?;
    wait_dataplane(cluster, &node, 50, BACK, &format!("{lower} recreated")).await?;
    let p = cluster.create_pod(try_pod("after-recreate")).await?;
    pod_link(cluster, &p, "net1").await?;
    Ok(())
}

/// What the device plugin on `node` said last about `lower`: its last log line
/// naming it, without a leading timestamp (so that saying the same again is no news).
async fn last_said(
    cluster: &AnyCluster,
    node: &str,
    lower: &str,
) -> Result<Option<String>, Failure> {
    let log = cluster.device_plugin_log(node).await?;
    let line = log.lines().rev().find(|l| l.contains(lower));
    Ok(line.map(|l| match l.split_once(' ') {
        Some((first, rest)) if first.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.trim_start().to_string()
        }
        _ => l.to_string(),
    }))
}

/// The kubelet learns only that the devices turned Unhealthy (or Healthy again); an
/// operator learns why from the device plugin's log: what it last said about the
/// lower device must change (its wording is not judged). Returns the new statement.
async fn says_why(
    cluster: &AnyCluster,
    node: &str,
    lower: &str,
    before: Option<String>,
    what: &str,
) -> Result<Option<String>, Failure> {
    let pace = Pace::every(Duration::from_millis(200));
    let said = poll_until(BACK, pace, || async {
        let now = last_said(cluster, node, lower).await?;
        Ok::<_, Failure>(if now.is_some() && now != before {
            Seen::Ready(now)
        } else {
            Seen::NotYet(())
        })
    })
    .await?;
    match said {
        Ok(now) => Ok(now),
        Err(()) => fail(format!(
            "the lower device {lower} {what} and the node's devices followed, but within {BACK:?} the device plugin on {node} logged nothing new about {lower} (why its devices changed health); the last it said about it: {}",
            before.as_deref().unwrap_or("nothing")
        )),
    }
}

async fn netns_gone_before_del(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let pod = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "rebooted",
            Some(&node),
        ))
        .await?;
    // The pod's own lease on the pod network, as multus reported it: the node's
    // other pods (a real cluster's component pods not on the host network) keep
    // theirs.
    let own: Vec<String> = super::kit::network_status(&pod)?
        .into_iter()
        .filter(|s| s.default)
        .flat_map(|s| s.ips)
        .collect();
    ensure(!own.is_empty(), || {
        "the pod's network-status names no address on the default network".into()
    })?;
    let leased = cluster.pod_network_leases(&node).await?;
    ensure(own.iter().all(|ip| leased.contains(ip)), || {
        format!("the pod's addresses {own:?} are not among the node's host-local leases {leased:?}")
    })?;
    cluster.lose_pod_netns(&pod).await?;
    cluster
        .delete_pod(&pod.namespace, &pod.name)
        .await
        .map_err(|e| Failure::caused("DEL after the netns vanished must succeed", e))?;
    ensure(allocated(cluster, &node).await? == 0, || {
        "the device was not freed".into()
    })?;
    // The pod network's host-local lease is freed too.
    let leases = cluster.pod_network_leases(&node).await?;
    let left: Vec<&String> = own.iter().filter(|ip| leases.contains(ip)).collect();
    ensure(left.is_empty(), || {
        format!("host-local leases of the pod left: {left:?}")
    })
}

/// Portable: on a real cluster the scheduler and the kubelet place the 50 pods.
/// The answers of `reads` (one per pod), in order, a few at a time: each is an exec
/// or a node read through the API server, which waits mostly on the node.
/// A pod's device IDs by resource name.
type Devices = std::collections::BTreeMap<String, Vec<String>>;

async fn several_at_once<T>(reads: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    futures::stream::iter(reads).buffered(8).collect().await
}

async fn fifty_at_once(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let base = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    let created = join_all(
        (0..50).map(|i| cluster.create_pod(named(base.clone(), &format!("p{i:02}"), Some(&node)))),
    )
    .await;
    let mut pods = Vec::new();
    for (i, r) in created.into_iter().enumerate() {
        pods.push(r.map_err(|e| Failure::caused(format!("pod p{i:02}"), e))?);
    }
    if cluster.offers(Capability::NodeAccess) {
        // Device IDs come from the kubelet's admission, which only node access shows.
        let mut devices = BTreeSet::new();
        for ids in several_at_once(
            pods.iter()
                .map(|p| Box::pin(cluster.pod_devices(p)) as BoxFuture<'_, Result<Devices, _>>)
                .collect(),
        )
        .await
        {
            devices.extend(ids?.remove(DATAPLANE).unwrap_or_default());
        }
        ensure(devices.len() == 50, || {
            format!("{} distinct devices for 50 pods", devices.len())
        })?;
    } else {
        ctx.observed.note(
            "distinct device IDs: the kubelet's allocations are not visible on this provider",
        );
    }
    let mut macs = BTreeSet::new();
    for iface in several_at_once(
        pods.iter()
            .map(|p| Box::pin(pod_iface(cluster, p, "net1")) as BoxFuture<'_, Result<PodIface, _>>)
            .collect(),
    )
    .await
    {
        macs.insert(iface?.mac);
    }
    ensure(macs.len() == 50, || {
        format!("{} distinct MACs for 50 pods", macs.len())
    })?;
    match cluster.create_pod(named(base, "p50", Some(&node))).await {
        Err(ClusterError::Unschedulable { .. }) => Ok(()),
        other => fail(format!("the 51st pod must not fit, got {other:?}")),
    }
}
