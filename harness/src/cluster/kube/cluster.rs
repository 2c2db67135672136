//! `KubeCluster`: the `Cluster` contract over a `kube::Client` (a real API server,
//! from the `existing` or `kind` provider).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod as KPod};
use kube::api::{
    Api, AttachParams, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams,
    PostParams, Preconditions,
};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, discovery};
use tokio::io::AsyncReadExt;

use super::apply::{self, Placement};
use super::{FIELD_MANAGER, RUN_LABEL};
use crate::cluster::{Cluster, ClusterError, ExecOutput, NodeResources, PodView};
use crate::objects::{Object, Pod};

pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// Which scenario of the run made an object (`s<n>`): a scenario's teardown deletes
/// only its own objects, the run's components stay for the next scenario.
pub const SCOPE_LABEL: &str = "secnet.scope";
/// The node label a pinned pod is placed with: the scheduler, not the kubelet,
/// then accounts its extended resources (as the netns cluster does).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// How long `create_pod`/`delete_pod` wait.
    pub pod_timeout: Duration,
    /// Extra `(namespace, label selector)` whose pods' logs go into diagnostics
    /// (the component DaemonSets: multus, the device plugin, ...).
    pub log_selectors: Vec<(String, String)>,
    /// Lines of log per container in errors and diagnostics.
    pub log_lines: i64,
    /// The nodes' macvtap/macvlan lower device (`DEFAULT_LOWER_DEVICE` unless given).
    pub lower_device: String,
    /// `(namespace, label selector)` of the device plugin's pods (the macvtap
    /// component), for the restart fault.
    pub device_plugin_pods: Option<(String, String)>,
    /// Image (and `sleep` command) for pod containers that name none, such as the
    /// scenarios' plain pods; it needs `ip` and `ping` (busybox has both).
    pub pod_image: String,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            pod_timeout: Duration::from_secs(120),
            log_selectors: Vec::new(),
            log_lines: 50,
            lower_device: super::DEFAULT_LOWER_DEVICE.into(),
            device_plugin_pods: None,
            pod_image: "busybox:1.37".into(),
        }
    }
}

/// What teardown did: objects deleted and errors met (it keeps going).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Teardown {
    pub deleted: Vec<String>,
    pub errors: Vec<String>,
}

pub struct KubeCluster {
    client: Client,
    provider: String,
    run: String,
    /// `Some("s3")` for a scenario's view of the run's cluster (see `scoped`).
    scope: Option<String>,
    nodes: Vec<String>,
    /// `nodes` is a subset the user chose: unpinned pods are kept on it too.
    restricted: bool,
    opts: KubeOptions,
    /// Resources this run applied to, in first-use order, with the namespaces used.
    touched: Mutex<Vec<(Placement, BTreeSet<String>)>>,
}

