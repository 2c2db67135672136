//! Silent degradation: the failure users report most is a pod that is Running
//! without a secondary NIC it asked for (multus-cni 1387 and 1527, CNAO 1810).
//! Each scenario breaks one thing a pod start depends on while pods start (the
//! kubelet restarted, multus restarted under a pod's ADD, the node's primary CNI
//! config rewritten) and then holds the cluster to the invariant of
//! `invariant::check`: every pod starts with every network or not at all, nothing
//! of a vanished pod is left (OVS ports, leases, devices).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::invariant::{self, Expect};
use super::kit::{self, DATAPLANE, fixture_pod, named};
use super::{Capability, Ctx, Failure, Outcome, Scenario, ensure, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, ClusterError, PodView};
use crate::multus::NETWORKS_ANNOTATION;
use crate::objects::{Meta, NadSpec, NetworkAttachmentDefinition, Object, Pod};

pub fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario::on_cluster(
            "fault/kubelet restart while pods start: no pod runs without its networks",
            "macvtap",
            "pod",
            &["fault", "degradation", "network-status", "capacity", "ipam"],
            |ctx, c| Box::pin(kubelet_restart_keeps_every_network(ctx, c)),
        )
        .needs(&[Capability::NodeFaults, Capability::NodeAccess])
        .deploy_macvtap_seed(),
        Scenario::on_cluster(
            "fault/multus restarted under a pod's ADD: every network or a failed start, nothing left",
            "macvtap",
            "pod",
            &["fault", "degradation", "network-status", "capacity", "ipam", "vlan"],
            |ctx, c| Box::pin(multus_restart_under_adds(ctx, c)),
        )
        .needs(&[
            Capability::MultusFaults,
            Capability::NodeAccess,
            Capability::Ovs,
        ])
        .deploy_macvtap_seed()
        .deploy(&[OVS_NAD_FILE]),
        Scenario::on_cluster(
            "fault/primary CNI config rewritten on a node: new pods follow it, old pods keep theirs",
            "macvtap",
            "pod",
            &["fault", "degradation", "network-status", "mtu", "ipam"],
            |ctx, c| Box::pin(primary_config_rewritten(ctx, c)),
        )
        .needs(&[Capability::MultusFaults, Capability::NodeAccess])
        .deploy_macvtap_seed(),
    ]
}

const MACVLAN_NAD: &str = "deg-macvlan";
const OVS_NAD_FILE: &str = "seed/ovs-vlan-100-nad.yaml";
const OVS_NETWORK: &str = "default/ovs-vlan-100";

/// The first node of the cluster.
fn first_node(c: &AnyCluster) -> Result<String, Failure> {
    c.nodes()
        .into_iter()
        .next()
        .ok_or_else(|| Failure::msg("the cluster has no node"))
}

/// Applies the `deg-macvlan` NAD (macvlan + host-local on `subnet`); where the
/// nodes are this machine's, its leases go to a dataDir of the run, returned
/// as the invariant's host-local network.
async fn apply_macvlan_nad(
    ctx: &Ctx,
    c: &AnyCluster,
    subnet: &str,
) -> Result<Vec<(String, PathBuf)>, Failure> {
    let lease_dir = c
        .local_topology()
        .map(|_| ctx.work_dir.join(format!("ipam-{}-deg", ctx.scope)));
    let mut ipam = json!({"type": "host-local", "ranges": [[{"subnet": subnet}]]});
    if let Some(dir) = &lease_dir {
        ipam["dataDir"] = json!(dir.display().to_string());
    }
    let config = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": c.lower_device(),
                        "mode": "bridge", "ipam": ipam});
    c.apply(vec![Object::Nad(NetworkAttachmentDefinition {
        metadata: Meta {
            name: MACVLAN_NAD.into(),
            namespace: "default".into(),
            ..Default::default()
        },
        spec: NadSpec {
            config: config.to_string(),
        },
    })])
    .await?;
    // host-local keeps a network's leases under dataDir/<network name>.
    Ok(lease_dir
        .map(|d| vec![(format!("default/{MACVLAN_NAD}"), d.join(MACVLAN_NAD))])
        .unwrap_or_default())
}

/// The seed's macvtap pod selecting `networks`.
fn pod_selecting(ctx: &Ctx, networks: &str) -> Result<Pod, Failure> {
    let mut pod = fixture_pod(ctx, "seed/macvtap-pod.yaml")?;
    pod.metadata
        .annotations
        .insert(NETWORKS_ANNOTATION.into(), networks.into());
    Ok(pod)
}

