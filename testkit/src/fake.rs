//! A tiny fake of the API server, its controllers and the scheduler over `MockApi`,
//! for tests of portable scenarios and of `secnet conform` on a real-cluster target.
//! One store for every kind `apply` knows (plus events), in any namespace; namespaces
//! that must exist before anything goes in them and that take one more look to go
//! away after a delete (Terminating); server-side apply with field managers and 409
//! conflicts; pods scheduled on create (Unschedulable when the devices run out);
//! DaemonSets rolled out to one pod per node (`workloads`). Two nodes, whose
//! dataplane resource (50) is there while a device plugin pod runs on them.
//!
//! What it knows of the harness it fakes for (the kinds it serves, the run label,
//! how a quantity reads, multus's annotations) it is handed as [`Tables`], so the
//! harness keeps one copy of each.

pub mod ssa;
pub mod workloads;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

pub use self::ssa::apply as ssa_apply;
pub use crate::mock::percent_decode;
use crate::mock::{MockApi, Recorded, Reply, list, not_found};

/// What the fake takes from the harness it fakes for.
#[derive(Clone)]
pub struct Tables {
    /// The kinds served besides events and nodes: `(apiVersion/plural, kind,
    /// namespaced)`.
    pub kinds: Vec<(String, String, bool)>,
    /// The label every object of a run carries (its value the run id).
    pub run_label: &'static str,
    /// A resource quantity (`"1"`, `"2k"`) as a number.
    pub parse_quantity: fn(&str) -> Option<u64>,
    /// The pod annotation that selects networks, and the one multus answers in.
    pub networks_annotation: &'static str,
    pub network_status_annotation: &'static str,
}

pub const DATAPLANE: &str = "macvtap.network.kubevirt.io/dataplane";
/// The namespace the tests' run (`r1`) puts its objects in.
pub const RUN_NS: &str = "secnet-r1";
pub const NAD_PATH: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/secnet-r1/network-attachment-definitions";
pub const SCOPE: &str = "s3";
pub const HOSTNAME: &str = "kubernetes.io/hostname";
pub const NODES: [&str; 2] = ["node-a", "node-b"];
/// Where the device plugin's pods live, and their label (as fixtures/components).
pub const PLUGIN_NS: &str = "kube-system";
pub const PLUGIN_SELECTOR: &str = "app=secnet-macvtap";
/// The user's own device plugin DaemonSet in the seeded fake (`fake_api_server`).
pub const PLUGIN_DS: &str = "secnet-macvtap";
/// The field manager of what the fake's "user" made (`kubectl apply --server-side`).
pub const USER_MANAGER: &str = "kubectl";

