//! The real `ovs` binary against real userspace Open vSwitch in a fresh namespace
//! per test, for every supported spec version (test names `v1_0_0::…`, messages
//! `[1.0.0] …`).

#[path = "plugins/ovs_cni.rs"]
mod common;

use cni_kit::SpecVersion;
use common::*;
use serde_json::json;

cni_kit::for_every_version!(
    add_attaches_access_port_and_del_removes_it,
    add_trunk_and_native_vlan_settings,
    add_applies_mtu_and_mac_from_every_source,
    add_with_ipam_configures_addresses_and_del_releases,
    add_refuses_bad_input_before_touching_anything,
    add_bridge_missing_leaves_nothing,
    add_socket_unreachable_is_try_again,
    add_socket_file_without_unix_prefix,
    add_ipam_failure_undoes_everything,
    check_reports_tag_trunk_mtu_mac_drift,
    del_is_idempotent,
    del_after_netns_gone_removes_port,
    status_reports_ovsdb_and_bridge,
    gc_removes_ports_of_invalid_attachments,
    version_lists_supported_versions,
    concurrent_adds_all_land_on_the_bridge,
    add_refuses_what_the_node_policy_does_not_allow,
    del_and_gc_succeed_whatever_add_would_refuse,
    hostile_runtime_input_and_ipam,
);

fn tag(v: SpecVersion) -> String {
    format!("[{v}]")
}

async fn add_attaches_access_port_and_del_removes_it(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} access port", tag(v))) else {
        return;
    };
    let cfg = n.config(v, json!({"vlan": 100}));
    let reply = n
        .call(
            "ADD",
            cfg.clone(),
            &n.pod,
            "net1",
            "IgnoreUnknown=1;K8S_POD_UID=uid-1",
        )
        .await;
    assert!(
        reply.success,
        "{} ADD failed: {} {}",
        tag(v),
        reply.stdout,
        reply.stderr
    );
    eprintln!("ADD took {:?}", reply.elapsed);
    let result = reply.json().unwrap();
    assert_eq!(result["cniVersion"], v.as_str());
    let host = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(host.starts_with("veth") && host.len() == 12, "{host}");
    assert!(result["interfaces"][0].get("sandbox").is_none());
    let pod_if = &result["interfaces"][1];
    assert_eq!(pod_if["name"], "net1");
    assert_eq!(pod_if["sandbox"], n.pod.path_str());
    let link = n.link(&n.pod, "net1").expect("net1 in the pod");
    assert_eq!(link.kind, "veth");
    assert_eq!(
        pod_if["mac"].as_str(),
        link.mac.as_deref(),
        "{} result MAC == kernel MAC",
        tag(v)
    );
    assert!(link.has_flag("UP"));
    let host_link = n.link(&n.node, &host).expect("host veth on the node");
    assert_eq!(
        result["interfaces"][0]["mac"].as_str(),
        host_link.mac.as_deref()
    );
    assert_eq!(n.ports(), vec![host.clone()]);
    assert_eq!(n.get("Port", &host, "tag"), "100");
    assert_eq!(n.get("Port", &host, "vlan_mode"), "access");
    let ids = n.get("Interface", &host, "external_ids");
    for want in [
        format!("contNetns=\"{}\"", n.pod.path_str()),
        "contIface=net1".to_string(),
        "contPodUid=uid-1".to_string(),
        "owner=ovs-cni.network.kubevirt.io".to_string(),
    ] {
        assert!(ids.contains(&want), "{} {want} not in {ids}", tag(v));
    }
    assert!(n.cache_file(&n.pod, "net1").exists());

    let del = n.call("DEL", cfg, &n.pod, "net1", "").await;
    assert!(del.success, "{} DEL: {}", tag(v), del.stdout);
    assert!(
        n.ports().is_empty(),
        "{} port left: {:?}",
        tag(v),
        n.ports()
    );
    assert!(n.link(&n.node, &host).is_none());
    assert!(n.link(&n.pod, "net1").is_none());
    assert!(!n.cache_file(&n.pod, "net1").exists());
}

