//! KubeCluster against the mocked API server; kind command lines and component
//! manifests as insta snapshots. No cluster, no root, no network.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use super::command::{Cmd, CommandError, Runner};
use super::components::{self, ComponentError, ComponentOptions, Fetcher, MacvtapImpl};
use super::fake::ssa_apply as fake_apply;
use super::fake::*;
use super::kind::{Kind, KindOptions};
use super::mock::{MockApi, Recorded, Reply, list, not_found};
use super::{KubeCluster, KubeOptions};
use crate::cluster::{Cluster, ClusterError};
use crate::objects;

const RUN: &str = "r1";

fn pod(name: &str, uid: &str, phase: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": "11",
            "annotations": annotations, "labels": {"secnet.run": RUN}},
        "spec": {"nodeName": "node-b", "containers": [{"name": "c", "image": "busybox"}]},
        "status": {"phase": phase}})
}

/// Routes shared by every test: the node list (connect) and 404 for the rest.
fn base(r: &Recorded) -> Reply {
    match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/nodes") => list("NodeList", vec![node("node-b"), node("node-a")]),
        ("GET", "/api/v1/nodes/node-a") => Reply::Json(200, node("node-a")),
        _ => not_found(&r.path),
    }
}

async fn cluster(mock: &MockApi, timeout_ms: u64) -> KubeCluster {
    use crate::cluster::capability::Capability;
    let opts = KubeOptions {
        pod_timeout: Duration::from_millis(timeout_ms),
        // The mocked API server serves no exec, so no node probe pods: node access
        // is tested against the websocket fake (cluster/node_tests.rs).
        offer: Some(super::base_offer("existing").without([Capability::NodeAccess])),
        ..KubeOptions::default()
    };
    KubeCluster::connect(mock.client(), "existing", RUN, opts)
        .await
        .unwrap()
}

/// `cluster`, with its run namespace made (as `RealCluster::up` makes it).
async fn run_cluster(mock: &MockApi, timeout_ms: u64) -> KubeCluster {
    let c = cluster(mock, timeout_ms).await;
    c.create_run_namespace().await.unwrap();
    c
}

fn seed_fixture(name: &str) -> Vec<objects::Object> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/seed")
        .join(name);
    objects::load_file(&path).unwrap()
}

#[tokio::test]
async fn connect_lists_nodes_sorted() {
    let mock = MockApi::new(base);
    let c = cluster(&mock, 100).await;
    assert_eq!(c.nodes(), ["node-a", "node-b"]);
    assert_eq!(c.provider(), "existing");
}

#[tokio::test]
async fn apply_sends_server_side_apply_with_field_manager_and_run_label() {
    let mock = MockApi::new(|r| match r.method.as_str() {
        "PATCH" => Reply::Json(200, r.body.clone()),
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let mut objs = seed_fixture("macvtap-nad.yaml");
    objs.extend(seed_fixture("macvtap-daemonset.yaml"));
    c.apply(objs).await.unwrap();
    let patches: Vec<Recorded> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert!(patches.len() >= 2, "{patches:#?}");
    for p in &patches {
        assert!(p.query_has("fieldManager=secnet"), "{}", p.query);
        // Never forced: a field another manager owns is a conflict, not taken over.
        assert!(!p.query.contains("force"), "{}", p.query);
        assert_eq!(p.content_type, "application/apply-patch+yaml");
        assert_eq!(
            p.body["metadata"]["labels"]["secnet.run"], RUN,
            "{}",
            p.body
        );
    }
    assert!(
        patches.iter().any(|p| p.path.starts_with(
            "/apis/k8s.cni.cncf.io/v1/namespaces/secnet-r1/network-attachment-definitions/"
        )),
        "{patches:#?}"
    );
    insta::assert_yaml_snapshot!("apply_requests", patches);
}

#[tokio::test]
async fn apply_error_names_kind_and_object() {
    let mock = MockApi::new(|r| match r.method.as_str() {
        "PATCH" => Reply::Json(
            422,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "spec.config: Required value", "reason": "Invalid", "code": 422}),
        ),
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let err = c.apply(seed_fixture("macvtap-nad.yaml")).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("failed to apply NetworkAttachmentDefinition "),
        "{msg}"
    );
    assert!(msg.contains("spec.config: Required value"), "{msg}");
}

/// The kubelet's warning `reason` about pod p1 (uid-1).
fn p1_event(reason: &str, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("p1.{reason}"), "namespace": "secnet-r1"},
        "involvedObject": {"kind": "Pod", "name": "p1", "uid": "uid-1"},
        "type": "Warning", "reason": reason, "message": message})
}

/// The pod routes without events.
fn pod_routes(list_pod: Value, watch: Vec<Value>) -> impl Fn(&Recorded) -> Reply + Send + Sync {
    pod_routes_with(list_pod, watch, vec![])
}

/// The pod routes with `events` served (field selectors applied, as the API server).
fn pod_routes_with(
    list_pod: Value,
    watch: Vec<Value>,
    events: Vec<Value>,
) -> impl Fn(&Recorded) -> Reply + Send + Sync {
    move |r: &Recorded| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/v1/namespaces/secnet-r1/pods") => {
            let mut p = r.body.clone();
            p["metadata"]["uid"] = json!("uid-1");
            Reply::Json(201, p)
        }
        ("GET", "/api/v1/namespaces/secnet-r1/pods") if r.query_has("watch=true") => {
            Reply::WatchOpen(watch.clone())
        }
        ("GET", "/api/v1/namespaces/secnet-r1/pods") => list("PodList", vec![list_pod.clone()]),
        ("GET", "/api/v1/namespaces/secnet-r1/pods/p1") => Reply::Json(200, list_pod.clone()),
        ("GET", "/api/v1/namespaces/secnet-r1/pods/p1/log") => Reply::Json(
            400,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
                "reason": "BadRequest",
                "message": "container \"c\" in pod \"p1\" is waiting to start: ContainerCreating"}),
        ),
        ("GET", "/api/v1/namespaces/secnet-r1/events") => {
            list("EventList", selected(r, events.clone().into_iter()))
        }
        _ => base(r),
    }
}

fn test_pod(networks: bool) -> objects::Pod {
    let mut annotations = json!({});
    if networks {
        annotations = json!({"k8s.v1.cni.cncf.io/networks": "dataplane"});
    }
    serde_json::from_value(
        json!({"metadata": {"name": "p1", "annotations": annotations},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"limits": {"macvtap.network.kubevirt.io/dataplane": 1}}}]}}),
    )
    .unwrap()
}