/// A kube error as one line: reason, code and message for API errors.
pub(super) fn api_err(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({}): {}", s.reason, s.code, s.message),
        other => other.to_string(),
    }
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
            .map_err(|e| ClusterError::Up {
                provider: provider.to_string(),
                message: format!("failed to list nodes: {}", api_err(e)),
            })?;
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
            restricted: false,
            opts,
            touched: Mutex::new(Vec::new()),
        })
    }

    pub fn run_id(&self) -> &str {
        &self.run
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
            restricted: self.restricted,
            opts: self.opts.clone(),
            touched: Mutex::new(Vec::new()),
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

    async fn placement(&self, doc: &serde_json::Value) -> Result<Placement, ClusterError> {
        let api_version = doc.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
        let kind = doc.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if let Some(p) = apply::known_placement(api_version, kind) {
            return Ok(p);
        }
        let (group, version) = apply::split_api_version(api_version);
        let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| ClusterError::Apply {
                kind: kind.to_string(),
                name: String::new(),
                message: format!("the API server does not serve {api_version} {kind}: {e}"),
            })?;
        Ok(Placement {
            resource,
            namespaced: caps.scope == discovery::Scope::Namespaced,
        })
    }

    fn dynamic_api(&self, p: &Placement, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &p.resource),
            None => Api::all_with(self.client.clone(), &p.resource),
        }
    }

    /// Server-side apply of one document, field manager `secnet`, run label set.
    pub async fn apply_document(&self, doc: serde_json::Value) -> Result<(), ClusterError> {
        let placement = self.placement(&doc).await?;
        let (mut obj, namespace) = apply::prepare(doc, &placement, &self.run)?;
        self.add_scope_label(&mut obj.metadata.labels);
        let name = obj.metadata.name.clone().unwrap_or_default();
        let api = self.dynamic_api(&placement, namespace.as_deref());
        // An object that exists without this run's label was not made by this run:
        // apply onto it without the label, so teardown leaves it alone.
        let existing = api.get_opt(&name).await.map_err(|e| ClusterError::Apply {
            kind: placement.resource.kind.clone(),
            name: name.clone(),
            message: format!("failed to look it up: {}", api_err(e)),
        })?;
        let theirs = existing.is_some_and(|o| {
            o.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL)) != Some(&self.run)
        });
        if theirs {
            if let Some(labels) = obj.metadata.labels.as_mut() {
                labels.remove(RUN_LABEL);
                labels.remove(SCOPE_LABEL);
            }
            tracing::info!(kind = %placement.resource.kind, %name, "exists already, not made by this run: applied without the run label; teardown keeps it");
        } else {
            self.touch(&placement, namespace.as_deref());
        }
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| ClusterError::Apply {
            kind: placement.resource.kind.clone(),
            name,
            message: api_err(e),
        })?;
        Ok(())
    }

    /// A pinned pod (`nodeName`) goes through the scheduler with a hostname selector,
    /// so an oversized request is `Unschedulable` as on the netns cluster instead of a
    /// kubelet admission failure; containers without an image get `pod_image`.
    fn complete_spec(&self, pod: &mut KPod) {
        let Some(spec) = pod.spec.as_mut() else {
            return;
        };
        if let Some(node) = spec.node_name.take() {
            spec.node_selector
                .get_or_insert_with(BTreeMap::new)
                .insert(HOSTNAME_LABEL.into(), node);
        } else if self.restricted {
            spec.affinity = Some(only_on(&self.nodes));
        }
        for c in &mut spec.containers {
            if c.image.as_deref().is_none_or(str::is_empty) {
                c.image = Some(self.opts.pod_image.clone());
                if c.command.as_ref().is_none_or(Vec::is_empty) {
                    c.command = Some(vec!["sleep".into(), "3600".into()]);
                }
            }
        }
    }

    /// Events about one object, oldest first, one per line.
    async fn events_of(&self, namespace: &str, name: &str, uid: Option<&str>) -> String {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let mut fields = format!("involvedObject.name={name}");
        if let Some(uid) = uid.filter(|u| !u.is_empty()) {
            fields.push_str(&format!(",involvedObject.uid={uid}"));
        }
        match api.list(&ListParams::default().fields(&fields)).await {
            Ok(list) => {
                let mut items = list.items;
                items.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
                if items.is_empty() {
                    return "(no events)".into();
                }
                items
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} {}",
                            e.type_.as_deref().unwrap_or("?"),
                            e.reason.as_deref().unwrap_or("?"),
                            e.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Err(e) => format!("(events unavailable: {})", api_err(e)),
        }
    }

    /// The last log lines of every container of a pod.
    async fn logs_of(&self, namespace: &str, pod: &KPod) -> String {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<KPod> = Api::namespaced(self.client.clone(), namespace);
        let containers: Vec<String> = pod
            .spec
            .as_ref()
            .map(|s| {
                let init = s.init_containers.iter().flatten();
                init.chain(&s.containers).map(|c| c.name.clone()).collect()
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for c in containers {
            let lp = LogParams {
                container: Some(c.clone()),
                tail_lines: Some(self.opts.log_lines),
                ..LogParams::default()
            };
            let text = match api.logs(&name, &lp).await {
                Ok(t) if t.is_empty() => "(empty)".into(),
                Ok(t) => t,
                Err(e) => format!("(logs unavailable: {})", api_err(e)),
            };
            out.push(format!("--- {namespace}/{name} [{c}] ---\n{text}"));
        }
        out.join("\n")
    }

    fn describe(pod: Option<&KPod>) -> String {
        let Some(pod) = pod else {
            return "pod not found".into();
        };
        let Some(status) = pod.status.as_ref() else {
            return "no status yet".into();
        };
        let mut s = format!("phase {}", status.phase.as_deref().unwrap_or("?"));
        for c in status.conditions.iter().flatten() {
            if c.status != "True" {
                s.push_str(&format!(
                    "; {}={} {} {}",
                    c.type_,
                    c.status,
                    c.reason.as_deref().unwrap_or(""),
                    c.message.as_deref().unwrap_or("")
                ));
            }
        }
        s
    }

    /// Deletes everything that carries this run's label, newest kinds first, each by
    /// UID precondition; keeps going on errors. Objects without the label (what the
    /// run did not create) are never listed, hence never deleted.
    pub async fn teardown(&self) -> Teardown {
        let touched = self
            .touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let pods = apply::known_placement("v1", "Pod").expect("pods are known");
        let mut order: Vec<(Placement, BTreeSet<String>)> = touched.into_iter().rev().collect();
        if let Some(i) = order.iter().position(|(p, _)| *p == pods) {
            let pods = order.remove(i);
            order.insert(0, pods);
        }
        let lp = ListParams::default().labels(&self.selector());
        let mut report = Teardown::default();
        for (placement, namespaces) in order {
            for ns in namespaces {
                let ns = (!ns.is_empty()).then_some(ns);
                let api = self.dynamic_api(&placement, ns.as_deref());
                let list = match api.list(&lp).await {
                    Ok(l) => l,
                    Err(e) => {
                        report.errors.push(format!(
                            "failed to list {}: {}",
                            placement.resource.plural,
                            api_err(e)
                        ));
                        continue;
                    }
                };
                for obj in list.items {
                    if !self.is_mine(obj.metadata.labels.as_ref()) {
                        continue; // the server ignored the selector: never guess
                    }
                    let name = obj.metadata.name.clone().unwrap_or_default();
                    let dp = DeleteParams {
                        preconditions: obj.metadata.uid.clone().map(|uid| Preconditions {
                            uid: Some(uid),
                            resource_version: None,
                        }),
                        ..DeleteParams::background()
                    };
                    let what = match &ns {
                        Some(ns) => format!("{} {ns}/{name}", placement.resource.kind),
                        None => format!("{} {name}", placement.resource.kind),
                    };
                    match api.delete(&name, &dp).await {
                        Ok(_) => report.deleted.push(what),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => report
                            .errors
                            .push(format!("failed to delete {what}: {}", api_err(e))),
                    }
                }
            }
        }
        report
    }
}

impl KubeCluster {
    /// Waits until no pod of this run (and scope) is left, e.g. after `teardown`, so
    /// that the next scenario can reuse the names.
    pub async fn wait_pods_gone(&self) -> Result<(), ClusterError> {
        let api: Api<KPod> = Api::all(self.client.clone());
        let lp = ListParams::default().labels(&self.selector());
        let deadline = tokio::time::Instant::now() + self.opts.pod_timeout;
        loop {
            let left: Vec<String> = match api.list(&lp).await {
                Ok(list) => list
                    .items
                    .into_iter()
                    .filter(|p| self.is_mine(p.metadata.labels.as_ref()))
                    .filter_map(|p| p.metadata.name)
                    .collect(),
                Err(e) => vec![format!("(list failed: {})", api_err(e))],
            };
            if left.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClusterError::Timeout {
                    what: format!("the pods labelled {} to be deleted", self.selector()),
                    seconds: self.opts.pod_timeout.as_secs(),
                    state: format!("still there: {}", left.join(" ")),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Node affinity to the given hostnames (required at scheduling).
fn only_on(nodes: &[String]) -> k8s_openapi::api::core::v1::Affinity {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: HOSTNAME_LABEL.into(),
                        operator: "In".into(),
                        values: Some(nodes.to_vec()),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Running, and with multus' network-status when the pod selected networks.
fn ready(pod: &KPod, wants_status: bool) -> bool {
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Running");
    let status_ok = !wants_status
        || pod
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(NETWORK_STATUS_ANNOTATION));
    running && status_ok
}

/// The scheduler's "0/2 nodes are available: ... Insufficient ..." if it gave up.
fn unschedulable(pod: &KPod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| c.message.clone().unwrap_or_default())
}

fn failed(pod: &KPod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Failed")
}

/// Parses a Kubernetes quantity into a whole number (`50`, `4Ki`, `2G`, `1500m` → 2);
/// `None` for what is not a quantity.
pub fn parse_quantity(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let num: f64 = num.parse().ok()?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        _ => return None,
    };
    Some((num * mult).ceil() as u64)
}

fn quantities(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, u64> {
    map.into_iter()
        .flatten()
        .filter_map(|(k, v)| parse_quantity(&v.0).map(|n| (k.clone(), n)))
        .collect()
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
            self.apply_document(apply::document(obj)?).await?;
        }
        Ok(())
    }

    async fn create_pod(&self, pod: Pod) -> Result<PodView, ClusterError> {
        let name = pod.metadata.name.clone();
        let wants_status = pod.metadata.annotations.contains_key(NETWORKS_ANNOTATION);
        let placement = apply::known_placement("v1", "Pod").expect("pods are known");
        let (obj, ns) = apply::prepare(apply::document(&Object::Pod(pod))?, &placement, &self.run)?;
        let ns = ns.unwrap_or_else(|| "default".into());
        let mut typed: KPod = serde_json::from_value(
            serde_json::to_value(&obj).unwrap_or_default(),
        )
        .map_err(|e| ClusterError::PodStart {
            pod: name.clone(),
            node: String::new(),
            message: format!("not a valid pod: {e}"),
        })?;
        self.add_scope_label(&mut typed.metadata.labels);
        self.complete_spec(&mut typed);
        let api: Api<KPod> = Api::namespaced(self.client.clone(), &ns);
        self.touch(&placement, Some(&ns));
        let pp = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let created = api
            .create(&pp, &typed)
            .await
            .map_err(|e| ClusterError::PodStart {
                pod: format!("{ns}/{name}"),
                node: String::new(),
                message: api_err(e),
            })?;
        let uid = created.metadata.uid.clone().unwrap_or_default();
        let cond = move |p: Option<&KPod>| {
            p.is_some_and(|p| ready(p, wants_status) || unschedulable(p).is_some() || failed(p))
        };
        let waited = tokio::time::timeout(
            self.opts.pod_timeout,
            await_condition(api.clone(), &name, cond),
        )
        .await;
        let last = match waited {
            Ok(Ok(Some(p))) => {
                if ready(&p, wants_status) {
                    return Ok(PodView {
                        namespace: ns,
                        name,
                        uid: p.metadata.uid.clone().unwrap_or(uid),
                        node: p
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default(),
                        annotations: p.metadata.annotations.clone().unwrap_or_default(),
                        // Device IDs are only visible on the node (pod-resources API).
                        devices: BTreeMap::new(),
                    });
                }
                if let Some(message) = unschedulable(&p) {
                    return Err(ClusterError::Unschedulable {
                        pod: format!("{ns}/{name}"),
                        message,
                    });
                }
                Some(p)
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                return Err(ClusterError::PodStart {
                    pod: format!("{ns}/{name}"),
                    node: String::new(),
                    message: format!("failed to watch the pod: {e}"),
                });
            }
            Err(_elapsed) => api.get_opt(&name).await.ok().flatten(),
        };
        let events = self.events_of(&ns, &name, Some(&uid)).await;
        let logs = match &last {
            Some(p) => self.logs_of(&ns, p).await,
            None => String::new(),
        };
        let state = format!(
            "{}\nevents:\n{events}\n{logs}",
            Self::describe(last.as_ref())
        );
        if last.as_ref().is_some_and(failed) {
            return Err(ClusterError::PodStart {
                pod: format!("{ns}/{name}"),
                node: last
                    .as_ref()
                    .and_then(|p| p.spec.as_ref()?.node_name.clone())
                    .unwrap_or_default(),
                message: state,
            });
        }
        Err(ClusterError::Timeout {
            what: format!(
                "pod {ns}/{name} to run{}",
                if wants_status {
                    " with a network-status annotation"
                } else {
                    ""
                }
            ),
            seconds: self.opts.pod_timeout.as_secs(),
            state,
        })
    }

    async fn delete_pod(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let api: Api<KPod> = Api::namespaced(self.client.clone(), namespace);
        let pod = api
            .get_opt(name)
            .await
            .map_err(|e| ClusterError::PodDelete {
                pod: format!("{namespace}/{name}"),
                message: api_err(e),
            })?
            .ok_or_else(|| ClusterError::NoSuchPod(format!("{namespace}/{name}")))?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => {
                return Err(ClusterError::PodDelete {
                    pod: format!("{namespace}/{name}"),
                    message: api_err(e),
                });
            }
        }
        let gone = tokio::time::timeout(
            self.opts.pod_timeout,
            await_condition(api.clone(), name, conditions::is_deleted(&uid)),
        )
        .await;
        match gone {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ClusterError::PodDelete {
                pod: format!("{namespace}/{name}"),
                message: format!("failed to watch the deletion: {e}"),
            }),
            Err(_) => {
                let events = self.events_of(namespace, name, Some(&uid)).await;
                let logs = self.logs_of(namespace, &pod).await;
                Err(ClusterError::Timeout {
                    what: format!("pod {namespace}/{name} (uid {uid}) to be deleted"),
                    seconds: self.opts.pod_timeout.as_secs(),
                    state: format!("events:\n{events}\n{logs}"),
                })
            }
        }
    }

    async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        argv: &[&str],
    ) -> Result<ExecOutput, ClusterError> {
        let fail = |message: String| ClusterError::Exec {
            pod: format!("{namespace}/{pod}"),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            message,
        };
        let api: Api<KPod> = Api::namespaced(self.client.clone(), namespace);
        let ap = AttachParams::default()
            .stdin(false)
            .stdout(true)
            .stderr(true);
        let mut proc = api
            .exec(pod, argv.iter().copied(), &ap)
            .await
            .map_err(|e| fail(api_err(e)))?;
        let mut stdout = proc.stdout().ok_or_else(|| fail("no stdout".into()))?;
        let mut stderr = proc.stderr().ok_or_else(|| fail("no stderr".into()))?;
        let status = proc.take_status();
        let (mut out, mut err) = (String::new(), String::new());
        let (r1, r2) = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        r1.and(r2)
            .map_err(|e| fail(format!("reading output: {e}")))?;
        let status = match status {
            Some(s) => s.await,
            None => None,
        };
        proc.join().await.map_err(|e| fail(e.to_string()))?;
        Ok(ExecOutput {
            success: status.is_some_and(|s| s.status.as_deref() == Some("Success")),
            stdout: out,
            stderr: err,
        })
    }

    async fn node_resources(&self, node: &str) -> Result<NodeResources, ClusterError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let n = nodes
            .get_opt(node)
            .await
            .map_err(|e| ClusterError::Up {
                provider: self.provider.clone(),
                message: format!("failed to get node {node}: {}", api_err(e)),
            })?
            .ok_or_else(|| ClusterError::NoSuchNode(node.to_string()))?;
        let status = n.status.unwrap_or_default();
        let mut res = NodeResources {
            capacity: quantities(status.capacity.as_ref()),
            allocatable: quantities(status.allocatable.as_ref()),
            allocated: BTreeMap::new(),
        };
        // "Allocated resources" as kubectl describe node: requests of the node's
        // non-terminated pods; extended resources only (requests == limits there).
        let pods: Api<KPod> = Api::all(self.client.clone());
        let fields = format!("spec.nodeName={node},status.phase!=Succeeded,status.phase!=Failed");
        let list = pods
            .list(&ListParams::default().fields(&fields))
            .await
            .map_err(|e| ClusterError::Up {
                provider: self.provider.clone(),
                message: format!("failed to list pods on {node}: {}", api_err(e)),
            })?;
        for p in list.items {
            for c in p.spec.iter().flat_map(|s| &s.containers) {
                let Some(r) = &c.resources else { continue };
                let mut mine = quantities(r.limits.as_ref());
                mine.extend(quantities(r.requests.as_ref()));
                for (k, n) in mine.into_iter().filter(|(k, _)| k.contains('/')) {
                    *res.allocated.entry(k).or_insert(0) += n;
                }
            }
        }
        // As `kubectl describe node`: an extended resource no pod uses shows 0.
        let extended: Vec<String> = res
            .capacity
            .keys()
            .chain(res.allocatable.keys())
            .filter(|k| k.contains('/'))
            .cloned()
            .collect();
        for k in extended {
            res.allocated.entry(k).or_insert(0);
        }
        Ok(res)
    }

    async fn diagnostics(&self) -> String {
        let mut out = Vec::new();
        let pods_all: Api<KPod> = Api::all(self.client.clone());
        let mut selectors = vec![(None, self.selector())];
        selectors.extend(
            self.opts
                .log_selectors
                .iter()
                .map(|(ns, sel)| (Some(ns.clone()), sel.clone())),
        );
        for (ns, sel) in selectors {
            let api = match &ns {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => pods_all.clone(),
            };
            match api.list(&ListParams::default().labels(&sel)).await {
                Ok(list) => {
                    for p in list.items {
                        let pns = p.metadata.namespace.clone().unwrap_or_default();
                        let pname = p.metadata.name.clone().unwrap_or_default();
                        out.push(format!(
                            "=== pod {pns}/{pname}: {}",
                            Self::describe(Some(&p))
                        ));
                        out.push(format!(
                            "events:\n{}",
                            self.events_of(&pns, &pname, p.metadata.uid.as_deref())
                                .await
                        ));
                        out.push(self.logs_of(&pns, &p).await);
                    }
                }
                Err(e) => out.push(format!("(pods with {sel}: {})", api_err(e))),
            }
        }
        out.join("\n")
    }
}

