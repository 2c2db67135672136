//! KubeVirt's migrations and hot-plugs against the fake API server on a real
//! socket (`fake_http`: the console is a websocket): the VMIM created and its
//! phase followed to Succeeded (the guest then on the target pod, its console
//! opened anew), to Failed (the error names the VMIM, the phase and KubeVirt's
//! reason), or never to an end (the deadline names the last phase); a plug and
//! an unplug sent as JSON patches of the VM and awaited in the VMI's interfaces.
//!
//! A fake, not KubeVirt: it answers as KubeVirt's API documents the objects
//! (`v1.VirtualMachineInstanceMigration`, `v1.VirtualMachineInstanceStatus`);
//! no KubeVirt ran these.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::KubeCluster;
use super::moves::migration_name;
use super::vms::{CONSOLE_PROTOCOL, KubevirtGuest, console};
use crate::cluster::kube::KubeOptions;
use crate::cluster::kube::fake_http::{FakeHttp, Socket};
use crate::cluster::kube::mock::{MockApi, Recorded, Reply};
use crate::multus::NETWORK_STATUS_ANNOTATION;
use crate::vm::agent::{Agent, BEGIN, END};
use crate::vm::kubevirt::{BindingKind, NetworkSource, VirtualMachine, VmInterface};
use crate::vm::migrate::MigrationPlan;
use crate::vm::{GuestNic, RunningVm, VmOptions};

const NS: &str = "secnet-t1";
const VMI_UID: &str = "vmi-uid-1";
const SOURCE: &str = "virt-launcher-vm-a-aaaaa";
const TARGET: &str = "virt-launcher-vm-a-bbbbb";
const GUEST_MAC: &str = "02:aa:bb:cc:dd:01";
const HOT_MAC: &str = "02:00:00:00:00:0b";
const VMIS: &str = "/apis/kubevirt.io/v1/namespaces/secnet-t1/virtualmachineinstances";
const VMIMS: &str = "/apis/kubevirt.io/v1/namespaces/secnet-t1/virtualmachineinstancemigrations";
const VM: &str = "/apis/kubevirt.io/v1/namespaces/secnet-t1/virtualmachines/vm-a";

#[derive(Default)]
struct Fake {
    /// The phases (and failure reason) the VMIM shows, one per read; the last
    /// repeats.
    phases: Vec<(&'static str, Option<&'static str>)>,
    reads: usize,
    /// The VMIM as created.
    vmim: Option<Value>,
    /// The VMI runs on node-b in the target pod.
    migrated: bool,
    /// The VMI lists the hot-plugged interface after this many more reads.
    hot_in: Option<usize>,
    /// The VMI lists it.
    hot: bool,
    /// (method, path, content type, body) of every request.
    requests: Vec<(String, String, String, Value)>,
}

type Shared = Arc<Mutex<Fake>>;

fn launcher(name: &str, node: &str, phase: &str, hot: bool) -> Value {
    let mut status = vec![
        json!({"name": "kindnet", "interface": "eth0", "ips": ["10.244.1.7"], "default": true}),
        json!({"name": "secnet-t1/dataplane", "interface": "net1", "mac": GUEST_MAC}),
    ];
    if hot {
        status.push(json!({"name": "secnet-t1/dataplane", "interface": "net2", "mac": HOT_MAC}));
    }
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"),
            "labels": {"kubevirt.io/created-by": VMI_UID, "vm.kubevirt.io/name": "vm-a"},
            "annotations": {NETWORK_STATUS_ANNOTATION: serde_json::to_string(&status).unwrap()}},
        "spec": {"nodeName": node, "containers": [{"name": "compute", "image": "virt-launcher"}]},
        "status": {"phase": phase}})
}

