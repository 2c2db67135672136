//! What the fake's controllers do with pods: the scheduler (a hostname selector, the
//! dataplane devices counted), multus (network-status for NADs that exist in the
//! pod's namespace) and the DaemonSet controller (one pod per node, replaced when
//! deleted, collected with its DaemonSet; rollout status).

use serde_json::{Value, json};

use super::{DAEMONSETS, DATAPLANE, EVENTS, FakeState, HOSTNAME, Key, NADS, NODES, PODS, Tables};
use crate::mock::Reply;

/// A pod's dataplane devices (limits, as the device plugin's resources go).
pub fn dataplane_of(tables: &Tables, pod: &Value) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let q = &c["resources"]["limits"][DATAPLANE];
            match q {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => (tables.parse_quantity)(s),
                _ => None,
            }
        })
        .sum()
}

/// The networks a pod selects: `(namespace, name, mac)`, a bare name in the pod's
/// namespace (as multus resolves it).
fn selections(tables: &Tables, pod: &Value) -> Option<Vec<(String, String, Option<String>)>> {
    let networks = pod["metadata"]["annotations"][tables.networks_annotation].as_str()?;
    let own = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let split = |n: &str| match n.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (own.to_string(), n.to_string()),
    };
    Some(match serde_json::from_str::<Value>(networks) {
        Ok(Value::Array(list)) => list
            .iter()
            .map(|n| {
                let (ns, name) = split(n["name"].as_str().unwrap_or(""));
                let ns = n["namespace"].as_str().map_or(ns, str::to_string);
                (ns, name, n["mac"].as_str().map(str::to_string))
            })
            .collect(),
        _ => networks
            .split(',')
            .map(|n| {
                let n = n.trim();
                let n = n.split_once('@').map_or(n, |(n, _)| n);
                let (ns, name) = split(n);
                (ns, name, None)
            })
            .collect(),
    })
}

/// Multus' network-status for the pod's `k8s.v1.cni.cncf.io/networks`: the default
/// network on eth0, then each selected network on net1, net2, ... with the requested
/// MAC or a made-up one; `Err` names a NAD that does not exist (multus fails the
/// sandbox and the pod stays ContainerCreating).
pub fn network_status_of(s: &FakeState, pod: &Value, uid_n: u32) -> Option<Result<String, String>> {
    let selections = selections(&s.tables, pod)?;
    let mut status = vec![json!({"name": "kindnet", "interface": "eth0",
        "ips": ["10.244.0.7"], "mac": "0a:58:0a:f4:00:07", "default": true, "dns": {}})];
    for (i, (ns, name, mac)) in selections.into_iter().enumerate() {
        if s.get(NADS, &ns, &name).is_none() {
            return Some(Err(format!(
                "cannot find a network-attachment-definition ({name}) in namespace ({ns})"
            )));
        }
        let mac = mac.unwrap_or_else(|| format!("02:00:00:00:{:02x}:{:02x}", uid_n % 256, i + 1));
        status.push(
            json!({"name": format!("{ns}/{name}"), "interface": format!("net{}", i + 1),
            "mac": mac, "dns": {}}),
        );
    }
    Some(Ok(Value::Array(status).to_string()))
}

/// The kubelet's event for a sandbox whose CNI ADD failed (multus' `why`).
fn sandbox_event(s: &mut FakeState, pod: &Key, uid: &str, why: &str) {
    let name = format!("{}.sandbox", pod.name);
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": name, "namespace": pod.namespace},
        "involvedObject": {"kind": "Pod", "name": pod.name, "namespace": pod.namespace, "uid": uid},
        "type": "Warning", "reason": "FailedCreatePodSandBox",
        "message": format!("Failed to create pod sandbox: plugin type=\"multus\" failed (add): {why}")});
    s.create(Key::new(EVENTS, &pod.namespace, &name), event, "kubelet");
}