impl KubeCluster {
    /// What the report draws for a scenario on a real cluster: the nodes (with the
    /// lower device and InternalIP) and this run's/scope's pods with the interfaces
    /// multus' network-status lists. Best effort: what cannot be read is left out.
    pub async fn snapshot(&self) -> crate::observe::Topology {
        use crate::observe::{InterfaceSnap, NodeSnap, Topology, WorkloadSnap};
        let nodes_api: Api<Node> = Api::all(self.client.clone());
        let mut nodes = match nodes_api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(_) => Vec::new(),
        };
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let address = |n: &Node| {
            let addrs = n.status.as_ref().and_then(|s| s.addresses.clone());
            addrs
                .into_iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")
                .map(|a| a.address)
                .unwrap_or_default()
        };
        let mut snap = Topology {
            fabric: format!("{} cluster", self.provider),
            nodes: nodes
                .iter()
                .map(|n| NodeSnap {
                    name: n.metadata.name.clone().unwrap_or_default(),
                    uplink: self.opts.lower_device.clone(),
                    address: address(n),
                    bridges: Vec::new(),
                })
                .collect(),
            workloads: Vec::new(),
        };
        let pods: Api<KPod> = Api::all(self.client.clone());
        let list = match pods
            .list(&ListParams::default().labels(&self.selector()))
            .await
        {
            Ok(list) => list.items,
            Err(_) => return snap,
        };
        for p in list {
            let status = p
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(NETWORK_STATUS_ANNOTATION))
                .and_then(|s| crate::multus::status::parse_annotation(s).ok())
                .unwrap_or_default();
            snap.workloads.push(WorkloadSnap {
                name: p.metadata.name.clone().unwrap_or_default(),
                kind: "pod".into(),
                node: p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_default(),
                interfaces: status
                    .into_iter()
                    .map(|s| InterfaceSnap {
                        name: s.interface.unwrap_or_default(),
                        network: s.name,
                        mac: s.mac,
                        ips: s.ips,
                        attachment: None,
                    })
                    .collect(),
            });
        }
        snap
    }
}

