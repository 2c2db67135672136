//! Node access on a real cluster, the `kubectl debug node` way: on first use per
//! node a short-lived probe pod `secnet-node-<node>` in the run's namespace, pinned
//! to the node (`nodeName`, so no scheduler and no taint keeps it off), privileged,
//! with the host's network, PID and IPC namespaces, tolerating every taint and
//! sleeping for the run. A node command runs in it as
//! `nsenter -t 1 -m -u -i -n -p -- <argv>`: in the node's own namespaces, with the
//! node's own programs (`ip`, `crictl`, `ovs-vsctl`), not the probe image's.
//!
//! The probe pods carry the run label (`secnet clean` sweeps them) and no scope
//! label: scenarios share them, and the run's own teardown deletes them by UID.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::try_join_all;
use k8s_openapi::api::core::v1::Pod as KPod;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::wait::await_condition;
use tokio::sync::OnceCell;

use super::diagnostics::describe;
use super::{KubeCluster, Teardown, api_err, is_not_found, pods};
use crate::cluster::kube::{FIELD_MANAGER, RUN_LABEL};
use crate::cluster::{ClusterError, ExecOutput};

/// What marks a probe pod among the run's pods.
pub const ROLE_LABEL: &str = "secnet.role";
pub const PROBE_ROLE: &str = "node-probe";
/// The probe's one container.
pub const PROBE_CONTAINER: &str = "probe";
/// How long a probe pod lives at most (its `sleep` and its active deadline): longer
/// than any run, short enough that a killed run's probes do not stay for good.
pub const PROBE_LIFETIME_S: i64 = 6 * 3600;
/// What a refused or stuck probe pod's error suggests.
const WHERE_NOT_ALLOWED: &str = "probe pods are privileged hostNetwork/hostPID pods; where they are not allowed set `nodeAccess: none` in the inventory";

/// Into every namespace of the node's PID 1: mount, UTS, IPC, network, PID.
pub const NSENTER_HOST: [&str; 9] = ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--"];

/// One node's probe pod, once it runs.
#[derive(Debug, Clone)]
struct ProbePod {
    name: String,
    uid: String,
}

/// The run's probe pods, per node; shared by the run's scoped views.
#[derive(Default)]
pub struct Probes {
    pods: Mutex<BTreeMap<String, Arc<OnceCell<ProbePod>>>>,
    /// The run's namespace is there (made, or found to be this run's): checked
    /// once for all nodes.
    namespace: Mutex<Arc<OnceCell<()>>>,
}

impl Probes {
    fn cell(&self, node: &str) -> Arc<OnceCell<ProbePod>> {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.entry(node.to_string()).or_default().clone()
    }

    fn namespace(&self) -> Arc<OnceCell<()>> {
        self.namespace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn running(&self) -> Vec<ProbePod> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.values().filter_map(|c| c.get().cloned()).collect()
    }
}

/// `secnet-node-<node>`; a node name too long for that (pod names stay under 64
/// characters, as label values must) is replaced by its hash.
pub fn probe_pod_name(node: &str) -> String {
    let name = format!("secnet-node-{node}");
    if name.len() <= 63 {
        return name;
    }
    format!(
        "secnet-node-{:016x}",
        xxhash_rust::xxh64::xxh64(node.as_bytes(), 0)
    )
}

/// `argv` as it runs in a probe pod: in the node's own namespaces.
pub fn on_host(argv: &[&str]) -> Vec<String> {
    NSENTER_HOST
        .iter()
        .chain(argv)
        .map(|s| s.to_string())
        .collect()
}

