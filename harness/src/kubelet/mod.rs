//! The kubelet's side of the device plugin API: a device manager that serves
//! `Registration` on `<dir>/kubelet.sock`, connects back to each registered plugin,
//! follows its ListAndWatch stream, and calls Allocate & co. on it.
//!
//! The netns cluster uses it as its nodes' device manager, and the device plugin's
//! tests use it as the kubelet. Like the real kubelet, Register returns at once and
//! the connection back to the plugin happens in the background; a plugin that
//! registers again replaces its previous connection.

mod admission;
pub mod answer_check;
pub mod checkpoint;
mod plugin_client;
mod pod_resources;
#[cfg(test)]
mod real_clients_tests;
mod registration;
pub mod stream_flood;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deviceplugin_api::uds::UdsError;
use deviceplugin_api::v1beta1::{
    AllocateResponse, ContainerPreferredAllocationRequest, DevicePluginOptions,
    PreferredAllocationResponse,
};
use deviceplugin_api::{HEALTHY, KUBELET_SOCKET};
use pod_resources::PodResourcesServer;
use tokio::sync::watch;

pub use admission::{PodDevices, PodId};
pub use plugin_client::PluginClient;
pub use registration::RegistrationServer;

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("failed to serve kubelet registration socket {path}: {source}")]
    Serve { path: PathBuf, source: UdsError },
    #[error("failed to serve kubelet pod-resources socket {path}: {source}")]
    ServePodResources { path: PathBuf, source: UdsError },
    #[error("failed to reset device-plugin directory {dir}: {source}")]
    Reset {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to wait for {what} within {timeout:?}; last state: {state}")]
    Timeout {
        what: String,
        timeout: Duration,
        state: String,
    },
    #[error("failed to call {call} on resource {resource}: it is not registered or not connected")]
    NotConnected { resource: String, call: String },
    /// The text the kubelet puts on a pod it cannot admit: `Insufficient <resource>`.
    #[error(
        "failed to admit pod: Insufficient {resource} ({wanted} wanted, {free} free and healthy)"
    )]
    Insufficient {
        resource: String,
        wanted: usize,
        free: usize,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("failed to call {call} on resource {resource}: {status}")]
    Rpc {
        resource: String,
        call: String,
        status: tonic::Status,
    },
}

/// One Register call the device manager accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub(crate) resource_name: String,
    pub endpoint: String,
    pub version: String,
    pub(crate) options: Option<DevicePluginOptions>,
    pub at: Instant,
}

/// What the device manager knows about one resource.
#[derive(Debug, Clone)]
pub struct ResourceView {
    pub(crate) endpoint: String,
    /// Options as GetDevicePluginOptions returned them.
    pub(crate) options: Option<DevicePluginOptions>,
    /// Device ID → health, from the last ListAndWatch message.
    pub devices: BTreeMap<String, String>,
    /// ListAndWatch messages received over all connections.
    pub(crate) updates: u64,
    /// When the last ListAndWatch message arrived.
    pub updated_at: Option<Instant>,
    /// True while the ListAndWatch stream is open.
    pub streaming: bool,
    pub(crate) registrations: u32,
    /// The last problem with the plugin connection, if any.
    pub(crate) last_error: Option<String>,
}

impl ResourceView {
    /// Node capacity for the resource: every advertised device.
    pub fn capacity(&self) -> usize {
        self.devices.len()
    }

    /// Node allocatable: healthy devices only.
    pub fn allocatable(&self) -> usize {
        self.devices.values().filter(|h| *h == HEALTHY).count()
    }

    pub fn all_have_health(&self, health: &str) -> bool {
        !self.devices.is_empty() && self.devices.values().all(|h| h == health)
    }
}

/// Everything the device manager knows at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub resources: BTreeMap<String, ResourceView>,
    pub registrations: Vec<Registration>,
}

impl Snapshot {
    pub fn resource(&self, name: &str) -> Option<&ResourceView> {
        self.resources.get(name)
    }
}