/// Where an object is stored: `v1/pods`, `apps/v1/daemonsets`, ...; namespace ("" for
/// cluster-scoped kinds); name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(resource: &str, namespace: &str, name: &str) -> Key {
        Key {
            resource: resource.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

pub const PODS: &str = "v1/pods";
pub const NADS: &str = "k8s.cni.cncf.io/v1/network-attachment-definitions";
pub const NAMESPACES: &str = "v1/namespaces";
pub const DAEMONSETS: &str = "apps/v1/daemonsets";
pub const EVENTS: &str = "v1/events";

/// What the fake API server holds.
pub struct FakeState {
    pub tables: Tables,
    pub objects: BTreeMap<Key, Value>,
    pub uids: u32,
    /// The scheduler's answer per POSTed pod: `"node-a"` or `"Unschedulable"`.
    pub scheduled: Vec<(String, String)>,
    /// The scheduler counts the devices the pods on a node hold.
    pub count_allocations: bool,
    /// Looks a deleted namespace still answers (Terminating) before it is gone.
    pub terminating: BTreeMap<String, u32>,
}

impl FakeState {
    fn new(tables: Tables, count_allocations: bool) -> FakeState {
        let mut s = FakeState {
            tables,
            objects: BTreeMap::new(),
            uids: 0,
            scheduled: Vec::new(),
            count_allocations,
            terminating: BTreeMap::new(),
        };
        for ns in ["default", "kube-system"] {
            s.create(
                Key::new(NAMESPACES, "", ns),
                namespace_doc(ns),
                "kube-apiserver",
            );
        }
        s
    }

    /// The next UID (`uid-<n>`) and its number.
    pub fn next_uid(&mut self) -> (String, u32) {
        self.uids += 1;
        (format!("uid-{}", self.uids), self.uids)
    }

    /// Stores a new object with uid, resourceVersion and the creating manager.
    pub fn create(&mut self, key: Key, mut obj: Value, manager: &str) -> Value {
        ssa::record_update(&mut obj, manager);
        self.store(key, obj)
    }

    /// Stores `obj` under `key` with server fields (uid kept if it has one).
    fn store(&mut self, key: Key, mut obj: Value) -> Value {
        if obj["metadata"]["uid"].as_str().is_none() {
            obj["metadata"]["uid"] = json!(self.next_uid().0);
        }
        self.uids += 1;
        obj["metadata"]["resourceVersion"] = json!(format!("{}", 100 + self.uids));
        obj["metadata"]["name"] = json!(key.name);
        if !key.namespace.is_empty() {
            obj["metadata"]["namespace"] = json!(key.namespace);
        }
        self.objects.insert(key, obj.clone());
        obj
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects.get(&Key::new(resource, namespace, name))
    }

    /// The objects of one resource (in one namespace, or all), in key order.
    pub fn all(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.resource == resource && namespace.is_none_or(|n| k.namespace == n))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The names of one resource's objects in a namespace.
    pub fn names(&self, resource: &str, namespace: &str) -> Vec<String> {
        self.objects
            .keys()
            .filter(|k| k.resource == resource && k.namespace == namespace)
            .map(|k| k.name.clone())
            .collect()
    }

    /// The scenarios' pods: every pod no DaemonSet owns, by name.
    pub fn workload_pods(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(k, v)| k.resource == PODS && workloads::owner(v).is_none())
            .map(|(k, _)| k.name.clone())
            .collect()
    }

    /// The device plugin's pods (`app=secnet-macvtap`), by name.
    pub fn plugin_pods(&self) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(k, v)| k.resource == PODS && labels_match(v, PLUGIN_SELECTOR))
            .map(|(k, _)| k.name.clone())
            .collect()
    }

    /// Every object that carries the run label (of `run`, or any): `kind ns/name`.
    pub fn labelled(&self, run: Option<&str>) -> Vec<String> {
        self.objects
            .iter()
            .filter(|(_, v)| {
                v["metadata"]["labels"][self.tables.run_label]
                    .as_str()
                    .is_some_and(|r| run.is_none_or(|want| want == r))
            })
            .map(|(k, _)| format!("{} {}/{}", k.resource, k.namespace, k.name))
            .collect()
    }

    /// Whether `namespace` exists and takes new objects.
    fn open_namespace(&self, namespace: &str) -> Result<(), Reply> {
        match self.get(NAMESPACES, "", namespace) {
            None => Err(not_found(&format!("namespaces \"{namespace}\""))),
            Some(ns) if ns["status"]["phase"] == "Terminating" => Err(Reply::Json(
                403,
                status_json(
                    403,
                    "Forbidden",
                    &format!(
                        "unable to create new content in namespace {namespace} because it is being terminated"
                    ),
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Deletes an object and what the garbage collector takes with it.
    fn remove(&mut self, key: &Key) -> Option<Value> {
        let gone = self.objects.remove(key)?;
        match key.resource.as_str() {
            NAMESPACES => {
                self.objects.retain(|k, _| k.namespace != key.name);
            }
            DAEMONSETS => workloads::collect_daemonset_pods(self, &gone),
            _ => {}
        }
        Some(gone)
    }
}

fn namespace_doc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        "status": {"phase": "Active"}})
}

/// A node with 50 dataplane devices (capacity and allocatable).
pub fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110",
                "macvtap.network.kubevirt.io/dataplane": "50"},
            "allocatable": {"cpu": "1500m", "memory": "7Gi", "pods": "110",
                "macvtap.network.kubevirt.io/dataplane": "50"}}})
}

pub fn fake_node(name: &str) -> Value {
    let mut n = node(name);
    n["metadata"]["labels"] = json!({HOSTNAME: name});
    n
}

