//! A tiny fake of the API server and the scheduler over `MockApi`, for tests of
//! portable scenarios and of `secnet conform` on a real-cluster target: two nodes with
//! 50 dataplane devices each, NADs by server-side apply, pods scheduled on create
//! (Unschedulable when the devices run out) and gone at once on delete.

use serde_json::{Value, json};

use super::mock::{MockApi, Recorded, Reply, list, not_found};

/// A node with 50 dataplane devices (capacity and allocatable).
pub(crate) fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {
            "capacity": {"cpu": "2", "memory": "8Gi", "pods": "110",
                "macvtap.network.kubevirt.io/dataplane": "50"},
            "allocatable": {"cpu": "1500m", "memory": "7Gi", "pods": "110",
                "macvtap.network.kubevirt.io/dataplane": "50"}}})
}

pub(crate) const DATAPLANE: &str = "macvtap.network.kubevirt.io/dataplane";
pub(crate) const NAD_PATH: &str =
    "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions";
pub(crate) const SCOPE: &str = "s3";
pub(crate) const HOSTNAME: &str = "kubernetes.io/hostname";

/// What the fake API server holds. Pods and NADs live in namespace `default`.
#[derive(Default)]
pub(crate) struct FakeState {
    pub nads: std::collections::BTreeMap<String, Value>,
    pub pods: std::collections::BTreeMap<String, Value>,
    pub uids: u32,
    /// The scheduler's answer per POSTed pod: `"node-a"` or `"Unschedulable"`.
    pub scheduled: Vec<(String, String)>,
    /// The device plugin DaemonSet's pods in kube-system, one per node; a deleted one
    /// is replaced at once (the DaemonSet controller), with a new name and UID.
    pub plugin_pods: std::collections::BTreeMap<String, Value>,
}

/// Where the device plugin's pods live, and their label (as fixtures/components).
pub(crate) const PLUGIN_NS: &str = "kube-system";
pub(crate) const PLUGIN_SELECTOR: &str = "app=secnet-macvtap";

fn plugin_pod(state: &mut FakeState, node: &str) {
    state.uids += 1;
    let name = format!("secnet-macvtap-{node}-{}", state.uids);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": PLUGIN_NS, "uid": format!("uid-{}", state.uids),
            "labels": {"app": "secnet-macvtap"}},
        "spec": {"nodeName": node, "containers": [{"name": "deviceplugin", "image": "localhost/secnet-plugins:dev"}]},
        "status": {"phase": "Running"}});
    state.plugin_pods.insert(name, pod);
}

/// `%3D` → `=`, `+` → ` `: a query parameter as the client encoded it.
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

pub(crate) fn param(r: &Recorded, key: &str) -> Option<String> {
    r.query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

/// `k=v,k2!=v2,k3` label selector matching (equality-based, and existence).
pub(crate) fn labels_match(obj: &Value, selector: &str) -> bool {
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
pub(crate) fn fields_match(obj: &Value, selector: &str) -> bool {
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
pub(crate) fn selected(r: &Recorded, items: impl Iterator<Item = Value>) -> Vec<Value> {
    let labels = param(r, "labelSelector").unwrap_or_default();
    let fields = param(r, "fieldSelector").unwrap_or_default();
    items
        .filter(|o| labels_match(o, &labels) && fields_match(o, &fields))
        .collect()
}

/// A pod's dataplane devices (limits, as the device plugin's resources go).
pub(crate) fn dataplane_of(pod: &Value) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let q = &c["resources"]["limits"][DATAPLANE];
            match q {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => super::cluster::parse_quantity(s),
                _ => None,
            }
        })
        .sum()
}