async fn add_trunk_and_native_vlan_settings(v: SpecVersion) {
    let Some(mut n) = OvsNode::new(&format!("{} trunk", tag(v))) else {
        return;
    };
    let cfg = n.config(
        v,
        json!({"trunk": [{"id": 10}, {"minID": 20, "maxID": 22}]}),
    );
    let reply = n.call("ADD", cfg, &n.pod, "net1", "").await;
    assert!(reply.success, "{} {}", tag(v), reply.stdout);
    let host = reply.json().unwrap()["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(n.get("Port", &host, "trunks"), "[10, 20, 21, 22]");
    assert_eq!(n.get("Port", &host, "vlan_mode"), "trunk");
    assert_eq!(n.get("Port", &host, "tag"), "[]");

    let p2 = n.add_pod("p2");
    let cfg = n.config(v, json!({"vlan": 5, "trunk": [{"id": 6}]}));
    let reply = n.call("ADD", cfg, &p2, "net1", "").await;
    assert!(reply.success, "{} {}", tag(v), reply.stdout);
    let host = reply.json().unwrap()["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(n.get("Port", &host, "tag"), "5");
    assert_eq!(n.get("Port", &host, "trunks"), "[6]");
    assert_eq!(n.get("Port", &host, "vlan_mode"), "native-untagged");
}

async fn add_applies_mtu_and_mac_from_every_source(v: SpecVersion) {
    let Some(mut n) = OvsNode::new(&format!("{} mtu mac", tag(v))) else {
        return;
    };
    let cases = [
        (
            json!({"runtimeConfig": {"mac": "02:00:00:00:01:01"}}),
            "",
            "02:00:00:00:01:01",
        ),
        (
            json!({"args": {"cni": {"mac": "02:00:00:00:01:02"}}}),
            "",
            "02:00:00:00:01:02",
        ),
        (
            json!({}),
            "IgnoreUnknown=1;MAC=02:00:00:00:01:03",
            "02:00:00:00:01:03",
        ),
    ];
    for (i, (extra, args, want)) in cases.into_iter().enumerate() {
        let pod = n.add_pod(&format!("p{i}"));
        let mut cfg = n.config(v, extra);
        cfg["mtu"] = json!(1400);
        cfg["vlan"] = json!(100);
        let reply = n.call("ADD", cfg, &pod, "net1", args).await;
        assert!(reply.success, "{} {}", tag(v), reply.stdout);
        let result = reply.json().unwrap();
        let link = n.link(&pod, "net1").unwrap();
        assert_eq!(link.mac.as_deref(), Some(want), "{} case {i}", tag(v));
        assert_eq!(result["interfaces"][1]["mac"], want);
        assert_eq!(link.mtu, 1400);
        let host = result["interfaces"][0]["name"].as_str().unwrap();
        assert_eq!(n.link(&n.node, host).unwrap().mtu, 1400, "host end MTU");
        if v.is_v1() {
            assert_eq!(result["interfaces"][1]["mtu"], 1400);
        } else {
            assert!(result["interfaces"][1].get("mtu").is_none());
        }
    }
}

async fn add_with_ipam_configures_addresses_and_del_releases(v: SpecVersion) {
    let test = format!("{} ipam", tag(v));
    if !secnet::prereq::require_program(
        &test,
        "/usr/lib/cni/host-local",
        "containernetworking-plugins",
    ) {
        return;
    }
    let Some(n) = OvsNode::new(&test) else {
        return;
    };
    if v == SpecVersion::V1_1_0 {
        // Debian's host-local stops at 1.0.0.
        return;
    }
    let data_dir = n.dir.join("ipam");
    let cfg = n.config(
        v,
        json!({"vlan": 100, "ipam": {"type": "host-local", "dataDir": data_dir,
        "ranges": [[{"subnet": "10.77.0.0/24", "gateway": "10.77.0.1"}]],
        "routes": [{"dst": "10.78.0.0/16"}]}}),
    );
    let reply = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(
        reply.success,
        "{} {} {}",
        tag(v),
        reply.stdout,
        reply.stderr
    );
    let result = reply.json().unwrap();
    let ip = &result["ips"][0];
    assert_eq!(ip["address"], "10.77.0.2/24");
    assert_eq!(
        ip["interface"],
        1,
        "{} ips point at the pod interface",
        tag(v)
    );
    assert_eq!(ip.get("version").is_some(), !v.is_v1());
    assert_eq!(
        result["interfaces"][1]["mac"],
        "0a:58:0a:4d:00:02",
        "{} MAC from the IPv4",
        tag(v)
    );
    let addrs = String::from_utf8_lossy(
        &n.run_in(&n.pod, &["ip", "-4", "addr", "show", "net1"])
            .await
            .stdout,
    )
    .into_owned();
    assert!(addrs.contains("10.77.0.2/24"), "{addrs}");
    let routes =
        String::from_utf8_lossy(&n.run_in(&n.pod, &["ip", "route"]).await.stdout).into_owned();
    assert!(
        routes.contains("10.78.0.0/16 via 10.77.0.1 dev net1"),
        "{routes}"
    );
    if v.has_check() {
        let mut check = cfg.clone();
        check["prevResult"] = result.clone();
        let r = n.call("CHECK", check, &n.pod, "net1", "").await;
        assert!(r.success, "{} CHECK: {}", tag(v), r.stdout);
    }
    let del = n.call("DEL", cfg, &n.pod, "net1", "").await;
    assert!(del.success, "{} {}", tag(v), del.stdout);
    let leased = std::fs::read_dir(data_dir.join("ovs-net"))
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("10.77."));
    assert!(!leased, "{} IPAM DEL released the address", tag(v));
}

async fn add_refuses_bad_input_before_touching_anything(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} bad input", tag(v))) else {
        return;
    };
    let before = n.links(&n.node).unwrap();
    for (extra, code, needle) in [
        (json!({"vlan": 0}), 7, "vlan 0 is not a valid VLAN id"),
        (json!({"vlan": 4095}), 7, "vlan 4095"),
        (
            json!({"trunk": [{"minID": 10, "maxID": 5000}]}),
            7,
            "trunk[0].maxID 5000",
        ),
        (json!({"trunk": [{"minID": 10}]}), 7, "trunk[0] must have"),
        (json!({"mtu": 20}), 7, "mtu 20"),
        (json!({"bridge": ""}), 7, "bridge is required"),
        (
            json!({"socket_file": "tcp:1.2.3.4:6640"}),
            7,
            "only unix sockets",
        ),
        (
            json!({"runtimeConfig": {"mac": "zz"}}),
            7,
            "runtimeConfig.mac",
        ),
        (json!({"interface_type": "dpdk"}), 2, "interface_type"),
        (json!({"ipam": {"type": "no-such-ipam"}}), 7, "no-such-ipam"),
    ] {
        let cfg = n.config(v, extra.clone());
        let reply = n.call("ADD", cfg, &n.pod, "net1", "").await;
        assert_error(&reply, code, needle);
    }
    let reply = n
        .call(
            "ADD",
            n.config(v, json!({})),
            &n.pod,
            "net1",
            "MAC=01:00:5e:00:00:01",
        )
        .await;
    assert_error(&reply, 4, "CNI_ARGS MAC");
    let mut call = n.call_for("ADD", n.config(v, json!({})), &n.pod, "net1", "");
    call.netns = Some("/run/netns/secnet-no-such-netns".into());
    assert_error(&n.call_raw(call).await, 3, "no-such-netns");
    let mut call = n.call_for("ADD", n.config(v, json!({})), &n.pod, "net1", "");
    call.raw_stdin = Some(b"{not json".to_vec());
    assert_error(&n.call_raw(call).await, 6, "decode");
    // net1 already in the pod.
    n.nl.lab
        .ip(
            &n.pod,
            &["link", "add", "net1", "type", "veth", "peer", "name", "x1"],
        )
        .unwrap();
    let reply = n
        .call("ADD", n.config(v, json!({"vlan": 1})), &n.pod, "net1", "")
        .await;
    assert_error(&reply, 100, "already exists");
    assert_eq!(
        n.links(&n.node).unwrap(),
        before,
        "{} nothing new on the node",
        tag(v)
    );
    assert!(n.ports().is_empty());
    assert!(!n.cache_file(&n.pod, "net1").exists());
}

