//! A CRI (runtime.v1) client over a runtime's Unix socket: what a kubelet asks
//! containerd, from Rust. The messages and client are generated at build time from
//! `harness/proto/cri.proto` (our own wire-compatible subset, compiled with protox).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic::transport::Channel;

/// The generated runtime.v1 messages and client.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("runtime.v1");
}

use v1::runtime_service_client::RuntimeServiceClient;

/// How long one CRI call may take (RunPodSandbox runs the CNI ADD chain).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("failed to connect to the CRI socket {socket}: {message}")]
    Connect { socket: String, message: String },
    /// `status` is the runtime's own message (e.g. the CNI plugin's error).
    #[error("CRI {call} on {socket} failed: {status}")]
    Call {
        call: &'static str,
        socket: String,
        status: String,
    },
    #[error("CRI {call} on {socket}: no answer within {timeout:?}")]
    Timeout {
        call: &'static str,
        socket: String,
        timeout: Duration,
    },
    #[error("CRI PodSandboxStatus of {id}: the runtime's verbose info has no {field}")]
    MissingInfo { id: String, field: &'static str },
}

/// A connected CRI client.
#[derive(Debug, Clone)]
pub struct Cri {
    socket: PathBuf,
    client: RuntimeServiceClient<Channel>,
}

/// What a pod sandbox is asked to be.
#[derive(Debug, Clone, Default)]
pub struct SandboxRequest {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// cgroupfs parent of the sandbox's containers (e.g. `/secnet-<run>-node1`).
    pub cgroup_parent: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Where container logs go (the kubelet's `/var/log/pods/...`).
    pub log_directory: String,
}

/// What a runtime says about a sandbox, with the verbose info containerd adds.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub id: String,
    pub ready: bool,
    /// The pod IP from the CNI result, empty without one.
    pub ip: String,
    pub additional_ips: Vec<String>,
    /// containerd's verbose `info` JSON (pid, netNamespacePath, config, ...).
    pub info: Value,
}

impl SandboxStatus {
    /// PID of the sandbox's init (pause) process, from containerd's info.
    pub fn pid(&self) -> Option<u32> {
        self.info
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
    }

