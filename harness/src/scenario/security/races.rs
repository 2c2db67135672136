//! Races a plugin must survive, with the window held open instead of hoped for:
//! the plugin runs under `strace`, which holds its later netlink requests for a
//! while, and the harness acts when the trace shows the plugin between its two
//! steps. The trace then proves the window was hit (or the scenario is an error:
//! it judged nothing).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use super::super::kit::{lab_failure, scratch_dir};
use crate::lab::node::NodeLab;
use crate::scenario::{Ctx, Failure, Outcome, fail};

/// How long each netlink request after the first is held: ample time for the
/// harness to act on the trace line it waits for (a few milliseconds on a quiet
/// machine). A try whose window the harness missed (the plugin's delete ran first:
/// seen once under a whole bare run's load) is made again with the next hold.
const HOLDS: [&str; 2] = ["1500ms", "5000ms"];
/// How long the held plugin may take in all (a handful of held requests).
const BOUND: Duration = Duration::from_secs(30);

/// `strace` holding every netlink send after the first of `plugin`, tracing into
/// `trace`.
fn held_command(plugin: &Path, trace: &Path, hold: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-s", "64", "-o"])
        .arg(trace)
        .args(["-e", "trace=sendto,sendmsg,recvfrom,recvmsg"])
        .args([
            "-e",
            &format!("inject=sendto,sendmsg:delay_enter={hold}:when=2+"),
        ])
        .arg(plugin)
        .kill_on_drop(true);
    cmd
}

/// Whether a trace excerpt names netlink message type `name` (strace decodes it
/// only when it knows the socket's protocol, else prints the number).
fn is_type(text: &str, name: &str, number: u16) -> bool {
    text.contains(&format!("nlmsg_type={name}"))
        || text.contains(&format!("nlmsg_type={number:#x} "))
}

/// Waits until a line of `trace` satisfies `seen`.
async fn wait_for_line(trace: &Path, what: &str, seen: impl Fn(&str) -> bool) -> Outcome {
    let until = tokio::time::Instant::now() + BOUND;
    while tokio::time::Instant::now() < until {
        let text = std::fs::read_to_string(trace).unwrap_or_default();
        if text.lines().any(&seen) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Err(Failure::error(format!(
        "the plugin's trace never showed {what} within {BOUND:?}"
    )))
}

/// A DEL whose macvtap vanishes between its lookup and its delete (the pod's
/// namespace torn down meanwhile, another DEL racing): the link is gone, which is
/// what DEL is for, so it must succeed (CNI spec: DEL of something already gone is
/// not an error; a failing DEL keeps the runtime retrying and the pod Terminating).
pub(in crate::scenario) async fn del_link_gone_mid_delete(ctx: &Ctx, nl: &mut NodeLab) -> Outcome {
    let pod = nl.pod("pod").map_err(lab_failure)?;
    nl.lab
        .ip(
            &pod,
            &["link", "add", "lw0", "type", "veth", "peer", "name", "lw1"],
        )
        .map_err(lab_failure)?;
    for (i, hold) in HOLDS.iter().enumerate() {
        match del_once(ctx, nl, &pod, hold).await? {
            Try::Judged(outcome) => return outcome,
            Try::Missed(why) if i + 1 < HOLDS.len() => ctx.observed.note(&format!(
                "the window was missed with requests held {hold} ({why}): tried again with a longer hold"
            )),
            Try::Missed(why) => {
                return Err(Failure::error(format!(
                    "the window was missed with every hold ({}): {why}",
                    HOLDS.join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// One try of `del_link_gone_mid_delete`: judged, or the harness was too late.
enum Try {
    Judged(Outcome),
    Missed(String),
}

async fn del_once(
    ctx: &Ctx,
    nl: &mut NodeLab,
    pod: &crate::lab::Ns,
    hold: &str,
) -> Result<Try, Failure> {
    nl.lab
        .ip(
            pod,
            &[
                "link", "add", "net1", "link", "lw0", "type", "macvtap", "mode", "bridge",
            ],
        )
        .map_err(lab_failure)?;
    let scratch = scratch_dir(ctx, "race")?;
    let trace = scratch.path().join("del.strace");
    let config = json!({"cniVersion": "1.0.0", "name": "dataplane", "type": "macvtap"});
    let mut cmd = held_command(&ctx.plugin("macvtap"), &trace, hold);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", "DEL")
        .env("CNI_CONTAINERID", format!("{}-cid", pod.name))
        .env("CNI_NETNS", pod.path_str())
        .env("CNI_IFNAME", "net1")
        .env("CNI_PATH", ctx.cni_bin_dir.display().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    crate::lab::enter::Enter::net(nl.node.path())
        .and_then(|e| e.apply(&mut cmd))
        .map_err(|e| Failure::caused("failed to enter the node lab", e).harness())?;
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::caused("failed to run strace", e).harness())?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(config.to_string().as_bytes()).await?;
    }
    // The plugin asked for net1 and got it: its next request (the delete) is held.
    wait_for_line(&trace, "the answer to a link lookup", |l| {
        l.contains("recv") && is_type(l, "RTM_NEWLINK", 0x10)
    })
    .await?;
    if let Err(e) = nl.lab.ip(pod, &["link", "del", "net1"]) {
        // Gone already: the plugin's held delete ran before the harness got here.
        let _ = tokio::time::timeout(BOUND, child.wait()).await;
        return Ok(Try::Missed(e.to_string()));
    }
    let out = tokio::time::timeout(BOUND, child.wait_with_output())
        .await
        .map_err(|_| Failure::msg(format!("DEL did not return within {BOUND:?}")))??;
    let text = std::fs::read_to_string(&trace).unwrap_or_default();
    // The kernel's answer to the delete itself (lookups of the leftover names
    // answer ENODEV too): an error reply quoting an RTM_DELLINK request.
    let hit = text.lines().any(|l| {
        l.split_once("error=-ENODEV")
            .is_some_and(|(_, quoted)| is_type(quoted, "RTM_DELLINK", 0x11))
    });
    if !hit {
        return Ok(Try::Judged(Err(Failure::error(
            "the window was not hit: the trace shows no delete answered ENODEV after the harness removed net1",
        ))));
    }
    ctx.observed.note(
        "the plugin's delete of net1 was held until the harness had removed the link: the kernel answered ENODEV",
    );
    if !out.status.success() {
        return Ok(Try::Judged(fail(format!(
            "DEL failed ({}) because the macvtap it was deleting was already gone: stdout {}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))));
    }
    Ok(Try::Judged(Ok(())))
}