impl KubeCluster {
    /// The probe pod for `node`, as it is created.
    pub fn probe_pod(&self, node: &str) -> KPod {
        let spec = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": probe_pod_name(node),
                "namespace": self.run_namespace(),
                "labels": {RUN_LABEL: self.run, ROLE_LABEL: PROBE_ROLE},
            },
            "spec": {
                "nodeName": node,
                "hostNetwork": true,
                "hostPID": true,
                "hostIPC": true,
                "restartPolicy": "Never",
                "activeDeadlineSeconds": PROBE_LIFETIME_S,
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{
                    "name": PROBE_CONTAINER,
                    "image": self.opts.pod_image,
                    "command": ["sleep", PROBE_LIFETIME_S.to_string()],
                    "securityContext": {"privileged": true},
                }],
            },
        });
        serde_json::from_value(spec).expect("the probe pod is a valid pod")
    }

    /// Runs `argv` on `node` itself (in its PID 1's namespaces), through the node's
    /// probe pod, made on first use.
    pub async fn node_exec(&self, node: &str, argv: &[&str]) -> Result<ExecOutput, ClusterError> {
        let probe = self.probe_for(node).await?;
        let full = on_host(argv);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        pods::exec(self, &self.run_namespace(), &probe.name, &full)
            .await
            .map_err(|e| ClusterError::Node {
                node: node.to_string(),
                what: format!(
                    "`{}` in probe pod {}/{}",
                    argv.join(" "),
                    self.run_namespace(),
                    probe.name
                ),
                message: e.to_string(),
            })
    }

    /// Makes the probe pods of `nodes` at once (each node's only once).
    pub async fn start_probes(&self, nodes: &[String]) -> Result<(), ClusterError> {
        try_join_all(nodes.iter().map(|n| self.probe_for(n))).await?;
        Ok(())
    }

    async fn probe_for(&self, node: &str) -> Result<ProbePod, ClusterError> {
        if !self.nodes.iter().any(|n| n == node) {
            return Err(ClusterError::NoSuchNode(node.to_string()));
        }
        let cell = self.probes.cell(node);
        cell.get_or_try_init(|| self.create_probe(node))
            .await
            .cloned()
    }

    fn probe_error(&self, node: &str, message: String) -> ClusterError {
        ClusterError::Operation {
            provider: self.provider.clone(),
            what: format!(
                "starting probe pod {}/{} on node {node}",
                self.run_namespace(),
                probe_pod_name(node)
            ),
            message,
        }
    }

    /// Creates the probe pod (and the run's namespace if need be) and waits until
    /// it runs.
    async fn create_probe(&self, node: &str) -> Result<ProbePod, ClusterError> {
        let ns = self.run_namespace();
        self.probes
            .namespace()
            .get_or_try_init(|| self.create_run_namespace())
            .await
            .map_err(|e| self.probe_error(node, e.to_string()))?;
        let api: Api<KPod> = Api::namespaced(self.client.clone(), &ns);
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let name = probe_pod_name(node);
        let created = match api.create(&pp, &self.probe_pod(node)).await {
            Ok(p) => p,
            // Made by this run already (another process of it): use it if it is ours.
            Err(kube::Error::Api(s)) if s.code == 409 => api
                .get(&name)
                .await
                .map_err(|e| ClusterError::api(format!("read probe pod {ns}/{name}"), e))
                .and_then(|p| match self.is_probe_of_run(&p) {
                    true => Ok(p),
                    false => Err(self.probe_error(
                        node,
                        "a pod of that name exists and is not this run's probe".into(),
                    )),
                })?,
            Err(e) => {
                return Err(ClusterError::api(
                    format!("create probe pod {ns}/{name} on {node} ({WHERE_NOT_ALLOWED})"),
                    e,
                ));
            }
        };
        let uid = created.metadata.uid.clone().unwrap_or_default();
        let phase = |p: &KPod| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default()
        };
        let settled = move |p: Option<&KPod>| {
            p.is_some_and(|p| matches!(phase(p).as_str(), "Running" | "Failed" | "Succeeded"))
        };
        let waited = tokio::time::timeout(
            self.opts.pod_timeout,
            await_condition(api.clone(), &name, settled),
        )
        .await;
        let last = match waited {
            Ok(Ok(Some(p))) if phase(&p) == "Running" => return Ok(ProbePod { name, uid }),
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Err(self.probe_error(node, format!("watching it: {e}"))),
            Err(_) => api.get_opt(&name).await.ok().flatten(),
        };
        let events = self.events_of(&ns, &name, Some(&uid)).await;
        Err(self.probe_error(
            node,
            format!(
                "not running after {} s ({WHERE_NOT_ALLOWED}): {}\nevents:\n{events}",
                self.opts.pod_timeout.as_secs(),
                describe(last.as_ref())
            ),
        ))
    }

    fn is_probe_of_run(&self, pod: &KPod) -> bool {
        let labels = pod.metadata.labels.as_ref();
        let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        get(RUN_LABEL) == Some(self.run.as_str()) && get(ROLE_LABEL) == Some(PROBE_ROLE)
    }

    /// Deletes the probe pods (by UID); keeps going on errors. The run namespace
    /// goes with the run (`delete_run_namespace`).
    pub(super) async fn remove_probes(&self) -> Teardown {
        let mut report = Teardown::default();
        let ns = self.run_namespace();
        let api: Api<KPod> = Api::namespaced(self.client.clone(), &ns);
        for probe in self.probes.running() {
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(probe.uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            let what = format!("Pod {ns}/{}", probe.name);
            match api.delete(&probe.name, &dp).await {
                Ok(_) => report.deleted.push(what),
                Err(e) if is_not_found(&e) => {}
                Err(e) => report
                    .errors
                    .push(format!("failed to delete {what}: {}", api_err(e))),
            }
        }
        self.probes
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        report
    }
}
