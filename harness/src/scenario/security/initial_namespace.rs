//! How the device plugin numbers its macvtaps in the machine's own network namespace
//! and in a node's, with the plugin under test run by hand in each (the kubelet
//! double on a socket directory of the scenario's): on a real node (the machine's
//! namespace, hostNetwork) it numbers as the kernel does, as upstream does, so a
//! drop-in hands out the `/dev/tapN` the node's tools expect; in a nested node's
//! namespace (kind, netns) the kernel's small numbers are the neighbours' too, and
//! a tap there must stay out of their reach.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::super::kit::lab_failure;
use super::hand_run::{HandRun, counter_probe, in_ns};
use crate::lab::Ns;
use crate::lab::node::NodeLab;
use crate::scenario::{Ctx, Failure, Outcome, fail};

/// The machine's initial network namespace (that of the kernel's threads, or of
/// PID 1 when those are not visible), as an inode.
pub(super) fn initial_namespace() -> Option<u64> {
    let ino = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino());
    let kthreadd = std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd");
    if kthreadd && let Ok(i) = ino("2") {
        return Some(i);
    }
    ino("1").ok()
}

fn own_namespace() -> Option<u64> {
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| m.ino())
}

/// The plugin run in `netns` on a fresh lower device: (index before, tap index,
/// index after) by the kernel's counter of that namespace.
async fn numbering_in(
    ctx: &Ctx,
    nl: &mut NodeLab,
    netns: Option<&Ns>,
    tag: &str,
) -> Result<(u32, u32, u32), Failure> {
    let (near, far) = (
        nl.pod(&format!("{tag}a")).map_err(lab_failure)?,
        nl.pod(&format!("{tag}b")).map_err(lab_failure)?,
    );
    let lower = format!("{}-{tag}", nl.lab.prefix());
    let lower = lower
        .get(lower.len().saturating_sub(15)..)
        .unwrap_or(&lower)
        .to_string();
    // devtmpfs is shared: other namespaces may hold /dev/tapN at this namespace's
    // next indexes (the plugin would rightly move on): move the counter past them.
    let mut before = counter_probe(netns, &lower, &near)?;
    for _ in 0..256 {
        if !Path::new(&format!("/dev/tap{}", before + 1)).exists() {
            break;
        }
        in_ns(netns, &["link", "del", &lower])?;
        before = counter_probe(netns, &lower, &near)?;
    }
    let run = HandRun::start(ctx, tag, netns, &lower).await?;
    let index = run.allocate_index().await;
    let after_name = format!("{}x", &lower[1..]);
    let after = counter_probe(netns, &after_name, &far);
    run.stop().await;
    Ok((before, index?, after?))
}

pub(in crate::scenario) async fn numbering_by_namespace(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let initial = initial_namespace();
    if initial.is_none() || initial != own_namespace() {
        return Err(Failure::error(
            "secnet does not run in the machine's initial network namespace (or cannot tell): this scenario runs a device plugin there",
        ));
    }
    let (before, index, after) = numbering_in(ctx, nl, None, "h").await?;
    ctx.observed.note(&format!(
        "in the machine's namespace the plugin's tap got ifindex {index} (the kernel's counter: {before} before, {after} after)"
    ));
    if !(before < index && index < after) {
        return fail(format!(
            "in the machine's own network namespace the device plugin's macvtap got ifindex {index}, not the kernel's next ({before} < N < {after}): a drop-in numbers /dev/tapN as upstream's plugin does on a real node"
        ));
    }
    let node = nl.node.clone();
    let (before, index, after) = numbering_in(ctx, nl, Some(&node), "n").await?;
    ctx.observed.note(&format!(
        "in a node's namespace the plugin's tap got ifindex {index} (the kernel's counter there: {before} before, {after} after)"
    ));
    if before < index && index < after {
        return fail(format!(
            "in a node's own network namespace (not the machine's) the device plugin's macvtap took the kernel's next ifindex {index}: /dev/tap{index} is what any neighbour namespace's kernel numbering reaches"
        ));
    }
    Ok(())
}