/// State shared by the Registration server, the plugin connections and the API.
#[derive(Debug, Default)]
pub struct Shared {
    state: Mutex<State>,
    /// Bumped on every change, so waiters wake up.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    snapshot: Snapshot,
    clients: BTreeMap<String, PluginClient>,
    /// Generation per resource: a stream of an older connection must not touch the
    /// state of a newer one.
    generations: BTreeMap<String, u64>,
    /// Devices held by admitted pods.
    pods: Vec<PodDevices>,
    /// Register calls still to refuse.
    refuse_registrations: u32,
}

impl State {
    fn in_use(&self, resource: &str, id: &str) -> bool {
        self.pods
            .iter()
            .any(|p| p.resource == resource && p.ids.iter().any(|i| i == id))
    }
}

impl Shared {
    fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.state.lock().expect("kubelet state lock"));
        self.changes.send_modify(|n| *n += 1);
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.lock().expect("kubelet state lock"))
    }
}

/// A device manager for one node's device-plugin directory.
pub struct DeviceManager {
    dir: PathBuf,
    shared: Arc<Shared>,
    server: Option<RegistrationServer>,
    pod_resources: Option<PodResourcesServer>,
}

impl DeviceManager {
    /// Serves Registration on `<dir>/kubelet.sock`.
    pub fn start(dir: &Path) -> Result<DeviceManager, KubeletError> {
        let shared = Arc::new(Shared::default());
        let server = RegistrationServer::start(dir, shared.clone())?;
        Ok(DeviceManager {
            dir: dir.to_path_buf(),
            shared,
            server: Some(server),
            pod_resources: None,
        })
    }

