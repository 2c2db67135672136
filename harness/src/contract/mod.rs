//! The contract the scenarios and guests are written against: the `Cluster`
//! trait (and its object-safe `DynCluster`), its errors, the abilities a cluster
//! may have (`ability`) and their names (`capability`: what a provider offers and
//! a scenario needs), the topology secnet makes (`topology`), the one wait
//! (`wait`) and the pod probes that run through a cluster (`probe`). It names no
//! provider: the providers (`cluster::netns`, `cluster::kube`, `cluster::bare`)
//! implement it, and `crate::cluster` re-exports it under its old paths.

pub mod ability;
pub mod capability;
pub mod probe;
pub mod topology;
pub mod wait;

use std::collections::BTreeMap;
use std::future::Future;

use futures::future::BoxFuture;

use crate::objects::{Object, Pod};

/// What went wrong with a cluster. Each variant says whose fault it is
/// ([`ClusterError::blame`]): the implementation under test (a pod that does not
/// start, a resource never advertised) or the harness and cluster (an API server
/// that does not answer, a node command that cannot run). API errors keep their
/// `kube::Error` as the source.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("failed to bring up the {provider} cluster: {message}")]
    Up { provider: String, message: String },
    /// A call to the API server failed (transport, authentication, a refusal).
    #[error("failed to {what}: the API server answered {}", api_text(source))]
    Api {
        /// What was asked, a verb first: "create pod secnet-sn1/a".
        what: String,
        #[source]
        source: ::kube::Error,
    },
    /// A step of the run on an up cluster (not its bring-up) failed.
    #[error("on the {provider} cluster: {what} failed: {message}")]
    Operation {
        provider: String,
        what: String,
        message: String,
    },
    #[error("failed to apply {kind} {name}: {message}")]
    Apply {
        kind: String,
        name: String,
        message: String,
    },
    /// The scheduler found no node: the message is what Kubernetes would show.
    #[error("pod {pod} is unschedulable: {message}")]
    Unschedulable { pod: String, message: String },
    #[error("failed to start pod {pod} on {node}: {message}")]
    PodStart {
        pod: String,
        node: String,
        message: String,
    },
    #[error("failed to delete pod {pod}: {message}")]
    PodDelete { pod: String, message: String },
    #[error("pod {0} does not exist")]
    NoSuchPod(String),
    #[error("failed to exec {argv:?} in pod {pod}: {message}")]
    Exec {
        pod: String,
        argv: Vec<String>,
        message: String,
    },
    #[error("node {0} does not exist")]
    NoSuchNode(String),
    /// A provider asked for what it does not offer (the runner should have skipped).
    #[error("the {provider} cluster does not offer {capability}: {}", capability.hint())]
    Unsupported {
        provider: String,
        capability: capability::Capability,
    },
    /// A scenario asked for secnet's own nodes (a topology, node namespaces) on a
    /// cluster whose nodes are not.
    #[error(
        "the {provider} cluster's nodes are not made by secnet on this machine: it has no topology and no node namespaces (ask `local_topology()` first)"
    )]
    NotLocal { provider: String },
    #[error("on node {node}: {what} failed: {message}")]
    Node {
        node: String,
        what: String,
        message: String,
    },
    #[error("timed out after {seconds} s waiting for {what}; last state: {state}")]
    Timeout {
        what: String,
        seconds: u64,
        state: String,
    },
}

/// Whose fault an error is: decides a scenario's `failed` (the implementation under
/// test is wrong) from its `error` (the harness or the cluster broke).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Implementation,
    Harness,
}

