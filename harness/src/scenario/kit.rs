//! What every scenario family uses: fixtures, pods named and placed, the pods'
//! network-status, and reachability probes that are recorded for the report. Only
//! the `Cluster` contract and `AnyCluster`'s abilities are used here, never a
//! provider.

use super::{Ctx, Failure, Outcome, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::probe;
use crate::cluster::{Cluster, PodView};
use crate::multus::status::NetworkStatus;
use crate::objects::{NetworkAttachmentDefinition, Object, Pod, load_file};

pub use crate::cluster::probe::PodIface;

/// The seed's macvtap resource.
pub const DATAPLANE: &str = "macvtap.network.kubevirt.io/dataplane";

/// The group, on a shared cluster, of the scenarios whose pods take the seed's
/// macvtap devices: they reuse the seed's NADs and count the nodes' devices, which
/// no scenario that runs beside others uses; so one of them at a time, beside the
/// rest.
pub const MACVTAP_PODS: &str = "macvtap pods";

/// The objects of fixture file `rel` (relative to the fixtures directory).
pub fn fixture(ctx: &Ctx, rel: &str) -> Result<Vec<Object>, Failure> {
    Ok(load_file(&ctx.fixtures_dir.join(rel))?)
}

/// The first Pod of fixture file `rel`.
pub fn fixture_pod(ctx: &Ctx, rel: &str) -> Result<Pod, Failure> {
    match fixture(ctx, rel)?.into_iter().next() {
        Some(Object::Pod(p)) => Ok(p),
        other => fail(format!("{rel} holds no Pod: {other:?}")),
    }
}

/// The first NetworkAttachmentDefinition of fixture file `rel`.
pub fn fixture_nad(ctx: &Ctx, rel: &str) -> Result<NetworkAttachmentDefinition, Failure> {
    match fixture(ctx, rel)?.into_iter().next() {
        Some(Object::Nad(n)) => Ok(n),
        other => fail(format!(
            "{rel} holds no NetworkAttachmentDefinition: {other:?}"
        )),
    }
}

/// `pod` renamed and, with `node`, pinned to it.
pub fn named(mut pod: Pod, name: &str, node: Option<&str>) -> Pod {
    pod.metadata.name = name.to_string();
    pod.spec.node_name = node.map(str::to_string);
    pod
}

/// Creates `pods` at once (a real kubelet takes seconds per pod, most of it
/// waiting); their views in the same order, or the first failure, named.
pub async fn start_pods<C: Cluster>(cluster: &C, pods: Vec<Pod>) -> Result<Vec<PodView>, Failure> {
    let names: Vec<String> = pods.iter().map(|p| p.metadata.name.clone()).collect();
    let started = futures::future::join_all(pods.into_iter().map(|p| cluster.create_pod(p))).await;
    names
        .into_iter()
        .zip(started)
        .map(|(name, r)| r.map_err(|e| Failure::caused(format!("pod {name}"), e)))
        .collect()
}

/// Deletes `pods` at once, each waited for until gone.
pub async fn delete_pods<C: Cluster>(cluster: &C, pods: &[PodView]) -> Outcome {
    let deleted = futures::future::join_all(
        pods.iter()
            .map(|p| cluster.delete_pod(&p.namespace, &p.name)),
    )
    .await;
    for (p, r) in pods.iter().zip(deleted) {
        r.map_err(|e| Failure::caused(format!("deleting pod {}", p.name), e))?;
    }
    Ok(())
}

/// Lets the pod's probes change its interfaces (`ip addr add`): a real container
/// runtime drops NET_ADMIN by default.
pub fn with_net_admin(mut pod: Pod) -> Pod {
    for c in &mut pod.spec.containers {
        c.security_context = Some(serde_json::json!({"capabilities": {"add": ["NET_ADMIN"]}}));
    }
    pod
}

/// The pod's network-status annotation, parsed.
pub fn network_status(pod: &PodView) -> Result<Vec<NetworkStatus>, Failure> {
    let text = pod
        .annotations
        .get(crate::multus::NETWORK_STATUS_ANNOTATION)
        .ok_or_else(|| {
            Failure::msg(format!("pod {} has no network-status annotation", pod.name))
        })?;
    crate::multus::status::parse_annotation(text)
        .map_err(|e| Failure::caused(format!("pod {}'s network-status", pod.name), e))
}

/// The network-status entry of network `name` (`namespace/nad`) of `pod`. The
/// fixtures' namespace `default` is the pod's own (a real cluster's run namespace).
pub fn status_of(pod: &PodView, name: &str) -> Result<NetworkStatus, Failure> {
    let status = network_status(pod)?;
    let in_pods_ns = name
        .strip_prefix("default/")
        .map(|nad| format!("{}/{nad}", pod.namespace));
    status
        .iter()
        .find(|s| s.name == name || Some(&s.name) == in_pods_ns.as_ref())
        .cloned()
        .ok_or_else(|| {
            Failure::msg(format!(
                "{}: no {name} in network-status {status:?}",
                pod.name
            ))
        })
}

/// Runs `argv` in the pod; its stdout, or a failure naming the command and stderr.
pub async fn pod_run<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    argv: &[&str],
) -> Result<String, Failure> {
    Ok(probe::pod_run(cluster, pod, argv).await?)
}