fn answer(f: &mut Fake, r: &Recorded) -> (u16, Value) {
    let not_found = (
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    );
    match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/api/v1/nodes") => (
            200,
            json!({"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [
                {"metadata": {"name": "node-a"}}, {"metadata": {"name": "node-b"}}]}),
        ),
        ("POST", VMIMS) => {
            f.vmim = Some(r.body.clone());
            (201, r.body.clone())
        }
        ("GET", p) if p.starts_with(VMIMS) => {
            let Some(mut vmim) = f.vmim.clone() else {
                return not_found;
            };
            let (phase, reason) = f.phases[f.reads.min(f.phases.len() - 1)];
            f.reads += 1;
            if phase == "Succeeded" {
                f.migrated = true;
            }
            vmim["status"] = json!({"phase": phase, "migrationState": {
                "sourcePod": SOURCE, "targetPod": TARGET, "targetNode": "node-b"}});
            if let Some(reason) = reason {
                vmim["status"]["migrationState"]["failureReason"] = json!(reason);
            }
            (200, vmim)
        }
        ("GET", p) if p == format!("{VMIS}/vm-a") => {
            if let Some(n) = f.hot_in.as_mut() {
                if *n == 0 {
                    f.hot = true;
                    f.hot_in = None;
                } else {
                    *n -= 1;
                }
            }
            let mut ifaces =
                vec![json!({"name": "default", "mac": GUEST_MAC, "infoSource": "domain"})];
            if f.hot {
                ifaces.push(
                    json!({"name": "hot", "mac": HOT_MAC, "infoSource": "domain, multus-status"}),
                );
            }
            let node = if f.migrated { "node-b" } else { "node-a" };
            (
                200,
                json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                    "metadata": {"name": "vm-a", "namespace": NS, "uid": VMI_UID},
                    "status": {"phase": "Running", "nodeName": node, "interfaces": ifaces,
                        "migrationState": {"startTimestamp": "2026-12-07T13:00:00Z",
                            "endTimestamp": "2026-12-07T13:00:02Z", "completed": f.migrated,
                            "sourceNode": "node-a", "targetNode": "node-b"}}}),
            )
        }
        ("GET", p) if p == format!("/api/v1/namespaces/{NS}/pods") => {
            let items = if f.migrated {
                vec![
                    launcher(SOURCE, "node-a", "Succeeded", false),
                    launcher(TARGET, "node-b", "Running", f.hot),
                ]
            } else {
                vec![launcher(SOURCE, "node-a", "Running", f.hot)]
            };
            (
                200,
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
            )
        }
        ("PATCH", VM) => {
            let absent = r.body.to_string().contains("absent");
            if absent {
                f.hot = false;
            } else {
                f.hot_in = Some(2);
            }
            (
                200,
                json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                    "metadata": {"name": "vm-a", "namespace": NS}}),
            )
        }
        _ => not_found,
    }
}

/// A guest on the console that answers `ip -o link` with its NICs (the hot one
/// once the VMI lists it).
async fn fake_guest(fake: Shared, ws: Socket) {
    let (mut tx, mut rx) = ws.split();
    let mut pending = String::new();
    while let Some(Ok(msg)) = rx.next().await {
        let Message::Binary(bytes) = msg else {
            continue;
        };
        pending.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(at) = pending.find('\n') {
            let line: String = pending.drain(..=at).collect();
            let (id, cmd) = line.trim_end().split_once(' ').unwrap();
            let out = if cmd == "ip -o link" {
                let mut out = format!(
                    "2: eth0: <BROADCAST,MULTICAST,UP> mtu 1500 qdisc pfifo_fast qlen 1000\\    link/ether {GUEST_MAC} brd ff:ff:ff:ff:ff:ff\n"
                );
                if fake.lock().unwrap().hot {
                    out.push_str(&format!(
                        "3: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop qlen 1000\\    link/ether {HOT_MAC} brd ff:ff:ff:ff:ff:ff\n"
                    ));
                }
                out
            } else {
                String::new()
            };
            let reply = format!("{BEGIN} {id}\r\n{out}{END} {id} 0\r\n");
            if tx.send(Message::binary(reply.into_bytes())).await.is_err() {
                return;
            }
        }
    }
}

async fn fake_cluster(fake: Shared) -> KubeCluster {
    let api = {
        let fake = fake.clone();
        MockApi::new(move |r| {
            let mut f = fake.lock().unwrap();
            f.requests.push((
                r.method.clone(),
                r.path.clone(),
                r.content_type.clone(),
                r.body.clone(),
            ));
            let (status, json) = answer(&mut f, r);
            Reply::Json(status, json)
        })
    };
    let server = FakeHttp::builder(api)
        .upgrade("/console", CONSOLE_PROTOCOL, move |call, socket| {
            let fake = fake.clone();
            async move {
                let record = ("GET".into(), call.path, call.protocol, Value::Null);
                fake.lock().unwrap().requests.push(record);
                fake_guest(fake, socket).await
            }
        })
        .start()
        .await;
    let client = server.client();
    tokio::spawn(async move {
        let _serving = server;
        std::future::pending::<()>().await
    });
    let opts = KubeOptions {
        pod_timeout: Duration::from_secs(2),
        offer: Some(crate::cluster::kube::base_offer("kind").with([
            crate::scenario::Capability::Vm,
            crate::scenario::Capability::LiveMigration,
            crate::scenario::Capability::NicHotplug,
        ])),
        ..KubeOptions::default()
    };
    KubeCluster::connect(client, "kind", "t1", opts)
        .await
        .unwrap()
        .scoped("s5")
}