/// A node as the fake shows it: the dataplane resource only while a device plugin
/// pod runs there (the kubelet drops an unregistered plugin's resource).
fn node_now(s: &FakeState, name: &str) -> Value {
    let mut n = fake_node(name);
    let plugin_here = s.objects.iter().any(|(k, v)| {
        k.resource == PODS
            && labels_match(v, PLUGIN_SELECTOR)
            && v["spec"]["nodeName"] == name
            && v["status"]["phase"] == "Running"
    });
    if !plugin_here {
        for field in ["capacity", "allocatable"] {
            if let Some(m) = n["status"][field].as_object_mut() {
                m.remove(DATAPLANE);
            }
        }
    }
    n
}

pub fn param(r: &Recorded, key: &str) -> Option<String> {
    r.query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

/// `k=v,k2!=v2,k3` label selector matching (equality-based, and existence).
pub fn labels_match(obj: &Value, selector: &str) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k].as_str() != Some(v)
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            labels[k].as_str() == Some(v)
        } else {
            labels.get(term).is_some()
        }
    })
}

/// `spec.nodeName=x,status.phase!=Failed` field selector matching; absent is "".
pub fn fields_match(obj: &Value, selector: &str) -> bool {
    let field = |path: &str| {
        obj.pointer(&format!("/{}", path.replace('.', "/")))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            field(k) != v
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            field(k) == v
        } else {
            panic!("field selector term {term:?}")
        }
    })
}

/// The objects of `items` a list request selects (labelSelector, fieldSelector).
pub fn selected(r: &Recorded, items: impl Iterator<Item = Value>) -> Vec<Value> {
    let labels = param(r, "labelSelector").unwrap_or_default();
    let fields = param(r, "fieldSelector").unwrap_or_default();
    items
        .filter(|o| labels_match(o, &labels) && fields_match(o, &fields))
        .collect()
}