    /// The network namespace file containerd made for the sandbox.
    pub fn netns_path(&self) -> Option<String> {
        self.info
            .pointer("/runtimeSpec/linux/namespaces")
            .and_then(Value::as_array)
            .and_then(|all| {
                all.iter()
                    .find(|n| n.get("type").and_then(Value::as_str) == Some("network"))
            })
            .and_then(|n| n.get("path"))
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

/// What a finished `ExecSync` returned.
#[derive(Debug, Clone)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Cri {
    /// Connects to the runtime's socket, waiting up to `timeout` for it to accept.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Cri, CriError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match deviceplugin_api::uds::connect(socket, left.max(Duration::from_millis(100))).await
            {
                Ok(channel) => {
                    return Ok(Cri {
                        socket: socket.to_path_buf(),
                        client: RuntimeServiceClient::new(channel),
                    });
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(CriError::Connect {
                        socket: socket.display().to_string(),
                        message: e.to_string(),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn call<T>(
        &self,
        call: &'static str,
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CriError> {
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(CriError::Call {
                call,
                socket: self.socket.display().to_string(),
                status: format!("{:?}: {}", status.code(), status.message()),
            }),
            Err(_) => Err(CriError::Timeout {
                call,
                socket: self.socket.display().to_string(),
                timeout: CALL_TIMEOUT,
            }),
        }
    }

    /// The runtime's name, its version and the CRI version it speaks.
    pub async fn version(&self) -> Result<v1::VersionResponse, CriError> {
        let mut c = self.client.clone();
        self.call(
            "Version",
            c.version(v1::VersionRequest {
                version: "v1".into(),
            }),
        )
        .await
    }

    /// The sandbox config the kubelet would send for `req`.
    pub fn sandbox_config(req: &SandboxRequest) -> v1::PodSandboxConfig {
        v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: req.name.clone(),
                uid: req.uid.clone(),
                namespace: req.namespace.clone(),
                attempt: 0,
            }),
            hostname: req.name.clone(),
            log_directory: req.log_directory.clone(),
            labels: req.labels.clone().into_iter().collect(),
            annotations: req.annotations.clone().into_iter().collect(),
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent: req.cgroup_parent.clone(),
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(v1::NamespaceOption {
                        network: v1::NamespaceMode::Pod as i32,
                        pid: v1::NamespaceMode::Container as i32,
                        ipc: v1::NamespaceMode::Pod as i32,
                    }),
                    privileged: false,
                }),
                sysctls: Default::default(),
            }),
        }
    }

    /// RunPodSandbox: the runtime makes the pod's namespaces, runs the CNI ADD of
    /// its network configuration and starts the pause container. Returns its ID.
    pub async fn run_pod_sandbox(&self, req: &SandboxRequest) -> Result<String, CriError> {
        let mut c = self.client.clone();
        let resp = self
            .call(
                "RunPodSandbox",
                c.run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(Cri::sandbox_config(req)),
                    runtime_handler: String::new(),
                }),
            )
            .await?;
        Ok(resp.pod_sandbox_id)
    }

    /// PodSandboxStatus with the runtime's verbose info.
    pub async fn pod_sandbox_status(&self, id: &str) -> Result<SandboxStatus, CriError> {
        let mut c = self.client.clone();
        let resp = self
            .call(
                "PodSandboxStatus",
                c.pod_sandbox_status(v1::PodSandboxStatusRequest {
                    pod_sandbox_id: id.into(),
                    verbose: true,
                }),
            )
            .await?;
        let status = resp.status.ok_or(CriError::MissingInfo {
            id: id.into(),
            field: "status",
        })?;
        let info = resp
            .info
            .get("info")
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        let network = status.network.unwrap_or_default();
        Ok(SandboxStatus {
            id: status.id,
            ready: status.state == v1::PodSandboxState::SandboxReady as i32,
            ip: network.ip,
            additional_ips: network.additional_ips.into_iter().map(|p| p.ip).collect(),
            info,
        })
    }

    /// IDs of every sandbox the runtime knows.
    pub async fn list_pod_sandboxes(&self) -> Result<Vec<v1::PodSandbox>, CriError> {
        let mut c = self.client.clone();
        let resp = self
            .call(
                "ListPodSandbox",
                c.list_pod_sandbox(v1::ListPodSandboxRequest { filter: None }),
            )
            .await?;
        Ok(resp.items)
    }

    /// StopPodSandbox: the runtime runs the CNI DEL and stops the sandbox's containers.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let mut c = self.client.clone();
        self.call(
            "StopPodSandbox",
            c.stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await
        .map(|_| ())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let mut c = self.client.clone();
        self.call(
            "RemovePodSandbox",
            c.remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await
        .map(|_| ())
    }

    /// CreateContainer + StartContainer of `image` (already imported) running
    /// `command` in sandbox `sandbox_id`. Returns the container ID.
    pub async fn start_container(
        &self,
        sandbox_id: &str,
        sandbox: &SandboxRequest,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> Result<String, CriError> {
        let mut c = self.client.clone();
        let config = v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: image.into(),
                annotations: Default::default(),
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            ..Default::default()
        };
        let created = self
            .call(
                "CreateContainer",
                c.create_container(v1::CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.into(),
                    config: Some(config),
                    sandbox_config: Some(Cri::sandbox_config(sandbox)),
                }),
            )
            .await?;
        self.call(
            "StartContainer",
            c.start_container(v1::StartContainerRequest {
                container_id: created.container_id.clone(),
            }),
        )
        .await?;
        Ok(created.container_id)
    }

    /// ExecSync: runs `cmd` in a running container and returns what it wrote.
    pub async fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[&str],
        timeout: Duration,
    ) -> Result<ExecResult, CriError> {
        let mut c = self.client.clone();
        let resp = self
            .call(
                "ExecSync",
                c.exec_sync(v1::ExecSyncRequest {
                    container_id: container_id.into(),
                    cmd: cmd.iter().map(|s| s.to_string()).collect(),
                    timeout: timeout.as_secs().max(1) as i64,
                }),
            )
            .await?;
        Ok(ExecResult {
            exit_code: resp.exit_code,
            stdout: String::from_utf8_lossy(&resp.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&resp.stderr).into_owned(),
        })
    }
}
