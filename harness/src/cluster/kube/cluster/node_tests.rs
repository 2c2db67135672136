//! Node access on a real cluster, end to end against the websocket-capable fake API
//! server: the probe pods' spec, one per node even when asked concurrently, the
//! nsenter argv, the node-side reads (links, sandboxes, device IDs, leases) behind
//! `AnyCluster`'s NodeAccess abilities, and their removal at teardown.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::node_probe::{NSENTER_HOST, PROBE_CONTAINER};
use super::node_view::CHECKPOINT;
use crate::cluster::any::AnyCluster;
use crate::cluster::capability::{Capability, Offer};
use crate::cluster::kube::base_offer;
use crate::cluster::kube::fake;
use crate::cluster::kube::fake::{
    DATAPLANE, FakeState, conflict, fake_api_server, fake_node, precondition_fails, selected,
};
use crate::cluster::kube::fake_http::{ExecCall, ExecReply, FakeHttp};
use crate::cluster::kube::mock::{MockApi, Reply, list, not_found};
use crate::cluster::kube::{KubeCluster, KubeOptions, RUN_LABEL};
use crate::cluster::{ClusterError, PodView};

const RUN: &str = "sn0c0ffe";
const NS: &str = "secnet-sn0c0ffe";

/// Namespaces and pods in any namespace; pods run at once, except on a node named
/// in `stuck` (the kubelet there never starts them: Pending).
#[derive(Default)]
struct Api {
    namespaces: BTreeMap<String, Value>,
    pods: BTreeMap<(String, String), Value>,
    uids: u32,
    stuck: Option<String>,
}

fn api_server(state: Arc<Mutex<Api>>) -> MockApi {
    api_server_for(state, "")
}

/// `api_server` answering only namespace `only` (and namespaces themselves) when it
/// is not empty: 404 for the rest, which a front falls through on.
fn api_server_for(state: Arc<Mutex<Api>>, only: &'static str) -> MockApi {
    MockApi::new(move |r| {
        let mut s = state.lock().unwrap();
        if r.method == "GET" && r.query_has("watch=true") {
            return Reply::WatchOpen(vec![]);
        }
        let path = r.path.as_str();
        if path == "/api/v1/nodes" && only.is_empty() {
            return list("NodeList", vec![fake_node("node-a"), fake_node("node-b")]);
        }
        if (r.method.as_str(), path) == ("POST", "/api/v1/namespaces") {
            let name = r.body["metadata"]["name"].as_str().unwrap().to_string();
            if s.namespaces.contains_key(&name) {
                return conflict(format!("namespaces \"{name}\" already exists"));
            }
            s.namespaces.insert(name, r.body.clone());
            return Reply::Json(201, r.body.clone());
        }
        let Some(rest) = path.strip_prefix("/api/v1/namespaces/") else {
            return not_found(path);
        };
        let parts: Vec<&str> = rest.split('/').collect();
        if !only.is_empty() && parts[0] != only {
            return not_found(path);
        }
        // In front of another server: only the probe pods are this one's (the
        // scenarios' pods share the run namespace with them).
        let probe = |name: &str| name.starts_with("secnet-node-");
        let posted = r.body["metadata"]["name"].as_str().unwrap_or("");
        let others = match &parts[..] {
            [_, "pods"] if r.method == "POST" => !probe(posted),
            // A wait on one probe pod lists it by name.
            [_, "pods"] => !r.query.contains("secnet-node-"),
            [_, "pods", name, ..] => !probe(name),
            [_, "events"] => true,
            _ => false,
        };
        if !only.is_empty() && others {
            return not_found(path);
        }
        match (r.method.as_str(), &parts[..]) {
            ("GET", [ns]) => match s.namespaces.get(*ns) {
                Some(n) => Reply::Json(200, n.clone()),
                None => not_found(path),
            },
            ("DELETE", [ns]) => match s.namespaces.remove(*ns) {
                Some(n) => Reply::Json(200, n),
                None => not_found(path),
            },
            ("POST", [ns, "pods"]) => {
                let mut pod = r.body.clone();
                let name = pod["metadata"]["name"].as_str().unwrap().to_string();
                s.uids += 1;
                pod["metadata"]["uid"] = json!(format!("uid-{}", s.uids));
                let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
                let phase = match s.stuck.as_deref() == Some(node.as_str()) {
                    true => "Pending",
                    false => "Running",
                };
                pod["status"] = json!({"phase": phase});
                s.pods.insert((ns.to_string(), name), pod.clone());
                Reply::Json(201, pod)
            }
            ("GET", [ns, "pods"]) => {
                let here = s.pods.iter().filter(|((n, _), _)| n == ns);
                list("PodList", selected(r, here.map(|(_, p)| p.clone())))
            }
            ("GET", [_, "events"]) => list("EventList", vec![]),
            ("GET", [ns, "pods", name]) => match s.pods.get(&(ns.to_string(), name.to_string())) {
                Some(p) => Reply::Json(200, p.clone()),
                None => not_found(path),
            },
            ("DELETE", [ns, "pods", name]) => {
                let key = (ns.to_string(), name.to_string());
                match s.pods.get(&key) {
                    None => not_found(path),
                    Some(p) => match precondition_fails(r, p) {
                        Some(reply) => reply,
                        None => Reply::Json(200, s.pods.remove(&key).unwrap()),
                    },
                }
            }
            _ => not_found(path),
        }
    })
}

