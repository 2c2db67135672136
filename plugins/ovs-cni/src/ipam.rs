//! IPAM delegation as the spec describes it: run the plugin named by `ipam.type`,
//! found in `CNI_PATH`, with our stdin and environment (only `CNI_COMMAND` changes
//! for the undo of a failed ADD), and read its result or error.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cni_kit::{CniError, ErrorCode, Invocation};
use serde_json::Value;

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
    let mut child = Command::new(&program)
        .env("CNI_COMMAND", command)
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
    let out = child.wait_with_output().map_err(|e| {
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