#[tokio::test]
async fn create_pod_times_out_with_events_and_logs_in_the_error() {
    let pending = pod("p1", "uid-1", "Pending", json!({}));
    // A warning that is no sandbox failure: the wait goes on to its deadline.
    let mount = p1_event(
        "FailedMount",
        "MountVolume.SetUp failed: deviceID is required",
    );
    let mock = MockApi::new(pod_routes_with(pending, vec![], vec![mount]));
    let c = cluster(&mock, 300).await;
    let started = std::time::Instant::now();
    let err = c.create_pod(test_pod(true)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ClusterError::Timeout { what, state, .. } = &err else {
        panic!("not a timeout: {err}");
    };
    assert!(what.contains("network-status"), "{what}");
    assert!(state.contains("phase Pending"), "{state}");
    assert!(state.contains("FailedMount"), "{state}");
    assert!(state.contains("deviceID is required"), "{state}");
    assert!(state.contains("waiting to start"), "{state}");
    let reqs = mock.requests();
    let post = reqs.iter().find(|r| r.method == "POST").unwrap();
    assert!(post.query_has("fieldManager=secnet"), "{}", post.query);
    assert_eq!(post.body["metadata"]["labels"]["secnet.run"], RUN);
    let events = reqs.iter().find(|r| r.path.ends_with("/events")).unwrap();
    assert!(
        events.query.contains("involvedObject.uid%3Duid-1"),
        "{}",
        events.query
    );
}

#[tokio::test]
async fn create_pod_fails_at_the_first_sandbox_failure_with_the_cni_error() {
    let pending = pod("p1", "uid-1", "Pending", json!({}));
    let sandbox = p1_event(
        "FailedCreatePodSandBox",
        "plugin type=\"multus-shim\" failed (add): macvtap: deviceID is required",
    );
    let mock = MockApi::new(pod_routes_with(pending, vec![], vec![sandbox]));
    // A minute to wait: the kubelet's FailedCreatePodSandBox must end it at once.
    let c = cluster(&mock, 60_000).await;
    let started = std::time::Instant::now();
    let err = c.create_pod(test_pod(true)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    let ClusterError::PodStart { pod, node, message } = &err else {
        panic!("not a start failure: {err}");
    };
    assert_eq!((pod.as_str(), node.as_str()), ("secnet-r1/p1", "node-b"));
    assert!(
        message.starts_with("FailedCreatePodSandBox: plugin type=\"multus-shim\" failed (add): macvtap: deviceID is required"),
        "{message}"
    );
    assert!(message.contains("phase Pending"), "{message}");
    let asked = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/events") && r.query.contains("reason"))
        .expect("the sandbox failures are looked up");
    assert!(
        asked.query.contains("reason%3DFailedCreatePodSandBox")
            && asked.query.contains("involvedObject.uid%3Duid-1"),
        "{}",
        asked.query
    );
}

#[tokio::test]
async fn fake_api_server_pod_with_a_missing_nad_fails_at_once_naming_it() {
    let (mock, _state) = fake_api_server(false);
    let c = run_cluster(&mock, 60_000).await;
    let mut p = test_pod(true);
    p.metadata
        .annotations
        .insert("k8s.v1.cni.cncf.io/networks".into(), "dataplan".into());
    let started = std::time::Instant::now();
    let err = c.create_pod(p).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::PodStart { .. }), "{msg}");
    assert!(
        msg.contains(
            "cannot find a network-attachment-definition (dataplan) in namespace (secnet-r1)"
        ),
        "{msg}"
    );
}

#[tokio::test]
async fn create_pod_returns_once_running_with_network_status() {
    let status = r#"[{"name":"default/dataplane","interface":"net1","mac":"02:00:00:00:00:01"}]"#;
    let running = pod(
        "p1",
        "uid-1",
        "Running",
        json!({"k8s.v1.cni.cncf.io/network-status": status}),
    );
    let pending = pod("p1", "uid-1", "Pending", json!({}));
    // Pending in the list; Running with status arrives over the watch.
    let mock = MockApi::new(pod_routes(
        pending,
        vec![json!({"type": "MODIFIED", "object": running})],
    ));
    let c = cluster(&mock, 5000).await;
    let view = c.create_pod(test_pod(true)).await.unwrap();
    assert_eq!((view.node.as_str(), view.uid.as_str()), ("node-b", "uid-1"));
    assert_eq!(
        view.annotations["k8s.v1.cni.cncf.io/network-status"],
        status
    );
}

#[tokio::test]
async fn create_pod_reports_unschedulable() {
    let mut p = pod("p1", "uid-1", "Pending", json!({}));
    p["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable",
        "message": "0/2 nodes are available: 2 Insufficient macvtap.network.kubevirt.io/dataplane."}]);
    let mock = MockApi::new(pod_routes(p, vec![]));
    let c = cluster(&mock, 5000).await;
    match c.create_pod(test_pod(true)).await {
        Err(ClusterError::Unschedulable { message, .. }) => {
            assert!(message.contains("Insufficient macvtap.network.kubevirt.io/dataplane"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn delete_pod_uses_the_uid_and_waits_for_it_to_go() {
    let mock = MockApi::new(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/namespaces/secnet-r1/pods/p1") => {
            Reply::Json(200, pod("p1", "uid-1", "Running", json!({})))
        }
        ("DELETE", "/api/v1/namespaces/secnet-r1/pods/p1") => {
            Reply::Json(200, pod("p1", "uid-1", "Running", json!({})))
        }
        // A pod of the same name but another UID does not count as "still there".
        ("GET", "/api/v1/namespaces/secnet-r1/pods") if !r.query_has("watch=true") => {
            list("PodList", vec![pod("p1", "uid-2", "Pending", json!({}))])
        }
        ("GET", "/api/v1/namespaces/secnet-r1/pods") => Reply::WatchOpen(vec![]),
        _ => base(r),
    });
    let c = cluster(&mock, 5000).await;
    // The fixtures' `default` is the run's namespace, where `create_pod` put it.
    c.delete_pod("default", "p1").await.unwrap();
    let del = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .unwrap();
    assert_eq!(del.body["preconditions"]["uid"], "uid-1", "{}", del.body);

    let missing = MockApi::new(base);
    let c = cluster(&missing, 100).await;
    assert!(matches!(
        c.delete_pod("default", "p1").await,
        Err(ClusterError::NoSuchPod(_))
    ));
}

#[tokio::test]
async fn node_resources_parse_capacity_allocatable_and_allocated() {
    let mock = MockApi::new(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/pods") => {
            let mut a = pod("a", "u-a", "Running", json!({}));
            a["spec"]["containers"][0]["resources"] =
                json!({"limits": {"macvtap.network.kubevirt.io/dataplane": "1", "cpu": "100m"}});
            let mut b = a.clone();
            b["metadata"]["name"] = json!("b");
            list("PodList", vec![a, b])
        }
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let res = c.node_resources("node-a").await.unwrap();
    let key = "macvtap.network.kubevirt.io/dataplane";
    assert_eq!(res.capacity[key], 50);
    assert_eq!(res.allocatable[key], 50);
    assert_eq!(res.allocated[key], 2);
    assert_eq!(res.capacity["memory"], 8 << 30);
    assert_eq!(res.allocatable["cpu"], 2); // 1500m rounds up
    assert!(!res.allocated.contains_key("cpu"));
    let pods_q = mock
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v1/pods")
        .unwrap()
        .query;
    assert!(pods_q.contains("spec.nodeName%3Dnode-a"), "{pods_q}");
    assert!(matches!(
        c.node_resources("node-x").await,
        Err(ClusterError::NoSuchNode(_))
    ));
}

#[tokio::test]
async fn teardown_deletes_by_run_label_only() {
    let mock = MockApi::new(|r| match (r.method.as_str(), r.path.as_str()) {
        ("PATCH", _) => Reply::Json(200, r.body.clone()),
        ("GET", "/api/v1/namespaces/secnet-r1/configmaps") => {
            assert!(r.query_has("labelSelector=secnet.run%3Dr1"), "{}", r.query);
            // Ours, plus one without our label (as if the server ignored the selector).
            list(
                "ConfigMapList",
                vec![
                    json!({"metadata": {"name": "ours", "namespace": "secnet-r1", "uid": "u-ours",
                        "labels": {"secnet.run": RUN}}}),
                    json!({"metadata": {"name": "theirs", "namespace": "secnet-r1", "uid": "u-theirs",
                        "labels": {"secnet.run": "other"}}}),
                ],
            )
        }
        ("DELETE", _) => Reply::Json(
            200,
            json!({"kind": "Status", "apiVersion": "v1",
            "status": "Success", "code": 200, "metadata": {}}),
        ),
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let cm: objects::Object = objects::load_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ours}\ndata: {a: b}\n",
        "t",
    )
    .unwrap()
    .remove(0);
    c.apply(vec![cm]).await.unwrap();
    let report = c.teardown().await;
    assert_eq!(report.deleted, ["ConfigMap secnet-r1/ours"]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let deletes: Vec<Recorded> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].path,
        "/api/v1/namespaces/secnet-r1/configmaps/ours"
    );
    assert_eq!(deletes[0].body["preconditions"]["uid"], "u-ours");
}

#[tokio::test]
async fn apply_onto_an_object_the_run_did_not_make_is_refused_naming_its_manager() {
    let (mock, state) = fake_api_server(true);
    let c = run_cluster(&mock, 1000).await;
    // Someone else's ConfigMap in the run namespace (same kind and name).
    state.lock().unwrap().create(
        Key::new("v1/configmaps", RUN_NS, "preexisting"),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "preexisting"}, "data": {"a": "theirs"}}),
        "helm",
    );
    let cm = objects::load_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: preexisting}\ndata: {a: b}\n",
        "t",
    )
    .unwrap();
    let err = c.apply(cm).await.unwrap_err().to_string();
    assert!(
        err.starts_with("failed to apply ConfigMap secnet-r1/preexisting: exists already and was not made by this run (managed by helm); secnet never overwrites it"),
        "{err}"
    );
    assert!(!mock.requests().iter().any(|r| r.method == "PATCH"));
    let stored = state
        .lock()
        .unwrap()
        .get("v1/configmaps", RUN_NS, "preexisting")
        .cloned()
        .unwrap();
    assert_eq!(stored["data"]["a"], "theirs");
    // Nothing was recorded as this run's: teardown deletes nothing.
    let report = c.teardown().await;
    assert!(
        report.deleted.is_empty() && report.errors.is_empty(),
        "{report:?}"
    );
    assert!(!mock.requests().iter().any(|r| r.method == "DELETE"));
}

