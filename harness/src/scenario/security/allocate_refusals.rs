//! What the kernel refuses when the device plugin creates a macvtap, played
//! against the plugin under test run by hand: a refusal that another index cures
//! (the index is taken in the plugin's namespace) must be cured, and one that no
//! index cures (the lower device is a bridge port) must be answered, not retried
//! for ever: the kubelet admits a node's pods one at a time, so an Allocate that
//! never answers holds up every pod of the node.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::super::kit::lab_failure;
use super::hand_run::{HandRun, counter_probe, ifindex, in_ns, move_counter_past_neighbours};
use super::tap_numbering::first_choice;
use crate::kubelet::KubeletError;
use crate::lab::node::NodeLab;
use crate::scenario::{Ctx, Failure, Outcome, fail};

/// How long an Allocate the kernel refuses may take to answer: the plugin's own
/// work is milliseconds; this only tells "answered" from "never answers" (below
/// the kubelet double's own call timeout, whose error is no answer either).
const ANSWER_BOUND: Duration = Duration::from_secs(20);

/// A lower device of the scenario's in the lab's node, up, its peer in a pod.
fn lab_lower(nl: &mut NodeLab, tag: &str) -> Result<String, Failure> {
    let far = nl.pod(&format!("{tag}p")).map_err(lab_failure)?;
    let lower = format!("lw{tag}");
    counter_probe(Some(&nl.node), &lower, &far)?;
    Ok(lower)
}

/// The node already has a link at the index the bundled plugin tries first for its
/// device (any of the node's own links may sit there): the kernel refuses that
/// index (EBUSY), and the plugin must take another one.
pub(in crate::scenario) async fn index_taken_in_node(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let lower = lab_lower(nl, "i")?;
    let node = nl.node.clone();
    let run = HandRun::start(ctx, "i", Some(&node), &lower).await?;
    let namespace = std::fs::metadata(node.path())?.ino();
    let first = first_choice(namespace, &run.id);
    let far = nl.pod("held").map_err(lab_failure)?;
    let idx = first.to_string();
    in_ns(
        Some(&node),
        &[
            "link", "add", "held", "index", &idx, "type", "veth", "peer", "name", "heldp", "netns",
            &far.name,
        ],
    )?;
    if ifindex(Some(&node), "held")? != first {
        return Err(Failure::error(format!(
            "the node's link did not get ifindex {first}: the scenario tested nothing"
        )));
    }
    let index = run.allocate_index().await.map_err(|e| {
        e.with_line(format!(
            "(the node has a link at ifindex {first}, the device plugin's first choice for {}: the kernel refuses that index, another one must be taken)",
            run.id
        ))
    })?;
    run.stop().await;
    ctx.observed.note(&format!(
        "with ifindex {first} taken on the node, the device plugin's macvtap got ifindex {index}"
    ));
    if index == first {
        return fail(format!(
            "the device plugin handed out /dev/tap{first}, the index of the node's own link"
        ));
    }
    Ok(())
}

/// The configured lower device is a port of a Linux bridge: the kernel refuses a
/// macvtap on it (EBUSY, whatever the index). Allocate must say so.
pub(in crate::scenario) async fn lower_is_bridge_port(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let lower = lab_lower(nl, "b")?;
    let node = nl.node.clone();
    in_ns(Some(&node), &["link", "add", "brlw", "type", "bridge"])?;
    in_ns(Some(&node), &["link", "set", &lower, "master", "brlw"])?;
    let run = HandRun::start(ctx, "b", Some(&node), &lower).await?;
    let answer = tokio::time::timeout(
        ANSWER_BOUND,
        run.kubelet()
            .allocate(&run.resource, std::slice::from_ref(&run.id)),
    )
    .await;
    let log = run.log();
    run.stop().await;
    match answer {
        Err(_) => unanswered_failure(&lower, &log),
        Ok(Err(KubeletError::Rpc { status, .. }))
            if status.code() == tonic::Code::DeadlineExceeded =>
        {
            unanswered_failure(&lower, &log)
        }
        Ok(Err(e)) => {
            ctx.observed
                .note(&format!("Allocate on a bridge port answered: {e}"));
            Ok(())
        }
        Ok(Ok(_)) => fail(format!(
            "Allocate on {lower}, a bridge port, answered with a device: the kernel refuses a macvtap there, so the device is not one"
        )),
    }
}

fn unanswered_failure(lower: &str, log: &str) -> Outcome {
    fail(format!(
        "Allocate on {lower}, a bridge port (the kernel refuses a macvtap there), did not answer within {ANSWER_BOUND:?}: the kubelet admits pods one at a time, so the node's pods all wait\n{log}"
    ))
}

/// How many of the node's next kernel indexes the squatter holds: far more than
/// the plugin's bounded retries, so only a plugin that retries without bound
/// (two seconds a try, waiting for the node) is still trying at [`ANSWER_BOUND`].
const SQUATTED_KERNEL_INDEXES: u32 = 64;

