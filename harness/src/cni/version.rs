//! A plugin binary's answer to VERSION: the CNI spec versions it claims.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// A plugin that does not answer VERSION as the spec asks.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error("failed to run {} VERSION: {source}", plugin.display())]
    Run {
        plugin: PathBuf,
        source: std::io::Error,
    },
    #[error("{} VERSION did not answer JSON ({source}): {stdout}", plugin.display())]
    NotJson {
        plugin: PathBuf,
        stdout: String,
        source: serde_json::Error,
    },
    #[error("{} VERSION has no supportedVersions: {answer}", plugin.display())]
    NoSupportedVersions { plugin: PathBuf, answer: Value },
}

/// The CNI spec versions a plugin binary says it supports: its answer to VERSION
/// (`supportedVersions`), the spec's own way for a plugin to declare what it claims.
pub fn cni_versions(plugin: &Path) -> Result<Vec<String>, VersionError> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let run_err = |source| VersionError::Run {
        plugin: plugin.to_path_buf(),
        source,
    };
    let mut child = Command::new(plugin)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(run_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(br#"{"cniVersion":"1.0.0"}"#);
    }
    let out = child.wait_with_output().map_err(run_err)?;
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|source| VersionError::NotJson {
        plugin: plugin.to_path_buf(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        source,
    })?;
    match v["supportedVersions"].as_array() {
        Some(a) => Ok(a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()),
        None => Err(VersionError::NoSupportedVersions {
            plugin: plugin.to_path_buf(),
            answer: v,
        }),
    }
}

/// The version to talk to a plugin with: 1.0.0 when it claims it, else its newest.
pub fn preferred_version(supported: &[String]) -> String {
    if supported.iter().any(|v| v == "1.0.0") {
        return "1.0.0".into();
    }
    supported
        .iter()
        .max_by_key(|v| {
            v.split('.')
                .map(|n| n.parse::<u32>().unwrap_or(0))
                .collect::<Vec<_>>()
        })
        .cloned()
        .unwrap_or_else(|| "0.4.0".into())
}
