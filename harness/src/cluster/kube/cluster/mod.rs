//! `KubeCluster`: the `Cluster` contract over a `kube::Client` (a real API server,
//! from the `existing` or `kind` provider). This file holds the cluster, its options
//! and its labels; each concern has its own file: `objects` (server-side apply),
//! `pods` (create, wait, delete, exec, the device plugin restart), `sandbox` (a pod
//! whose sandbox fails ends its wait), `resources` (node capacity), `diagnostics`
//! (state, events, logs), `snapshot` (the report's picture),
//! `namespace` (the run's own), `ownership` (what is not the run's), `teardown`
//! (delete by label and UID), `node_probe` (node access through probe pods),
//! `node_view` (what a node shows about its pods) and `vms` (KubeVirt guests).

mod abilities;
mod diagnostics;
pub mod moves;
#[cfg(test)]
mod moves_tests;
mod namespace;
mod node_probe;
#[cfg(test)]
mod node_tests;
mod node_view;
mod objects;
mod ownership;
mod pods;
mod resources;
mod sandbox;
mod snapshot;
mod teardown;
pub mod vms;
mod whereabouts;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};

pub use self::abilities::base_offer;
pub use self::namespace::POD_SECURITY_LABEL;
pub use self::node_probe::{NSENTER_HOST, PROBE_ROLE, ROLE_LABEL, on_host, probe_pod_name};
pub use self::ownership::Foreign;
pub use self::resources::parse_quantity;
pub use self::teardown::Teardown;
pub use self::vms::KubevirtGuest;
use super::RUN_LABEL;
use super::apply::{self, Placement};
use crate::cluster::capability::{Capability, Offer};
use crate::cluster::{Cluster, ClusterError, ExecOutput, NodeResources, PodView};
use crate::objects::{Object, Pod};

/// Which scenario of the run made an object (`s<n>`): a scenario's teardown deletes
/// only its own objects, the run's components stay for the next scenario.
pub const SCOPE_LABEL: &str = "secnet.scope";
/// The node label a pinned pod is placed with: the scheduler, not the kubelet,
/// then accounts its extended resources (as the netns cluster does).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// How long `create_pod`/`delete_pod` wait.
    pub(crate) pod_timeout: Duration,
    /// Extra `(namespace, label selector)` whose pods' logs go into diagnostics
    /// (the component DaemonSets: multus, the device plugin, ...).
    pub(crate) log_selectors: Vec<(String, String)>,
    /// Lines of log per container in errors and diagnostics.
    pub(crate) log_lines: i64,
    /// The nodes' macvtap/macvlan lower device (`DEFAULT_LOWER_DEVICE` unless given).
    pub(crate) lower_device: String,
    /// `(namespace, label selector)` of the device plugin's pods (the macvtap
    /// component), for the restart fault.
    pub(crate) device_plugin_pods: Option<(String, String)>,
    /// Image (and `sleep` command) for pod containers that name none, such as the
    /// scenarios' plain pods; it needs `ip` and `ping` (busybox has both).
    pub(crate) pod_image: String,
    /// What the cluster offers the scenarios (the provider's capabilities plus what
    /// the run deployed); `None`: the provider's own.
    pub(crate) offer: Option<Offer>,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            pod_timeout: Duration::from_secs(120),
            log_selectors: Vec::new(),
            log_lines: 50,
            lower_device: super::DEFAULT_LOWER_DEVICE.into(),
            device_plugin_pods: None,
            pod_image: super::components::POD_IMAGE.into(),
            offer: None,
        }
    }
}

/// Resources a run applied to, in first-use order, with the namespaces used.
type Touched = Vec<(Placement, BTreeSet<String>)>;

/// Cloning gives another handle on the same cluster, scope and record of what it
/// touched (`scoped` gives a new scope).
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    provider: String,
    run: String,
    /// `Some("s3")` for a scenario's view of the run's cluster (see `scoped`).
    scope: Option<String>,
    nodes: Vec<String>,
    /// The nodes a pod without tolerations may land on (not cordoned, no
    /// NoSchedule/NoExecute taint): a migration needs two of them.
    schedulable: Arc<BTreeSet<String>>,
    /// `nodes` is a subset the user chose: unpinned pods are kept on it too.
    restricted: bool,
    opts: KubeOptions,
    /// Resources this run applied to, in first-use order, with the namespaces used.
    touched: Arc<Mutex<Touched>>,
    /// The node probe pods, shared with the scoped views (see `node_probe`).
    probes: Arc<node_probe::Probes>,
}

/// A kube error as one line, for text that is not an error of its own (teardown's
/// list of what it could not delete, diagnostics): reason, code and message.
pub(super) fn api_err(e: kube::Error) -> String {
    crate::cluster::api_text(&e)
}