/// A pod holds `/dev/tapN` at every index the bundled plugin would try for its
/// device (its unique candidates, then the node's next kernel indexes): each link
/// it makes finds its node foreign. Allocate must answer (an error naming a held
/// node, or a device whose node is its own), and the squatter's nodes stay its own.
pub(in crate::scenario) async fn every_choice_squatted(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let lower = lab_lower(nl, "q")?;
    let node = nl.node.clone();
    let run = HandRun::start(ctx, "q", Some(&node), &lower).await?;
    let namespace = std::fs::metadata(node.path())?.ino();
    let squatter = nl.pod("squat").map_err(lab_failure)?;
    in_ns(
        Some(&squatter),
        &[
            "link", "add", "sqlw", "type", "veth", "peer", "name", "sqlp",
        ],
    )?;
    move_counter_past_neighbours(ctx, &node)?;
    let next = counter_probe(Some(&node), "probe", &squatter)? + 1;
    let mut indexes: Vec<u32> = (0..16)
        .map(|attempt| super::tap_numbering::candidate(namespace, &run.id, attempt))
        .collect();
    indexes.extend(next..next + SQUATTED_KERNEL_INDEXES);
    let batch: String = indexes
        .iter()
        .enumerate()
        .map(|(i, index)| format!("link add sq{i} index {index} link sqlw type macvtap\n"))
        .collect();
    let file = ctx
        .work_dir
        .join(format!("{}-{}-squat.batch", ctx.run_id, ctx.scope));
    std::fs::write(&file, batch)?;
    let made = in_ns(Some(&squatter), &["-batch", &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    made?;
    let held: Vec<(u32, u64)> = indexes
        .iter()
        .filter_map(|i| {
            std::fs::metadata(format!("/dev/tap{i}"))
                .ok()
                .map(|m| (*i, std::os::unix::fs::MetadataExt::rdev(&m)))
        })
        .collect();
    if held.len() < indexes.len() {
        return Err(Failure::error(format!(
            "the squatter holds {} of {} /dev/tapN: the scenario would test less than it says",
            held.len(),
            indexes.len()
        )));
    }
    let answer = tokio::time::timeout(
        ANSWER_BOUND,
        run.kubelet()
            .allocate(&run.resource, std::slice::from_ref(&run.id)),
    )
    .await;
    let log = run.log();
    run.stop().await;
    // /dev is the machine's: a node there may be another namespace's macvtap of the
    // same ifindex (a scenario beside this one), made before the squatter's and
    // removed with it whenever that one goes. Only the squatter's own nodes must stay.
    let squatter_ns = cni_kit::netns::NetNs::open(squatter.path())?;
    let mut owned = Vec::new();
    for (i, (index, rdev)) in held.iter().enumerate() {
        let own = cni_kit::tapdev::link_devnum(Some(&squatter_ns), &format!("sq{i}"), *index)
            .map_err(|e| Failure::error(format!("the squatter's sq{i}: {e}")))?;
        if (own.major, own.minor) != (nix::sys::stat::major(*rdev), nix::sys::stat::minor(*rdev)) {
            ctx.observed.note(&format!(
                "/dev/tap{index} was another namespace's macvtap's, not the squatter's: not judged"
            ));
            continue;
        }
        owned.push(*index);
        let now = std::fs::metadata(format!("/dev/tap{index}"))
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::rdev(&m));
        if now != Some(*rdev) {
            return fail(format!(
                "/dev/tap{index}, the squatter's, changed while the device plugin allocated"
            ));
        }
    }
    match answer {
        Err(_) => squatted_failure(&log),
        Ok(Err(KubeletError::Rpc { status, .. }))
            if status.code() == tonic::Code::DeadlineExceeded =>
        {
            squatted_failure(&log)
        }
        Ok(Err(e)) => {
            ctx.observed.note(&format!(
                "Allocate with every choice squatted answered: {e}"
            ));
            Ok(())
        }
        Ok(Ok(r)) => {
            let path = r
                .container_responses
                .first()
                .and_then(|c| c.devices.first())
                .map(|d| d.host_path.clone())
                .unwrap_or_default();
            ctx.observed.note(&format!(
                "Allocate with every choice squatted handed out {path}"
            ));
            if owned.iter().any(|i| path == format!("/dev/tap{i}")) {
                return fail(format!(
                    "the device plugin handed out {path}, a squatter's node"
                ));
            }
            Ok(())
        }
    }
}

fn squatted_failure(log: &str) -> Outcome {
    fail(format!(
        "Allocate did not answer within {ANSWER_BOUND:?} while a pod held /dev/tapN at every index the device plugin tries: a plugin must give up (or find a free index) in bounded time, as the kubelet admits a node's pods one at a time\n{log}"
    ))
}