// What `ip -j -d link show` prints, less the fields secnet does not read.
const LOWER: &str = r#"[{"ifindex": 2, "ifname": "ens33", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "mtu": 1500, "operstate": "UP", "linkinfo": {"info_kind": "veth"}}]"#;
const NET1: &str = r#"[{"ifindex": 3, "link_index": 2, "ifname": "net1", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "mtu": 1500, "operstate": "UP", "address": "02:00:00:00:00:01", "link_netnsid": 0, "linkinfo": {"info_kind": "macvtap", "info_data": {"mode": "bridge"}}}]"#;
const NETNS: &str = "/var/run/netns/cni-7f3a";

fn checkpoint() -> String {
    json!({"Data": {"PodDeviceEntries": [
        {"PodUID": "uid-victim", "ContainerName": "c", "ResourceName": "macvtap.network.kubevirt.io/dataplane",
         "DeviceIDs": {"-1": ["dataplaneMvp7"]}, "AllocResp": ""},
        {"PodUID": "uid-other", "ContainerName": "c", "ResourceName": "macvtap.network.kubevirt.io/dataplane",
         "DeviceIDs": {"-1": ["dataplaneMvp8"]}, "AllocResp": ""}],
        "RegisteredDevices": {}}, "Checksum": 1})
    .to_string()
}

/// The nodes as their own programs answer (`ip`, `crictl`, `cat`, `ls`), behind
/// the probe pods' nsenter; anything else, or a command in a pod, is not found.
fn nodes(call: &ExecCall) -> ExecReply {
    let host: Vec<String> = NSENTER_HOST.iter().map(|s| s.to_string()).collect();
    let Some(argv) = call.argv.strip_prefix(&host[..]) else {
        return ExecReply::failed(127, format!("{}: not found\n", call.argv[0]));
    };
    let node = call.pod.strip_prefix("secnet-node-").unwrap_or("?");
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let netns_arg = format!("--net={NETNS}");
    let kindnet = "/var/lib/cni/networks/kindnet";
    match (node, &argv[..]) {
        (_, ["ip", "-j", "-d", "link", "show", "ens33"]) => ExecReply::ok(LOWER),
        // Open vSwitch installed on node-a's host, none on node-b.
        ("node-a", ["ovs-vsctl", "--timeout=10", "list-ports", "br1"]) => {
            ExecReply::ok("ens34\nveth7\n")
        }
        ("node-b", ["ip", "link", "set", "ens33", "down"]) => {
            ExecReply::failed(2, "RTNETLINK answers: Operation not permitted\n")
        }
        (
            "node-a",
            [
                "crictl",
                "pods",
                "--namespace",
                "^secnet-sn0c0ffe$",
                "--name",
                "^victim$",
                "--state",
                "ready",
                "-q",
            ],
        ) => ExecReply::ok("5d1e0c\n"),
        (_, ["crictl", "pods", ..]) => ExecReply::ok(""),
        ("node-a", ["crictl", "inspectp", "-o", "json", "5d1e0c"]) => ExecReply::ok(
            json!({"status": {"id": "5d1e0c", "state": "SANDBOX_READY"},
                "info": {"pid": 4242, "runtimeSpec": {"linux": {"namespaces": [
                    {"type": "pid"}, {"type": "network", "path": NETNS}]}}}})
            .to_string(),
        ),
        ("node-a", ["nsenter", n, "--", "ip", "-j", "-d", "link", "show", "net1"])
            if *n == netns_arg =>
        {
            ExecReply::ok(NET1)
        }
        (_, ["cat", path]) if *path == CHECKPOINT => ExecReply::ok(checkpoint()),
        ("node-a", ["ls", "-1", dir]) if *dir == kindnet => {
            ExecReply::ok("10.244.0.2\n10.244.0.5\nlast_reserved_ip.0\nlock\n")
        }
        ("node-b", ["ls", "-1", dir]) if *dir == kindnet => ExecReply::failed(
            2,
            format!("ls: cannot access '{dir}': No such file or directory\n"),
        ),
        _ => ExecReply::failed(127, format!("{}: not found\n", argv[0])),
    }
}

