//! What can go wrong building and driving the netns cluster below the `Cluster`
//! contract (whose `ClusterError` carries these as its message).

use crate::kubelet::KubeletError;
use crate::lab::CommandError;

use super::ovs::OvsError;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `ip`, `mount`, `unshare`: the command line and its output are in the source.
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the namespaces of node {node}: {source}")]
    EnterNode {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("node {0} does not exist")]
    NoSuchNode(String),
    #[error("pod {0} does not exist")]
    NoSuchPod(String),
    #[error("the topology has no fabric.dhcpRange")]
    NoDhcpRange,
    #[error("failed to start {program} ({install}): {source}")]
    Daemon {
        program: String,
        install: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Kubelet(#[from] KubeletError),
    /// Boxed: the OVS errors carry a command's output and a log tail.
    #[error(transparent)]
    Ovs(Box<OvsError>),
    #[error("the device plugin command is empty")]
    EmptyDevicePluginCommand,
    #[error("failed to start device plugin {program} on node {node}: {source}")]
    DevicePluginSpawn {
        program: String,
        node: String,
        #[source]
        source: std::io::Error,
    },
    /// The plugin's log is a field: reports show it, callers may match on it.
    #[error("the device plugin on node {node} exited ({status}):\n{log}")]
    DevicePluginExited {
        node: String,
        status: String,
        log: String,
    },
    #[error(
        "node {node}: the device plugin did not register {expected:?} within 15 s; kubelet sees {seen:?}; log:\n{log}"
    )]
    DevicePluginNotRegistered {
        node: String,
        expected: Vec<String>,
        seen: Vec<String>,
        log: String,
    },
    /// A fault that needs a daemon that is not there (e.g. restart a kubelet that
    /// never started).
    #[error("no {what} runs on node {node}")]
    NotRunning { what: &'static str, node: String },
    #[error("the device plugin never ran on node {0}")]
    DevicePluginNeverRan(String),
    #[error("the pod {0} has no network-status annotation")]
    NoNetworkStatus(String),
    #[error(transparent)]
    Multus(#[from] crate::multus::MultusError),
}

impl From<OvsError> for NetnsError {
    fn from(e: OvsError) -> NetnsError {
        NetnsError::Ovs(Box::new(e))
    }
}

impl NetnsError {
    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> NetnsError {
        NetnsError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}