async fn add_bridge_missing_leaves_nothing(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} bridge missing", tag(v))) else {
        return;
    };
    let before = n.links(&n.node).unwrap();
    let cfg = n.config(v, json!({"bridge": "br-nope", "vlan": 100}));
    let reply = n.call("ADD", cfg, &n.pod, "net1", "").await;
    // Worded as for a bridge that carries the node: a tenant learns neither.
    assert_error(&reply, 7, "is not available to network configurations");
    assert_eq!(n.links(&n.node).unwrap(), before, "{} veth removed", tag(v));
    assert!(n.link(&n.pod, "net1").is_none());
    let all = n.ovs.vsctl(&["--columns=name", "list", "Port"]).unwrap();
    assert!(!all.contains("veth"), "{} no Port row left: {all}", tag(v));
    assert!(!n.cache_file(&n.pod, "net1").exists());
}

async fn add_socket_unreachable_is_try_again(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} socket unreachable", tag(v))) else {
        return;
    };
    let sock = n.dir.join("nothing-here.sock");
    let cfg = n.config(
        v,
        json!({"socket_file": format!("unix:{}", sock.display())}),
    );
    let reply = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert_error(&reply, 11, &sock.display().to_string());
    assert!(reply.stdout.contains("ovsdb-server"), "{}", reply.stdout);
    assert!(n.link(&n.pod, "net1").is_none());
    // Nothing cached (ADD failed): DEL succeeds without ovsdb-server, as upstream's
    // does (a node rebooting before Open vSwitch is up must not keep pods).
    let reply = n.call("DEL", cfg, &n.pod, "net1", "").await;
    assert!(reply.success, "{} {}", tag(v), reply.stdout);
}