/// `ip -o link` of `ifname` in the pod, parsed (iproute2 and busybox).
pub async fn pod_iface<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    ifname: &str,
) -> Result<PodIface, Failure> {
    Ok(probe::pod_iface(cluster, pod, ifname).await?)
}

/// `ip -j -d link show <ifname>` of the pod: in the pod, or from its node where
/// the pod has no iproute2 (see `AnyCluster::pod_link`).
pub async fn pod_link(
    cluster: &AnyCluster,
    pod: &PodView,
    ifname: &str,
) -> Result<crate::probe::ip::LinkFacts, Failure> {
    Ok(cluster.pod_link(pod, ifname).await?)
}

/// `ip addr add <cidr> dev <ifname>` in the pod.
pub async fn add_addr<C: Cluster>(cluster: &C, pod: &PodView, cidr: &str, ifname: &str) -> Outcome {
    Ok(probe::add_addr(cluster, pod, cidr, ifname).await?)
}

/// Whether one ping from `pod` to `ip` is answered; an error when the ping did not
/// run (no `ping` in the image, no NET_RAW): never a vacuous "not reachable".
pub async fn ping<C: Cluster>(cluster: &C, pod: &PodView, ip: &str) -> Result<bool, Failure> {
    Ok(probe::ping(cluster, pod, ip).await?)
}

pub use super::reach::{Protocol, Table};

/// Pings `ip` (named `target` in the report) from `pod`; the probe is recorded and
/// fails the step unless the outcome is `expected`. Prefer a [`Table`], which also
/// probes TCP and UDP and insists on positive controls.
pub async fn expect_reach<C: Cluster>(
    ctx: &Ctx,
    cluster: &C,
    pod: &PodView,
    target: &str,
    ip: &str,
    expected: bool,
) -> Outcome {
    let observed = ping(cluster, pod, ip).await?;
    ctx.observed
        .probe(&pod.name, &format!("{target} ({ip})"), expected, observed);
    match (expected, observed) {
        (true, false) => fail(format!("{} cannot reach {target} ({ip})", pod.name)),
        (false, true) => fail(format!(
            "{} reaches {target} ({ip}) although it must not",
            pod.name
        )),
        _ => Ok(()),
    }
}

/// Host `n` of the LAN's /24 (the topology's fabric subnet): pod and guest addresses
/// on the nodes' own subnet, so that the uplinks are in reach too.
pub fn lan_host(ctx: &Ctx, n: u8) -> String {
    ctx.topology.lan_host(n).to_string()
}

// ---- What the macvtap-cni, security and faults families share ----

/// The spec's rule that kubevirt/macvtap-cni breaks (REFERENCE.md §1, §6): the CNI-level
/// and the cluster-level "netns gone before DEL" scenarios both say it.
pub const DEL_NETNS_GONE: &str = "the CNI spec wants DEL to succeed when the netns is already gone; kubevirt/macvtap-cni returns error 999 for a netns path that no longer exists (a known upstream bug)";

/// A node lab step (a namespace, a link) that failed: the lab, not the plugin.
pub fn lab_failure(e: crate::lab::command::CommandError) -> Failure {
    Failure::caused("failed to set up the node lab", e)
}

/// A scratch directory for this scenario (`$TMPDIR/<run>-<scope>-<tag>-…`), removed
/// when dropped.
pub fn scratch_dir(ctx: &Ctx, tag: &str) -> Result<crate::lab::ScratchDir, Failure> {
    let prefix = format!("{}-{}-{tag}", ctx.run_id, ctx.scope);
    crate::lab::ScratchDir::new(&prefix)
        .map_err(|e| Failure::caused(format!("failed to create a scratch dir {prefix}-…"), e))
}

/// Writes the node administrator's plugin policy (`SECNET_PLUGIN_POLICY`; `None`: no
/// file at all) into `scratch` and returns the path to pass in the environment.
pub fn node_policy(
    scratch: &crate::lab::ScratchDir,
    policy: Option<&str>,
) -> Result<String, Failure> {
    let path = scratch.path().join("plugins.conf");
    if let Some(text) = policy {
        std::fs::write(&path, text).map_err(|e| {
            Failure::caused(format!("failed to write the policy {}", path.display()), e)
        })?;
    }
    Ok(path.display().to_string())
}

/// Userspace Open vSwitch (ovsdb-server + ovs-vswitchd, stopped on drop) in a node
/// lab's node namespace, its files under `dir`: the OVS the netns nodes run, for the
/// scenarios that call the OVS plugin directly. Needs `Program("ovsdb-server")`.
pub fn lab_ovs(nl: &crate::lab::node::NodeLab, dir: &std::path::Path) -> Result<LabOvs, Failure> {
    let enter = crate::lab::enter::Enter::net(nl.node.path())
        .map_err(|e| Failure::caused(format!("failed to open {}", nl.node.path_str()), e))?;
    Ok(LabOvs::start(&enter, dir)?)
}

/// The one provider item here: the netns nodes' OVS daemons, which use nothing but
/// `crate::lab` and belong there (a move left to the crate-seams work).
pub use crate::cluster::netns::ovs::Ovs as LabOvs;

/// Records the cluster for the report now, before the scenario deletes what it
/// checks the removal of (the runner's snapshot comes after the assessment).
pub async fn record_topology(ctx: &Ctx, cluster: &AnyCluster) {
    ctx.observed.topology(cluster.snapshot().await);
}
