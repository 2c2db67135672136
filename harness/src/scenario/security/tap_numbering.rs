//! How the device plugin numbers its macvtaps, attacked from both sides.
//!
//! Its macvtaps must not take the `/dev/tapN` of a neighbour: devtmpfs is one for the whole machine, but ifindexes are numbered per network
//! namespace. A device plugin outside the machine's own namespace (a kind node, a
//! netns node) that numbers its macvtaps the kernel's way holds `/dev/tap<small N>`,
//! and the next namespace whose kernel numbering reaches N (another node's CNI,
//! libvirt in a container) finds its macvtap's node taken: it opens ours.
//!
//! And a neighbour holding the `/dev/tapN` the plugin would pick must not stop it:
//! the plugin skips a taken node and picks another index.

use super::{TapNode, tap_node};
use crate::cluster::Cluster;
use crate::cluster::any::AnyCluster;
use crate::lab::Ns;
use crate::objects::Pod;
use crate::scenario::kit::{DATAPLANE, fixture_pod, named, pod_link};
use crate::scenario::{Ctx, Failure, Outcome, fail};

/// How far the neighbour counts: past any index a namespace of a node reaches by
/// itself in a test run (a few dozen links), far below the plugin's own range.
const NEIGHBOUR_REACH: u32 = 256;

fn net_ns_inode(pid: &str) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|m| m.ino())
}

async fn link_index(cluster: &AnyCluster, ns: &Ns, name: &str) -> Result<u32, Failure> {
    let shown = cluster.ns_ip(ns, &["-j", "link", "show", name]).await?;
    crate::probe::ip::links(&shown)?
        .first()
        .map(|l| l.index)
        .ok_or_else(|| Failure::msg(format!("{name} has no ifindex")))
}

/// The last ifindex the node's kernel gave (a probe veth pair made and deleted,
/// which also moves the counter on by two).
async fn probe_node_counter(ctx: &Ctx, cluster: &AnyCluster, node: &str) -> Result<u32, Failure> {
    let probe = format!("snq{}", &ctx.scope);
    let peer = format!("{probe}p");
    cluster
        .node_ip(
            node,
            &["link", "add", &probe, "type", "veth", "peer", "name", &peer],
        )
        .await?;
    let shown = cluster.node_ip(node, &["-j", "link", "show", &probe]).await;
    cluster.node_ip(node, &["link", "del", &probe]).await?;
    let shown = crate::probe::ip::links(&shown?)?;
    let link = shown
        .first()
        .ok_or_else(|| Failure::msg("the probe link on the node is not shown"))?;
    // The pair took two indexes (the peer's is `link_index`); the later one counts.
    Ok(link
        .lower_index
        .map_or(link.index, |peer| peer.max(link.index)))
}

pub(super) async fn neighbour_kernel_numbering(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let plugin = cluster.device_plugin_process(&node).await?;
    let initial = super::initial_namespace::initial_namespace();
    if initial.is_some() && net_ns_inode(&plugin.pid.to_string()) == initial {
        // In the machine's own namespace the kernel's numbering is the machine's:
        // what upstream and KubeVirt expect there.
        ctx.observed.note(
            "the device plugin runs in the machine's own network namespace: kernel numbering is expected there",
        );
        return Ok(());
    }
    if initial.is_none() {
        return Err(crate::scenario::Failure::error(
            "cannot tell the machine's initial network namespace (neither the kernel's threads' nor PID 1's is readable)",
        ));
    }
    // Other scenarios on this machine may hold /dev/tapN at the node's next
    // indexes (devtmpfs is shared): move the node's counter on to one whose node is
    // free, so that a kernel-numbered macvtap would keep it.
    for _ in 0..64 {
        let next = probe_node_counter(ctx, cluster, &node).await? + 1;
        if tap_node(next).is_none() {
            break;
        }
    }
    let victim = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "victim",
            Some(&node),
        ))
        .await?;
    let taken = pod_link(cluster, &victim, "net1").await?.index;
    let Some(held) = tap_node(taken) else {
        return fail(format!(
            "the victim's macvtap (ifindex {taken}) has no /dev/tap{taken}"
        ));
    };
    if taken > NEIGHBOUR_REACH {
        ctx.observed.note(&format!(
            "the victim's macvtap has ifindex {taken}, beyond a neighbour's kernel numbering (1-{NEIGHBOUR_REACH})"
        ));
        return Ok(());
    }
    // The neighbour: a pod's namespace whose kernel numbering has reached the
    // victim's index (any namespace with that many links does); its macvtap there
    // must get a /dev/tapN of its own.
    let mut pod = Pod::plain("neighbour", &node, "");
    pod.metadata.annotations.clear();
    let neighbour = cluster.create_pod(pod).await?;
    let ns = cluster.pod_namespace(&neighbour).await?;
    // On its eth0: no other link of its own may hold the index first.
    let idx = taken.to_string();
    cluster
        .ns_ip(
            &ns,
            &[
                "link", "add", "nbtap", "index", &idx, "link", "eth0", "type", "macvtap", "mode",
                "bridge",
            ],
        )
        .await?;
    if link_index(cluster, &ns, "nbtap").await? == taken && tap_node(taken) == Some(held) {
        return stolen(taken, held);
    }
    ctx.observed.note(&format!(
        "the neighbour's macvtap at ifindex {taken} got its own /dev/tap{taken}"
    ));
    Ok(())
}