async fn add_socket_file_without_unix_prefix(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} bare socket path", tag(v))) else {
        return;
    };
    let cfg = n.config(
        v,
        json!({"socket_file": n.ovs.socket.display().to_string(), "vlan": 7}),
    );
    let reply = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(reply.success, "{} {}", tag(v), reply.stdout);
    assert_eq!(n.ports().len(), 1);
    assert!(n.call("DEL", cfg, &n.pod, "net1", "").await.success);
    assert!(n.ports().is_empty());
}

async fn add_ipam_failure_undoes_everything(v: SpecVersion) {
    let test = format!("{} ipam failure", tag(v));
    if !secnet::prereq::require_program(
        &test,
        "/usr/lib/cni/host-local",
        "containernetworking-plugins",
    ) {
        return;
    }
    let Some(n) = OvsNode::new(&test) else {
        return;
    };
    let before = n.links(&n.node).unwrap();
    // host-local refuses a malformed subnet: its error comes back with its code.
    let cfg = n.config(v, json!({"ipam": {"type": "host-local", "dataDir": n.dir.join("ipam"), "ranges": [[{"subnet": "10.77.0.0/99"}]]}}));
    let reply = n.call("ADD", cfg, &n.pod, "net1", "").await;
    assert!(!reply.success, "{}", reply.stdout);
    assert!(
        reply.stdout.contains("IPAM plugin host-local failed ADD"),
        "{}",
        reply.stdout
    );
    assert_eq!(n.links(&n.node).unwrap(), before);
    assert!(n.ports().is_empty());
    // A bridge that does not exist after IPAM ran: the address is given back.
    if v != SpecVersion::V1_1_0 {
        let data_dir = n.dir.join("ipam2");
        let cfg = n.config(v, json!({"bridge": "br-nope", "ipam": {"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": "10.79.0.0/24"}]]}}));
        let reply = n.call("ADD", cfg, &n.pod, "net1", "").await;
        assert_error(&reply, 7, "br-nope");
        let leased = std::fs::read_dir(data_dir.join("ovs-net"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("10.79."))
            })
            .unwrap_or(false);
        assert!(!leased, "{} the address was released", tag(v));
        assert_eq!(n.links(&n.node).unwrap(), before);
    }
}

