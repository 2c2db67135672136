//! The control plane in its own network namespace: on the fabric (for kubelets and
//! multus) and on a host link (for the harness). etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler start at once (each retries its
//! upstream) in the run's cgroup; ready is the API server's `/readyz`.

use std::time::{Duration, Instant};

use super::kubeconfig::Kubeconfig;
use super::pki::Pki;
use super::plan::{ControlPlanePlan, Plan};
use super::process::{Daemon, Placement, ProcessError};
use crate::cluster::netns::fabric;
use crate::lab::enter::Enter;
use crate::lab::{CommandError, Lab, Ns};

#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("control-plane network: {0}")]
    Network(Box<CommandError>),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("failed to write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("failed to open the control plane's namespace {ns}: {source}")]
    Enter { ns: String, source: std::io::Error },
    #[error(
        "{name} exited ({status}) before the API server was ready; its log {log} ends:\n{tail}"
    )]
    Exited {
        name: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error(
        "the API server was not ready within {waited:?} (last answer: {last}); its log {log} ends:\n{tail}"
    )]
    NotReady {
        waited: Duration,
        last: String,
        log: String,
        tail: String,
    },
}

impl From<CommandError> for ControlPlaneError {
    fn from(e: CommandError) -> Self {
        ControlPlaneError::Network(Box::new(e))
    }
}

pub struct ControlPlane {
    pub(crate) ns: Ns,
    /// etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
    pub(crate) daemons: Vec<Daemon>,
}

/// The namespace, its fabric port and its host link.
pub fn network(lab: &mut Lab, fabric_ns: &Ns, cp: &ControlPlanePlan) -> Result<Ns, CommandError> {
    let ns = lab.netns("cp")?;
    fabric::plug(lab, fabric_ns, &ns, &cp.fabric_if, &cp.fabric_port)?;
    lab.ip(
        &ns,
        &[
            "addr",
            "add",
            &format!("{}/24", cp.fabric_ip),
            "dev",
            &cp.fabric_if,
        ],
    )?;
    // The host end is in the host's namespace: it goes when the namespace is deleted.
    crate::lab::run(
        "ip",
        &[
            "link",
            "add",
            &cp.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &cp.inner_if,
            "netns",
            &ns.name,
        ],
        Duration::from_secs(10),
    )?;
    crate::lab::run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/30", cp.host_ip),
            "dev",
            &cp.host_link,
        ],
        Duration::from_secs(10),
    )?;
    crate::lab::run(
        "ip",
        &["link", "set", &cp.host_link, "up"],
        Duration::from_secs(10),
    )?;
    lab.ip(
        &ns,
        &[
            "addr",
            "add",
            &format!("{}/30", cp.inner_ip),
            "dev",
            &cp.inner_if,
        ],
    )?;
    lab.ip(&ns, &["link", "set", &cp.inner_if, "up"])?;
    Ok(ns)
}

/// Writes the components' kubeconfigs and starts the four daemons.
pub fn start(plan: &Plan, pki: &Pki, ns: Ns) -> Result<ControlPlane, ControlPlaneError> {
    let cp = &plan.control_plane;
    std::fs::create_dir_all(&cp.dir).map_err(|source| ControlPlaneError::Write {
        path: cp.dir.clone(),
        source,
    })?;
    let local = format!("https://127.0.0.1:{}", super::plan::APISERVER_PORT);
    for (file, user, cred) in [
        (
            "controller-manager.kubeconfig",
            "system:kube-controller-manager",
            &pki.controller_manager,
        ),
        (
            "scheduler.kubeconfig",
            "system:kube-scheduler",
            &pki.scheduler,
        ),
    ] {
        let path = cp.dir.join(file);
        Kubeconfig::new(&plan.run_id, &local, &pki.ca.cert_pem, user, cred)
            .write(&path)
            .map_err(|source| ControlPlaneError::Write { path, source })?;
    }
    let enter = Enter::net(ns.path()).map_err(|source| ControlPlaneError::Enter {
        ns: ns.name.clone(),
        source,
    })?;
    let cgroup = format!("{}/control-plane", plan.cgroup);
    super::cgroup::create(&cgroup).map_err(|e| ControlPlaneError::Write {
        path: cgroup.clone().into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut daemons = Vec::new();
    for p in [
        &cp.etcd,
        &cp.apiserver,
        &cp.controller_manager,
        &cp.scheduler,
    ] {
        daemons.push(Daemon::spawn(
            p,
            Placement {
                enter: Some(&enter),
                cgroup: Some(&cgroup),
            },
        )?);
    }
    Ok(ControlPlane { ns, daemons })
}

impl ControlPlane {
    /// Polls `/readyz` until it answers `ok`; a daemon that exits meanwhile fails
    /// at once, naming its log.
    pub async fn wait_ready(
        &mut self,
        client: &kube::Client,
        timeout: Duration,
    ) -> Result<Duration, ControlPlaneError> {
        let start = Instant::now();
        let mut last;
        loop {
            for d in &mut self.daemons {
                if let Some(status) = d.exited() {
                    return Err(ControlPlaneError::Exited {
                        name: d.name.clone(),
                        status,
                        log: d.log.display().to_string(),
                        tail: d.log_tail(20),
                    });
                }
            }
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a request");
            match tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await {
                Ok(Ok(text)) if text.trim() == "ok" => return Ok(start.elapsed()),
                Ok(Ok(text)) => last = text,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no answer within 2s".into(),
            }
            if start.elapsed() > timeout {
                let api = &self.daemons[1];
                return Err(ControlPlaneError::NotReady {
                    waited: timeout,
                    last,
                    log: api.log.display().to_string(),
                    tail: api.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