/// Whether pods without tolerations may land on `node`.
fn schedulable(node: &Node) -> bool {
    let Some(spec) = &node.spec else {
        return true;
    };
    !spec.unschedulable.unwrap_or(false)
        && !spec
            .taints
            .iter()
            .flatten()
            .any(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
}

pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl KubeCluster {
    /// Connects: lists the nodes (which also proves the credentials work).
    pub async fn connect(
        client: Client,
        provider: &str,
        run: &str,
        opts: KubeOptions,
    ) -> Result<Self, ClusterError> {
        let nodes: Api<Node> = Api::all(client.clone());
        let list = nodes
            .list(&ListParams::default())
            .await
            .map_err(|e| ClusterError::api(format!("list the {provider} cluster's nodes"), e))?;
        let schedulable: BTreeSet<String> = list
            .items
            .iter()
            .filter(|n| schedulable(n))
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        let mut names: Vec<String> = list
            .items
            .into_iter()
            .filter_map(|n| n.metadata.name)
            .collect();
        names.sort();
        Ok(KubeCluster {
            client,
            provider: provider.to_string(),
            run: run.to_string(),
            scope: None,
            nodes: names,
            schedulable: Arc::new(schedulable),
            restricted: false,
            opts,
            touched: Arc::default(),
            probes: Arc::default(),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// What the cluster offers the scenarios: KubeVirt moves a guest, and applies
    /// some plugs, by migrating it, so neither is offered on fewer than two
    /// schedulable nodes.
    pub fn offer(&self) -> Offer {
        let offer = self
            .opts
            .offer
            .clone()
            .unwrap_or_else(|| base_offer(&self.provider));
        if self.schedulable_nodes() < 2 {
            return offer.without([Capability::LiveMigration, Capability::NicHotplug]);
        }
        offer
    }

    /// How many of the scenarios' nodes take pods.
    pub fn schedulable_nodes(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| self.schedulable.contains(*n))
            .count()
    }

    /// The namespace the run's own objects live in (`secnet-<run>`): scenario pods
    /// and NADs, and the node probe pods.
    pub fn run_namespace(&self) -> String {
        format!("secnet-{}", self.run)
    }

    /// Where a scenario's pod of namespace `ns` lives: a fixture's `default` (or no
    /// namespace) is the run's own, as `create_pod` puts it there; others as named.
    pub fn scenario_namespace(&self, ns: &str) -> String {
        match ns {
            "" | "default" => self.run_namespace(),
            other => other.to_string(),
        }
    }

    pub fn lower_device(&self) -> &str {
        &self.opts.lower_device
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The same cluster for one scenario: what it makes carries `secnet.scope=<scope>`
    /// too, and its teardown removes only that.
    pub fn scoped(&self, scope: &str) -> KubeCluster {
        KubeCluster {
            client: self.client.clone(),
            provider: self.provider.clone(),
            run: self.run.clone(),
            scope: Some(scope.to_string()),
            nodes: self.nodes.clone(),
            schedulable: self.schedulable.clone(),
            restricted: self.restricted,
            opts: self.opts.clone(),
            touched: Arc::default(),
            probes: self.probes.clone(),
        }
    }

    /// Keeps the scenarios on `names` (an inventory's `nodes`); a name the cluster
    /// does not have is an error listing the ones it has.
    pub fn restrict_nodes(&mut self, names: &[String]) -> Result<(), ClusterError> {
        if let Some(missing) = names.iter().find(|n| !self.nodes.contains(n)) {
            return Err(ClusterError::Up {
                provider: self.provider.clone(),
                message: format!(
                    "node {missing} is not in the cluster; it has {}",
                    self.nodes.join(", ")
                ),
            });
        }
        self.nodes = names.to_vec();
        self.nodes.sort();
        self.restricted = true;
        Ok(())
    }

    fn selector(&self) -> String {
        match &self.scope {
            Some(scope) => format!("{RUN_LABEL}={},{SCOPE_LABEL}={scope}", self.run),
            None => format!("{RUN_LABEL}={}", self.run),
        }
    }

    /// Whether an object carries this run's (and scope's) labels.
    fn is_mine(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        get(RUN_LABEL) == Some(&self.run)
            && self
                .scope
                .as_ref()
                .is_none_or(|s| get(SCOPE_LABEL) == Some(s))
    }

    fn add_scope_label(&self, labels: &mut Option<BTreeMap<String, String>>) {
        if let Some(scope) = &self.scope {
            labels
                .get_or_insert_with(BTreeMap::new)
                .insert(SCOPE_LABEL.into(), scope.clone());
        }
    }

    fn touch(&self, placement: &Placement, namespace: Option<&str>) {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let ns = namespace.unwrap_or("").to_string();
        if let Some((_, set)) = touched.iter_mut().find(|(p, _)| p == placement) {
            set.insert(ns);
        } else {
            touched.push((placement.clone(), BTreeSet::from([ns])));
        }
    }
}

impl Cluster for KubeCluster {
    fn provider(&self) -> &str {
        &self.provider
    }

    fn nodes(&self) -> Vec<String> {
        self.nodes.clone()
    }

    async fn apply(&self, objects: Vec<Object>) -> Result<(), ClusterError> {
        for obj in &objects {
            self.apply_scenario_document(apply::document(obj)?).await?;
        }
        Ok(())
    }

    async fn create_pod(&self, pod: Pod) -> Result<PodView, ClusterError> {
        pods::create(self, pod).await
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        pods::delete(self, namespace, name).await
    }

    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        argv: &[&str],
    ) -> Result<ExecOutput, ClusterError> {
        pods::exec(self, namespace, pod, argv).await
    }

    async fn node_resources(&self, node: &str) -> Result<NodeResources, ClusterError> {
        resources::of_node(self, node).await
    }

    async fn diagnostics(&self) -> String {
        diagnostics::collect(self).await
    }

    async fn live_pods(&self) -> Result<Vec<PodView>, ClusterError> {
        pods::live(self).await
    }
}