#[tokio::test]
async fn a_field_another_manager_owns_is_a_conflict_never_forced() {
    let (mock, state) = fake_api_server(true);
    let c = run_cluster(&mock, 1000).await;
    let cm = |value: &str| {
        objects::load_str(
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: shared}}\ndata: {{a: {value}}}\n"),
            "t",
        )
        .unwrap()
    };
    c.apply(cm("one")).await.unwrap();
    // A user takes the field over with a forced apply of their own (kubectl edit).
    let key = Key::new("v1/configmaps", RUN_NS, "shared");
    {
        let mut s = state.lock().unwrap();
        let stored = s.objects[&key].clone();
        let mut theirs = stored.clone();
        theirs["data"]["a"] = json!("edited");
        theirs["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        let obj = fake_apply(Some(&stored), &theirs, "kubectl-edit", true).unwrap();
        s.objects.insert(key.clone(), obj);
    }
    let err = c.apply(cm("two")).await.unwrap_err().to_string();
    assert!(
        err.contains("another field manager owns fields this apply sets, and secnet never forces")
            && err.contains("conflict with \"kubectl-edit\" using v1: .data.a"),
        "{err}"
    );
    let patches: Vec<Recorded> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2, "tried once, never retried with force");
    assert!(patches.iter().all(|p| !p.query.contains("force")));
    assert_eq!(state.lock().unwrap().objects[&key]["data"]["a"], "edited");
}

#[tokio::test]
async fn the_run_namespace_is_labelled_never_taken_over_and_waited_for_on_delete() {
    let (mock, state) = fake_api_server(true);
    let c = run_cluster(&mock, 2000).await;
    {
        let s = state.lock().unwrap();
        let ns = s.get(NAMESPACES, "", RUN_NS).unwrap();
        assert_eq!(ns["metadata"]["labels"]["secnet.run"], RUN);
        assert_eq!(
            ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "privileged"
        );
    }
    // Made again by the same run: fine. Someone else's of that name: refused.
    c.create_run_namespace().await.unwrap();
    let other = KubeCluster::connect(mock.client(), "existing", "r2", KubeOptions::default())
        .await
        .unwrap();
    state.lock().unwrap().create(
        Key::new(NAMESPACES, "", "secnet-r2"),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "secnet-r2"}}),
        "kubectl",
    );
    let err = other.create_run_namespace().await.unwrap_err().to_string();
    assert!(
        err.starts_with("failed to apply Namespace secnet-r2: exists already and is not this run's (secnet.run=<none>)"),
        "{err}"
    );
    assert!(
        other
            .delete_run_namespace()
            .await
            .unwrap_err()
            .contains("does not carry secnet.run=r2")
    );
    // A scenario object in it goes with it; the delete returns once the namespace is gone.
    c.apply(seed_fixture("macvtap-nad.yaml")).await.unwrap();
    c.delete_run_namespace().await.unwrap();
    let s = state.lock().unwrap();
    assert!(s.get(NAMESPACES, "", RUN_NS).is_none());
    assert!(s.names(NADS, RUN_NS).is_empty());
    let reqs = mock.requests();
    let ns_path = format!("/api/v1/namespaces/{RUN_NS}");
    let delete = reqs
        .iter()
        .position(|r| r.method == "DELETE" && r.path == ns_path)
        .unwrap();
    assert!(reqs[delete].body["preconditions"]["uid"].is_string());
    let looks = reqs[delete..]
        .iter()
        .filter(|r| r.method == "GET" && r.path == ns_path)
        .count();
    assert!(looks >= 2, "looked until gone (Terminating first): {looks}");
    assert!(
        s.get(NAMESPACES, "", "secnet-r2").is_some(),
        "someone else's stays"
    );
}