fn seed_vm() -> VirtualMachine {
    let path = crate::bins::fixtures_dir().join("seed/vm-macvtap.yaml");
    let raw = match crate::objects::load_file(&path).unwrap().remove(0) {
        crate::objects::Object::Other { raw, .. } => raw,
        other => panic!("{other:?}"),
    };
    let mut vm = VirtualMachine::from_value(&raw).unwrap();
    vm.name = "vm-a".into();
    vm
}

/// The VM as `start_vm` leaves it: on node-a in the source pod, its console open.
async fn running(cluster: &KubeCluster) -> RunningVm {
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(launcher(SOURCE, "node-a", "Running", false)).unwrap();
    let pod = super::pods::view_of(NS, &pod);
    let stream = console(&cluster.client, NS, "vm-a").await.unwrap();
    let host = KubevirtGuest {
        client: cluster.client.clone(),
        namespace: NS.into(),
        name: "vm-a".into(),
        kind: "VirtualMachine".into(),
        vmi_uid: VMI_UID.into(),
        pod: SOURCE.into(),
        timeout: Duration::from_secs(2),
    };
    let nics = vec![GuestNic {
        interface: "default".into(),
        binding: BindingKind::Macvtap,
        pod_ifname: "net1".into(),
        mac: GUEST_MAC.into(),
        pod_mac: None,
        addresses: vec![],
        gateway: None,
    }];
    RunningVm::new(
        seed_vm(),
        pod,
        nics,
        Box::new(host),
        Agent::over(stream),
        Instant::now(),
        "kubevirt",
    )
}

fn plan(timeout: Duration) -> MigrationPlan {
    let mut p = MigrationPlan::to("node-b");
    p.timeout = timeout;
    p
}

fn consoles(f: &Fake) -> usize {
    f.requests
        .iter()
        .filter(|r| r.1.ends_with("/virtualmachineinstances/vm-a/console"))
        .count()
}