fn status_json(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

pub fn conflict(message: String) -> Reply {
    Reply::Json(409, status_json(409, "Conflict", &message))
}

fn already_exists(resource: &str, name: &str) -> Reply {
    let plural = resource.rsplit('/').next().unwrap_or(resource);
    Reply::Json(
        409,
        status_json(
            409,
            "AlreadyExists",
            &format!("{plural} \"{name}\" already exists"),
        ),
    )
}

/// The UID precondition of a DELETE, checked against the stored object.
pub fn precondition_fails(r: &Recorded, stored: &Value) -> Option<Reply> {
    let want = r.body["preconditions"]["uid"].as_str()?;
    let have = stored["metadata"]["uid"].as_str().unwrap_or("");
    (want != have).then(|| {
        conflict(format!(
            "Precondition failed: UID in precondition: {want}, UID in object meta: {have}"
        ))
    })
}

/// The resources the fake serves: `(resource key, kind, namespaced)`.
fn served(tables: &Tables) -> Vec<(String, String, bool)> {
    let mut out = tables.kinds.clone();
    out.push(("v1/events".into(), "Event".into(), true));
    out.push(("v1/nodes".into(), "Node".into(), false));
    out
}

/// A request's target: resource, namespace (for namespaced paths), name, subresource.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    resource: String,
    kind: String,
    namespaced: bool,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn target(path: &str, tables: &Tables) -> Option<Target> {
    let (gv, rest) = if let Some(rest) = path.strip_prefix("/api/v1") {
        ("v1".to_string(), rest)
    } else {
        let rest = path.strip_prefix("/apis/")?;
        let mut it = rest.splitn(3, '/');
        let (g, v) = (it.next()?, it.next()?);
        (format!("{g}/{v}"), it.next().unwrap_or(""))
    };
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let (namespace, plural, name, sub) = match parts.as_slice() {
        ["namespaces", ns, plural, tail @ ..] => (Some(*ns), *plural, tail.first(), tail.get(1)),
        [plural, tail @ ..] => (None, *plural, tail.first(), tail.get(1)),
        [] => return None,
    };
    let resource = format!("{gv}/{plural}");
    let (_, kind, namespaced) = served(tables)
        .into_iter()
        .find(|(r, _, _)| *r == resource)?;
    Some(Target {
        resource,
        kind,
        namespaced,
        namespace: namespace.map(str::to_string),
        name: name.map(|n| n.to_string()),
        sub: sub.map(|n| n.to_string()),
    })
}

/// The fake's answer to one request.
fn handle(s: &mut FakeState, r: &Recorded) -> Reply {
    if r.method == "GET" && r.query_has("watch=true") {
        return Reply::WatchOpen(vec![]);
    }
    let Some(t) = target(&r.path, &s.tables) else {
        return not_found(&r.path);
    };
    if t.resource == "v1/nodes" {
        return match (&t.name, r.method.as_str()) {
            (None, "GET") => list(
                "NodeList",
                selected(r, NODES.iter().rev().map(|n| node_now(s, n))),
            ),
            (Some(n), "GET") if NODES.contains(&n.as_str()) => Reply::Json(200, node_now(s, n)),
            _ => not_found(&r.path),
        };
    }
    let ns = t.namespace.clone().unwrap_or_default();
    match (r.method.as_str(), &t.name) {
        ("GET", None) => {
            let items = s
                .objects
                .iter()
                .filter(|(k, _)| {
                    k.resource == t.resource && (t.namespace.is_none() || k.namespace == ns)
                })
                .map(|(_, v)| v.clone());
            let items = selected(r, items);
            list(&format!("{}List", t.kind), items)
        }
        ("GET", Some(name)) => get(s, &t, name, &r.path),
        ("POST", None) => create(s, &t, r),
        ("PATCH", Some(name)) => patch(s, &t, name, r),
        ("DELETE", Some(name)) => delete(s, &t, name, r),
        _ => not_found(&r.path),
    }
}

fn key_of(t: &Target, name: &str) -> Key {
    let ns = if t.namespaced {
        t.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    };
    Key::new(&t.resource, &ns, name)
}

fn get(s: &mut FakeState, t: &Target, name: &str, path: &str) -> Reply {
    let key = key_of(t, name);
    let what = format!("{} \"{name}\"", t.resource);
    if t.resource == NAMESPACES
        && let Some(left) = s.terminating.get_mut(name)
    {
        // A Terminating namespace goes away after it was looked at `left` times.
        if *left == 0 {
            s.terminating.remove(name);
            s.objects.remove(&key);
            return not_found(&what);
        }
        *left -= 1;
    }
    let Some(obj) = s.objects.get(&key) else {
        return not_found(&what);
    };
    match t.sub.as_deref() {
        None => Reply::Json(200, obj.clone()),
        Some("log") if t.resource == PODS => Reply::Text(200, String::new()),
        Some(_) => not_found(path), // exec and the like: not served
    }
}

fn create(s: &mut FakeState, t: &Target, r: &Recorded) -> Reply {
    let mut obj = r.body.clone();
    let Some(name) = obj["metadata"]["name"].as_str().map(str::to_string) else {
        return Reply::Json(
            422,
            status_json(422, "Invalid", "metadata.name: Required value"),
        );
    };
    let key = key_of(t, &name);
    if s.objects.contains_key(&key) {
        return already_exists(&t.resource, &name);
    }
    if t.namespaced
        && let Err(reply) = s.open_namespace(&key.namespace)
    {
        return reply;
    }
    let manager = param(r, "fieldManager").unwrap_or_else(|| "unknown".into());
    if t.resource == NAMESPACES {
        obj["status"] = json!({"phase": "Active"});
    }
    if t.resource == PODS {
        return workloads::schedule(s, key, obj, &manager);
    }
    Reply::Json(201, s.create(key, obj, &manager))
}

fn patch(s: &mut FakeState, t: &Target, name: &str, r: &Recorded) -> Reply {
    if r.content_type != "application/apply-patch+yaml" {
        return Reply::Json(
            415,
            status_json(
                415,
                "UnsupportedMediaType",
                "the fake serves server-side apply only",
            ),
        );
    }
    let Some(manager) = param(r, "fieldManager") else {
        return Reply::Json(
            422,
            status_json(
                422,
                "Invalid",
                "fieldManager is required for apply requests",
            ),
        );
    };
    let key = key_of(t, name);
    if t.namespaced
        && !s.objects.contains_key(&key)
        && let Err(reply) = s.open_namespace(&key.namespace)
    {
        return reply;
    }
    let force = r.query_has("force=true");
    let api_version = r.body["apiVersion"].as_str().unwrap_or("v1").to_string();
    match ssa::apply(s.objects.get(&key), &r.body, &manager, force) {
        Err(conflicts) => conflict(ssa::conflict_message(&conflicts, &api_version)),
        Ok(obj) => {
            let stored = s.store(key.clone(), obj);
            if t.resource == DAEMONSETS {
                workloads::roll_out(s, &key);
                return Reply::Json(200, s.objects[&key].clone());
            }
            Reply::Json(200, stored)
        }
    }
}

fn delete(s: &mut FakeState, t: &Target, name: &str, r: &Recorded) -> Reply {
    let key = key_of(t, name);
    let what = format!("{} \"{name}\"", t.resource);
    let Some(obj) = s.objects.get(&key).cloned() else {
        return not_found(&what);
    };
    if let Some(reply) = precondition_fails(r, &obj) {
        return reply;
    }
    if t.resource == NAMESPACES {
        // Its content goes at once; the namespace itself on a later look.
        s.objects.retain(|k, _| k.namespace != name);
        let ns = s.objects.get_mut(&key).expect("checked above");
        ns["status"]["phase"] = json!("Terminating");
        ns["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        s.terminating.entry(name.to_string()).or_insert(1);
        return Reply::Json(200, ns.clone());
    }
    if t.resource == PODS
        && let Some(reply) = workloads::delete_pod(s, &key, &obj)
    {
        return reply;
    }
    s.remove(&key);
    Reply::Json(200, obj)
}

/// The fake with the user's own device plugin installed, as on a lab cluster: the
/// DaemonSet `kube-system/secnet-macvtap` (field manager `kubectl`, no run label)
/// and its pod on each node. With `count_allocations` the scheduler counts devices.
pub fn fake_api_server(
    tables: Tables,
    count_allocations: bool,
) -> (MockApi, Arc<Mutex<FakeState>>) {
    let (mock, state) = fake_api_server_bare(tables, count_allocations);
    {
        let mut s = state.lock().unwrap();
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": PLUGIN_DS, "namespace": PLUGIN_NS, "labels": {"app": "secnet-macvtap"}},
            "spec": {"selector": {"matchLabels": {"app": "secnet-macvtap"}},
                "template": {"metadata": {"labels": {"app": "secnet-macvtap"}},
                    "spec": {"containers": [{"name": "deviceplugin", "image": "localhost/secnet-plugins:dev"}]}}}});
        let obj = ssa::apply(None, &ds, USER_MANAGER, false).expect("a create");
        let key = Key::new(DAEMONSETS, PLUGIN_NS, PLUGIN_DS);
        s.store(key.clone(), obj);
        workloads::roll_out(&mut s, &key);
    }
    (mock, state)
}