/// Creates `names` on `node` one after the other; each start's outcome.
async fn start_each(
    c: &AnyCluster,
    base: &Pod,
    node: &str,
    names: &[String],
) -> Vec<(String, Result<PodView, ClusterError>)> {
    let mut out = Vec::new();
    for name in names {
        let started = c.create_pod(named(base.clone(), name, Some(node))).await;
        out.push((name.clone(), started));
    }
    out
}

async fn kubelet_restart_keeps_every_network(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let node = first_node(c)?;
    let host_local = apply_macvlan_nad(ctx, c, "10.253.0.0/24").await?;
    let base = pod_selecting(ctx, &format!("dataplane,{MACVLAN_NAD}"))?;
    let mut pods = Vec::new();
    for i in 0..2 {
        pods.push(
            c.create_pod(named(base.clone(), &format!("deg-{i}"), Some(&node)))
                .await?,
        );
    }
    // Kubelet restarts while two more pods start on that node: each either
    // starts with every network or not at all.
    let names: Vec<String> = (2..4).map(|i| format!("deg-{i}")).collect();
    let (restarted, started) = tokio::join!(
        c.restart_kubelet(&node),
        start_each(c, &base, &node, &names)
    );
    restarted?;
    let mut refused = Vec::new();
    for (name, r) in started {
        match r {
            Ok(p) => pods.push(p),
            Err(e) => refused.push(format!("{name}: {e}")),
        }
    }
    if !refused.is_empty() {
        ctx.observed.note(&format!(
            "started during the kubelet restart and refused (not running): {}",
            refused.join("; ")
        ));
    }
    // The pod network's leases are left out: on a real cluster other pods (node
    // probes) may hold some.
    let expect = Expect {
        live: pods,
        host_local,
        resources: vec![DATAPLANE.into()],
        ..Default::default()
    };
    invariant::check(c, &expect).await?;

    // The check itself, held to a dropped attachment: it must name the pod and
    // the network.
    let victim = &expect.live[0];
    // From the node where it can: a real cluster's pod (busybox, no NET_ADMIN)
    // may not delete its own links.
    if c.offers(Capability::NodeAccess) {
        c.pod_ip(victim, &["link", "del", "net2"]).await?;
    } else {
        kit::pod_run(c, victim, &["ip", "link", "del", "net2"]).await?;
    }
    match invariant::check(c, &expect).await {
        // The NAD's namespace is the pod's: `default` on netns, the run's on a
        // real cluster.
        Err(f)
            if f.message().contains(&format!(
                "pod {} runs without net2 ({}/{MACVLAN_NAD})",
                victim.name,
                if victim.namespace.is_empty() {
                    "default"
                } else {
                    &victim.namespace
                }
            )) =>
        {
            ctx.observed
                .note(&format!("dropped attachment caught: {}", f.message()));
            Ok(())
        }
        other => fail(format!(
            "{}'s net2 was deleted but the invariant said {other:?}: it cannot catch a dropped attachment",
            victim.name
        )),
    }
}

/// How long multus stays down, and how long the restart waits for an ADD to cut.
const MULTUS_DOWN: Duration = Duration::from_millis(300);
const WAIT_FOR_ADD: Duration = Duration::from_secs(30);

async fn multus_restart_under_adds(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let node = first_node(c)?;
    let host_local = apply_macvlan_nad(ctx, c, "10.253.1.0/24").await?;
    let base = pod_selecting(ctx, &format!("dataplane,{MACVLAN_NAD},ovs-vlan-100"))?;
    let mut live = vec![
        c.create_pod(named(base.clone(), "mr-0", Some(&node)))
            .await?,
    ];
    // multus restarts as soon as the first of three pods is being attached.
    let names: Vec<String> = (1..4).map(|i| format!("mr-{i}")).collect();
    let faults = c.multus_faults()?;
    let (restarted, started) = tokio::join!(
        faults.restart_multus(&node, WAIT_FOR_ADD, MULTUS_DOWN),
        start_each(c, &base, &node, &names)
    );
    restarted?;
    let (mut cut, mut failed) = (0, Vec::new());
    for (name, r) in started {
        match r {
            Ok(p) => live.push(p),
            Err(e) => {
                let message = e.to_string();
                if !message.contains("multus on node") {
                    return fail(format!(
                        "{name} failed to start during the multus restart, but not because of it: {message}"
                    ));
                }
                cut += usize::from(message.contains("restarted during the pod's ADD"));
                failed.push(format!("{name}: {message}"));
            }
        }
    }
    ensure(cut > 0, || {
        format!(
            "multus restarted under a pod's ADD, but no start failed for it (failed: {failed:?}): a pod whose ADD was cut off started anyway"
        )
    })?;
    ctx.observed.note(&format!(
        "{} of {} pods started during the multus restart; failed visibly: {}",
        live.len() - 1,
        names.len(),
        failed.join("; ")
    ));
    // multus is back: a pod started now gets every network.
    live.push(
        c.create_pod(named(base.clone(), "mr-4", Some(&node)))
            .await?,
    );
    let mut expect = Expect {
        live,
        ovs_networks: vec![OVS_NETWORK.into()],
        host_local,
        resources: vec![DATAPLANE.into()],
        pod_network_leases: true,
    };
    invariant::check(c, &expect).await?;
    // A pod from before the restart is torn down with what multus gave it then.
    let old = expect.live.remove(0);
    c.delete_pod(&old.namespace, &old.name).await?;
    invariant::check(c, &expect).await
}