/// Multus' network-status for the pod's `k8s.v1.cni.cncf.io/networks`: the default
/// network on eth0, then each selected network on net1, net2, ... with the
/// requested MAC or a made-up one.
pub(crate) fn network_status_of(pod: &Value, uid_n: u32) -> Option<String> {
    let networks = pod["metadata"]["annotations"][crate::multus::NETWORKS_ANNOTATION].as_str()?;
    let selections: Vec<(String, Option<String>)> = match serde_json::from_str::<Value>(networks) {
        Ok(Value::Array(list)) => list
            .iter()
            .map(|n| {
                (
                    n["name"].as_str().unwrap().to_string(),
                    n["mac"].as_str().map(str::to_string),
                )
            })
            .collect(),
        _ => networks
            .split(',')
            .map(|n| (n.trim().to_string(), None))
            .collect(),
    };
    let mut status = vec![json!({"name": "kindnet", "interface": "eth0",
        "ips": ["10.244.0.7"], "mac": "0a:58:0a:f4:00:07", "default": true, "dns": {}})];
    for (i, (name, mac)) in selections.into_iter().enumerate() {
        let mac = mac.unwrap_or_else(|| format!("02:00:00:00:{:02x}:{:02x}", uid_n, i + 1));
        status.push(
            json!({"name": format!("default/{name}"), "interface": format!("net{}", i + 1),
            "mac": mac, "dns": {}}),
        );
    }
    Some(Value::Array(status).to_string())
}

pub(crate) fn conflict(message: String) -> Reply {
    Reply::Json(
        409,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": message, "reason": "Conflict", "code": 409}),
    )
}

/// The UID precondition of a DELETE, checked against the stored object.
pub(crate) fn precondition_fails(r: &Recorded, stored: &Value) -> Option<Reply> {
    let want = r.body["preconditions"]["uid"].as_str()?;
    let have = stored["metadata"]["uid"].as_str().unwrap_or("");
    (want != have).then(|| {
        conflict(format!(
            "Precondition failed: UID in precondition: {want}, UID in object meta: {have}"
        ))
    })
}