async fn check_reports_tag_trunk_mtu_mac_drift(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} check", tag(v))) else {
        return;
    };
    let cfg = n.config(v, json!({"vlan": 100, "mtu": 1400}));
    let reply = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(reply.success, "{}", reply.stdout);
    let result = reply.json().unwrap();
    let host = result["interfaces"][0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut check = cfg.clone();
    check["prevResult"] = result.clone();
    if !v.has_check() {
        let r = n.call("CHECK", check, &n.pod, "net1", "").await;
        assert_error(&r, 1, "CHECK");
        return;
    }
    let r = n.call("CHECK", check.clone(), &n.pod, "net1", "").await;
    assert!(r.success, "{} clean CHECK: {}", tag(v), r.stdout);

    n.ovs.vsctl(&["set", "Port", &host, "tag=101"]).unwrap();
    let r = n.call("CHECK", check.clone(), &n.pod, "net1", "").await;
    assert_error(&r, 100, "vlan tag mismatch. ovs=101,netconf=100");
    n.ovs
        .vsctl(&["set", "Port", &host, "tag=100", "trunks=7"])
        .unwrap();
    let r = n.call("CHECK", check.clone(), &n.pod, "net1", "").await;
    assert_error(&r, 100, "trunk mismatch");
    n.ovs.vsctl(&["clear", "Port", &host, "trunks"]).unwrap();

    n.nl.lab
        .ip(&n.pod, &["link", "set", "net1", "mtu", "1300"])
        .unwrap();
    let r = n.call("CHECK", check.clone(), &n.pod, "net1", "").await;
    assert_error(&r, 100, "MTU of net1 is 1300, expected 1400");
    n.nl.lab
        .ip(&n.pod, &["link", "set", "net1", "mtu", "1400"])
        .unwrap();

    n.nl.lab
        .ip(
            &n.pod,
            &["link", "set", "net1", "address", "02:99:00:00:00:01"],
        )
        .unwrap();
    let r = n.call("CHECK", check.clone(), &n.pod, "net1", "").await;
    assert_error(&r, 100, "MAC is 02:99:00:00:00:01");

    let mut no_prev = cfg.clone();
    no_prev.as_object_mut().unwrap().remove("prevResult");
    let r = n.call("CHECK", no_prev, &n.pod, "net1", "").await;
    assert_error(&r, 7, "prevResult");
}

async fn del_is_idempotent(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} del idempotent", tag(v))) else {
        return;
    };
    let cfg = n.config(v, json!({"vlan": 100}));
    // Never added: no cache, no port, no link.
    let r = n.call("DEL", cfg.clone(), &n.pod, "net1", "").await;
    assert!(r.success, "{} DEL before ADD: {}", tag(v), r.stdout);
    assert!(n.call("ADD", cfg.clone(), &n.pod, "net1", "").await.success);
    for i in 0..2 {
        let r = n.call("DEL", cfg.clone(), &n.pod, "net1", "").await;
        assert!(r.success, "{} DEL #{i}: {}", tag(v), r.stdout);
    }
    assert!(n.ports().is_empty());
    assert!(!n.cache_file(&n.pod, "net1").exists());
    // Empty CNI_NETNS after an ADD: the port is found by container id.
    assert!(n.call("ADD", cfg.clone(), &n.pod, "net1", "").await.success);
    std::fs::remove_file(n.cache_file(&n.pod, "net1")).unwrap();
    let mut call = n.call_for("DEL", cfg.clone(), &n.pod, "net1", "");
    call.netns = None;
    let r = n.call_raw(call).await;
    assert!(
        r.success,
        "{} DEL without netns and cache: {}",
        tag(v),
        r.stdout
    );
    assert!(
        n.ports().is_empty(),
        "{} port left: {:?}",
        tag(v),
        n.ports()
    );
    assert!(
        n.link(&n.pod, "net1").is_none(),
        "{} veth removed with its host end",
        tag(v)
    );
    // A port that is already gone (removed by hand) with the cache still there.
    assert!(n.call("ADD", cfg.clone(), &n.pod, "net1", "").await.success);
    let host = n.ports()[0].clone();
    n.ovs.vsctl(&["del-port", "br1", &host]).unwrap();
    let r = n.call("DEL", cfg, &n.pod, "net1", "").await;
    assert!(r.success, "{} {}", tag(v), r.stdout);
    assert!(n.link(&n.node, &host).is_none());
    assert!(!n.cache_file(&n.pod, "net1").exists());
}

async fn del_after_netns_gone_removes_port(v: SpecVersion) {
    let Some(mut n) = OvsNode::new(&format!("{} del after netns gone", tag(v))) else {
        return;
    };
    let pod = n.add_pod("gone");
    let cfg = n.config(v, json!({"vlan": 100}));
    assert!(n.call("ADD", cfg.clone(), &pod, "net1", "").await.success);
    n.nl.lab.delete_netns(&pod).unwrap();
    let r = n.call("DEL", cfg, &pod, "net1", "").await;
    assert!(r.success, "{} {}", tag(v), r.stdout);
    assert!(
        n.ports().is_empty(),
        "{} port left: {:?}",
        tag(v),
        n.ports()
    );
    assert!(!n.cache_file(&pod, "net1").exists());
}

