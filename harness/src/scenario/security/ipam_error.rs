//! An IPAM delegate's error reaches the runtime as the delegate said it: its CNI
//! code (the runtime decides on it whether to retry) and its message, for each
//! well-known code of the spec; and the failed ADD leaves the bridge as it was.
//! And a delegate that makes CNI_IFNAME in the pod while it runs (after the
//! plugin's own check) makes ADD fail, not retry forever.

use serde_json::json;

use super::{OvsStage, bridge_state, described, error_msg};
use crate::cni::exec;
use crate::lab::ScratchDir;
use crate::lab::node::NodeLab;
use crate::scenario::{Ctx, Failure, Outcome, ensure};

/// The spec's well-known error codes.
const CODES: [u64; 8] = [1, 2, 3, 4, 5, 6, 7, 11];

pub(super) async fn ipam_error_code(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let stage = OvsStage::new(ctx, nl, "")?;
    let bin = stage.scratch.path().join("ipam-bin");
    std::fs::create_dir_all(&bin)
        .map_err(|e| Failure::caused(format!("failed to create {}", bin.display()), e))?;
    for code in CODES {
        let kind = format!("failing-ipam-{code}");
        let msg = format!("pool store unreadable ({code})");
        write_ipam(
            &stage.scratch,
            &kind,
            &format!(
                "echo '{{\"cniVersion\":\"1.0.0\",\"code\":{code},\"msg\":\"{msg}\"}}'\nexit 1"
            ),
        )?;
        let mut call = stage.call(ctx, &format!("ipam{code}"), json!({"ipam": {"type": kind}}));
        call.path = format!("{}:{}", bin.display(), call.path);
        let before = bridge_state(nl, &stage, "br1")?;
        let reply = exec(&call, Some(&nl.node_ns)).await?;
        let after = bridge_state(nl, &stage, "br1")?;
        ensure(!reply.success, || {
            format!(
                "ADD succeeded although its IPAM plugin failed with code {code}: {}",
                described(&reply)
            )
        })?;
        ensure(reply.error_code() == Some(code), || {
            format!(
                "the IPAM plugin's code {code} did not reach the runtime: {}",
                described(&reply)
            )
        })?;
        ensure(error_msg(&reply).contains(&msg), || {
            format!(
                "the IPAM plugin's message {msg:?} did not reach the runtime: {}",
                described(&reply)
            )
        })?;
        ensure(before == after, || {
            format!(
                "the failed ADD (IPAM code {code}) left the node changed:\n  before {before:?}\n  after  {after:?}"
            )
        })?;
    }
    ifname_taken_during_ipam(ctx, nl, &stage).await
}

/// Writes the IPAM plugin `kind` into the stage's `ipam-bin`: reads its stdin,
/// answers DEL with success, runs `body` for anything else.
fn write_ipam(scratch: &ScratchDir, kind: &str, body: &str) -> Outcome {
    let script = scratch.path().join("ipam-bin").join(kind);
    let text = format!("#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\n{body}\n");
    let written = std::fs::write(&script, text).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
    });
    written.map_err(|e| Failure::caused(format!("failed to write {}", script.display()), e))
}

/// The IPAM plugin makes CNI_IFNAME (one end of a veth pair) in the pod, then answers an
/// address: the veth's pod end cannot take the name. ADD must end with an error
/// naming it, the bridge unchanged.
async fn ifname_taken_during_ipam(ctx: &Ctx, nl: &NodeLab, stage: &OvsStage) -> Outcome {
    let kind = "ipam-takes-ifname";
    write_ipam(
        &stage.scratch,
        kind,
        "nsenter --net=\"$CNI_NETNS\" ip link add \"$CNI_IFNAME\" type veth peer name ipam-peer || exit 1\necho '{\"cniVersion\":\"1.0.0\",\"ips\":[{\"address\":\"10.99.0.5/24\"}]}'",
    )?;
    let bin = stage.scratch.path().join("ipam-bin");
    let mut call = stage.call(ctx, "taken", json!({"ipam": {"type": kind}}));
    call.path = format!("{}:{}", bin.display(), call.path);
    call.timeout = std::time::Duration::from_secs(20);
    let before = bridge_state(nl, stage, "br1")?;
    let reply = match exec(&call, Some(&nl.node_ns)).await {
        Ok(reply) => reply,
        Err(e) => {
            return Err(Failure::msg(format!(
                "ADD did not end when CNI_IFNAME appeared in the pod during IPAM (a retry loop?): {e}"
            )));
        }
    };
    let after = bridge_state(nl, stage, "br1")?;
    ensure(!reply.success, || {
        format!(
            "ADD succeeded although net1 was taken in the pod: {}",
            described(&reply)
        )
    })?;
    // Only the pod changed (its intruding veth); the node and the bridge did not.
    let node = |state: &[String]| -> Vec<String> {
        state
            .iter()
            .take_while(|l| *l != "--pod--")
            .cloned()
            .chain(
                state
                    .iter()
                    .skip_while(|l| !l.starts_with("--br1"))
                    .cloned(),
            )
            .collect()
    };
    ensure(node(&before) == node(&after), || {
        format!(
            "the failed ADD left the node or br1 changed:\n  before {before:?}\n  after  {after:?}"
        )
    })
}
