//! IPAM delegation as the spec describes it: run the plugin named by `ipam.type`,
//! found in `CNI_PATH`, with our stdin and environment (only `CNI_COMMAND` changes
//! for the undo of a failed ADD), and read its result or error. The delegate must
//! not be this plugin (a config naming it would recurse as root until a pids limit
//! stops it) and must finish within [`TIMEOUT`].

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

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
            CniError::invalid_config(format!(
                "IPAM plugin \"{kind}\" not found in CNI_PATH ({cni_path})"
            ))
            .with_details("install it into the CNI bin directory or fix ipam.type")
        })
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
    let mut child = Command::new(&program)
        .env("CNI_COMMAND", command)
        .env(DELEGATE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            CniError::new(
                ErrorCode::Io,
                format!("failed to run IPAM plugin {}: {e}", program.display()),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&inv.config);
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out,
        Err(_) => {
            // SAFETY: kill(2) of our own child, not yet reaped (the waiter holds it).
            unsafe { nix::libc::kill(pid as i32, nix::libc::SIGKILL) };
            let _ = waiter.join();
            return Err(CniError::new(
                ErrorCode::TryAgainLater,
                format!("IPAM plugin {kind} did not finish {command} within {TIMEOUT:?}"),
            ));
        }
    };
    let out = out.map_err(|e| {
        CniError::new(
            ErrorCode::Io,
            format!("failed to wait for IPAM plugin {kind}: {e}"),
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