async fn status_reports_ovsdb_and_bridge(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} status", tag(v))) else {
        return;
    };
    let mut call = n.call_for("STATUS", n.config(v, json!({})), &n.pod, "net1", "");
    call.netns = None;
    if !v.has_status_and_gc() {
        assert_error(&n.call_raw(call).await, 1, "STATUS");
        return;
    }
    let r = n.call_raw(call.clone()).await;
    assert!(r.success, "{}", r.stdout);
    let mut missing_bridge = call.clone();
    missing_bridge.config["bridge"] = json!("br-nope");
    assert_error(
        &n.call_raw(missing_bridge).await,
        50,
        "is not available to network configurations",
    );
    let mut no_socket = call;
    no_socket.config["socket_file"] = json!(format!(
        "unix:{}",
        n.dir.join("nothing-here.sock").display()
    ));
    assert_error(
        &n.call_raw(no_socket.clone()).await,
        50,
        "nothing-here.sock",
    );
    // A socket the node policy does not list is not even looked at.
    no_socket.config["socket_file"] = json!("/nonexistent/db.sock");
    assert_error(&n.call_raw(no_socket).await, 7, "[ovs] sockets");
}

async fn gc_removes_ports_of_invalid_attachments(v: SpecVersion) {
    let Some(mut n) = OvsNode::new(&format!("{} gc", tag(v))) else {
        return;
    };
    let keep = n.add_pod("keep");
    let stale = n.add_pod("stale");
    let cfg = n.config(v, json!({"vlan": 100}));
    let mut hosts = Vec::new();
    for pod in [&keep, &stale] {
        let r = n.call("ADD", cfg.clone(), pod, "net1", "").await;
        assert!(r.success, "{}", r.stdout);
        hosts.push(
            r.json().unwrap()["interfaces"][0]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // A port nobody of ours made.
    n.nl.lab
        .ip(
            &n.node,
            &[
                "link", "add", "foreign0", "type", "veth", "peer", "name", "foreign1",
            ],
        )
        .unwrap();
    n.ovs.vsctl(&["add-port", "br1", "foreign0"]).unwrap();
    let mut gc = cfg.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": n.cid(&keep), "ifname": "net1"}]);
    let mut call = n.call_for("GC", gc, &keep, "", "");
    call.netns = None;
    call.container_id = String::new();
    let r = n.call_raw(call).await;
    if !v.has_status_and_gc() {
        assert_error(&r, 1, "GC");
        return;
    }
    assert!(r.success, "{}", r.stdout);
    let mut ports = n.ports();
    ports.sort();
    let mut want = vec![hosts[0].clone(), "foreign0".to_string()];
    want.sort();
    assert_eq!(
        ports,
        want,
        "{} only the stale attachment's port is gone",
        tag(v)
    );
    assert!(n.link(&n.node, &hosts[1]).is_none(), "stale veth deleted");
    assert!(n.link(&stale, "net1").is_none());
    assert!(!n.cache_file(&stale, "net1").exists());
    assert!(n.cache_file(&keep, "net1").exists());
}

async fn version_lists_supported_versions(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} version", tag(v))) else {
        return;
    };
    let r = n
        .call("VERSION", json!({"cniVersion": v.as_str()}), &n.pod, "", "")
        .await;
    assert!(r.success, "{}", r.stdout);
    let out = r.json().unwrap();
    assert_eq!(out["cniVersion"], v.as_str());
    assert_eq!(
        out["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

async fn concurrent_adds_all_land_on_the_bridge(v: SpecVersion) {
    let Some(mut n) = OvsNode::new(&format!("{} concurrent", tag(v))) else {
        return;
    };
    let pods: Vec<_> = (0..6).map(|i| n.add_pod(&format!("c{i}"))).collect();
    let cfg = n.config(v, json!({"vlan": 300}));
    let replies = futures::future::join_all(
        pods.iter()
            .map(|p| n.call("ADD", cfg.clone(), p, "net1", "")),
    )
    .await;
    for r in &replies {
        assert!(r.success, "{} {}", tag(v), r.stdout);
    }
    assert_eq!(n.ports().len(), 6);
    let replies = futures::future::join_all(
        pods.iter()
            .map(|p| n.call("DEL", cfg.clone(), p, "net1", "")),
    )
    .await;
    for r in &replies {
        assert!(r.success, "{} {}", tag(v), r.stdout);
    }
    assert!(n.ports().is_empty());
}

/// Links on the node, ports on the bridge and Port rows: what an attack must leave
/// unchanged.
fn snapshot(n: &OvsNode) -> (Vec<String>, Vec<String>, String) {
    (
        n.links(&n.node).unwrap(),
        n.ports(),
        n.ovs.vsctl(&["--columns=name", "list", "Port"]).unwrap(),
    )
}

async fn add_refuses_what_the_node_policy_does_not_allow(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} node policy refusals", tag(v))) else {
        return;
    };
    let sock = n.ovs.socket.display().to_string();
    // A symlink to the real socket, and a path through /proc/<pid>/root.
    let link = n.dir.join("link.sock");
    std::os::unix::fs::symlink(&n.ovs.socket, &link).unwrap();
    let via_proc = format!("/proc/{}/root{sock}", std::process::id());
    let before = snapshot(&n);
    let only_sock = format!("[ovs]\nsockets = {sock}\n");
    let cases: Vec<(String, serde_json::Value, &str)> = vec![
        // No policy file: only the default socket.
        ("".into(), json!({"vlan": 100}), "[ovs] sockets"),
        (
            only_sock.clone(),
            json!({"vlan": 100, "socket_file": "/var/run/openvswitch/../openvswitch/db.sock"}),
            "[ovs] sockets",
        ),
        (
            format!("{only_sock}sockets = {}\n", link.display()),
            json!({"vlan": 100, "socket_file": link.display().to_string()}),
            "symlink",
        ),
        (
            format!("{only_sock}sockets = {via_proc}\n"),
            json!({"vlan": 100, "socket_file": via_proc}),
            "/proc",
        ),
        // Trunks, and ports without a vlan (every VLAN), need trunk = true.
        (
            only_sock.clone(),
            json!({"trunk": [{"id": 5}]}),
            "[ovs] trunk",
        ),
        (only_sock.clone(), json!({}), "[ovs] trunk"),
        (
            format!("{only_sock}bridges = br2\n"),
            json!({"vlan": 100}),
            "[ovs] bridges",
        ),
        (
            format!("{only_sock}vlans = 200-299\n"),
            json!({"vlan": 100}),
            "[ovs] vlans",
        ),
        (
            format!("{only_sock}vlans = 100\ntrunk = true\n"),
            json!({"vlan": 100, "trunk": [{"id": 101}]}),
            "trunk VLAN 101",
        ),
    ];
    for (policy, extra, needle) in cases {
        if policy.is_empty() {
            let _ = std::fs::remove_file(n.policy_path());
        } else {
            n.set_policy(&policy);
        }
        let r = n
            .call("ADD", n.config(v, extra.clone()), &n.pod, "net1", "")
            .await;
        assert!(
            !r.success,
            "{} {extra} under {policy:?}: {}",
            tag(v),
            r.stdout
        );
        assert!(
            r.stdout.contains(needle),
            "{} {needle:?} not in {}",
            tag(v),
            r.stdout
        );
        assert_eq!(snapshot(&n), before, "{} {extra}: the node changed", tag(v));
        assert!(n.link(&n.pod, "net1").is_none());
    }
    // What the policy allows works.
    n.set_policy(&format!("{only_sock}bridges = br1\nvlans = 100\n"));
    let cfg = n.config(v, json!({"vlan": 100}));
    let r = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(r.success, "{} {}", tag(v), r.stdout);
    assert!(n.call("DEL", cfg, &n.pod, "net1", "").await.success);
}

async fn del_and_gc_succeed_whatever_add_would_refuse(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} del ignores add-only input", tag(v))) else {
        return;
    };
    let cfg = n.config(v, json!({"vlan": 100}));
    assert!(n.call("ADD", cfg.clone(), &n.pod, "net1", "").await.success);
    let mut bad_vlan = cfg.clone();
    bad_vlan["vlan"] = json!(5000);
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (bad_vlan, "MAC=01:00:5e:00:00:01"),
        (cfg.clone(), "MAC=zz;FOO=1"),
        (
            n.config(
                v,
                json!({"vlan": "x", "trunk": {"id": 0}, "mtu": -1, "runtimeConfig": {"mac": "zz"}}),
            ),
            "",
        ),
        (
            n.config(
                v,
                json!({"bridge": "", "interface_type": "dpdk", "deviceID": "x"}),
            ),
            "",
        ),
        (
            n.config(
                v,
                json!({"socket_file": "tcp:1.2.3.4:1", "ipam": {"type": "ovs"}}),
            ),
            "",
        ),
        (
            n.config(v, json!({"socket_file": "/elsewhere/db.sock"})),
            "",
        ),
    ];
    for (i, (c, args)) in cases.into_iter().enumerate() {
        let r = n.call("DEL", c.clone(), &n.pod, "net1", args).await;
        assert!(
            r.success,
            "{} DEL case {i} ({c}, {args:?}): {}",
            tag(v),
            r.stdout
        );
        if i == 0 {
            assert!(
                n.ports().is_empty(),
                "{} the first DEL removed the port",
                tag(v)
            );
            assert!(n.link(&n.pod, "net1").is_none());
        }
    }
    if v.has_status_and_gc() {
        let mut gc = n.config(v, json!({"vlan": 0, "socket_file": "/elsewhere/db.sock"}));
        gc["cni.dev/valid-attachments"] = json!([]);
        let mut call = n.call_for("GC", gc, &n.pod, "", "");
        call.netns = None;
        call.container_id = String::new();
        let r = n.call_raw(call).await;
        assert!(r.success, "{} GC: {}", tag(v), r.stdout);
    }
    // A malformed policy is the admin's error: ADD names its line, DEL still succeeds.
    n.set_policy("[ovs]\nsocket = /x\n");
    let r = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert_error(&r, 7, "plugins.conf:2");
    let r = n.call("DEL", cfg, &n.pod, "net1", "").await;
    assert!(
        r.success,
        "{} DEL under a malformed policy: {}",
        tag(v),
        r.stdout
    );
}