    /// Also serves the pod-resources API (`List`, `Get`) on `socket` (the kubelet's
    /// is `/var/lib/kubelet/pod-resources/kubelet.sock`), from this device manager's
    /// admissions. It keeps serving across [`DeviceManager::restart`].
    pub fn serve_pod_resources(&mut self, socket: &Path) -> Result<(), KubeletError> {
        if let Some(old) = self.pod_resources.take() {
            old.stop();
        }
        self.pod_resources = Some(PodResourcesServer::start(socket, self.shared.clone())?);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kubelet_socket(&self) -> PathBuf {
        self.dir.join(KUBELET_SOCKET)
    }

    pub fn snapshot(&self) -> Snapshot {
        self.shared.read(|s| s.snapshot.clone())
    }

    /// Waits until `check` returns `Some` for the current state, re-checking on every
    /// change, and fails after `timeout` with the state it last saw.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Snapshot) -> Option<T>,
    ) -> Result<T, KubeletError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.shared.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let snapshot = self.snapshot();
            if let Some(found) = check(&snapshot) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(KubeletError::Timeout {
                        what: what.to_string(),
                        timeout,
                        state: format!("{:?}", self.snapshot().resources),
                    });
                }
            }
        }
    }

    /// Waits for a registration of `resource` after `since` and returns it.
    pub async fn wait_for_registration(
        &self,
        resource: &str,
        since: Instant,
        timeout: Duration,
    ) -> Result<Registration, KubeletError> {
        self.wait_until(&format!("registration of {resource}"), timeout, |s| {
            s.registrations
                .iter()
                .find(|r| r.resource_name == resource && r.at >= since)
                .cloned()
        })
        .await
    }

    /// Waits until `resource` advertises `count` devices, all with `health`.
    pub async fn wait_for_devices(
        &self,
        resource: &str,
        count: usize,
        health: &str,
        timeout: Duration,
    ) -> Result<ResourceView, KubeletError> {
        self.wait_until(
            &format!("{count} {health} devices of {resource}"),
            timeout,
            |s| {
                s.resource(resource)
                    .filter(|r| r.capacity() == count && r.all_have_health(health))
                    .cloned()
            },
        )
        .await
    }

    fn client(&self, resource: &str, call: &str) -> Result<PluginClient, KubeletError> {
        self.shared
            .read(|s| s.clients.get(resource).cloned())
            .ok_or_else(|| KubeletError::NotConnected {
                resource: resource.to_string(),
                call: call.to_string(),
            })
    }

    /// Allocate for one container with the given device IDs.
    pub async fn allocate(
        &self,
        resource: &str,
        ids: &[String],
    ) -> Result<AllocateResponse, KubeletError> {
        self.client(resource, "Allocate")?
            .allocate(resource, ids)
            .await
    }

    pub async fn preferred_allocation(
        &self,
        resource: &str,
        request: ContainerPreferredAllocationRequest,
    ) -> Result<PreferredAllocationResponse, KubeletError> {
        self.client(resource, "GetPreferredAllocation")?
            .preferred_allocation(resource, request)
            .await
    }

    pub async fn pre_start_container(
        &self,
        resource: &str,
        ids: &[String],
    ) -> Result<(), KubeletError> {
        self.client(resource, "PreStartContainer")?
            .pre_start_container(resource, ids)
            .await
    }

    pub async fn options(&self, resource: &str) -> Result<DevicePluginOptions, KubeletError> {
        self.client(resource, "GetDevicePluginOptions")?
            .options(resource)
            .await
    }

    /// A kubelet restart as the real one does it: the registration server goes away,
    /// every socket in the directory is removed (the checkpoint stays), plugin
    /// connections are dropped, and a new `kubelet.sock` is served.
    pub async fn restart(&mut self) -> Result<(), KubeletError> {
        self.go_away().await?;
        self.serve_again()
    }

    /// The first half of a restart: the kubelet is gone (no `kubelet.sock`, no plugin
    /// sockets, plugin connections dropped) until [`DeviceManager::serve_again`].
    pub async fn go_away(&mut self) -> Result<(), KubeletError> {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
        self.shared.update(|s| {
            s.clients.clear();
            for (name, view) in s.snapshot.resources.iter_mut() {
                // Nothing is known about a plugin until it registers again.
                view.streaming = false;
                view.devices.clear();
                *s.generations.entry(name.clone()).or_default() += 1;
            }
        });
        remove_sockets(&self.dir)
    }

    /// Serves `kubelet.sock` again after [`DeviceManager::go_away`].
    pub fn serve_again(&mut self) -> Result<(), KubeletError> {
        if self.server.is_none() {
            self.server = Some(RegistrationServer::start(&self.dir, self.shared.clone())?);
        }
        Ok(())
    }

    /// Answers the next `n` Register calls with UNAVAILABLE (a kubelet that is still
    /// starting), as a plugin must survive.
    pub fn refuse_registrations(&self, n: u32) {
        self.shared.update(|s| s.refuse_registrations = n);
    }

    /// Stops at once (node teardown): no graceful wait for the plugins' connections.
    pub async fn halt(mut self) {
        if let Some(pr) = self.pod_resources.take() {
            pr.stop();
        }
        if let Some(server) = self.server.take() {
            server.halt().await;
        }
    }

    /// Stops serving and removes `kubelet.sock` (and the pod-resources socket).
    pub async fn stop(mut self) {
        if let Some(pr) = self.pod_resources.take() {
            pr.stop();
        }
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

impl Drop for DeviceManager {
    fn drop(&mut self) {
        if let Some(pr) = self.pod_resources.take() {
            pr.stop();
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Removes every socket in `dir` (what a starting kubelet does); other files stay.
fn remove_sockets(dir: &Path) -> Result<(), KubeletError> {
    use std::os::unix::fs::FileTypeExt;
    let reset_err = |source| KubeletError::Reset {
        dir: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(reset_err)? {
        let entry = entry.map_err(reset_err)?;
        if entry.file_type().map_err(reset_err)?.is_socket() {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(reset_err(e)),
            }
        }
    }
    Ok(())
}