/// POSTed pod: stored and "scheduled" onto its hostname selector's node (node-a
/// without one). With `count_allocations`, a pod whose devices do not fit next to
/// the node's running pods stays Pending, Unschedulable, as kube-scheduler leaves it.
pub(crate) fn schedule(state: &mut FakeState, mut pod: Value, count_allocations: bool) -> Reply {
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    if state.pods.contains_key(&name) {
        return conflict(format!("pods \"{name}\" already exists"));
    }
    state.uids += 1;
    let n = state.uids;
    pod["metadata"]["uid"] = json!(format!("uid-{n}"));
    pod["metadata"]["namespace"] = json!("default");
    pod["metadata"]["resourceVersion"] = json!(format!("{}", 100 + n));
    let node = pod["spec"]["nodeSelector"][HOSTNAME]
        .as_str()
        .unwrap_or("node-a")
        .to_string();
    let allocated: u64 = state
        .pods
        .values()
        .filter(|p| p["spec"]["nodeName"] == node.as_str())
        .map(dataplane_of)
        .sum();
    if count_allocations && allocated + dataplane_of(&pod) > 50 {
        pod["status"] = json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": format!("0/2 nodes are available: 1 Insufficient {DATAPLANE}.")}]});
        state.scheduled.push((name.clone(), "Unschedulable".into()));
    } else {
        pod["spec"]["nodeName"] = json!(node);
        pod["status"] = json!({"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]});
        if let Some(status) = network_status_of(&pod, n) {
            pod["metadata"]["annotations"][crate::multus::NETWORK_STATUS_ANNOTATION] =
                json!(status);
        }
        state.scheduled.push((name.clone(), node));
    }
    state.pods.insert(name, pod.clone());
    Reply::Json(201, pod)
}

pub(crate) fn fake_node(name: &str) -> Value {
    let mut n = node(name);
    n["metadata"]["labels"] = json!({HOSTNAME: name});
    n
}

/// A tiny fake of the API server and the scheduler: two nodes with 50 dataplane
/// devices each, NADs by server-side apply, pods scheduled on create and gone at once
/// on delete; lists honour label and field selectors, watches stay open.
pub(crate) fn fake_api_server(
    count_allocations: bool,
) -> (MockApi, std::sync::Arc<std::sync::Mutex<FakeState>>) {
    let state: std::sync::Arc<std::sync::Mutex<FakeState>> = Default::default();
    for node in ["node-a", "node-b"] {
        plugin_pod(&mut state.lock().unwrap(), node);
    }
    let shared = state.clone();
    let mock = MockApi::new(move |r| {
        let mut s = state.lock().unwrap();
        let path = r.path.as_str();
        let method = r.method.as_str();
        if method == "GET" && r.query_has("watch=true") {
            return Reply::WatchOpen(vec![]);
        }
        if let Some(name) = path.strip_prefix("/api/v1/nodes/") {
            return match ["node-a", "node-b"].contains(&name) {
                true => Reply::Json(200, fake_node(name)),
                false => not_found(path),
            };
        }
        if let Some(rest) = path.strip_prefix(NAD_PATH) {
            let name = rest.trim_start_matches('/');
            return match (method, name) {
                ("GET", "") => list(
                    "NetworkAttachmentDefinitionList",
                    selected(r, s.nads.values().cloned()),
                ),
                ("GET", n) => match s.nads.get(n) {
                    Some(o) => Reply::Json(200, o.clone()),
                    None => not_found(path),
                },
                ("PATCH", n) => {
                    let mut o = r.body.clone();
                    let uid = match s.nads.get(n) {
                        Some(old) => old["metadata"]["uid"].clone(),
                        None => {
                            s.uids += 1;
                            json!(format!("uid-{}", s.uids))
                        }
                    };
                    o["metadata"]["uid"] = uid;
                    o["metadata"]["namespace"] = json!("default");
                    s.nads.insert(n.to_string(), o.clone());
                    Reply::Json(200, o)
                }
                ("DELETE", n) => match s.nads.get(n) {
                    None => not_found(path),
                    Some(o) => match precondition_fails(r, o) {
                        Some(reply) => reply,
                        None => Reply::Json(200, s.nads.remove(n).unwrap()),
                    },
                },
                _ => not_found(path),
            };
        }
        let plugin_pods = format!("/api/v1/namespaces/{PLUGIN_NS}/pods");
        if let Some(rest) = path.strip_prefix(&plugin_pods) {
            let name = rest.trim_start_matches('/');
            return match (method, name) {
                ("GET", "") => list("PodList", selected(r, s.plugin_pods.values().cloned())),
                ("DELETE", n) => match s.plugin_pods.get(n).cloned() {
                    None => not_found(path),
                    Some(p) => match precondition_fails(r, &p) {
                        Some(reply) => reply,
                        None => {
                            s.plugin_pods.remove(n);
                            let node = p["spec"]["nodeName"].as_str().unwrap_or("node-a");
                            plugin_pod(&mut s, node);
                            Reply::Json(200, p)
                        }
                    },
                },
                _ => not_found(path),
            };
        }
        match (method, path) {
            ("GET", "/api/v1/nodes") => list(
                "NodeList",
                selected(r, [fake_node("node-b"), fake_node("node-a")].into_iter()),
            ),
            ("POST", "/api/v1/namespaces/default/pods") => {
                schedule(&mut s, r.body.clone(), count_allocations)
            }
            ("GET", "/api/v1/pods") | ("GET", "/api/v1/namespaces/default/pods") => {
                list("PodList", selected(r, s.pods.values().cloned()))
            }
            ("GET", "/api/v1/namespaces/default/events") => list("EventList", vec![]),
            _ => {
                let Some(rest) = path.strip_prefix("/api/v1/namespaces/default/pods/") else {
                    return not_found(path);
                };
                if let Some(name) = rest.strip_suffix("/log") {
                    return match s.pods.contains_key(name) {
                        true => Reply::Text(200, String::new()),
                        false => not_found(path),
                    };
                }
                match (method, s.pods.get(rest)) {
                    (_, None) => not_found(path),
                    ("GET", Some(p)) => Reply::Json(200, p.clone()),
                    ("DELETE", Some(p)) => match precondition_fails(r, p) {
                        Some(reply) => reply,
                        None => Reply::Json(200, s.pods.remove(rest).unwrap()),
                    },
                    _ => not_found(path),
                }
            }
        }
    });
    (mock, shared)
}