#[tokio::test]
async fn a_migration_that_succeeds_moves_the_guest_to_the_target_pod_and_its_console() {
    let fake: Shared = Arc::default();
    fake.lock().unwrap().phases = vec![
        ("Pending", None),
        ("Scheduling", None),
        ("Running", None),
        ("Succeeded", None),
    ];
    let cluster = fake_cluster(fake.clone()).await;
    let mut vm = running(&cluster).await;
    let report = cluster
        .migrate_vmi(&mut vm, &plan(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(report.completed(), "{}", report.status);
    assert_eq!(report.source_pod.name, SOURCE);
    assert_eq!(report.target_pod.name, TARGET);
    assert_eq!(
        (vm.pod.name.as_str(), vm.pod.node.as_str()),
        (TARGET, "node-b")
    );
    // KubeVirt's own times, not ours.
    let took = report.ended_at.duration_since(report.started_at).unwrap();
    assert_eq!(took, Duration::from_secs(2));
    // The guest is reached through a console on its new node.
    assert_eq!(vm.guest_ifname(GUEST_MAC).await.unwrap(), "eth0");
    let f = fake.lock().unwrap();
    assert_eq!(consoles(&f), 2);
    let vmim = f.vmim.as_ref().unwrap();
    assert_eq!(
        vmim["metadata"]["name"],
        migration_name("vm-a", SOURCE, "node-b")
    );
    assert_eq!(vmim["metadata"]["labels"]["secnet.run"], "t1");
    assert_eq!(vmim["metadata"]["labels"]["secnet.scope"], "s5");
    assert_eq!(vmim["spec"]["vmiName"], "vm-a");
    assert_eq!(
        vmim["spec"]["addedNodeSelector"]["kubernetes.io/hostname"],
        "node-b"
    );
    assert_eq!(f.reads, 4, "the phase is read until Succeeded");
}

#[tokio::test]
async fn a_failed_migration_names_the_vmim_the_phase_and_kubevirts_reason() {
    let fake: Shared = Arc::default();
    fake.lock().unwrap().phases = vec![
        ("Scheduling", None),
        (
            "Failed",
            Some(
                "target pod virt-launcher-vm-a-bbbbb: 0/2 nodes are available: 1 Insufficient dataplane",
            ),
        ),
    ];
    let cluster = fake_cluster(fake.clone()).await;
    let mut vm = running(&cluster).await;
    let err = cluster
        .migrate_vmi(&mut vm, &plan(Duration::from_secs(10)))
        .await
        .unwrap_err()
        .to_string();
    let name = migration_name("vm-a", SOURCE, "node-b");
    for needle in [
        format!("VirtualMachineInstanceMigration {NS}/{name}"),
        "phase Failed".into(),
        "1 Insufficient dataplane".into(),
        "the VMI stays on node-a".into(),
    ] {
        assert!(err.contains(&needle), "{needle:?} not in {err}");
    }
    // The guest is where it was.
    assert_eq!(vm.pod.name, SOURCE);
    assert_eq!(consoles(&fake.lock().unwrap()), 1);
}

#[tokio::test]
async fn a_migration_that_never_ends_fails_at_the_deadline_naming_the_last_phase() {
    let fake: Shared = Arc::default();
    fake.lock().unwrap().phases = vec![("Scheduling", None), ("TargetReady", None)];
    let cluster = fake_cluster(fake.clone()).await;
    let mut vm = running(&cluster).await;
    let err = cluster
        .migrate_vmi(&mut vm, &plan(Duration::from_millis(600)))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("did not finish within 600ms; last phase seen: TargetReady"),
        "{err}"
    );
    assert_eq!(vm.pod.name, SOURCE);
}

#[tokio::test]
async fn a_hot_plug_patches_the_vm_and_waits_for_the_interface_and_an_unplug_for_it_to_go() {
    let fake: Shared = Arc::default();
    let cluster = fake_cluster(fake.clone()).await;
    let mut vm = running(&cluster).await;
    let hot = VmInterface {
        name: "hot".into(),
        binding: BindingKind::Macvtap,
        mac: Some(HOT_MAC.into()),
        network: NetworkSource::Multus {
            namespace: "default".into(),
            name: "dataplane".into(),
        },
    };
    let mut opts = VmOptions::new(None, std::env::temp_dir());
    opts.boot_timeout = Duration::from_secs(5);
    let plugged = cluster.plug_vm(&mut vm, &hot, &opts).await.unwrap();
    assert_eq!(plugged.mac, HOT_MAC);
    assert_eq!(vm.guest_ifname(HOT_MAC).await.unwrap(), "eth1");
    assert!(vm.nics.iter().any(|n| n.interface == "hot"));
    {
        let f = fake.lock().unwrap();
        let patch = f.requests.iter().find(|r| r.0 == "PATCH").unwrap();
        assert_eq!(patch.1, VM);
        assert_eq!(patch.2, "application/json-patch+json");
        assert_eq!(
            patch.3[0]["path"],
            "/spec/template/spec/domain/devices/interfaces/-"
        );
        assert_eq!(patch.3[0]["value"]["macAddress"], HOT_MAC);
        // The network where the scenario's NADs are: the run's namespace.
        assert_eq!(
            patch.3[1]["value"]["multus"]["networkName"],
            format!("{NS}/dataplane")
        );
        // The VMI was read until it listed the interface (two reads without it).
        let reads = f
            .requests
            .iter()
            .skip_while(|r| r.0 != "PATCH")
            .filter(|r| r.1 == format!("{VMIS}/vm-a"))
            .count();
        assert!(reads >= 3, "{reads} VMI reads after the patch");
    }
    let unplugged = cluster.unplug_vm(&mut vm, "hot").await.unwrap();
    assert_eq!(unplugged.pod_ifname, plugged.pod_ifname);
    assert!(vm.vm.interfaces.iter().all(|i| i.name != "hot"));
    assert!(vm.nics.iter().all(|n| n.interface != "hot"));
    let f = fake.lock().unwrap();
    let unplug = f.requests.iter().rfind(|r| r.0 == "PATCH").unwrap();
    assert_eq!(
        unplug.3,
        json!([
            {"op": "test", "path": "/spec/template/spec/domain/devices/interfaces/1/name", "value": "hot"},
            {"op": "add", "path": "/spec/template/spec/domain/devices/interfaces/1/state", "value": "absent"},
        ])
    );
}

#[tokio::test]
async fn the_abilities_follow_the_offer_and_the_schedulable_nodes() {
    let fake: Shared = Arc::default();
    let cluster = fake_cluster(fake).await;
    use crate::vm::Guests;
    assert!(cluster.live_migration().is_some() && cluster.hotplug().is_some());
    let mut one = cluster.clone();
    one.restrict_nodes(&["node-a".to_string()]).unwrap();
    assert_eq!(one.schedulable_nodes(), 1);
    assert!(one.live_migration().is_none() && one.hotplug().is_none());
    assert!(
        !one.offer()
            .offers(crate::scenario::Capability::LiveMigration)
    );
}