impl ClusterError {
    pub fn blame(&self) -> Blame {
        match self {
            // What the plugins under test decide: pods starting, being deleted,
            // resources advertised, state reached in time, node effects.
            ClusterError::Unschedulable { .. }
            | ClusterError::PodStart { .. }
            | ClusterError::PodDelete { .. }
            | ClusterError::Node { .. }
            | ClusterError::Timeout { .. } => Blame::Implementation,
            ClusterError::Up { .. }
            | ClusterError::Api { .. }
            | ClusterError::Operation { .. }
            | ClusterError::Apply { .. }
            | ClusterError::NoSuchPod(_)
            | ClusterError::Exec { .. }
            | ClusterError::NoSuchNode(_)
            | ClusterError::Unsupported { .. }
            | ClusterError::NotLocal { .. } => Blame::Harness,
        }
    }

    /// An API call `what` that failed with `source`.
    pub fn api(what: impl Into<String>, source: ::kube::Error) -> ClusterError {
        ClusterError::Api {
            what: what.into(),
            source,
        }
    }
}

/// A kube error as one line: reason, code and message for API errors.
pub fn api_text(e: &::kube::Error) -> String {
    match e {
        ::kube::Error::Api(s) => format!("{} ({}): {}", s.reason, s.code, s.message),
        other => other.to_string(),
    }
}

/// A running pod as the scenarios see it.
#[derive(Debug, Clone)]
pub struct PodView {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: String,
    pub(crate) node: String,
    pub(crate) annotations: BTreeMap<String, String>,
    /// Device IDs per resource, as allocated at admission.
    pub(crate) devices: BTreeMap<String, Vec<String>>,
}

/// Extended-resource accounting of one node, as `kubectl describe node` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeResources {
    pub(crate) capacity: BTreeMap<String, u64>,
    pub(crate) allocatable: BTreeMap<String, u64>,
    /// Requested by the pods on the node ("Allocated resources").
    pub(crate) allocated: BTreeMap<String, u64>,
}

#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// What every provider offers the scenarios.
pub trait Cluster: Send + Sync {
    fn provider(&self) -> &str;
    fn nodes(&self) -> Vec<String>;
    /// Stores/applies objects (ConfigMap, NetworkAttachmentDefinition, ...).
    fn apply(&self, objects: Vec<Object>) -> impl Future<Output = Result<(), ClusterError>> + Send;
    /// Creates a pod and waits until its sandbox and networks are up.
    fn create_pod(&self, pod: Pod) -> impl Future<Output = Result<PodView, ClusterError>> + Send;
    fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;
    fn exec(
        &self,
        namespace: &str,
        pod: &str,
        argv: &[&str],
    ) -> impl Future<Output = Result<ExecOutput, ClusterError>> + Send;
    fn node_resources(
        &self,
        node: &str,
    ) -> impl Future<Output = Result<NodeResources, ClusterError>> + Send;
    /// Plugin logs and state, for failure reports.
    fn diagnostics(&self) -> impl Future<Output = String> + Send;
    /// Every live pod of the cluster the scenario runs on (not being deleted, not
    /// finished), with its annotations: what the cluster-wide checks read (two pods
    /// sharing a MAC or an address). netns: the cluster's pod table; real
    /// clusters: the run's pods, in its namespace and wherever its label is.
    fn live_pods(&self) -> impl Future<Output = Result<Vec<PodView>, ClusterError>> + Send;
}

/// The `Cluster` contract in object-safe form, for every `Cluster`.
pub trait DynCluster: Send + Sync {
    fn provider(&self) -> &str;
    fn nodes(&self) -> Vec<String>;
    fn apply(&self, objects: Vec<Object>) -> BoxFuture<'_, Result<(), ClusterError>>;
    fn create_pod(&self, pod: Pod) -> BoxFuture<'_, Result<PodView, ClusterError>>;
    fn delete_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>>;
    fn exec<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        argv: &'a [&'a str],
    ) -> BoxFuture<'a, Result<ExecOutput, ClusterError>>;
    fn node_resources<'a>(
        &'a self,
        node: &'a str,
    ) -> BoxFuture<'a, Result<NodeResources, ClusterError>>;
    fn diagnostics(&self) -> BoxFuture<'_, String>;
    fn live_pods(&self) -> BoxFuture<'_, Result<Vec<PodView>, ClusterError>>;
}

