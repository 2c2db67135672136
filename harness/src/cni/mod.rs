//! The runtime side of the CNI spec: run a plugin binary with the `CNI_*`
//! environment, the config on stdin, in a chosen (node) network namespace, with a
//! timeout, and read its result or error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cni_kit::netns::NetNs;
use serde_json::Value;

use crate::lab::command::{Cmd, CommandError};
use crate::lab::enter::Enter;

pub mod chain;
pub mod failure;
pub mod spec_check;
pub mod version;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("failed to start CNI plugin {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CNI plugin {path} did not finish {command} within {timeout:?}")]
    Timeout {
        path: PathBuf,
        command: String,
        timeout: Duration,
    },
    #[error("failed to talk to CNI plugin {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The reply breaks the CNI spec of the call's version (see [`spec_check`]).
    #[error("CNI plugin {path} answered {command} (cniVersion {version}) against the spec: {}; stdout {}, stderr {}", violations.join("; "), spec_check::excerpt(stdout), spec_check::excerpt(stderr))]
    Spec {
        path: PathBuf,
        command: String,
        version: String,
        violations: Vec<String>,
        stdout: String,
        stderr: String,
    },
}

/// One plugin invocation, as a runtime (or multus) would make it.
#[derive(Debug, Clone)]
pub struct Call {
    pub(crate) plugin: PathBuf,
    pub(crate) command: String,
    pub container_id: String,
    pub netns: Option<String>,
    pub ifname: String,
    pub(crate) args: String,
    /// `CNI_PATH`: where delegated (IPAM) plugins are looked up.
    pub path: String,
    pub config: Value,
    /// Bytes to send instead of `config` (to test what plugins do with broken input).
    pub raw_stdin: Option<Vec<u8>>,
    pub timeout: Duration,
    /// Further environment of the runtime (e.g. `SECNET_PLUGIN_POLICY`, the node
    /// admin's policy file for the bundled plugins).
    pub(crate) env: Vec<(String, String)>,
}

impl Call {
    pub fn new(plugin: impl AsRef<Path>, command: &str, config: Value) -> Call {
        Call {
            plugin: plugin.as_ref().to_path_buf(),
            command: command.to_string(),
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: String::new(),
            path: plugin
                .as_ref()
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            config,
            raw_stdin: None,
            timeout: Duration::from_secs(30),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Call {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn container(mut self, id: &str, netns: Option<&str>, ifname: &str) -> Call {
        self.container_id = id.to_string();
        self.netns = netns.map(str::to_string);
        self.ifname = ifname.to_string();
        self
    }

    pub fn args(mut self, args: &str) -> Call {
        self.args = args.to_string();
        self
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// How the plugin exited (a status, or the signal that killed it).
    pub status: std::process::ExitStatus,
}

impl Reply {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.stdout.trim()).ok()
    }

    /// The spec error code, when the plugin failed with an error object.
    pub fn error_code(&self) -> Option<u64> {
        if self.success {
            return None;
        }
        self.json()
            .and_then(|v| v.get("code").and_then(Value::as_u64))
    }

    /// "exit status 1", or "killed by signal 9".
    pub fn exit_text(&self) -> String {
        use std::os::unix::process::ExitStatusExt as _;
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => self.status.to_string(),
        }
    }

    /// The CNI error's msg and details, or (when the plugin printed none) its output,
    /// or when it printed nothing at all, how it exited.
    pub fn error_text(&self) -> String {
        if failure::cni_error(&self.stdout).is_none()
            && self.stdout.trim().is_empty()
            && self.stderr.trim().is_empty()
        {
            return format!("no output, {}", self.exit_text());
        }
        let v = self.json().unwrap_or(Value::Null);
        format!(
            "{} ({})",
            v.get("msg")
                .and_then(Value::as_str)
                .unwrap_or(self.stdout.trim()),
            v.get("details")
                .and_then(Value::as_str)
                .unwrap_or(self.stderr.trim())
        )
    }
}

/// Runs `call`, inside `node` (the plugin's "host" namespace) when given.
pub async fn exec(call: &Call, node: Option<&NetNs>) -> Result<Reply, ExecError> {
    let enter = match node {
        Some(ns) => Enter {
            net: Some(NetNs::open(ns.path()).map_err(|source| ExecError::Spawn {
                path: call.plugin.clone(),
                source,
            })?),
            mnt: None,
        },
        None => Enter::default(),
    };
    exec_in(call, &enter).await
}

/// Runs `call` inside the namespaces of `enter` (a node's network and mount view).
pub(crate) async fn exec_in(call: &Call, enter: &Enter) -> Result<Reply, ExecError> {
    let stdin_bytes = match &call.raw_stdin {
        Some(raw) => raw.clone(),
        None => serde_json::to_vec(&call.config).expect("config serializes"),
    };
    let mut cmd = Cmd::new(&call.plugin)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CNI_COMMAND", &call.command)
        .env("CNI_CONTAINERID", &call.container_id)
        .env("CNI_NETNS", call.netns.as_deref().unwrap_or(""))
        .env("CNI_IFNAME", &call.ifname)
        .env("CNI_ARGS", &call.args)
        .env("CNI_PATH", &call.path);
    // The runtime's own settings for the plugin (e.g. the node policy path).
    for (key, value) in &call.env {
        cmd = cmd.env(key, value);
    }
    tracing::info!(
        plugin = %call.plugin.display(),
        ifname = %call.ifname,
        "CNI {} sent",
        call.command
    );
    let output = cmd
        .stdin(stdin_bytes)
        .enter(enter)
        .timeout(call.timeout)
        .output_async()
        .await
        .map_err(|e| match e {
            CommandError::Spawn { source, .. } => ExecError::Spawn {
                path: call.plugin.clone(),
                source,
            },
            CommandError::Timeout { .. } => ExecError::Timeout {
                path: call.plugin.clone(),
                command: call.command.clone(),
                timeout: call.timeout,
            },
            other => ExecError::Io {
                path: call.plugin.clone(),
                source: std::io::Error::other(other.to_string()),
            },
        })?;
    tracing::debug!(plugin = %call.plugin.display(), status = %output.status, "CNI {} answered", call.command);
    let reply = Reply {
        success: output.success(),
        stdout: output.stdout_text(),
        stderr: output.stderr_text(),
        elapsed: output.elapsed,
        status: output.status,
    };
    // Every reply is held to the spec of its call: a wrong one is the plugin's error.
    // A failed call that printed nothing is reported by the caller's failure
    // message (binary, exit status, output): that says it all already.
    let silent_failure = !reply.success && reply.stdout.trim().is_empty();
    let violations = spec_check::violations(call, &reply);
    if !violations.is_empty() && !silent_failure {
        return Err(ExecError::Spec {
            path: call.plugin.clone(),
            command: call.command.clone(),
            version: call.config["cniVersion"]
                .as_str()
                .unwrap_or("none")
                .to_string(),
            violations,
            stdout: reply.stdout,
            stderr: reply.stderr,
        });
    }
    Ok(reply)
}

/// Test helper: `reply` is a CNI error with spec `code` whose JSON mentions `needle`
/// (case-insensitive).
pub fn assert_error(reply: &Reply, code: u64, needle: &str) {
    assert!(!reply.success, "expected failure, got {}", reply.stdout);
    assert_eq!(
        reply.error_code(),
        Some(code),
        "wrong code: {}",
        reply.stdout
    );
    assert!(
        reply.stdout.to_lowercase().contains(&needle.to_lowercase()),
        "{needle:?} not in {}",
        reply.stdout
    );
}