/// The DaemonSet that owns a pod, by name.
pub fn owner(pod: &Value) -> Option<String> {
    pod["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["kind"] == "DaemonSet")
        .and_then(|o| o["name"].as_str())
        .map(str::to_string)
}

/// POSTed pod: stored and "scheduled" onto its hostname selector's node (node-a
/// without one). When the state counts allocations, a pod whose devices do not fit
/// next to the node's pods stays Pending, Unschedulable, as kube-scheduler leaves it.
pub fn schedule(s: &mut FakeState, key: Key, mut pod: Value, manager: &str) -> Reply {
    let name = key.name.clone();
    let (uid, n) = s.next_uid();
    pod["metadata"]["uid"] = json!(uid);
    pod["metadata"]["namespace"] = json!(key.namespace);
    let node = pod["spec"]["nodeSelector"][HOSTNAME]
        .as_str()
        .unwrap_or("node-a")
        .to_string();
    let allocated: u64 = s
        .all(PODS, None)
        .iter()
        .filter(|p| p["spec"]["nodeName"] == node.as_str())
        .map(|p| dataplane_of(&s.tables, p))
        .sum();
    if s.count_allocations && allocated + dataplane_of(&s.tables, &pod) > 50 {
        pod["status"] = json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": format!("0/2 nodes are available: 1 Insufficient {DATAPLANE}.")}]});
        s.scheduled.push((name.clone(), "Unschedulable".into()));
    } else {
        pod["spec"]["nodeName"] = json!(node);
        match network_status_of(s, &pod, n) {
            Some(Err(why)) => {
                sandbox_event(s, &key, &uid, &why);
                pod["status"] = json!({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [{"name": "c", "ready": false,
                        "state": {"waiting": {"reason": "ContainerCreating", "message": why}}}]});
            }
            status => {
                pod["status"] = json!({"phase": "Running", "conditions": [
                    {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]});
                if let Some(Ok(status)) = status {
                    pod["metadata"]["annotations"][s.tables.network_status_annotation] =
                        json!(status);
                }
            }
        }
        s.scheduled.push((name.clone(), node));
    }
    Reply::Json(201, s.create(key, pod, manager))
}

/// The DaemonSet's pod on `node`: its template's labels and containers, owned by it.
fn daemon_pod(s: &mut FakeState, ds: &Value, node: &str) {
    let name = ds["metadata"]["name"].as_str().unwrap_or("ds");
    let ns = ds["metadata"]["namespace"].as_str().unwrap_or("default");
    let n = s.uids + 1;
    let pod_name = format!("{name}-{node}-{n}");
    let template = &ds["spec"]["template"];
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(node);
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": ns,
            "labels": template["metadata"]["labels"].clone(),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": name,
                "uid": ds["metadata"]["uid"].clone(), "controller": true}]},
        "spec": spec,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    s.create(
        Key::new(PODS, ns, &pod_name),
        pod,
        "kube-controller-manager",
    );
}

/// The DaemonSet controller after an apply: a pod on every node that has none, and
/// the rollout in the status (every pod scheduled, ready and up to date).
pub fn roll_out(s: &mut FakeState, key: &Key) {
    let Some(ds) = s.objects.get(key).cloned() else {
        return;
    };
    for node in NODES {
        let has = s.all(PODS, Some(&key.namespace)).iter().any(|p| {
            owner(p).as_deref() == Some(key.name.as_str()) && p["spec"]["nodeName"] == node
        });
        if !has {
            daemon_pod(s, &ds, node);
        }
    }
    let n = NODES.len();
    let generation = ds["metadata"]["generation"].as_i64().unwrap_or(1);
    if let Some(stored) = s.objects.get_mut(key) {
        stored["metadata"]["generation"] = json!(generation);
        stored["status"] = json!({"desiredNumberScheduled": n, "currentNumberScheduled": n,
            "updatedNumberScheduled": n, "numberReady": n, "numberAvailable": n,
            "numberMisscheduled": 0, "observedGeneration": generation});
    }
}

/// The garbage collector after a DaemonSet went: its pods go too.
pub fn collect_daemonset_pods(s: &mut FakeState, ds: &Value) {
    let name = ds["metadata"]["name"].as_str().unwrap_or("");
    let ns = ds["metadata"]["namespace"].as_str().unwrap_or("");
    s.objects.retain(|k, v| {
        !(k.resource == PODS && k.namespace == ns && owner(v).as_deref() == Some(name))
    });
}

/// A DaemonSet's pod deleted: replaced at once (new name and UID) while its
/// DaemonSet exists. `None`: an ordinary pod, for the caller to remove.
pub fn delete_pod(s: &mut FakeState, key: &Key, pod: &Value) -> Option<Reply> {
    let ds_name = owner(pod)?;
    s.objects.remove(key);
    let ds_key = Key::new(DAEMONSETS, &key.namespace, &ds_name);
    if s.objects.contains_key(&ds_key) {
        roll_out(s, &ds_key);
    }
    Some(Reply::Json(200, pod.clone()))
}
