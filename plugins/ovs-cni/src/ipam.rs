//! IPAM delegation as the spec describes it: run the plugin named by `ipam.type`,
//! found in `CNI_PATH`, with our stdin and environment (only `CNI_COMMAND` changes
//! for the undo of a failed ADD), and read its result or error. The delegate must
//! not be this plugin (a config naming it would recurse as root until a pids limit
//! stops it) and must finish within [`TIMEOUT`], its children included: it runs in
//! a process group of its own that is killed at the deadline.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use cni_kit::{CniError, ErrorCode, Invocation};
use serde_json::Value;

/// How long an IPAM plugin may take (DHCP included) before it is killed.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Set in a delegate's environment: this plugin refuses to run as somebody's IPAM.
pub const DELEGATE_ENV: &str = "SECNET_OVS_IPAM_DELEGATE";

/// Refuses to go on when this process is itself an IPAM delegate of this plugin.
pub fn refuse_running_as_delegate() -> Result<(), CniError> {
    if std::env::var_os(DELEGATE_ENV).is_some() {
        return Err(CniError::invalid_config(
            "the ovs plugin was started as an IPAM plugin by itself",
        )
        .with_details("ipam.type must name an IPAM plugin such as host-local"));
    }
    Ok(())
}

fn is_this_program(program: &std::path::Path) -> bool {
    match (
        std::fs::metadata(program),
        std::fs::metadata("/proc/self/exe"),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn find(kind: &str, cni_path: &str) -> Result<PathBuf, CniError> {
    std::env::split_paths(cni_path)
        .map(|d| d.join(kind))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            // CNI_PATH is the node's: the tenant who wrote ipam.type learns no more.
            CniError::invalid_config(format!(
                "IPAM plugin \"{kind}\" is not installed on this node"
            ))
            .with_details("install it into the CNI bin directory (CNI_PATH) or fix ipam.type")
        })
}

/// The most of an IPAM plugin's stdout or stderr that is kept (a result is a few
/// hundred bytes; a runaway plugin must not fill the memory).
pub const MAX_OUTPUT: u64 = 1 << 20;

/// What a finished delegate left.
struct Output {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Reads `pipe` (bounded) on a thread of its own; the channel gets the bytes at EOF.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(pipe) = pipe {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
    }
    rx
}

/// Runs `program` with `stdin`, in a process group of its own, for at most
/// `timeout`: at the deadline the whole group is killed (a shell IPAM's children
/// too) and its pipes are no longer read, whoever still holds them open.
fn run_bounded(
    mut cmd: Command,
    stdin: Vec<u8>,
    timeout: Duration,
) -> Result<Result<Output, ()>, std::io::Error> {
    let deadline = Instant::now() + timeout;
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let pgid = Pid::from_raw(child.id() as i32);
    // Written on a thread: a delegate that never reads must not block us on a full pipe.
    if let Some(mut pipe) = child.stdin.take() {
        std::thread::spawn(move || {
            let _ = pipe.write_all(&stdin);
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let (tx, exited) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let left = |d: Instant| d.saturating_duration_since(Instant::now());
    if exited.recv_timeout(left(deadline)).is_err() {
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = waiter.join();
        return Ok(Err(()));
    }
    let status = waiter.join().expect("the waiter does not panic")?;
    // The delegate is done: children left in its group must not outlive it, nor
    // keep its pipes open. One that left the group (a daemon) may still hold them:
    // they are read until the deadline, not until EOF.
    let _ = killpg(pgid, Signal::SIGKILL);
    let collect = |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(left(deadline)).ok();
    match (collect(stdout), collect(stderr)) {
        (Some(stdout), Some(stderr)) => Ok(Ok(Output {
            status,
            stdout,
            stderr,
        })),
        _ => Ok(Err(())),
    }
}

/// Runs the IPAM plugin for `command` (`ADD`, `DEL`, `CHECK`); the parsed stdout on
/// success (`Value::Null` when empty).
pub fn exec(inv: &Invocation, kind: &str, command: &str) -> Result<Value, CniError> {
    let program = find(kind, &inv.path)?;
    if is_this_program(&program) {
        return Err(CniError::invalid_config(format!(
            "ipam type \"{kind}\" is this plugin, not an IPAM plugin"
        ))
        .with_details("use an IPAM plugin such as host-local, static, dhcp or whereabouts"));
    }
    let mut cmd = Command::new(&program);
    cmd.env("CNI_COMMAND", command).env(DELEGATE_ENV, "1");
    let out = run_bounded(cmd, inv.config.clone(), TIMEOUT)
        .map_err(|e| {
            CniError::new(
                ErrorCode::Io,
                format!("failed to run IPAM plugin {}: {e}", program.display()),
            )
        })?
        .map_err(|()| {
            CniError::new(
                ErrorCode::TryAgainLater,
                format!("IPAM plugin {kind} did not finish {command} within {TIMEOUT:?}"),
            )
        })?;
    let parsed: Option<Value> = serde_json::from_slice(&out.stdout).ok();
    if !out.status.success() {
        // The delegate's own error, with its code, prefixed with who said it.
        let (code, msg, details) = match &parsed {
            Some(v) => (
                v.get("code").and_then(Value::as_u64).unwrap_or(100),
                v.get("msg")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                v.get("details")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            None => (
                100,
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
                String::new(),
            ),
        };
        let code = match code {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::ContainerUnknown,
            4 => ErrorCode::InvalidEnvironment,
            5 => ErrorCode::Io,
            6 => ErrorCode::Decode,
            7 => ErrorCode::InvalidConfig,
            11 => ErrorCode::TryAgainLater,
            _ => ErrorCode::Plugin,
        };
        return Err(
            CniError::new(code, format!("IPAM plugin {kind} failed {command}: {msg}"))
                .with_details(details),
        );
    }
    Ok(parsed.unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn the_deadline_holds_when_a_child_keeps_the_plugin_waiting() {
        let t0 = Instant::now();
        let out = run_bounded(sh("sleep 100 & wait"), Vec::new(), Duration::from_secs(1)).unwrap();
        assert!(out.is_err());
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_child_holding_the_pipes_after_the_plugin_exits_does_not_hold_the_result() {
        let t0 = Instant::now();
        let out = run_bounded(
            sh("sleep 100 & echo '{\"ips\":[]}'"),
            Vec::new(),
            Duration::from_secs(20),
        )
        .unwrap()
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"{\"ips\":[]}\n");
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_plugin_that_does_not_read_stdin_does_not_block_the_write() {
        let out = run_bounded(sh("exit 3"), vec![b' '; 4 << 20], Duration::from_secs(20))
            .unwrap()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
    }
}
