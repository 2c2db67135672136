//! One resource's life: serve the DevicePlugin service on its socket, register with
//! the kubelet, and keep both true across kubelet restarts until told to stop.
//!
//! A restarting kubelet removes every socket in the directory and creates a new
//! `kubelet.sock`, so the watcher compares file identities: a new kubelet socket means
//! register again, a missing or foreign plugin socket means serve again first.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deviceplugin_api::uds::{self, UdsError};
use deviceplugin_api::v1beta1::device_plugin_server::DevicePluginServer;
use deviceplugin_api::v1beta1::registration_client::RegistrationClient;
use deviceplugin_api::v1beta1::{DevicePluginOptions, RegisterRequest};
use deviceplugin_api::{KUBELET_SOCKET, VERSION};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::service::{DevicePluginService, Resource};

/// How often the sockets are checked. Re-registration after a kubelet restart takes
/// at most this plus one Register call.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
// Streams end first (the stop signal); what is left are in-flight unary calls
// (Allocate: tens of ms) and idle kubelet connections, which a graceful shutdown
// would otherwise wait on for nothing.
const SERVER_STOP_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("failed to serve resource {resource}: {source}")]
    Serve { resource: String, source: UdsError },
    #[error("failed to register resource {resource} with the kubelet at {socket}: {reason}")]
    Register {
        resource: String,
        socket: PathBuf,
        reason: String,
    },
}

/// Identity of a file: a recreated file has a new inode or change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    ctime_ns: i64,
}

fn file_id(path: &Path) -> Option<FileId> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some(FileId {
        dev: meta.dev(),
        ino: meta.ino(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
    })
}

/// A gRPC server bound to the resource's socket.
struct Server {
    socket: FileId,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Server {
    fn start(resource: &Arc<Resource>, path: &Path) -> Result<Server, PluginError> {
        let serve_err = |source| PluginError::Serve {
            resource: resource.resource_name(),
            source,
        };
        let listener = uds::bind(path).map_err(serve_err)?;
        let socket = file_id(path).ok_or_else(|| {
            serve_err(UdsError::Bind {
                path: path.to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "socket vanished right after bind",
                ),
            })
        })?;
        let (stop, stopped) = watch::channel(false);
        let service = DevicePluginService::new(resource.clone(), stopped.clone());
        let mut stopped = stopped;
        let task = tokio::spawn(
            uds::server()
                .serve_with_incoming_shutdown(
                    DevicePluginServer::new(service),
                    uds::incoming_limited(listener, uds::MAX_CONNECTIONS),
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                )
                .in_current_span(),
        );
        Ok(Server { socket, stop, task })
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let abort = self.task.abort_handle();
        match tokio::time::timeout(SERVER_STOP_TIMEOUT, self.task).await {
            Ok(Ok(Ok(()))) | Ok(Err(_)) => {}
            Ok(Ok(Err(e))) => tracing::warn!("gRPC server ended with an error: {e}"),
            Err(_) => {
                tracing::warn!(
                    "gRPC server did not stop within {SERVER_STOP_TIMEOUT:?}; aborting it"
                );
                abort.abort();
            }
        }
    }
}

/// A running resource; [`ResourcePlugin::stop`] ends it and removes its socket.
pub struct ResourcePlugin {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ResourcePlugin {
    /// Binds the socket now (so a bad directory fails the caller) and registers in
    /// the background as soon as `kubelet.sock` answers.
    pub fn start(resource: Arc<Resource>, dir: &Path) -> Result<ResourcePlugin, PluginError> {
        let socket_path = dir.join(resource.endpoint());
        let server = Server::start(&resource, &socket_path)?;
        tracing::info!(socket = %socket_path.display(), devices = resource.config.capacity, lower = %resource.config.lower_device, mode = resource.config.mode.as_str(), "serving");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(
            keep_registered(
                resource,
                socket_path,
                dir.join(KUBELET_SOCKET),
                server,
                stopped,
            )
            .in_current_span(),
        );
        Ok(ResourcePlugin { stop, task })
    }

    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

async fn keep_registered(
    resource: Arc<Resource>,
    socket_path: PathBuf,
    kubelet_path: PathBuf,
    mut server: Server,
    mut stopped: watch::Receiver<bool>,
) {
    let mut registered_with: Option<FileId> = None;
    let mut failures = 0u32;
    loop {
        if file_id(&socket_path) != Some(server.socket) {
            tracing::warn!(socket = %socket_path.display(), "our socket was removed or replaced (kubelet restart?); serving again");
            server.stop().await;
            registered_with = None;
            let mut attempts = 0u32;
            server = loop {
                match Server::start(&resource, &socket_path) {
                    Ok(s) => break s,
                    // Once, then every ~10 s, not every 100 ms.
                    Err(e) if attempts.is_multiple_of(100) => tracing::warn!("{e}; retrying"),
                    Err(_) => {}
                }
                attempts += 1;
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(WATCH_INTERVAL) => {}
                }
            };
        }
        let kubelet = file_id(&kubelet_path);
        if kubelet.is_some() && kubelet != registered_with {
            // A kubelet that accepts but never answers must not delay SIGTERM.
            let registered = tokio::select! {
                r = register(&resource, &kubelet_path) => r,
                _ = stopped.wait_for(|s| *s) => break,
            };
            match registered {
                Ok(()) => {
                    tracing::info!(kubelet = %kubelet_path.display(), "registered with the kubelet");
                    registered_with = kubelet;
                    failures = 0;
                }
                Err(e) => {
                    // Say it once, then every ~10 s, not every 100 ms.
                    if failures.is_multiple_of(100) {
                        tracing::warn!("{e}; retrying");
                    }
                    failures += 1;
                }
            }
        }
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
    }
    let ours = server.socket;
    server.stop().await;
    // Remove the socket only if it is still ours (a new instance may have bound it).
    if file_id(&socket_path) == Some(ours) {
        match std::fs::remove_file(&socket_path) {
            Ok(()) => tracing::info!(socket = %socket_path.display(), "stopped; socket removed"),
            Err(e) => {
                tracing::warn!(socket = %socket_path.display(), "failed to remove socket: {e}")
            }
        }
    }
}

async fn register(resource: &Resource, kubelet_path: &Path) -> Result<(), PluginError> {
    let fail = |reason: String| PluginError::Register {
        resource: resource.resource_name(),
        socket: kubelet_path.to_path_buf(),
        reason,
    };
    let channel = uds::connect(kubelet_path, REGISTER_TIMEOUT)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let request = RegisterRequest {
        version: VERSION.to_string(),
        endpoint: resource.endpoint(),
        resource_name: resource.resource_name(),
        options: Some(DevicePluginOptions::default()),
    };
    tokio::time::timeout(
        REGISTER_TIMEOUT,
        RegistrationClient::new(channel).register(request),
    )
    .await
    .map_err(|_| fail(format!("no answer within {REGISTER_TIMEOUT:?}")))?
    .map_err(|status| fail(format!("{}: {}", status.code(), status.message())))?;
    Ok(())
}
