//! One netns node: its namespace and uplink, its private mount view, the device
//! plugin process (the DaemonSet's pod on this node), and the kubelet's device
//! manager with its allocations and checkpoint.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::kubelet::DeviceManager;
use crate::lab::enter::Enter;
use crate::lab::{Ns, command};

use super::NetnsError;
use super::view::MountView;

pub struct NetnsNode {
    pub(crate) name: String,
    pub(crate) index: usize,
    pub(crate) ns: Ns,
    pub(crate) uplink: String,
    pub(crate) address: Ipv4Addr,
    pub(crate) pod_subnet: String,
    pub(crate) view: MountView,
    pub(crate) device_manager: Option<DeviceManager>,
    pub(crate) device_plugin: Option<Child>,
    /// The environment the device plugin was started with (to start it again).
    pub(crate) device_plugin_env: Option<BTreeMap<String, String>>,
}

impl NetnsNode {
    /// The namespaces a process "on the node" runs in.
    pub fn enter(&self) -> Result<Enter, NetnsError> {
        Enter::net(self.ns.path())
            .and_then(|e| e.with_mnt(&self.view.ns_file))
            .map_err(|source| NetnsError::EnterNode {
                node: self.name.clone(),
                source,
            })
    }

    pub fn device_plugin_dir(&self) -> PathBuf {
        self.view.host_path("/var/lib/kubelet/device-plugins")
    }

    /// Host-side path of the node's `/var/lib/kubelet/pod-resources/kubelet.sock`.
    pub fn pod_resources_socket(&self) -> PathBuf {
        self.view
            .host_path("/var/lib/kubelet/pod-resources")
            .join(deviceplugin_api::KUBELET_SOCKET)
    }

    pub fn log_path(&self, what: &str) -> PathBuf {
        self.view.dir.join(format!("{what}.log"))
    }

    /// Starts the device manager (kubelet.sock) and the device plugin process with
    /// `env`, as the DaemonSet's pod on this node would run.
    pub fn start_device_plugin(
        &mut self,
        command: &[String],
        env: &BTreeMap<String, String>,
    ) -> Result<(), NetnsError> {
        if self.device_manager.is_none() {
            let mut dm = DeviceManager::start(&self.device_plugin_dir())?;
            dm.serve_pod_resources(&self.pod_resources_socket())?;
            self.device_manager = Some(dm);
        }
        let log_path = self.log_path("device-plugin");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| NetnsError::io("create the device plugin log", &log_path, e))?;
        let (program, args) = command
            .split_first()
            .ok_or(NetnsError::EmptyDevicePluginCommand)?;
        let mut cmd = Command::new(program);
        // The node's own temp dir, removed with the node: a plugin that writes files
        // there (glog in upstream's Go device plugin, without -logtostderr) leaves
        // nothing in the host's /tmp.
        cmd.args(args)
            .env("TMPDIR", &self.view.dir)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| NetnsError::io("reopen", &log_path, e))?,
            )
            .stderr(log);
        self.enter()?
            .apply_std(&mut cmd)
            .map_err(|source| NetnsError::EnterNode {
                node: self.name.clone(),
                source,
            })?;
        self.device_plugin_env = Some(env.clone());
        let child = command::own_group(&mut cmd).spawn().map_err(|source| {
            NetnsError::DevicePluginSpawn {
                program: program.clone(),
                node: self.name.clone(),
                source,
            }
        })?;
        self.device_plugin = Some(child);
        Ok(())
    }

    /// The device plugin's log so far (for errors and diagnostics).
    pub fn device_plugin_log(&self) -> String {
        std::fs::read_to_string(self.log_path("device-plugin")).unwrap_or_default()
    }

    /// Whether the device plugin process has exited, and how.
    pub fn device_plugin_exit(&mut self) -> Option<String> {
        let child = self.device_plugin.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Sends SIGTERM to the device plugin's process group (without waiting: see
    /// `reap_device_plugin`).
    pub fn signal_device_plugin(&mut self) {
        if let Some(child) = &mut self.device_plugin {
            command::signal_group(child, nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Waits up to `grace` for the device plugin to exit, then kills its group.
    pub fn reap_device_plugin(&mut self, grace: Duration) {
        if let Some(mut child) = self.device_plugin.take() {
            command::reap_group(&mut child, grace);
        }
    }

    /// Gives the pod's devices back (pod deleted); the checkpoint is rewritten.
    pub fn release(&self, pod_uid: &str) -> Result<(), NetnsError> {
        match &self.device_manager {
            Some(dm) => Ok(dm.release(pod_uid).map(|_| ())?),
            None => Ok(()),
        }
    }

    /// Devices of `resource` held by pods on this node.
    pub fn allocated_ids(&self, resource: &str) -> Vec<String> {
        let Some(dm) = &self.device_manager else {
            return Vec::new();
        };
        dm.pod_devices()
            .into_iter()
            .filter(|p| p.resource == resource)
            .flat_map(|p| p.ids)
            .collect()
    }

    /// How many healthy devices of `resource` no pod holds.
    pub fn free_count(&self, resource: &str) -> usize {
        let Some(dm) = &self.device_manager else {
            return 0;
        };
        let taken = self.allocated_ids(resource);
        dm.snapshot()
            .resource(resource)
            .map(|v| {
                v.devices
                    .iter()
                    .filter(|(id, h)| *h == deviceplugin_api::HEALTHY && !taken.contains(id))
                    .count()
            })
            .unwrap_or(0)
    }
}

pub fn run_dir_for(run_id: &str) -> PathBuf {
    Path::new("/run/secnet").join(run_id)
}

impl Drop for NetnsNode {
    /// A cluster dropped without teardown (an aborted run) still stops its plugin.
    fn drop(&mut self) {
        if let Some(mut child) = self.device_plugin.take() {
            command::signal_group(&mut child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}