struct Setup {
    server: FakeHttp,
    state: Arc<Mutex<Api>>,
    cluster: Arc<KubeCluster>,
}

async fn setup(offer: Offer, stuck: Option<&str>) -> Setup {
    let state = Arc::new(Mutex::new(Api {
        stuck: stuck.map(str::to_string),
        ..Api::default()
    }));
    let server = FakeHttp::builder(api_server(state.clone()))
        .exec(nodes)
        .start()
        .await;
    let opts = KubeOptions {
        pod_timeout: Duration::from_millis(300),
        offer: Some(offer),
        ..KubeOptions::default()
    };
    let cluster = KubeCluster::connect(server.client(), "kind", RUN, opts)
        .await
        .unwrap();
    Setup {
        server,
        state,
        cluster: Arc::new(cluster),
    }
}

fn victim() -> PodView {
    PodView {
        namespace: NS.into(),
        name: "victim".into(),
        uid: "uid-victim".into(),
        node: "node-a".into(),
        annotations: BTreeMap::new(),
        devices: BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_probe_pod_per_node_with_the_node_access_spec_gone_at_teardown() {
    let t = setup(base_offer("kind"), None).await;
    let c = t.cluster.clone();
    // Asked at once for the same node and both: one probe pod per node.
    let nodes = ["node-a".to_string(), "node-b".to_string()];
    let (a, both) = tokio::join!(
        c.node_exec("node-a", &["ip", "-j", "-d", "link", "show", "ens33"]),
        c.start_probes(&nodes)
    );
    both.unwrap();
    let a = a.unwrap();
    assert!(a.success);
    assert_eq!(a.stdout, LOWER);
    c.node_exec("node-a", &["ip", "-j", "-d", "link", "show", "ens33"])
        .await
        .unwrap();

    let posted: Vec<Value> = t
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body)
        .collect();
    assert_eq!(
        posted.len(),
        3,
        "the namespace and one pod per node: {posted:#?}"
    );
    assert_eq!(posted[0]["kind"], "Namespace");
    assert_eq!(posted[0]["metadata"]["name"], NS);
    assert_eq!(posted[0]["metadata"]["labels"][RUN_LABEL], RUN);
    let psa = &posted[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"];
    assert_eq!(psa, "privileged", "the probes are privileged pods");
    let mut probes: Vec<&Value> = posted[1..].iter().collect();
    probes.sort_by_key(|p| p["spec"]["nodeName"].as_str().unwrap().to_string());
    for (probe, node) in probes.iter().zip(["node-a", "node-b"]) {
        let (meta, spec) = (&probe["metadata"], &probe["spec"]);
        assert_eq!(meta["name"], format!("secnet-node-{node}"));
        assert_eq!(meta["namespace"], NS);
        assert_eq!(meta["labels"][RUN_LABEL], RUN);
        assert!(
            meta["labels"].get("secnet.scope").is_none(),
            "shared by scenarios"
        );
        assert_eq!(spec["nodeName"], node);
        assert_eq!(
            (&spec["hostNetwork"], &spec["hostPID"]),
            (&json!(true), &json!(true))
        );
        assert_eq!(spec["tolerations"], json!([{"operator": "Exists"}]));
        let container = &spec["containers"][0];
        assert_eq!(container["name"], PROBE_CONTAINER);
        assert_eq!(container["securityContext"]["privileged"], true);
        assert_eq!(container["image"], KubeOptions::default().pod_image);
        assert_eq!(container["command"][0], "sleep");
    }

    let execs = t.server.execs();
    assert_eq!(execs.len(), 2);
    for e in &execs {
        assert_eq!(
            (e.namespace.as_str(), e.pod.as_str()),
            (NS, "secnet-node-node-a")
        );
        assert_eq!(
            e.argv,
            [
                "nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--", "ip", "-j", "-d", "link",
                "show", "ens33"
            ]
        );
    }

    // A scenario's teardown leaves the probes to the run's.
    let scoped = c.scoped("s1");
    assert!(scoped.teardown().await.deleted.is_empty());
    assert_eq!(t.state.lock().unwrap().pods.len(), 2);
    let report = c.teardown().await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        report.deleted,
        [
            format!("Pod {NS}/secnet-node-node-a"),
            format!("Pod {NS}/secnet-node-node-b"),
        ],
        "the run namespace goes with the run (RealCluster::down), not with the probes"
    );
    let deletes: Vec<_> = t
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/pods/"))
        .collect();
    assert!(
        deletes
            .iter()
            .all(|r| r.body["preconditions"]["uid"].is_string()),
        "deleted by UID: {deletes:?}"
    );
    assert!(t.state.lock().unwrap().pods.is_empty());
    // The run's down deletes the namespace (by the run label).
    c.delete_run_namespace().await.unwrap();
    assert!(t.state.lock().unwrap().namespaces.is_empty());
}

#[tokio::test]
async fn node_access_abilities_read_the_node_through_its_probe() {
    let t = setup(base_offer("kind"), None).await;
    let any = AnyCluster::offering(&t.cluster.offer(), Box::new((*t.cluster).clone()));
    assert!(any.offers(Capability::NodeAccess));

    let lower = any.node_link("node-a", "ens33").await.unwrap();
    assert_eq!(lower.index, 2);
    // The victim's net1 as its node sees it: sandbox by crictl, then its netns.
    let net1 = any.pod_link(&victim(), "net1").await.unwrap();
    assert_eq!(net1.kind, "macvtap");
    assert_eq!(net1.lower_index, Some(lower.index));
    let devices = any.pod_devices(&victim()).await.unwrap();
    assert_eq!(
        devices,
        BTreeMap::from([(
            "macvtap.network.kubevirt.io/dataplane".to_string(),
            vec!["dataplaneMvp7".to_string()]
        )])
    );
    // Unknown to the API server: every node is asked.
    assert!(any.pod_sandbox_exists(NS, "victim").await.unwrap());
    assert!(!any.pod_sandbox_exists("default", "refused").await.unwrap());
    assert_eq!(
        any.pod_network_leases("node-a").await.unwrap(),
        ["10.244.0.2", "10.244.0.5"]
    );
    assert!(any.pod_network_leases("node-b").await.unwrap().is_empty());

    let crictl: Vec<Vec<String>> = t
        .server
        .execs()
        .into_iter()
        .map(|e| e.argv[NSENTER_HOST.len()..].to_vec())
        .filter(|a| a[0] == "crictl")
        .collect();
    assert!(crictl.contains(&vec![
        "crictl".into(),
        "pods".into(),
        "--namespace".into(),
        "^default$".into(),
        "--name".into(),
        "^refused$".into(),
        "--state".into(),
        "ready".into(),
        "-q".into()
    ]));
    let _ = t.cluster.teardown().await;
}

#[tokio::test]
async fn node_errors_name_the_node_the_probe_pod_and_the_command() {
    let t = setup(base_offer("kind"), Some("node-b")).await;
    let any = AnyCluster::offering(&t.cluster.offer(), Box::new((*t.cluster).clone()));
    let err = any
        .node_ip("node-a", &["link", "set", "ens33", "up"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node-a") && err.contains("ip link set ens33 up") && err.contains("not found"),
        "{err}"
    );
    // The probe on node-b never runs.
    let err = any
        .node_ip("node-b", &["link", "set", "ens33", "down"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node-b")
            && err.contains(&format!("{NS}/secnet-node-node-b"))
            && err.contains("Pending")
            && err.contains("nodeAccess: none"),
        "{err}"
    );
    assert!(matches!(
        t.cluster.node_exec("node-z", &["true"]).await,
        Err(ClusterError::NoSuchNode(n)) if n == "node-z"
    ));
    let _ = t.cluster.teardown().await;
}

#[tokio::test]
async fn without_node_access_nothing_runs_on_the_nodes() {
    let offer = base_offer("existing").without([Capability::NodeAccess]);
    let t = setup(offer, None).await;
    let any = AnyCluster::offering(&t.cluster.offer(), Box::new((*t.cluster).clone()));
    assert!(matches!(
        any.node_ip("node-a", &["link"]).await,
        Err(ClusterError::Unsupported {
            capability: Capability::NodeAccess,
            ..
        })
    ));
    assert!(any.pod_devices(&victim()).await.is_err());
    // pod_link falls back to the pod's own `ip` (which busybox lacks: not found).
    let err = any
        .pod_link(&victim(), "net1")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
    let execs = t.server.execs();
    assert_eq!(execs.len(), 1);
    assert_eq!(
        (execs[0].namespace.as_str(), execs[0].pod.as_str()),
        (NS, "victim")
    );
    assert_eq!(execs[0].argv, ["ip", "-j", "-d", "link", "show", "net1"]);
    let posted = t
        .server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posted, 0, "no probe pod without node access");
}

/// The nodes behind the fake scheduler: the victim's sandbox and net1 on node-a,
/// and a checkpoint that gives each scheduled pod one dataplane device.
fn scheduled_nodes(state: Arc<Mutex<FakeState>>) -> impl Fn(&ExecCall) -> ExecReply {
    move |call| {
        let host: Vec<String> = NSENTER_HOST.iter().map(|s| s.to_string()).collect();
        let on_host = call.argv.strip_prefix(&host[..]);
        if on_host.is_some_and(|a| a[0] == "cat" && a[1] == CHECKPOINT) {
            let s = state.lock().unwrap();
            let scenario_pods = s
                .all(fake::PODS, None)
                .into_iter()
                .filter(|p| p["metadata"]["namespace"] != fake::PLUGIN_NS);
            let entries: Vec<Value> = scenario_pods
                .enumerate()
                .map(|(i, p)| {
                    json!({"PodUID": p["metadata"]["uid"], "ContainerName": "c",
                        "ResourceName": DATAPLANE, "DeviceIDs": {"-1": [format!("dataplaneMvp{i}")]},
                        "AllocResp": ""})
                })
                .collect();
            let text = json!({"Data": {"PodDeviceEntries": entries}, "Checksum": 0});
            return ExecReply::ok(text.to_string());
        }
        nodes(call)
    }
}

#[tokio::test]
async fn the_device_id_check_reads_the_victims_allocation_and_link_from_its_node() {
    let (scheduler, fake) = fake_api_server(true);
    // The run namespace, as `RealCluster::up` makes it first.
    fake.lock().unwrap().create(
        fake::Key::new(fake::NAMESPACES, "", NS),
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NS, "labels": {RUN_LABEL: RUN}}}),
        "secnet",
    );
    let probes = Arc::new(Mutex::new(Api::default()));
    let server = FakeHttp::builder(scheduler)
        .front(api_server_for(probes.clone(), NS))
        .exec(scheduled_nodes(fake.clone()))
        .start()
        .await;
    let opts = KubeOptions {
        pod_timeout: Duration::from_secs(5),
        ..KubeOptions::default()
    };
    let cluster = KubeCluster::connect(server.client(), "kind", RUN, opts)
        .await
        .unwrap();
    let mut opts = crate::conform::Options::bundled();
    opts.cluster = crate::cluster::provider::Provider::Kind;
    let mut ctx = crate::conform::context(&opts, RUN);
    ctx.scope = "s46".into();
    let provider = crate::conform::kube::KubeProvider::on(&opts, cluster);
    let name = "security/macvtap: a deviceID of another pod's allocation";
    let scenario = crate::scenario::all()
        .iter()
        .find(|s| s.name == name)
        .unwrap();
    assert!(scenario.portable_on(&base_offer("kind")));
    let outcome = crate::scenario::runner::run(scenario, &ctx, &provider).await;
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
    // The fake runs no CNI: the attacker's pod starts, which the scenario must
    // call out, naming the victim's device as its node's kubelet recorded it.
    let msg = outcome.unwrap_err().to_string();
    assert!(
        msg.starts_with("the attacker's pod started with the victim's device dataplaneMvp0"),
        "{msg}"
    );
    let nads = fake.lock().unwrap().all(fake::NADS, None);
    let nad = nads.iter().find(|n| n["metadata"]["name"] == "stolen");
    assert!(nad.is_none(), "the scenario's NAD is torn down");
    // The victim's net1 was read from node-a, in its sandbox's netns.
    let execs = server.execs();
    let read_net1 = execs.iter().any(|e| {
        e.pod == "secnet-node-node-a"
            && e.argv
                .ends_with(&["ip", "-j", "-d", "link", "show", "net1"].map(String::from))
    });
    assert!(read_net1, "{execs:#?}");
    assert!(
        execs.iter().all(|e| e.namespace == NS),
        "only probe pods exec'd"
    );
    assert_eq!(probes.lock().unwrap().pods.len(), 1, "one probe, on node-a");
}