#[tokio::test]
async fn existing_provider_reads_the_kubeconfig_context_from_flags() {
    let dir = std::env::temp_dir().join(format!("secnet-kubeconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
         clusters:\n- name: ca\n  cluster: {server: 'https://a.example:6443'}\n\
         - name: cb\n  cluster: {server: 'https://b.example:6443'}\n\
         users:\n- name: u\n  user: {token: t}\n\
         contexts:\n- name: a\n  context: {cluster: ca, user: u}\n\
         - name: b\n  context: {cluster: cb, user: u, namespace: lab}\n",
    )
    .unwrap();
    let mut opts = super::existing::ExistingOptions {
        kubeconfig: Some(path.clone()),
        context: None,
    };
    let cfg = super::existing::config(&opts).await.unwrap();
    assert_eq!(cfg.cluster_url.host(), Some("a.example"));
    opts.context = Some("b".into());
    let cfg = super::existing::config(&opts).await.unwrap();
    assert_eq!(cfg.cluster_url.host(), Some("b.example"));
    assert_eq!(cfg.default_namespace, "lab");
    opts.context = Some("nope".into());
    let err = super::existing::config(&opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn diagnostics_carry_events_and_logs_of_run_pods() {
    let mock = MockApi::new(|r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/pods") => list("PodList", vec![pod("p1", "uid-1", "Running", json!({}))]),
        ("GET", "/api/v1/namespaces/default/pods/p1/log") => {
            Reply::Text(200, "hello from c\n".into())
        }
        ("GET", "/api/v1/namespaces/default/events") => list("EventList", vec![]),
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let d = c.diagnostics().await;
    assert!(d.contains("=== pod default/p1: phase Running"), "{d}");
    assert!(d.contains("hello from c"), "{d}");
    assert!(d.contains("(no events)"), "{d}");
}

/// Records the command lines; answers `kind get nodes` and `kind get kubeconfig`.
struct Recording {
    cmds: RefCell<Vec<String>>,
    fail_on: Option<&'static str>,
}

impl Runner for Recording {
    fn run(&self, cmd: &Cmd) -> Result<String, CommandError> {
        let line = cmd.to_string();
        self.cmds.borrow_mut().push(line.clone());
        if self.fail_on.is_some_and(|f| line.contains(f)) {
            return Err(CommandError::Failed {
                cmdline: line,
                status: "exit status: 1".into(),
                stdout: String::new(),
                stderr: String::new(),
            });
        }
        Ok(match cmd.args.get(..2) {
            Some([a, b]) if a == "get" && b == "nodes" => {
                "secnet-r1-control-plane\nsecnet-r1-worker\n".into()
            }
            Some([a, b]) if a == "get" && b == "kubeconfig" => {
                "apiVersion: v1\nkind: Config\n".into()
            }
            _ => String::new(),
        })
    }
}

#[test]
fn kind_command_lines() {
    let kind = Kind::new(
        KindOptions::new(RUN),
        Recording {
            cmds: RefCell::default(),
            fail_on: None,
        },
    );
    let kubeconfig = kind.up().unwrap();
    assert!(kubeconfig.contains("kind: Config"));
    let notes = kind.down(true);
    assert!(notes[0].contains("exported"), "{notes:?}");
    insta::assert_yaml_snapshot!(
        "kind_up_then_failed_down",
        kind.runner.cmds.borrow().clone()
    );

    let mut keep = KindOptions::new(RUN);
    keep.keep = true;
    keep.node_image = Some("kindest/node:v1.34.0".into());
    // podman's command lines: kind_tests.rs.
    let kind = Kind::new(
        keep,
        Recording {
            cmds: RefCell::default(),
            fail_on: Some("docker-image"),
        },
    );
    let err = kind.up().unwrap_err().to_string();
    assert!(err.contains("docker-image"), "{err}");
    assert!(err.contains("kept cluster secnet-r1"), "{err}");
    insta::assert_yaml_snapshot!("kind_failed_load_kept", kind.runner.cmds.borrow().clone());
}

#[test]
fn a_reused_kind_cluster_is_prepared_but_never_created_or_deleted() {
    let mut opts = KindOptions::new(RUN);
    opts.reuse = Some("dev".into());
    let kind = Kind::new(
        opts,
        Recording {
            cmds: RefCell::default(),
            fail_on: None,
        },
    );
    assert_eq!(kind.cluster_name(), "dev");
    kind.up().unwrap();
    let notes = kind.down(true);
    let cmds = kind.runner.cmds.borrow().clone();
    assert!(
        cmds.iter()
            .all(|c| !c.contains(" create ") && !c.contains(" delete ")),
        "{cmds:#?}"
    );
    // The lower device may be there from an earlier run: added only when missing.
    assert!(
        cmds.contains(&"docker exec secnet-r1-worker sh -c 'ip link show dev ens33 >/dev/null 2>&1 || ip link add ens33 link eth0 type macvlan mode bridge'".to_string()),
        "{cmds:#?}"
    );
    assert!(
        cmds.contains(
            &"kind load docker-image localhost/secnet-plugins:dev --name dev".to_string()
        )
    );
    assert!(cmds.contains(&"kind export logs reports/kind-logs-r1 --name dev".to_string()));
    assert!(
        notes.iter().any(|n| n.contains("reused cluster dev")),
        "{notes:?}"
    );
}

#[test]
fn kind_config_mounts_host_dev_into_every_node() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("clusters/kind-2node.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let cfg: Value = serde_saphyr::from_str(&text).unwrap();
    let nodes = cfg["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        let mounts = n["extraMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["hostPath"] == "/dev" && m["containerPath"] == "/dev"),
            "{n}"
        );
    }
}

/// Stands in for the network: a small manifest naming the URL; counts calls.
struct FakeFetcher {
    calls: RefCell<Vec<String>>,
}

impl Fetcher for FakeFetcher {
    fn fetch(&self, url: &str) -> Result<String, ComponentError> {
        self.calls.borrow_mut().push(url.to_string());
        Ok(format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fetched\n  namespace: upstream\n  annotations:\n    secnet/fetched-from: \"{url}\"\n"
        ))
    }
}

fn fixtures_components() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/components")
}

#[test]
fn component_sets_render() {
    for (label, opts) in [
        ("secnet", ComponentOptions::default()),
        (
            "upstream-kvm",
            ComponentOptions {
                macvtap: MacvtapImpl::Upstream,
                kvm: true,
                ..ComponentOptions::default()
            },
        ),
    ] {
        let fetcher = FakeFetcher {
            calls: RefCell::default(),
        };
        let mut rendered = Vec::new();
        for set in components::sets(&opts) {
            let docs = components::render(&set, &fixtures_components(), &fetcher).unwrap();
            // Every document is something the apply path can place.
            for d in &docs {
                let av = d["apiVersion"].as_str().unwrap();
                let kind = d["kind"].as_str().unwrap();
                assert!(
                    super::apply::known_placement(av, kind).is_some(),
                    "{av} {kind}"
                );
            }
            rendered.push(json!({"set": set.name, "version": set.version,
                "sources": set.sources, "documents": docs}));
        }
        insta::assert_yaml_snapshot!(format!("components_{label}"), rendered);
        assert!(
            fetcher
                .calls
                .borrow()
                .iter()
                .all(|u| u.starts_with("https://"))
        );
    }
}

#[tokio::test]
async fn install_applies_every_document_of_a_set() {
    let mock = MockApi::new(|r| match r.method.as_str() {
        "PATCH" => Reply::Json(200, r.body.clone()),
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let set = components::sets(&ComponentOptions::default())
        .into_iter()
        .find(|s| s.name == components::Component::Macvtap)
        .unwrap();
    let fetcher = FakeFetcher {
        calls: RefCell::default(),
    };
    let docs = components::render(&set, &fixtures_components(), &fetcher).unwrap();
    let n = components::apply_rendered(&c, &set, docs, |_| false)
        .await
        .unwrap();
    let paths: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.path)
        .collect();
    assert_eq!(n, 2);
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/kube-system/configmaps/macvtap-deviceplugin-config",
            "/apis/apps/v1/namespaces/kube-system/daemonsets/secnet-macvtap"
        ]
    );
    assert!(fetcher.calls.borrow().is_empty());
}

#[test]
fn placeholders_must_all_be_known() {
    let vars = [("A".to_string(), "1".to_string())].into();
    assert_eq!(components::substitute("x ${A} y", &vars).unwrap(), "x 1 y");
    assert_eq!(
        components::substitute("${B}", &vars),
        Err(components::SubstituteError::Unknown("B".into()))
    );
    assert_eq!(
        components::substitute("${B", &vars)
            .unwrap_err()
            .to_string(),
        "unterminated ${ (a placeholder is ${NAME})"
    );
}

#[test]
fn cached_fetcher_reads_the_cache_and_fetches_once() {
    let dir = std::env::temp_dir().join(format!("secnet-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cached = components::CachedFetcher {
        dir: dir.clone(),
        inner: FakeFetcher {
            calls: RefCell::default(),
        },
    };
    let url = "https://example.invalid/v1/a.yaml";
    let first = cached.fetch(url).unwrap();
    let second = cached.fetch(url).unwrap();
    assert_eq!(first, second);
    assert_eq!(cached.inner.calls.borrow().len(), 1);
    assert!(dir.join(components::cache_name(url)).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn ok_status() -> Reply {
    Reply::Json(
        200,
        json!({"kind": "Status", "apiVersion": "v1",
            "status": "Success", "code": 200, "metadata": {}}),
    )
}

/// An object of any kind with `labels` (no label at all for `null`).
fn labelled(name: &str, namespace: Option<&str>, uid: &str, labels: Value) -> Value {
    let mut meta = json!({"name": name, "uid": uid});
    if let Some(ns) = namespace {
        meta["namespace"] = json!(ns);
    }
    if !labels.is_null() {
        meta["labels"] = labels;
    }
    json!({"metadata": meta})
}

/// What the sweep tests' API server holds: two runs' objects, one pod without the
/// label (as if the server ignored the selector), daemonsets failing with a 500 and
/// every other kind not served (404).
fn sweep_routes(r: &Recorded) -> Reply {
    match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/pods") => list(
            "PodList",
            vec![
                labelled(
                    "p1",
                    Some("default"),
                    "u-p1",
                    json!({"secnet.run": "sn1a2b3c"}),
                ),
                labelled("theirs", Some("default"), "u-theirs", json!({"app": "x"})),
                labelled("bare", Some("default"), "u-bare", Value::Null),
            ],
        ),
        ("GET", "/api/v1/configmaps") => list(
            "ConfigMapList",
            vec![labelled(
                "c1",
                Some("kube-system"),
                "u-c1",
                json!({"secnet.run": "sn000001", "secnet.scope": "s2"}),
            )],
        ),
        ("GET", "/api/v1/namespaces") => list(
            "NamespaceList",
            vec![labelled(
                "sn1a2b3c-lab",
                None,
                "u-ns",
                json!({"secnet.run": "sn1a2b3c"}),
            )],
        ),
        ("GET", "/apis/apps/v1/daemonsets") => Reply::Json(
            500,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500}),
        ),
        ("DELETE", _) => ok_status(),
        _ => not_found(&r.path),
    }
}

