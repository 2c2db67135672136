//! The Registration service on `<dir>/kubelet.sock`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deviceplugin_api::v1beta1::registration_server::{
    Registration as RegistrationApi, RegistrationServer as Api,
};
use deviceplugin_api::v1beta1::{Empty, RegisterRequest};
use deviceplugin_api::{KUBELET_SOCKET, VERSION, uds};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use super::{KubeletError, Registration, ResourceView, Shared, plugin_client};

const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// A running Registration server; stopping it removes `kubelet.sock`.
pub struct RegistrationServer {
    socket: PathBuf,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RegistrationServer {
    pub fn start(dir: &Path, shared: Arc<Shared>) -> Result<RegistrationServer, KubeletError> {
        let socket = dir.join(KUBELET_SOCKET);
        let listener = uds::bind(&socket).map_err(|source| KubeletError::Serve {
            path: socket.clone(),
            source,
        })?;
        let (stop, mut stopped) = watch::channel(false);
        let service = Registrar {
            dir: dir.to_path_buf(),
            shared,
        };
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .serve_with_incoming_shutdown(
                    Api::new(service),
                    uds::incoming(listener),
                    async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    },
                )
                .await;
            if let Err(e) = served {
                tracing::warn!("kubelet registration server ended: {e}");
            }
        });
        Ok(RegistrationServer { socket, stop, task })
    }

    pub async fn stop(self) {
        self.stop.send_replace(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            abort.abort();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Stops at once, without the graceful wait for idle connections, and returns
    /// when the server's task is gone (its sockets closed).
    pub async fn halt(self) {
        self.task.abort();
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Stops without waiting (for Drop).
    pub fn abort(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

struct Registrar {
    dir: PathBuf,
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl RegistrationApi for Registrar {
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = request.into_inner();
        let refuse = self.shared.update(|s| {
            let refuse = s.refuse_registrations > 0;
            s.refuse_registrations = s.refuse_registrations.saturating_sub(1);
            refuse
        });
        if refuse {
            return Err(Status::unavailable(format!(
                "kubelet is not ready to register {} yet (refused on purpose)",
                r.resource_name
            )));
        }
        if r.version != VERSION {
            return Err(Status::invalid_argument(format!(
                "unsupported device plugin API version {:?}; this kubelet speaks {VERSION}",
                r.version
            )));
        }
        if r.endpoint.is_empty() || r.endpoint.contains('/') {
            return Err(Status::invalid_argument(format!(
                "endpoint {:?} must be a socket file name inside {}",
                r.endpoint,
                self.dir.display()
            )));
        }
        if r.resource_name
            .split_once('/')
            .is_none_or(|(d, n)| d.is_empty() || n.is_empty())
        {
            return Err(Status::invalid_argument(format!(
                "resource name {:?} is not of the form <domain>/<name>",
                r.resource_name
            )));
        }
        let generation = self.shared.update(|s| {
            s.snapshot.registrations.push(Registration {
                resource_name: r.resource_name.clone(),
                endpoint: r.endpoint.clone(),
                version: r.version.clone(),
                options: r.options,
                at: Instant::now(),
            });
            let view = s
                .snapshot
                .resources
                .entry(r.resource_name.clone())
                .or_insert_with(|| ResourceView {
                    endpoint: String::new(),
                    options: None,
                    devices: Default::default(),
                    updates: 0,
                    updated_at: None,
                    streaming: false,
                    registrations: 0,
                    last_error: None,
                });
            view.endpoint = r.endpoint.clone();
            view.registrations += 1;
            view.streaming = false;
            s.clients.remove(&r.resource_name);
            let generation = s.generations.entry(r.resource_name.clone()).or_default();
            *generation += 1;
            *generation
        });
        tokio::spawn(plugin_client::follow(
            self.shared.clone(),
            self.dir.join(&r.endpoint),
            r.resource_name,
            generation,
        ));
        Ok(Response::new(Empty {}))
    }
}
