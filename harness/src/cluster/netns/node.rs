//! One netns node: its namespace and uplink, its private mount view, the device
//! plugin process (the DaemonSet's pod on this node), and the kubelet's device
//! manager with its allocations and checkpoint.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kubelet::DeviceManager;
use crate::kubelet::checkpoint::{Checkpoint, PodDevicesEntry};
use crate::lab::Ns;
use crate::lab::enter::Enter;

use super::view::MountView;

pub const CHECKPOINT_FILE: &str = "kubelet_internal_checkpoint";

pub struct NetnsNode {
    pub name: String,
    pub index: usize,
    pub ns: Ns,
    pub uplink: String,
    pub address: Ipv4Addr,
    pub pod_subnet: String,
    pub view: MountView,
    pub device_manager: Option<DeviceManager>,
    pub device_plugin: Option<Child>,
    /// What the kubelet checkpoints: one entry per pod container and resource.
    pub checkpoint: Checkpoint,
}

impl NetnsNode {
    /// The namespaces a process "on the node" runs in.
    pub fn enter(&self) -> Result<Enter, String> {
        Enter::net(self.ns.path())
            .and_then(|e| e.with_mnt(&self.view.ns_file))
            .map_err(|e| format!("failed to open the namespaces of node {}: {e}", self.name))
    }

    pub fn device_plugin_dir(&self) -> PathBuf {
        self.view.host_path("/var/lib/kubelet/device-plugins")
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
    ) -> Result<(), String> {
        if self.device_manager.is_none() {
            let dm = DeviceManager::start(&self.device_plugin_dir()).map_err(|e| e.to_string())?;
            self.device_manager = Some(dm);
        }
        let log = std::fs::File::create(self.log_path("device-plugin"))
            .map_err(|e| format!("failed to create the device plugin log: {e}"))?;
        let (program, args) = command
            .split_first()
            .ok_or("the device plugin command is empty")?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        self.enter()?
            .apply_std(&mut cmd)
            .map_err(|e| e.to_string())?;
        let child = cmd.spawn().map_err(|e| {
            format!(
                "failed to start device plugin {program} on node {}: {e}",
                self.name
            )
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

    /// SIGTERM, then SIGKILL after `grace`.
    pub fn stop_device_plugin(&mut self, grace: Duration) {
        let Some(mut child) = self.device_plugin.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Devices of `resource` held by pods on this node.
    pub fn allocated_ids(&self, resource: &str) -> Vec<String> {
        self.checkpoint
            .data
            .pod_device_entries
            .iter()
            .filter(|e| e.resource_name == resource)
            .flat_map(|e| e.all_device_ids())
            .collect()
    }

    /// Healthy, unallocated devices of `resource`, in device order.
    pub fn free_ids(&self, resource: &str) -> Vec<String> {
        let Some(dm) = &self.device_manager else {
            return Vec::new();
        };
        let snapshot = dm.snapshot();
        let Some(view) = snapshot.resource(resource) else {
            return Vec::new();
        };
        let taken = self.allocated_ids(resource);
        let mut free: Vec<String> = view
            .devices
            .iter()
            .filter(|(id, h)| *h == deviceplugin_api::HEALTHY && !taken.contains(id))
            .map(|(id, _)| id.clone())
            .collect();
        free.sort_by_key(|id| device_order(id));
        free
    }

    /// Records an allocation and writes the checkpoint where the kubelet keeps it.
    pub fn record(&mut self, entry: PodDevicesEntry) -> Result<(), String> {
        self.checkpoint.data.pod_device_entries.push(entry);
        self.write_checkpoint()
    }

    /// Drops the pod's allocations (pod deleted) and rewrites the checkpoint.
    pub fn release(&mut self, pod_uid: &str) -> Result<(), String> {
        self.checkpoint
            .data
            .pod_device_entries
            .retain(|e| e.pod_uid != pod_uid);
        self.write_checkpoint()
    }

    fn write_checkpoint(&mut self) -> Result<(), String> {
        if let Some(dm) = &self.device_manager {
            for (name, view) in dm.snapshot().resources {
                self.checkpoint
                    .data
                    .registered_devices
                    .insert(name, view.devices.keys().cloned().collect());
            }
        }
        let path = self.device_plugin_dir().join(CHECKPOINT_FILE);
        self.checkpoint.write(&path).map_err(|e| e.to_string())
    }
}

/// Sort key for device IDs like `dataplaneMvp12`: name, then the number.
fn device_order(id: &str) -> (String, u64) {
    let digits = id.chars().rev().take_while(|c| c.is_ascii_digit()).count();
    let (stem, num) = id.split_at(id.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0))
}

pub fn run_dir_for(run_id: &str) -> PathBuf {
    Path::new("/run/secnet").join(run_id)
}

#[cfg(test)]
mod tests {
    use super::device_order;

    #[test]
    fn device_ids_sort_numerically() {
        let mut ids = vec!["dpMvp10", "dpMvp2", "dpMvp1"];
        ids.sort_by_key(|i| device_order(i));
        assert_eq!(ids, ["dpMvp1", "dpMvp2", "dpMvp10"]);
    }
}