#[tokio::test]
async fn sweep_deletes_every_labelled_object_by_uid_and_counts_per_run() {
    let mock = MockApi::new(sweep_routes);
    let swept = super::sweep::sweep_runs(&mock.client(), None).await;
    let reqs = mock.requests();
    // A deleted namespace is looked at until it is gone; the rest are lists.
    let (waits, lists): (Vec<&Recorded>, Vec<&Recorded>) = reqs
        .iter()
        .filter(|r| r.method == "GET")
        .partition(|r| r.path.starts_with("/api/v1/namespaces/"));
    assert_eq!(
        waits.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/api/v1/namespaces/sn1a2b3c-lab"]
    );
    assert_eq!(lists.len(), super::apply::known_placements().count());
    for l in &lists {
        assert!(l.query_has("labelSelector=secnet.run"), "{}", l.query);
    }
    // Across all namespaces, one list per known kind; KubeVirt's 404 is nothing.
    assert!(
        lists
            .iter()
            .any(|l| l.path == "/apis/kubevirt.io/v1/virtualmachines")
    );
    let deletes: Vec<(&str, &Value)> = reqs
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| (r.path.as_str(), &r.body["preconditions"]["uid"]))
        .collect();
    assert_eq!(
        deletes,
        [
            ("/api/v1/namespaces/default/pods/p1", &json!("u-p1")),
            (
                "/api/v1/namespaces/kube-system/configmaps/c1",
                &json!("u-c1")
            ),
            ("/api/v1/namespaces/sn1a2b3c-lab", &json!("u-ns")),
        ]
    );
    assert_eq!(
        swept.report.deleted,
        [
            "Pod default/p1 (secnet.run=sn1a2b3c)",
            "ConfigMap kube-system/c1 (secnet.run=sn000001)",
            "Namespace sn1a2b3c-lab (secnet.run=sn1a2b3c)",
        ]
    );
    assert_eq!(
        swept.per_run,
        [("sn000001".to_string(), 1), ("sn1a2b3c".to_string(), 2)].into()
    );
    assert_eq!(swept.report.errors.len(), 1, "{:?}", swept.report.errors);
    let err = &swept.report.errors[0];
    assert!(err.starts_with("failed to list daemonsets: "), "{err}");
    assert!(
        err.contains("(500)") && err.contains("request timed out"),
        "{err}"
    );
}

/// `secnet clean --cluster existing` on the fake API server: a run's namespace (with
/// what is in it) and its labelled objects go; objects of the same kind and name that
/// carry no run label, in other namespaces, stay exactly as they were.
#[tokio::test]
async fn clean_removes_labelled_objects_and_run_namespaces_never_foreign_ones_of_the_same_name() {
    use super::sweep;
    let (mock, state) = fake_api_server(true);
    let doc = |kind: &str, api: &str, name: &str, labels: Value| json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "labels": labels}});
    let run = |id: &str| json!({"secnet.run": id});
    let foreign = [
        Key::new(NADS, "default", "dataplane"),
        Key::new("v1/configmaps", "default", "macvtap-deviceplugin-config"),
        Key::new(DAEMONSETS, PLUGIN_NS, PLUGIN_DS),
    ];
    {
        let mut s = state.lock().unwrap();
        let ns = "secnet-sn0000ee";
        s.create(
            Key::new(NAMESPACES, "", ns),
            doc("Namespace", "v1", ns, run("sn0000ee")),
            "secnet",
        );
        let nad = "k8s.cni.cncf.io/v1";
        s.create(
            Key::new(NADS, ns, "dataplane"),
            doc(
                "NetworkAttachmentDefinition",
                nad,
                "dataplane",
                run("sn0000ee"),
            ),
            "secnet",
        );
        // Unlabelled, but inside the run's namespace: goes with it.
        s.create(
            Key::new("v1/configmaps", ns, "made-by-a-controller"),
            doc("ConfigMap", "v1", "made-by-a-controller", json!({})),
            "kube-controller-manager",
        );
        s.create(
            Key::new(
                "v1/configmaps",
                "kube-system",
                "macvtap-deviceplugin-config",
            ),
            doc(
                "ConfigMap",
                "v1",
                "macvtap-deviceplugin-config",
                run("sn0000ee"),
            ),
            "secnet",
        );
        s.create(
            Key::new("rbac.authorization.k8s.io/v1/clusterroles", "", "secnet-ff"),
            doc(
                "ClusterRole",
                "rbac.authorization.k8s.io/v1",
                "secnet-ff",
                run("sn0000ff"),
            ),
            "secnet",
        );
        s.create(
            foreign[0].clone(),
            doc(
                "NetworkAttachmentDefinition",
                nad,
                "dataplane",
                json!({"app": "lab"}),
            ),
            "kubectl",
        );
        s.create(
            foreign[1].clone(),
            doc("ConfigMap", "v1", "macvtap-deviceplugin-config", json!({})),
            "kubectl",
        );
    }
    let kept =
        |s: &FakeState| -> Vec<Value> { foreign.iter().map(|k| s.objects[k].clone()).collect() };
    let before = kept(&state.lock().unwrap());
    let client = mock.client();
    let one = sweep::sweep_runs_waiting(&client, Some("sn0000ee"), Duration::from_secs(5)).await;
    assert!(one.report.errors.is_empty(), "{:?}", one.report.errors);
    let mut deleted = one.report.deleted.clone();
    deleted.sort();
    assert_eq!(
        deleted,
        [
            "ConfigMap kube-system/macvtap-deviceplugin-config (secnet.run=sn0000ee)",
            "Namespace secnet-sn0000ee (secnet.run=sn0000ee)",
            "NetworkAttachmentDefinition secnet-sn0000ee/dataplane (secnet.run=sn0000ee)",
        ]
    );
    {
        let s = state.lock().unwrap();
        assert!(
            s.labelled(Some("sn0000ee")).is_empty(),
            "{:?}",
            s.labelled(None)
        );
        assert!(
            s.get(NAMESPACES, "", "secnet-sn0000ee").is_none(),
            "waited until gone"
        );
        assert!(s.names("v1/configmaps", "secnet-sn0000ee").is_empty());
        assert_eq!(
            s.labelled(None),
            ["rbac.authorization.k8s.io/v1/clusterroles /secnet-ff"]
        );
        assert_eq!(kept(&s), before, "foreign objects untouched");
    }
    let all = sweep::sweep_runs_waiting(&client, None, Duration::from_secs(5)).await;
    assert_eq!(
        all.report.deleted,
        ["ClusterRole secnet-ff (secnet.run=sn0000ff)"]
    );
    let s = state.lock().unwrap();
    assert!(s.labelled(None).is_empty());
    assert_eq!(kept(&s), before, "foreign objects untouched");
    assert_eq!(s.plugin_pods().len(), 2);
}