fn stolen(index: u32, held: TapNode) -> Outcome {
    fail(format!(
        "the device plugin's macvtap took /dev/tap{index} ({held}) by the kernel's numbering of its own namespace: a neighbour namespace's macvtap at ifindex {index} opens the victim's tap instead of its own"
    ))
}

/// The bundled device plugin's numbering outside the machine's namespace, as an
/// attacker who read its source computes it: the index it tries for `id` at
/// `attempt`.
pub(super) fn candidate(namespace: u64, id: &str, attempt: u32) -> u32 {
    const BASE: u32 = 1 << 20;
    const SPAN: u64 = (1 << 30) - (1 << 20);
    let hash = xxhash_rust::xxh64::xxh64(format!("{namespace}/{id}/{attempt}").as_bytes(), 0);
    BASE + (hash % SPAN) as u32
}

/// Its first choice for `id`.
pub(super) fn first_choice(namespace: u64, id: &str) -> u32 {
    candidate(namespace, id, 0)
}

/// The attacker (a pod with NET_ADMIN in its own namespace) holds `/dev/tapN` at
/// the first index the device plugin would try for every device ID of the
/// resource; a victim pod must still get a macvtap (the plugin moves on to another
/// index), and the attacker's nodes must keep their devices.
pub(super) async fn first_choices_held(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let node = cluster.nodes()[0].clone();
    let plugin = cluster.device_plugin_process(&node).await?;
    let init = super::initial_namespace::initial_namespace();
    let Some(namespace) = net_ns_inode(&plugin.pid.to_string()) else {
        return fail("cannot read the device plugin's network namespace");
    };
    if Some(namespace) == init {
        ctx.observed.note(
            "the device plugin runs in the machine's own network namespace: it numbers macvtaps the kernel's way, nothing to predict",
        );
        return Ok(());
    }
    let capacity = cluster
        .node_resources(&node)
        .await?
        .capacity
        .get(DATAPLANE)
        .copied()
        .unwrap_or(0);
    let resource = DATAPLANE.rsplit('/').next().unwrap_or(DATAPLANE);
    let mut pod = Pod::plain("attacker", &node, "");
    pod.metadata.annotations.clear();
    let attacker = cluster.create_pod(pod).await?;
    let ns = cluster.pod_namespace(&attacker).await?;
    cluster
        .ns_ip(
            &ns,
            &[
                "link",
                "add",
                "atk-lower",
                "type",
                "veth",
                "peer",
                "name",
                "atk-peer",
            ],
        )
        .await?;
    let mut held = Vec::new();
    for i in 0..capacity {
        let index = first_choice(namespace, &format!("{resource}Mvp{i}"));
        if tap_node(index).is_some() {
            continue;
        }
        let (idx, name) = (index.to_string(), format!("atk{i}"));
        cluster
            .ns_ip(
                &ns,
                &[
                    "link",
                    "add",
                    &name,
                    "index",
                    &idx,
                    "link",
                    "atk-lower",
                    "type",
                    "macvtap",
                ],
            )
            .await?;
        if let Some(node) = tap_node(index) {
            held.push((index, node));
        }
    }
    if held.is_empty() {
        return fail(format!(
            "the attack held no /dev/tapN ({capacity} device IDs of {DATAPLANE} on {node}): it tested nothing"
        ));
    }
    ctx.observed.note(&format!(
        "the attacker holds /dev/tapN at the first choice of {} of {capacity} device IDs",
        held.len()
    ));
    let victim = cluster
        .create_pod(named(
            fixture_pod(ctx, "seed/macvtap-pod.yaml")?,
            "victim",
            Some(&node),
        ))
        .await
        .map_err(|e| {
            Failure::msg(format!(
                "the victim's pod did not start while a neighbour held /dev/tapN at the device plugin's first choices (the plugin must skip a taken node): {e}"
            ))
        })?;
    for (index, before) in &held {
        let now = tap_node(*index);
        if now != Some(*before) {
            return fail(format!(
                "/dev/tap{index} ({before}, the attacker's) is now {}",
                now.map_or("gone".into(), |n| n.to_string())
            ));
        }
    }
    let index = pod_link(cluster, &victim, "net1").await?.index;
    if held.iter().any(|(i, _)| *i == index) {
        return fail(format!(
            "the victim's net1 has ifindex {index}, whose /dev/tap{index} is the attacker's"
        ));
    }
    Ok(())
}