/// The primary network rewritten: the same network, its chain extended with
/// `tuning` (MTU 1400), the file replaced in place as a CNI installer does.
fn rewritten_primary(original: &str) -> Result<String, Failure> {
    let mut conf: serde_json::Value = serde_json::from_str(original)?;
    let plugins = conf["plugins"].as_array_mut().ok_or_else(|| {
        Failure::msg(format!("the primary CNI config has no plugins: {original}"))
    })?;
    plugins.push(json!({"type": "tuning", "mtu": REWRITTEN_MTU}));
    Ok(serde_json::to_string_pretty(&conf)?)
}

const REWRITTEN_MTU: u32 = 1400;

async fn primary_config_rewritten(ctx: &Ctx, c: &AnyCluster) -> Outcome {
    let node = first_node(c)?;
    let host_local = apply_macvlan_nad(ctx, c, "10.253.2.0/24").await?;
    let base = pod_selecting(ctx, &format!("dataplane,{MACVLAN_NAD}"))?;
    let faults = c.multus_faults()?;
    let file = faults.primary_cni_config(&node).await?;
    let mut live = Vec::new();
    for i in 0..2 {
        live.push(
            c.create_pod(named(base.clone(), &format!("pc-{i}"), Some(&node)))
                .await?,
        );
    }
    let original = read_primary(c, &node, &file).await?;
    let rewritten = rewritten_primary(&original)?;
    faults.write_cni_config(&node, &file, &rewritten).await?;
    let after = c
        .create_pod(named(base.clone(), "pc-2", Some(&node)))
        .await?;
    let mtu = kit::pod_iface(c, &after, "eth0").await?.mtu;
    ensure(mtu == REWRITTEN_MTU, || {
        format!(
            "{file} on {node} was rewritten with tuning mtu {REWRITTEN_MTU}, but pc-2 started after it has eth0 MTU {mtu}: multus did not read the rewritten primary network"
        )
    })?;
    let old_mtu = kit::pod_iface(c, &live[0], "eth0").await?.mtu;
    ensure(old_mtu != REWRITTEN_MTU, || {
        format!("pc-0 started before the rewrite, yet its eth0 MTU changed to {old_mtu}")
    })?;
    live.push(after);
    let mut expect = Expect {
        live,
        host_local,
        resources: vec![DATAPLANE.into()],
        pod_network_leases: true,
        ..Default::default()
    };
    invariant::check(c, &expect).await?;

    // Half a file (an installer killed while writing): the next pod fails visibly,
    // naming the file, and leaves nothing behind.
    let half = &rewritten[..rewritten.len() / 2];
    faults.write_cni_config(&node, &file, half).await?;
    match c.create_pod(named(base.clone(), "pc-3", Some(&node))).await {
        Ok(p) => {
            return fail(format!(
                "pod {} started although {file} on {node} is half a JSON document",
                p.name
            ));
        }
        Err(e) => ensure(e.to_string().contains(&file), || {
            format!(
                "pc-3's start failed on the broken {file}, but the error does not name the file: {e}"
            )
        })?,
    }
    invariant::check(c, &expect).await?;

    // Pods from before the rewrite are torn down with the config they were made
    // with (the file is still broken): their eth0 leases released, devices freed.
    for _ in 0..2 {
        let old = expect.live.remove(0);
        c.delete_pod(&old.namespace, &old.name).await?;
    }
    invariant::check(c, &expect).await?;
    faults.write_cni_config(&node, &file, &original).await?;
    Ok(())
}

/// The text of `file` in `node`'s CNI config dir, through the node's own view.
async fn read_primary(c: &AnyCluster, node: &str, file: &str) -> Result<String, Failure> {
    c.multus_faults()?
        .read_cni_config(node, file)
        .await
        .map_err(Failure::from)
}