#[tokio::test]
async fn sweep_of_one_run_selects_and_checks_its_id() {
    // The server answers every list with both runs' objects, as if it ignored the
    // selector: only sn1a2b3c's are deleted.
    let mock = MockApi::new(sweep_routes);
    let report = super::sweep::sweep(&mock.client(), Some("sn1a2b3c")).await;
    let reqs = mock.requests();
    let lists = reqs
        .iter()
        .filter(|r| r.method == "GET" && !r.path.starts_with("/api/v1/namespaces/"));
    for l in lists {
        assert!(
            l.query_has("labelSelector=secnet.run%3Dsn1a2b3c"),
            "{}",
            l.query
        );
    }
    let deleted: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        deleted,
        [
            "/api/v1/namespaces/default/pods/p1",
            "/api/v1/namespaces/sn1a2b3c-lab"
        ]
    );
    assert_eq!(report.deleted.len(), 2);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
}

#[tokio::test]
async fn sweep_reports_a_failed_delete_and_goes_on() {
    let mock = MockApi::new(|r| match (r.method.as_str(), r.path.as_str()) {
        ("DELETE", "/api/v1/namespaces/default/pods/p1") => Reply::Json(
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
                "reason": "Conflict",
                "message": "Precondition failed: UID in precondition: u-p1, UID in object meta: u-new"}),
        ),
        ("GET", "/apis/apps/v1/daemonsets") => list("DaemonSetList", vec![]),
        _ => sweep_routes(r),
    });
    let report = super::sweep::sweep(&mock.client(), None).await;
    assert_eq!(
        report.errors,
        [
            "failed to delete Pod default/p1: Conflict (409): Precondition failed: UID in precondition: u-p1, UID in object meta: u-new"
        ]
    );
    assert_eq!(report.deleted.len(), 2, "{:?}", report.deleted);
}

#[test]
fn sweep_order_puts_pods_first_and_crds_then_namespaces_last() {
    let kinds: Vec<String> = super::sweep::order()
        .into_iter()
        .map(|p| p.resource.kind)
        .collect();
    assert_eq!(kinds.len(), super::apply::known_placements().count());
    assert_eq!(kinds[0], "Pod");
    assert_eq!(kinds[1], "NetworkAddonsConfig");
    assert_eq!(
        kinds[kinds.len() - 2..],
        ["CustomResourceDefinition", "Namespace"]
    );
}

#[test]
fn run_ids_and_kind_cluster_names() {
    use super::sweep::{is_run_id, kind_clusters};
    assert!(is_run_id("sn1a2b3c") && is_run_id("snABCDEF"));
    for not in [
        "sn1a2b3",
        "sn1a2b3cd",
        "xx1a2b3c",
        "sn1a2b3g",
        "",
        "sné2b3c",
    ] {
        assert!(!is_run_id(not), "{not}");
    }
    let listing =
        "kind\nsecnet-sn1a2b3c\nsecnet-other\nmycluster\nsecnet-sn00ff00\nsecnet-sn1a2b3c-x\n";
    assert_eq!(
        kind_clusters(listing, None),
        ["secnet-sn1a2b3c", "secnet-sn00ff00"]
    );
    assert_eq!(
        kind_clusters(listing, Some("sn00ff00")),
        ["secnet-sn00ff00"]
    );
    assert!(kind_clusters(listing, Some("sn999999")).is_empty());
}

/// `Recording`, answering `kind get clusters` with a fixed listing.
struct Listing {
    inner: Recording,
    clusters: &'static str,
}

impl Runner for Listing {
    fn run(&self, cmd: &Cmd) -> Result<String, CommandError> {
        let out = self.inner.run(cmd)?;
        Ok(match cmd.args.get(..2) {
            Some([a, b]) if a == "get" && b == "clusters" => self.clusters.to_string(),
            _ => out,
        })
    }
}

#[test]
fn kind_sweep_deletes_only_secnet_clusters() {
    let runner = Listing {
        inner: Recording {
            cmds: RefCell::default(),
            fail_on: Some("secnet-sn00ff00"),
        },
        clusters: "kind\nsecnet-sn1a2b3c\nsecnet-other\nmycluster\nsecnet-sn00ff00\n",
    };
    let report = super::sweep::sweep_kind(&runner, "kind", None);
    assert_eq!(report.deleted, ["kind cluster secnet-sn1a2b3c"]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].starts_with("failed to delete kind cluster secnet-sn00ff00: "),
        "{:?}",
        report.errors
    );
    // The same command line the kind provider's own teardown runs.
    let expected = Kind::new(
        KindOptions::new("sn1a2b3c"),
        Recording {
            cmds: RefCell::default(),
            fail_on: None,
        },
    )
    .delete_cmd()
    .to_string();
    assert_eq!(
        *runner.inner.cmds.borrow(),
        [
            "kind get clusters",
            expected.as_str(),
            "kind delete cluster --name secnet-sn00ff00"
        ]
    );

    let runner = Listing {
        inner: Recording {
            cmds: RefCell::default(),
            fail_on: None,
        },
        clusters: "kind\nsecnet-sn1a2b3c\nsecnet-sn00ff00\n",
    };
    let report = super::sweep::sweep_kind(&runner, "kind", Some("sn00ff00"));
    assert_eq!(report.deleted, ["kind cluster secnet-sn00ff00"]);
    assert!(report.errors.is_empty());

    let runner = Recording {
        cmds: RefCell::default(),
        fail_on: Some("get clusters"),
    };
    let report = super::sweep::sweep_kind(&runner, "kind", None);
    assert!(report.deleted.is_empty());
    assert!(
        report.errors[0].starts_with("failed to list kind clusters: "),
        "{:?}",
        report.errors
    );
    assert_eq!(runner.cmds.borrow().len(), 1);
}

/// `secnet clean` spares what `spare` calls alive: sn1a2b3c here.
fn spare_sn1a2b3c(id: &str) -> Option<crate::lab::liveness::LiveRun> {
    (id == "sn1a2b3c").then(|| crate::lab::liveness::LiveRun {
        run_id: id.to_string(),
        holder: "pid 42 secnet".into(),
    })
}

#[test]
fn kind_sweep_leaves_the_cluster_of_a_live_run_and_names_it() {
    let runner = Listing {
        inner: Recording {
            cmds: RefCell::default(),
            fail_on: None,
        },
        clusters: "secnet-sn1a2b3c\nsecnet-sn00ff00\n",
    };
    let swept = super::sweep::sweep_kind_sparing(&runner, "kind", None, &spare_sn1a2b3c);
    assert_eq!(swept.report.deleted, ["kind cluster secnet-sn00ff00"]);
    assert_eq!(swept.skipped, [spare_sn1a2b3c("sn1a2b3c").unwrap()]);
    assert!(
        !runner
            .inner
            .cmds
            .borrow()
            .iter()
            .any(|c| c.contains("secnet-sn1a2b3c")),
        "{:?}",
        runner.inner.cmds.borrow()
    );
}

#[tokio::test]
async fn existing_sweep_leaves_the_objects_of_a_live_run_and_names_it() {
    // Both runs' objects are listed; sn1a2b3c is alive: nothing of it is deleted.
    let mock = MockApi::new(sweep_routes);
    let swept = super::sweep::sweep_runs_sparing(
        &mock.client(),
        None,
        Duration::from_secs(5),
        &spare_sn1a2b3c,
    )
    .await;
    assert_eq!(swept.skipped, [spare_sn1a2b3c("sn1a2b3c").unwrap()]);
    assert!(
        swept.report.deleted.iter().all(|d| !d.contains("sn1a2b3c")),
        "{:?}",
        swept.report.deleted
    );
    assert!(
        !swept.report.deleted.is_empty(),
        "the dead run's objects go"
    );
    assert!(!swept.per_run.contains_key("sn1a2b3c"));
}

#[test]
fn clean_kind_says_how_to_go_on_without_the_binary() {
    // A kind binary that cannot exist: the check runs whether or not kind is installed.
    let err = super::sweep::clean_kind("secnet-no-such-kind", Some("sn1a2b3c"), false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "secnet-no-such-kind not found on PATH; install kind or use --cluster existing --context kind-secnet-sn1a2b3c"
    );
}