/// The fake with nothing installed: namespaces `default` and `kube-system`, two nodes
/// without the dataplane resource until a device plugin DaemonSet runs.
pub fn fake_api_server_bare(
    tables: Tables,
    count_allocations: bool,
) -> (MockApi, Arc<Mutex<FakeState>>) {
    let state = Arc::new(Mutex::new(FakeState::new(tables, count_allocations)));
    let shared = state.clone();
    let mock = MockApi::new(move |r| handle(&mut state.lock().unwrap(), r));
    (mock, shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables() -> Tables {
        let kind = |r: &str, k: &str, namespaced| (r.to_string(), k.to_string(), namespaced);
        Tables {
            kinds: vec![
                kind(PODS, "Pod", true),
                kind(NAMESPACES, "Namespace", false),
                kind(DAEMONSETS, "DaemonSet", true),
            ],
            run_label: "run",
            parse_quantity: |q| q.parse().ok(),
            networks_annotation: "networks",
            network_status_annotation: "network-status",
        }
    }

    #[test]
    fn paths_name_their_resource_namespace_and_object() {
        let target = |path| target(path, &tables());
        let t = target("/api/v1/namespaces/x/pods/p/log").unwrap();
        assert_eq!(
            (
                t.resource.as_str(),
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.sub.as_deref()
            ),
            ("v1/pods", Some("x"), Some("p"), Some("log"))
        );
        let t = target("/api/v1/namespaces/secnet-r1").unwrap();
        assert_eq!(t.resource, NAMESPACES);
        assert_eq!(t.name.as_deref(), Some("secnet-r1"));
        let t = target("/apis/apps/v1/daemonsets").unwrap();
        assert_eq!((t.resource.as_str(), t.name), (DAEMONSETS, None));
        assert!(target("/apis/example.com/v1/widgets").is_none());
    }
}
