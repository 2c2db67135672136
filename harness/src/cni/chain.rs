//! Running a plugin chain (a conflist, or a NAD's plugins) as libcni does: ADD in
//! order with each result as the next plugin's `prevResult`, DEL in reverse order,
//! every DEL attempted even if one fails.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::failure::PluginFailure;
use super::{Call, ExecError, exec_in};
use crate::lab::enter::Enter;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("CNI plugin \"{plugin}\" not found in {path}")]
    NotFound { plugin: String, path: String },
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The plugin's answer: binary, exit status, CNI error, config and output.
    #[error("{0}")]
    Failed(Box<PluginFailure>),
    #[error("the plugin chain returned no result")]
    NoResult,
    /// DEL goes on after a failure: every plugin's error, in call order.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Del(Vec<ChainError>),
}

/// Where plugin binaries are looked up, first match wins (also passed as CNI_PATH).
#[derive(Debug, Clone)]
pub struct BinDirs(pub Vec<PathBuf>);

impl BinDirs {
    pub fn find(&self, plugin_type: &str) -> Option<PathBuf> {
        if plugin_type.is_empty() || plugin_type.contains('/') {
            return None;
        }
        self.0
            .iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.exists())
    }

    pub fn cni_path(&self) -> String {
        self.0
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// The node policy of the bundled plugins as a netns node's runtime passes it
/// (`SECNET_PLUGIN_POLICY`): a path in the node's private `/var/lib/cni`, written
/// by `cluster::netns::view`. Other plugins ignore it.
pub const NODE_POLICY: &str = "/var/lib/cni/secnet/plugins.conf";

/// One invocation context: container, netns, interface, CNI_ARGS.
#[derive(Debug, Clone)]
pub struct Target {
    pub(crate) container_id: String,
    pub(crate) netns: Option<String>,
    pub(crate) ifname: String,
    pub(crate) args: String,
}

fn plugin_type(config: &Value) -> &str {
    config.get("type").and_then(Value::as_str).unwrap_or("")
}

async fn invoke(
    dirs: &BinDirs,
    enter: &Enter,
    command: &str,
    config: Value,
    target: &Target,
) -> Result<Option<Value>, ChainError> {
    let kind = plugin_type(&config).to_string();
    let binary: &Path = &dirs.find(&kind).ok_or_else(|| ChainError::NotFound {
        plugin: kind,
        path: dirs.cni_path(),
    })?;
    let mut call = Call::new(binary, command, config)
        .container(
            &target.container_id,
            target.netns.as_deref(),
            &target.ifname,
        )
        .args(&target.args)
        .env(cni_kit::policy::POLICY_ENV, NODE_POLICY);
    call.path = dirs.cni_path();
    let reply = exec_in(&call, enter).await?;
    if !reply.success {
        return Err(ChainError::Failed(Box::new(PluginFailure::of(
            &call, &reply,
        ))));
    }
    Ok(reply.json())
}

/// ADD through the chain; returns the last result. On failure, DELs what was added.
pub async fn add(
    dirs: &BinDirs,
    enter: &Enter,
    plugins: &[Value],
    target: &Target,
) -> Result<Value, ChainError> {
    let mut prev: Option<Value> = None;
    for (i, plugin) in plugins.iter().enumerate() {
        let mut config = plugin.clone();
        if let Some(p) = &prev {
            config["prevResult"] = p.clone();
        }
        match invoke(dirs, enter, "ADD", config, target).await {
            Ok(result) => prev = result.or(prev),
            Err(e) => {
                let _ = del(dirs, enter, &plugins[..=i], target, prev.as_ref()).await;
                return Err(e);
            }
        }
    }
    prev.ok_or(ChainError::NoResult)
}

/// Whether a runtime hands a DEL the cached ADD result as `prevResult`: libcni
/// (containerd's and multus's) does from CNI 0.4.0 on, never for 0.1–0.3 configs.
/// Seen on a real cluster: `secnet compare --a-cluster netns --b-cluster bare`.
fn caches_results(config: &Value) -> bool {
    let version = config["cniVersion"].as_str().unwrap_or("0.1.0");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (0, 4)
}

/// DEL through the chain in reverse; every plugin is called, errors are collected.
pub async fn del(
    dirs: &BinDirs,
    enter: &Enter,
    plugins: &[Value],
    target: &Target,
    prev: Option<&Value>,
) -> Result<(), ChainError> {
    let mut errors = Vec::new();
    for plugin in plugins.iter().rev() {
        let mut config = plugin.clone();
        if let Some(p) = prev.filter(|_| caches_results(plugin)) {
            config["prevResult"] = p.clone();
        }
        if let Err(e) = invoke(dirs, enter, "DEL", config, target).await {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ChainError::Del(errors))
    }
}