// ---------------------------------------------------------------------------
// Portable seed scenarios on the kube provider, against a fake API server + scheduler.
// ---------------------------------------------------------------------------

/// A scenario's `Ctx` and the kube provider over the run's cluster, as `secnet
/// conform --cluster existing` builds them.
fn kube_ctx(cluster: KubeCluster) -> (crate::scenario::Ctx, crate::conform::kube::KubeProvider) {
    let mut opts = crate::conform::Options::bundled();
    opts.cluster = crate::cluster::provider::Provider::Existing;
    let mut ctx = crate::conform::context(&opts, RUN);
    ctx.scope = SCOPE.into();
    (ctx, crate::conform::kube::KubeProvider::on(&opts, cluster))
}

async fn run_scenario(mock: &MockApi, name: &str) -> crate::scenario::Outcome {
    run_scenario_observed(mock, name).await.0
}

/// The outcome and what the scenario recorded for the report.
async fn run_scenario_observed(
    mock: &MockApi,
    name: &str,
) -> (crate::scenario::Outcome, crate::observe::Observations) {
    let (ctx, provider) = kube_ctx(run_cluster(mock, 5000).await);
    let scenario = crate::scenario::all()
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name:?}"));
    assert!(
        scenario.portable_on(&super::base_offer("existing")),
        "{name} is not portable"
    );
    let outcome = crate::scenario::runner::run(scenario, &ctx, &provider).await;
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
    (outcome, ctx.observed.take())
}

/// What every scenario on the real cluster must leave behind: nothing of its scope.
fn assert_scoped_and_torn_down(mock: &MockApi, state: &std::sync::Mutex<FakeState>) {
    let reqs = mock.requests();
    let nad = format!("{NAD_PATH}/dataplane");
    let patch = reqs
        .iter()
        .find(|r| r.method == "PATCH" && r.path == nad)
        .expect("the seed's NAD is applied");
    assert_eq!(patch.body["metadata"]["labels"]["secnet.run"], RUN);
    assert_eq!(patch.body["metadata"]["labels"]["secnet.scope"], SCOPE);
    let delete = reqs
        .iter()
        .find(|r| r.method == "DELETE" && r.path == nad)
        .expect("teardown deletes the NAD");
    assert!(
        delete.body["preconditions"]["uid"]
            .as_str()
            .is_some_and(|u| u.starts_with("uid-")),
        "{}",
        delete.body
    );
    // Teardown and the wait for pods select by run and scope.
    let selector = format!("labelSelector=secnet.run%3D{RUN}%2Csecnet.scope%3D{SCOPE}");
    assert!(
        reqs.iter()
            .any(|r| r.method == "GET" && r.path == NAD_PATH && r.query_has(&selector)),
        "no NAD list by {selector}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.method == "GET" && r.path == "/api/v1/pods" && r.query_has(&selector)),
        "no wait for the scope's pods"
    );
    let s = state.lock().unwrap();
    assert!(
        s.names(NADS, RUN_NS).is_empty(),
        "left: {:?}",
        s.names(NADS, RUN_NS)
    );
    assert!(
        s.workload_pods().is_empty(),
        "left: {:?}",
        s.workload_pods()
    );
}

#[tokio::test]
async fn kube_target_daemonset_capacity_scenario_passes() {
    let (mock, state) = fake_api_server(true);
    let outcome = run_scenario(
        &mock,
        "seed/device plugin DaemonSet: capacity 50 on every node",
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let reqs = mock.requests();
    for node in ["node-a", "node-b"] {
        assert!(
            reqs.iter().any(|r| r.path == "/api/v1/pods"
                && param(r, "fieldSelector")
                    .is_some_and(|f| f.starts_with(&format!("spec.nodeName={node},")))),
            "no allocation list for {node}"
        );
    }
    assert_scoped_and_torn_down(&mock, &state);
}

#[tokio::test]
async fn kube_target_capacity_accounting_scenario_passes() {
    let (mock, state) = fake_api_server(true);
    let (outcome, observed) = run_scenario_observed(
        &mock,
        "seed/capacity accounting: allocate, release, Insufficient",
    )
    .await;
    assert!(outcome.is_ok(), "{outcome:?}");
    // The report's topology comes from the API: both nodes, phases timed; no pod is
    // left before teardown (the unschedulable one is deleted when refused, so a real
    // scheduler cannot place it later and take the capacity back).
    let topology = observed.topology.expect("a topology for the report");
    let nodes: Vec<&str> = topology.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nodes, ["node-a", "node-b"]);
    assert!(topology.nodes.iter().all(|n| n.uplink == "ens33"));
    let pods: Vec<&str> = topology.workloads.iter().map(|w| w.name.as_str()).collect();
    assert!(pods.is_empty(), "{pods:?}");
    let phases: Vec<&str> = observed.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["deploy", "assess", "teardown"]);
    let reqs = mock.requests();
    let posts: Vec<&Recorded> = reqs
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .collect();
    let names: Vec<&str> = posts
        .iter()
        .map(|p| p.body["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["macvtap-pod", "macvtap-pod-with-mac", "greedy"]);
    for p in &posts {
        let name = &p.body["metadata"]["name"];
        assert_eq!(p.body["metadata"]["labels"]["secnet.run"], RUN, "{name}");
        assert_eq!(
            p.body["metadata"]["labels"]["secnet.scope"], SCOPE,
            "{name}"
        );
        // Pinned through the scheduler, never straight onto the kubelet.
        assert_eq!(p.body["spec"]["nodeSelector"][HOSTNAME], "node-a", "{name}");
        assert!(
            p.body["spec"].get("nodeName").is_none(),
            "{name}: {}",
            p.body
        );
        assert!(p.query_has("fieldManager=secnet"), "{}", p.query);
    }
    assert_eq!(
        state.lock().unwrap().scheduled,
        [
            ("macvtap-pod".to_string(), "node-a".to_string()),
            ("macvtap-pod-with-mac".into(), "node-a".into()),
            ("greedy".into(), "Unschedulable".into()),
        ]
    );
    // The scenario's own deletes and teardown's go by UID.
    let deleted: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/pods/"))
        .map(|r| {
            assert!(r.body["preconditions"]["uid"].is_string(), "{}", r.body);
            r.path.rsplit('/').next().unwrap()
        })
        .collect();
    // The refused pod goes as soon as it is refused, before the scenario's deletes.
    assert_eq!(deleted, ["macvtap-pod", "greedy", "macvtap-pod-with-mac"]);
    assert_scoped_and_torn_down(&mock, &state);
}

#[tokio::test]
async fn kube_target_capacity_accounting_fails_when_the_scheduler_overcommits() {
    // The scheduler never counts allocations: the 50-device pod runs next to one
    // that holds a device, which the scenario must call out.
    let (mock, state) = fake_api_server(false);
    let outcome = run_scenario(
        &mock,
        "seed/capacity accounting: allocate, release, Insufficient",
    )
    .await;
    let msg = outcome.unwrap_err().to_string();
    assert!(
        msg.starts_with("a pod asking for 50 with 49 free must stay unscheduled, got Ok("),
        "{msg}"
    );
    assert_eq!(
        state.lock().unwrap().scheduled.last(),
        Some(&("greedy".to_string(), "node-a".to_string()))
    );
    // Diagnostics name the scope's pods; teardown still removes everything.
    assert!(
        msg.contains("=== pod secnet-r1/greedy: phase Running"),
        "{msg}"
    );
    assert_scoped_and_torn_down(&mock, &state);
}

#[test]
fn fake_api_server_selectors() {
    let pod = json!({"metadata": {"labels": {"secnet.run": "r1", "secnet.scope": "s3"}},
        "spec": {"nodeName": "node-a"}, "status": {"phase": "Running"}});
    assert!(labels_match(&pod, "secnet.run=r1,secnet.scope=s3"));
    assert!(labels_match(&pod, "secnet.run"));
    assert!(!labels_match(&pod, "secnet.run=r1,secnet.scope=s4"));
    assert!(!labels_match(&pod, "secnet.run!=r1"));
    assert!(fields_match(
        &pod,
        "spec.nodeName=node-a,status.phase!=Succeeded,status.phase!=Failed"
    ));
    assert!(!fields_match(&pod, "spec.nodeName=node-b"));
    assert!(!fields_match(&pod, "metadata.name=greedy"));
    assert_eq!(percent_decode("a%3Db%2Cc+d"), "a=b,c d");
}

#[tokio::test]
async fn restricted_nodes_keep_unpinned_pods_on_them_and_unknown_nodes_are_errors() {
    let (mock, _state) = fake_api_server(true);
    let mut c = run_cluster(&mock, 5000).await;
    let err = c
        .restrict_nodes(&["node-x".into()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node-x") && err.contains("node-a, node-b"),
        "{err}"
    );
    c.restrict_nodes(&["node-b".into()]).unwrap();
    assert_eq!(c.nodes(), ["node-b"]);
    c.apply(seed_fixture("macvtap-nad.yaml")).await.unwrap();
    // The seed's pod names no node: it gets a required affinity to the chosen ones.
    let pod = seed_fixture("macvtap-pod.yaml")
        .into_iter()
        .find_map(|o| match o {
            objects::Object::Pod(p) => Some(p),
            _ => None,
        })
        .unwrap();
    c.create_pod(pod).await.unwrap();
    let post = mock
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/pods"))
        .unwrap();
    let term = &post.body["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"][0];
    assert_eq!(term["matchExpressions"][0]["key"], HOSTNAME);
    assert_eq!(term["matchExpressions"][0]["operator"], "In");
    assert_eq!(term["matchExpressions"][0]["values"], json!(["node-b"]));
    // A fixture's bare `busybox` runs as the pinned pod image (or --pod-image).
    assert_eq!(
        post.body["spec"]["containers"][0]["image"],
        crate::cluster::kube::components::POD_IMAGE
    );
}

#[tokio::test]
async fn kube_target_device_plugin_restart_scenario_kills_its_pod_and_waits_for_the_new_one() {
    let (mock, state) = fake_api_server(true);
    let opts = KubeOptions {
        pod_timeout: Duration::from_secs(5),
        device_plugin_pods: Some((PLUGIN_NS.into(), PLUGIN_SELECTOR.into())),
        ..KubeOptions::default()
    };
    let c = KubeCluster::connect(mock.client(), "existing", RUN, opts)
        .await
        .unwrap();
    c.create_run_namespace().await.unwrap();
    let before: Vec<String> = state.lock().unwrap().plugin_pods();
    let (ctx, provider) = kube_ctx(c);
    let s = crate::scenario::all()
        .iter()
        .find(|s| s.name.starts_with("fault/device plugin SIGKILL"))
        .unwrap();
    assert!(s.portable_on(&super::base_offer("existing")));
    // The restart and the wait for allocatable pass; the scenario then probes the
    // pod's net1 with exec, whose websocket upgrade this fake does not serve: it must
    // stop exactly there.
    let err = crate::scenario::runner::run(s, &ctx, &provider)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("the pod lost net1 when the plugin died: failed to exec")
            && err.contains("pods/before/exec"),
        "{err}"
    );
    // node-a's plugin pod was killed (no grace, by UID) and replaced; node-b's kept.
    let kill = mock
        .requests()
        .into_iter()
        .find(|r| {
            r.method == "DELETE" && r.path.starts_with("/api/v1/namespaces/kube-system/pods/")
        })
        .expect("the plugin pod is deleted");
    assert_eq!(
        kill.path,
        format!("/api/v1/namespaces/kube-system/pods/{}", before[0])
    );
    assert_eq!(kill.body["gracePeriodSeconds"], 0);
    assert!(
        kill.body["preconditions"]["uid"].is_string(),
        "{}",
        kill.body
    );
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
    let after: Vec<String> = state.lock().unwrap().plugin_pods();
    assert_eq!(after.len(), 2);
    assert!(
        !after.contains(&before[0]) && after.contains(&before[1]),
        "{after:?}"
    );
    assert_scoped_and_torn_down(&mock, &state);
}

#[tokio::test]
async fn restarting_the_device_plugin_needs_the_component() {
    let (mock, _state) = fake_api_server(true);
    let c = cluster(&mock, 1000).await;
    let err = c
        .restart_device_plugin("node-a")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("--components without macvtap"), "{err}");
}