impl KubeCluster {
    /// Kills the device plugin on `node` (its pod deleted with no grace period) and
    /// waits until the DaemonSet's new pod there is Running.
    pub async fn restart_device_plugin(&self, node: &str) -> Result<(), ClusterError> {
        let fail = |message: String| ClusterError::Up {
            provider: self.provider.clone(),
            message,
        };
        let (ns, selector) = self.opts.device_plugin_pods.clone().ok_or_else(|| {
            fail("no device plugin component in this run (--components without macvtap?)".into())
        })?;
        let api: Api<KPod> = Api::namespaced(self.client.clone(), &ns);
        let lp = ListParams::default()
            .labels(&selector)
            .fields(&format!("spec.nodeName={node}"));
        let old = api
            .list(&lp)
            .await
            .map_err(|e| fail(format!("failed to list {selector} in {ns}: {}", api_err(e))))?
            .items;
        if old.is_empty() {
            return Err(fail(format!("no pod {selector} in {ns} runs on {node}")));
        }
        let old_uids: Vec<String> = old.iter().filter_map(|p| p.metadata.uid.clone()).collect();
        for p in &old {
            let name = p.metadata.name.clone().unwrap_or_default();
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: p.metadata.uid.clone().map(|uid| Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(fail(format!("failed to kill {ns}/{name}: {}", api_err(e)))),
            }
        }
        let deadline = tokio::time::Instant::now() + self.opts.pod_timeout;
        loop {
            let pods = api.list(&lp).await.map(|l| l.items).unwrap_or_default();
            let fresh = pods.iter().find(|p| {
                p.metadata
                    .uid
                    .as_ref()
                    .is_some_and(|u| !old_uids.contains(u))
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            });
            if fresh.is_some() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let state: Vec<String> = pods
                    .iter()
                    .map(|p| {
                        format!(
                            "{}: {}",
                            p.metadata.name.as_deref().unwrap_or("?"),
                            Self::describe(Some(p))
                        )
                    })
                    .collect();
                return Err(ClusterError::Timeout {
                    what: format!("a new device plugin pod ({selector}) Running on {node}"),
                    seconds: self.opts.pod_timeout.as_secs(),
                    state: if state.is_empty() {
                        "no pod: is the DaemonSet there?".into()
                    } else {
                        state.join("; ")
                    },
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
