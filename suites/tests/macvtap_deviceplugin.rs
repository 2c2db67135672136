//! The device plugin against the kubelet double (`secnet::kubelet`), over real gRPC on
//! Unix sockets, with real macvtaps on veth lower devices in network namespaces.
//! Time bounds are generous (CI machines are slow); the real numbers are in the bench.

#[path = "plugins/macvtap_deviceplugin.rs"]
mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::{Duration, Instant};

use common::{Node, config, resource};
use deviceplugin_api::v1beta1::ContainerPreferredAllocationRequest;
use deviceplugin_api::{HEALTHY, UNHEALTHY};
use secnet::kubelet::{KubeletError, PodId};

const BOUND: Duration = Duration::from_secs(5);

/// Pod `default/pod-<x>` with UID `uid-<x>`.
fn pod(x: &str) -> PodId {
    PodId::new("default", &format!("pod-{x}"), &format!("uid-{x}"))
}

fn ids(name: &str, n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{name}Mvp{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_quickly_and_advertises_every_device_healthy() {
    if !secnet::prereq::require_root("registers_quickly_and_advertises_every_device_healthy") {
        return;
    }
    let mut n = Node::new();
    let file = n.dir.path().join("macvtap.json");
    std::fs::write(&file, config("dataplane", "ens33", r#", "capacity": 5"#)).unwrap();
    let started = Instant::now();
    n.start_plugin(None, &["--config", file.to_str().unwrap()]);

    let reg = n
        .kubelet
        .wait_for_registration(&resource("dataplane"), started, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        reg.at - started < Duration::from_secs(3),
        "registered after {:?}",
        reg.at - started
    );
    assert_eq!(reg.version, "v1beta1");
    assert_eq!(reg.endpoint, "macvtap.network.kubevirt.io_dataplane");
    assert!(
        n.socket("dataplane")
            .metadata()
            .unwrap()
            .file_type()
            .is_socket()
    );

    let view = n
        .kubelet
        .wait_for_devices(&resource("dataplane"), 5, HEALTHY, BOUND)
        .await
        .unwrap();
    assert_eq!(
        view.devices.keys().cloned().collect::<Vec<_>>(),
        ids("dataplane", 5)
    );
    assert_eq!(view.allocatable(), 5);
    assert!(view.streaming);
    assert_eq!(
        n.kubelet.snapshot().resources.len(),
        1,
        "only the configured resource"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_creates_the_macvtap_and_returns_its_tap_device() {
    if !secnet::prereq::require_root("allocate_creates_the_macvtap_and_returns_its_tap_device") {
        return;
    }
    let mut n = Node::new();
    n.ip(&["link", "set", "ens33", "txqueuelen", "1234"]);
    let conf = config(
        "dataplane",
        "ens33",
        r#", "mode": "vepa", "capacity": 4, "owner": 107, "group": 108"#,
    );
    n.start_plugin(Some(&conf), &[]);
    let res = resource("dataplane");
    n.kubelet
        .wait_for_devices(&res, 4, HEALTHY, BOUND)
        .await
        .unwrap();

    let response = n
        .kubelet
        .allocate(&res, &["dataplaneMvp1".to_string()])
        .await
        .unwrap();
    assert_eq!(response.container_responses.len(), 1);
    let devices = &response.container_responses[0].devices;
    assert_eq!(devices.len(), 1, "{response:?}");
    let tap = &devices[0];
    assert_eq!(tap.permissions, "rw");
    assert_eq!(tap.container_path, tap.host_path);
    let index: u32 = tap
        .host_path
        .strip_prefix("/dev/tap")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a /dev/tapN: {}", tap.host_path));

    let link = cni_kit::naming::hashed_link_name("dataplaneMvp1");
    let handle = cni_kit::netns::netlink_in(Some(&n.node.open().unwrap()))
        .await
        .unwrap();
    let facts = cni_kit::netns::link_by_name(&handle, &link)
        .await
        .unwrap()
        .expect("macvtap exists");
    let lower = cni_kit::netns::link_by_name(&handle, "ens33")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.kind.as_deref(), Some("macvtap"));
    assert_eq!(
        facts.index, index,
        "/dev/tapN is named after the macvtap's ifindex"
    );
    assert_eq!(facts.parent, Some(lower.index));
    assert!(facts.up);
    assert_eq!(
        facts.txqueuelen, 1234,
        "txqueuelen copied from the lower device"
    );
    assert!(
        n.ip(&["-d", "link", "show", &link])
            .contains("macvtap mode vepa")
    );
    assert_eq!(
        facts.alias.as_deref(),
        Some("secnet-deviceplugin:dataplaneMvp1"),
        "marked for the CNI with its deviceID"
    );

    let meta = std::fs::metadata(&tap.host_path).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(
        (meta.uid(), meta.gid()),
        (107, 108),
        "owner/group from the config"
    );
    assert_eq!(meta.mode() & 0o777, 0o600);

    // Re-allocating the same ID replaces the link.
    let again = n
        .kubelet
        .allocate(&res, &["dataplaneMvp1".to_string()])
        .await
        .unwrap();
    let facts2 = cni_kit::netns::link_by_name(&handle, &link)
        .await
        .unwrap()
        .expect("macvtap exists");
    // A new macvtap gets a new random MAC (its ifindex may be the same: outside the
    // host namespace indexes are derived from the device ID).
    assert_ne!(facts2.mac, facts.mac, "a new link");
    assert_eq!(
        facts2.alias.as_deref(),
        Some("secnet-deviceplugin:dataplaneMvp1"),
        "the new link is marked too"
    );
    assert_eq!(
        again.container_responses[0].devices[0].host_path,
        format!("/dev/tap{}", facts2.index)
    );
    let macvtaps = cni_kit::netns::all_links(&handle)
        .await
        .unwrap()
        .into_iter()
        .filter(|l| l.kind.as_deref() == Some("macvtap"))
        .count();
    assert_eq!(macvtaps, 1, "the old link is gone");

    // Several IDs for one container: one DeviceSpec each.
    let two = n
        .kubelet
        .allocate(
            &res,
            &["dataplaneMvp2".to_string(), "dataplaneMvp3".to_string()],
        )
        .await
        .unwrap();
    assert_eq!(two.container_responses[0].devices.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocate_errors_are_grpc_statuses_with_clear_messages() {
    if !secnet::prereq::require_root("allocate_errors_are_grpc_statuses_with_clear_messages") {
        return;
    }
    let mut n = Node::new();
    n.start_plugin(
        Some(&config("dataplane", "ens33", r#", "capacity": 2"#)),
        &[],
    );
    let res = resource("dataplane");
    n.kubelet
        .wait_for_devices(&res, 2, HEALTHY, BOUND)
        .await
        .unwrap();

    let err = n
        .kubelet
        .allocate(&res, &["dataplaneMvp2".to_string()])
        .await
        .unwrap_err();
    let KubeletError::Rpc { status, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("dataplaneMvp0 to dataplaneMvp1"),
        "{}",
        status.message()
    );

    n.ip(&["link", "del", "ens33"]);
    let err = n
        .kubelet
        .allocate(&res, &["dataplaneMvp0".to_string()])
        .await
        .unwrap_err();
    let KubeletError::Rpc { status, .. } = err else {
        panic!("{err}")
    };
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("lower device ens33 does not exist"),
        "{}",
        status.message()
    );
    assert!(n.plugin().is_running(), "errors do not crash the plugin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_device_down_up_delete_drive_device_health() {
    if !secnet::prereq::require_root("lower_device_down_up_delete_drive_device_health") {
        return;
    }
    let mut n = Node::new();
    n.start_plugin(
        Some(&config("dataplane", "ens33", r#", "capacity": 3"#)),
        &[],
    );
    let res = resource("dataplane");
    n.kubelet
        .wait_for_devices(&res, 3, HEALTHY, BOUND)
        .await
        .unwrap();

    n.ip(&["link", "set", "ens33", "down"]);
    let view = n
        .kubelet
        .wait_for_devices(&res, 3, UNHEALTHY, BOUND)
        .await
        .unwrap();
    assert_eq!(
        view.devices.keys().cloned().collect::<Vec<_>>(),
        ids("dataplane", 3),
        "same IDs"
    );
    assert!(
        view.streaming,
        "Unhealthy came over ListAndWatch, not from a closed stream"
    );

    n.ip(&["link", "set", "ens33", "up"]);
    n.kubelet
        .wait_for_devices(&res, 3, HEALTHY, BOUND)
        .await
        .unwrap();

    n.ip(&["link", "del", "ens33"]);
    let view = n
        .kubelet
        .wait_for_devices(&res, 3, UNHEALTHY, BOUND)
        .await
        .unwrap();
    assert!(view.streaming);

    n.lab.veth(&n.node, "ens33", &n.peer, "peer0").unwrap();
    n.kubelet
        .wait_for_devices(&res, 3, HEALTHY, BOUND)
        .await
        .unwrap();
    assert!(n.plugin().is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_re_registers_and_serves_again() {
    if !secnet::prereq::require_root("kubelet_restart_re_registers_and_serves_again") {
        return;
    }
    let mut n = Node::new();
    n.start_plugin(
        Some(&config("dataplane", "ens33", r#", "capacity": 2"#)),
        &[],
    );
    let res = resource("dataplane");
    n.kubelet
        .wait_for_devices(&res, 2, HEALTHY, BOUND)
        .await
        .unwrap();

    let restarted = Instant::now();
    n.kubelet.restart().await.unwrap();
    assert!(
        !n.socket("dataplane").exists(),
        "the kubelet double removed plugin sockets"
    );
    let reg = n
        .kubelet
        .wait_for_registration(&res, restarted, Duration::from_secs(4))
        .await
        .unwrap();
    eprintln!(
        "re-registered {:?} after the kubelet restart",
        reg.at - restarted
    );
    n.kubelet
        .wait_until("a live stream after restart", BOUND, |s| {
            s.resource(&res)
                .filter(|r| r.streaming && r.allocatable() == 2)
                .cloned()
        })
        .await
        .unwrap();
    assert!(n.socket("dataplane").exists(), "the plugin serves again");
    n.kubelet
        .allocate(&res, &["dataplaneMvp0".to_string()])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_serving_removes_sockets_and_exits_zero() {
    if !secnet::prereq::require_root("sigterm_stops_serving_removes_sockets_and_exits_zero") {
        return;
    }
    let mut n = Node::new();
    n.ip(&[
        "link", "add", "ens34", "type", "veth", "peer", "name", "ens34p",
    ]);
    let conf = r#"[{"name": "a", "lowerDevice": "ens33", "capacity": 1},
                   {"name": "b", "lowerDevice": "ens34", "capacity": 1}]"#;
    n.start_plugin(Some(conf), &[]);
    n.kubelet
        .wait_for_devices(&resource("a"), 1, HEALTHY, BOUND)
        .await
        .unwrap();
    // ens34 is down: its devices are advertised Unhealthy.
    n.kubelet
        .wait_for_devices(&resource("b"), 1, UNHEALTHY, BOUND)
        .await
        .unwrap();
    assert!(n.socket("a").exists() && n.socket("b").exists());

    let status = n.plugin().terminate(BOUND).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", n.plugin().logs());
    assert!(!n.socket("a").exists(), "socket a removed");
    assert!(!n.socket("b").exists(), "socket b removed");
    assert!(
        n.kubelet.kubelet_socket().exists(),
        "the kubelet's socket is not ours to remove"
    );
    n.kubelet
        .wait_until("streams closed", BOUND, |s| {
            s.resources.values().all(|r| !r.streaming).then_some(())
        })
        .await
        .unwrap();

    let logs = n.plugin().logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 4, "{logs}");
    for line in lines {
        assert!(
            line.contains("macvtap.network.kubevirt.io/"),
            "a log line without the resource name: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_preferred_allocation_and_pre_start() {
    if !secnet::prereq::require_root("options_preferred_allocation_and_pre_start") {
        return;
    }
    let mut n = Node::new();
    n.start_plugin(
        Some(&config("dataplane", "ens33", r#", "capacity": 4"#)),
        &[],
    );
    let res = resource("dataplane");
    n.kubelet
        .wait_for_devices(&res, 4, HEALTHY, BOUND)
        .await
        .unwrap();

    let options = n.kubelet.options(&res).await.unwrap();
    assert!(!options.pre_start_required && !options.get_preferred_allocation_available);
    let preferred = n
        .kubelet
        .preferred_allocation(
            &res,
            ContainerPreferredAllocationRequest {
                available_device_i_ds: ids("dataplane", 4),
                must_include_device_i_ds: vec!["dataplaneMvp3".into()],
                allocation_size: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        preferred.container_responses[0].device_i_ds,
        vec!["dataplaneMvp3", "dataplaneMvp0"]
    );
    n.kubelet
        .pre_start_container(&res, &ids("dataplane", 1))
        .await
        .unwrap();
    assert!(
        n.plugin().is_running(),
        "upstream crashes on GetPreferredAllocation; we must not"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_config_with_master_registers_and_warns() {
    if !secnet::prereq::require_root("seed_config_with_master_registers_and_warns") {
        return;
    }
    let mut n = Node::new();
    // The seed document's ConfigMap, minus its trailing comma.
    let conf = "[\n    {\n        \"name\"     : \"dataplane\",\n        \"master\"   : \"ens33\",\n        \"mode\"     : \"bridge\",\n        \"capacity\" : 50\n    }\n]\n";
    n.start_plugin(Some(conf), &[]);
    let view = n
        .kubelet
        .wait_for_devices(&resource("dataplane"), 50, HEALTHY, BOUND)
        .await
        .unwrap();
    assert_eq!(view.capacity(), 50);
    let logs = n.plugin().logs();
    assert!(
        logs.contains("WARN") && logs.contains("rename the key to \"lowerDevice\""),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_admission_allocates_checkpoints_and_reports_insufficient() {
    if !secnet::prereq::require_root(
        "kubelet_admission_allocates_checkpoints_and_reports_insufficient",
    ) {
        return;
    }
    let mut n = Node::new();
    n.start_plugin(
        Some(&config("dataplane", "ens33", r#", "capacity": 3"#)),
        &[],
    );
    let res = resource("dataplane");
    n.kubelet
        .wait_for_devices(&res, 3, HEALTHY, BOUND)
        .await
        .unwrap();

    let a = n
        .kubelet
        .admit(&pod("a"), "compute", &res, 2)
        .await
        .unwrap();
    assert_eq!(a.ids.len(), 2);
    let b = n
        .kubelet
        .admit(&pod("b"), "compute", &res, 1)
        .await
        .unwrap();
    assert!(
        a.ids.iter().all(|id| !b.ids.contains(id)),
        "no device given twice"
    );
    let err = n
        .kubelet
        .admit(&pod("c"), "compute", &res, 1)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Insufficient macvtap.network.kubevirt.io/dataplane"),
        "{err}"
    );

    // The checkpoint on disk is what multus reads: pod → device IDs → /dev/tapN.
    let path = n.dir.path().join(secnet::kubelet::checkpoint::FILE_NAME);
    let cp = secnet::kubelet::checkpoint::Checkpoint::read(&path).unwrap();
    assert_eq!(cp.pod_devices("uid-a", &res), a.ids);
    assert_eq!(cp.data.registered_devices[&res], ids("dataplane", 3));
    let entry = cp
        .data
        .pod_device_entries
        .iter()
        .find(|e| e.pod_uid == "uid-b")
        .unwrap();
    let tap = &entry.allocate_response().unwrap().container_responses[0].devices[0].host_path;
    assert!(std::path::Path::new(tap).exists(), "{tap}");

    n.kubelet.release("uid-a").unwrap();
    let c = n
        .kubelet
        .admit(&pod("c"), "compute", &res, 2)
        .await
        .unwrap();
    assert_eq!(c.ids.len(), 2);
    let cp = secnet::kubelet::checkpoint::Checkpoint::read(&path).unwrap();
    assert!(cp.pod_devices("uid-a", &res).is_empty());
    assert_eq!(cp.pod_devices("uid-c", &res), c.ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_daemonset_command_line_starts_it() {
    if !secnet::prereq::require_root("upstream_daemonset_command_line_starts_it") {
        return;
    }
    let mut n = Node::new();
    // kubevirt/macvtap-cni's DaemonSet: `/macvtap-deviceplugin -v 3 -logtostderr`.
    let conf = r#"[{"name": "dataplane", "lowerDevice": "ens33", "capacity": 3}]"#;
    n.start_plugin(Some(conf), &["-v", "3", "-logtostderr"]);
    let view = n
        .kubelet
        .wait_for_devices(&resource("dataplane"), 3, HEALTHY, BOUND)
        .await
        .unwrap();
    assert_eq!(view.capacity(), 3);
    assert!(n.plugin().is_running());
}

/// Real kubelets and clients (grpc-go, gRPC C-core) send the socket path, its
/// percent-encoding, `localhost` or nothing as `:authority`: every one gets a real
/// answer from the plugin's DevicePlugin service (their exact HTTP/2 bytes, no Go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_grpc_go_and_c_core_clients_with_every_authority() {
    use deviceplugin_api::peers::{self, Authority, Client};
    use deviceplugin_api::v1beta1::{AllocateRequest, ContainerAllocateRequest};
    use prost::Message;
    if !secnet::prereq::require_root("answers_grpc_go_and_c_core_clients_with_every_authority") {
        return;
    }
    let mut n = Node::new();
    let started = Instant::now();
    n.start_plugin(
        Some(&config("dataplane", "ens33", r#", "capacity": 2"#)),
        &[],
    );
    n.kubelet
        .wait_for_registration(&resource("dataplane"), started, BOUND)
        .await
        .unwrap();
    let socket = n.socket("dataplane");
    for client in [Client::GrpcGo, Client::CCore] {
        for authority in Authority::ALL {
            let case = format!("{client:?}/{authority:?}");
            let bytes = peers::request(
                client,
                "/v1beta1.DevicePlugin/GetDevicePluginOptions",
                &authority.value(&socket),
                &[],
            );
            let answer = peers::call(&socket, &bytes, BOUND)
                .await
                .unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(answer.status, "200", "{case}: {answer:?}");
            assert_eq!(
                answer.grpc_status.as_deref(),
                Some("0"),
                "{case}: {answer:?}"
            );
            let options =
                deviceplugin_api::v1beta1::DevicePluginOptions::decode(answer.message.as_slice())
                    .unwrap();
            assert_eq!(
                options,
                Default::default(),
                "{case}: upstream's options, {{}}"
            );
        }
    }
    // An Allocate through a path authority creates the macvtap for real.
    let request = AllocateRequest {
        container_requests: vec![ContainerAllocateRequest {
            devices_ids: vec!["dataplaneMvp1".into()],
        }],
    };
    let bytes = peers::request(
        Client::GrpcGo,
        "/v1beta1.DevicePlugin/Allocate",
        &Authority::SocketPath.value(&socket),
        &request.encode_to_vec(),
    );
    let answer = peers::call(&socket, &bytes, BOUND).await.unwrap();
    assert_eq!(answer.grpc_status.as_deref(), Some("0"), "{answer:?}");
    let response =
        deviceplugin_api::v1beta1::AllocateResponse::decode(answer.message.as_slice()).unwrap();
    assert!(
        response.container_responses[0].devices[0]
            .host_path
            .starts_with("/dev/tap")
    );
}