/// The report's topology reads network-status as real multus writes it (the NAD
/// client's layout, `gateway`, `device-info`, `mtu`), not only secnet's own.
#[tokio::test]
async fn snapshot_reads_network_status_as_multus_writes_it() {
    let status = "[{\n    \"name\": \"kindnet\",\n    \"interface\": \"eth0\",\n    \"ips\": [\n        \"10.244.1.5\"\n    ],\n    \"mac\": \"0a:58:0a:f4:01:05\",\n    \"default\": true,\n    \"dns\": {},\n    \"gateway\": [\n        \"10.244.1.1\"\n    ]\n},{\n    \"name\": \"default/dataplane\",\n    \"interface\": \"net1\",\n    \"mac\": \"02:23:45:67:89:01\",\n    \"mtu\": 1500,\n    \"dns\": {},\n    \"device-info\": {\n        \"type\": \"pci\",\n        \"version\": \"1.1.0\",\n        \"pci\": {\n            \"pci-address\": \"0000:03:00.1\"\n        }\n    }\n}]";
    let p = pod(
        "p1",
        "uid-1",
        "Running",
        json!({"k8s.v1.cni.cncf.io/network-status": status}),
    );
    let mock = MockApi::new(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/pods") => list("PodList", vec![p.clone()]),
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let snap = c.snapshot().await;
    let ifaces: Vec<_> = snap.workloads[0]
        .interfaces
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                i.network.as_str(),
                i.mac.as_deref(),
                i.ips.clone(),
            )
        })
        .collect();
    assert_eq!(
        ifaces,
        [
            (
                "eth0",
                "kindnet",
                Some("0a:58:0a:f4:01:05"),
                vec!["10.244.1.5".to_string()]
            ),
            (
                "net1",
                "default/dataplane",
                Some("02:23:45:67:89:01"),
                vec![]
            ),
        ]
    );
}

/// The uniqueness check's view of a real cluster: the run namespace's pods and the
/// run's pods elsewhere, once each, without the ones being deleted or finished.
#[tokio::test]
async fn live_pods_are_the_runs_own_in_its_namespace_and_by_label() {
    let in_ns = |name: &str, ns: &str, phase: &str| {
        let mut p = pod(name, &format!("uid-{name}"), phase, json!({}));
        p["metadata"]["namespace"] = json!(ns);
        p
    };
    let mut leaving = in_ns("leaving", "secnet-r1", "Running");
    leaving["metadata"]["deletionTimestamp"] = json!("2026-12-07T06:00:00Z");
    let own = vec![
        in_ns("a", "secnet-r1", "Running"),
        in_ns("done", "secnet-r1", "Succeeded"),
        leaving,
    ];
    let labelled = vec![
        in_ns("a", "secnet-r1", "Running"),
        in_ns("b", "tenant", "Pending"),
    ];
    let mock = MockApi::new(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/namespaces/secnet-r1/pods") => list("PodList", own.clone()),
        ("GET", "/api/v1/pods") if r.query.contains("secnet.run%3Dr1") => {
            list("PodList", labelled.clone())
        }
        _ => base(r),
    });
    let c = cluster(&mock, 100).await;
    let live: Vec<String> = c
        .live_pods()
        .await
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    assert_eq!(live, ["secnet-r1/a", "tenant/b"]);
}