impl<C: Cluster> DynCluster for C {
    fn provider(&self) -> &str {
        Cluster::provider(self)
    }

    fn nodes(&self) -> Vec<String> {
        Cluster::nodes(self)
    }

    fn apply(&self, objects: Vec<Object>) -> BoxFuture<'_, Result<(), ClusterError>> {
        Box::pin(Cluster::apply(self, objects))
    }

    fn create_pod(&self, pod: Pod) -> BoxFuture<'_, Result<PodView, ClusterError>> {
        Box::pin(async move {
            let name = format!("{}/{}", pod.metadata.namespace, pod.metadata.name);
            tracing::info!("creating pod {name}");
            let created = Cluster::create_pod(self, pod).await;
            match &created {
                Ok(view) => tracing::info!("pod {name} running on {}", view.node),
                Err(e) => tracing::info!("pod {name} did not start: {e}"),
            }
            created
        })
    }

    fn delete_pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(Cluster::delete_pod(self, namespace, name))
    }

    fn exec<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        argv: &'a [&'a str],
    ) -> BoxFuture<'a, Result<ExecOutput, ClusterError>> {
        Box::pin(async move {
            tracing::info!("in pod {namespace}/{pod}: {}", argv.join(" "));
            let out = Cluster::exec(self, namespace, pod, argv).await;
            if let Ok(o) = &out {
                tracing::debug!(success = o.success, stdout = %o.stdout.trim(), stderr = %o.stderr.trim(), "exec answered");
            }
            out
        })
    }

    fn node_resources<'a>(
        &'a self,
        node: &'a str,
    ) -> BoxFuture<'a, Result<NodeResources, ClusterError>> {
        Box::pin(Cluster::node_resources(self, node))
    }

    fn diagnostics(&self) -> BoxFuture<'_, String> {
        Box::pin(Cluster::diagnostics(self))
    }

    fn live_pods(&self) -> BoxFuture<'_, Result<Vec<PodView>, ClusterError>> {
        Box::pin(Cluster::live_pods(self))
    }
}

/// Polls `node`'s resources until `resource` shows `allocatable`: every 10 ms at
/// first, backing off to every 250 ms (a real API server is not hammered).
pub async fn wait_allocatable<C: Cluster>(
    cluster: &C,
    node: &str,
    resource: &str,
    allocatable: u64,
    timeout: std::time::Duration,
) -> Result<(), ClusterError> {
    let what = format!("node {node}'s {resource} allocatable to be {allocatable}");
    wait::until(what, timeout, wait::Pace::QUICK, || async {
        let resources = cluster.node_resources(node).await?;
        let seen = resources.allocatable.get(resource).copied();
        Ok(if seen == Some(allocatable) {
            wait::Seen::Ready(())
        } else {
            wait::Seen::NotYet(format!("allocatable {seen:?}"))
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_error_keeps_its_kube_error_and_blames_the_harness() {
        let status: ::kube::core::Status = serde_json::from_value(serde_json::json!({
            "code": 503, "reason": "ServiceUnavailable", "message": "etcd is down"
        }))
        .unwrap();
        let e = ClusterError::api("create pod sn1/a", ::kube::Error::Api(Box::new(status)));
        assert_eq!(
            e.to_string(),
            "failed to create pod sn1/a: the API server answered ServiceUnavailable (503): etcd is down"
        );
        let source = std::error::Error::source(&e).expect("the kube error is the source");
        assert!(source.downcast_ref::<::kube::Error>().is_some());
        assert_eq!(e.blame(), Blame::Harness);
        let failure: crate::scenario::Failure = e.into();
        assert!(failure.is_error());
        let plugin = ClusterError::Unschedulable {
            pod: "a/b".into(),
            message: "0/2 nodes have macvtap.network.kubevirt.io/dataplane".into(),
        };
        assert_eq!(plugin.blame(), Blame::Implementation);
    }
}