async fn hostile_runtime_input_and_ipam(v: SpecVersion) {
    let Some(n) = OvsNode::new(&format!("{} hostile runtime input", tag(v))) else {
        return;
    };
    // An absolute container id must not reach the cache path (it deleted any file).
    let victim = n.dir.join("victim");
    std::fs::write(&victim, "x").unwrap();
    let mut call = n.call_for("DEL", n.config(v, json!({"vlan": 1})), &n.pod, "net1", "");
    call.container_id = format!("{}", n.dir.join("victim-").display())
        .trim_end_matches('-')
        .to_string();
    call.ifname = "x".into();
    assert_error(&n.call_raw(call).await, 4, "CNI_CONTAINERID");
    assert!(victim.exists());
    // A FIFO as CNI_NETNS: DEL does not hang.
    let fifo = n.dir.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut call = n.call_for("DEL", n.config(v, json!({"vlan": 1})), &n.pod, "net1", "");
    call.netns = Some(fifo.display().to_string());
    call.timeout = std::time::Duration::from_secs(5);
    let r = n.call_raw(call).await;
    assert!(r.success, "{} DEL with a FIFO netns: {}", tag(v), r.stdout);
    // ipam.type naming this plugin (or another main plugin) is refused up front...
    let before = snapshot(&n);
    for t in ["ovs", "macvtap", "bridge"] {
        let r = n
            .call(
                "ADD",
                n.config(v, json!({"vlan": 1, "ipam": {"type": t}})),
                &n.pod,
                "net1",
                "",
            )
            .await;
        assert_error(&r, 7, "not an IPAM plugin");
    }
    // ...and under another name too: a copy of this binary called as IPAM.
    let bin = n.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::hard_link(PLUGIN, bin.join("my-ipam"))
        .or_else(|_| std::fs::copy(PLUGIN, bin.join("my-ipam")).map(|_| ()))
        .unwrap();
    let mut call = n.call_for(
        "ADD",
        n.config(v, json!({"vlan": 1, "ipam": {"type": "my-ipam"}})),
        &n.pod,
        "net1",
        "",
    );
    call.path = bin.display().to_string();
    call.timeout = std::time::Duration::from_secs(20);
    let r = n.call_raw(call).await;
    assert!(!r.success, "{}", r.stdout);
    assert!(
        r.stdout.contains("this plugin") || r.stdout.contains("as an IPAM plugin by itself"),
        "{} {}",
        tag(v),
        r.stdout
    );
    assert_eq!(snapshot(&n), before, "{} the node changed", tag(v));
}