#[test]
fn probe_names_stay_short_and_sandboxes_give_their_netns() {
    use super::node_probe::probe_pod_name;
    use super::node_view::sandbox_netns;
    assert_eq!(probe_pod_name("kind-worker2"), "secnet-node-kind-worker2");
    let long = format!("ip-10-0-0-1.{}.compute.internal", "eu-west".repeat(6));
    let name = probe_pod_name(&long);
    assert!(
        name.len() <= 63 && name.starts_with("secnet-node-"),
        "{name}"
    );
    assert_ne!(name, probe_pod_name(&format!("{long}x")));
    // containerd: the OCI spec's network namespace path.
    let spec = json!({"info": {"pid": 7, "runtimeSpec": {"linux": {"namespaces": [
        {"type": "ipc"}, {"type": "network", "path": NETNS}]}}}});
    assert_eq!(sandbox_netns(&spec).as_deref(), Some(NETNS));
    // A runtime that reports only the sandbox's process (or a host-network pod).
    let pid =
        json!({"info": {"pid": 4242, "runtimeSpec": {"linux": {"namespaces": [{"type": "ipc"}]}}}});
    assert_eq!(sandbox_netns(&pid).as_deref(), Some("/proc/4242/ns/net"));
    assert_eq!(sandbox_netns(&json!({"status": {}})), None);
}

#[tokio::test]
async fn open_vswitch_preinstalled_on_the_hosts_is_read_through_the_probe() {
    let t = setup(base_offer("existing").with([Capability::Ovs]), None).await;
    let any = AnyCluster::offering(&t.cluster.offer(), Box::new((*t.cluster).clone()));
    // No openvswitch pod on the nodes: the hosts' own ovs-vsctl answers.
    let ports = any.ovs_ports("node-a", "br1").await.unwrap();
    assert_eq!(ports, ["ens34", "veth7"]);
    let execs = t.server.execs();
    assert_eq!(execs.last().unwrap().pod, "secnet-node-node-a");
    let err = any
        .ovs_ports("node-b", "br1")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("node-b") && err.contains("taken as preinstalled"),
        "{err}"
    );
}
