//! The real `macvtap` binary against the kernel, in fresh namespaces, for every
//! supported spec version (test names `v1_0_0::…`, messages `[1.0.0] …`).

#[path = "plugins/macvtap_cni.rs"]
mod common;

use cni_kit::SpecVersion;
use common::*;
use secnet::cni::Call;
use serde_json::json;

cni_kit::for_every_version!(
    add_moves_device_link_into_pod,
    add_applies_requested_mac_mtu_promisc,
    add_takes_mac_from_every_source,
    add_finds_legacy_unhashed_link,
    add_standalone_creates_macvtap_on_master,
    add_failure_gives_device_link_back,
    add_failure_removes_standalone_link,
    add_refuses_missing_and_wrong_links,
    add_refuses_bad_input_before_touching_anything,
    check_verifies_link_mac_mtu,
    del_is_idempotent,
    concurrent_adds_for_different_devices,
    interrupted_add_converges,
    killed_add_then_del_leaves_nothing,
    add_refuses_what_the_node_policy_does_not_allow,
    add_takes_only_the_device_plugins_links,
    device_mode_works_without_a_policy_file,
    del_succeeds_whatever_add_would_refuse,
    del_with_a_fifo_as_netns_does_not_hang,
);

fn tag(v: SpecVersion) -> String {
    format!("[{v}]")
}

async fn add_moves_device_link_into_pod(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} add moves device link", tag(v))) else {
        return;
    };
    let host = hashed("eth0Mvp0");
    n.device_link(&host);
    let reply = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "eth0Mvp0"})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    assert!(reply.success, "{} ADD failed: {}", tag(v), reply.stdout);
    let result = reply.json().unwrap();
    assert_eq!(result["cniVersion"], v.as_str());
    let iface = &result["interfaces"][0];
    assert_eq!(iface["name"], "net1");
    assert_eq!(iface["sandbox"], n.pod.path_str());
    assert_eq!(
        iface.get("mtu").is_some(),
        v.is_v1(),
        "{} mtu only from 1.0.0: {result}",
        tag(v)
    );
    assert!(result.get("ips").is_none());

    let link = n.link(&n.pod, "net1").expect("net1 in the pod");
    assert_eq!(link.kind, "macvtap");
    assert_eq!(
        iface["mac"].as_str(),
        link.mac.as_deref(),
        "{} result MAC == netlink MAC",
        tag(v)
    );
    assert!(link.has_flag("UP"));
    assert!(
        n.link(&n.nl.node, &host).is_none(),
        "{} host link must have moved",
        tag(v)
    );
    assert_eq!(
        tap_owner(&link),
        (107, 107),
        "{} /dev/tapN owned by qemu",
        tag(v)
    );
}

async fn add_applies_requested_mac_mtu_promisc(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} add applies mac mtu promisc", tag(v))) else {
        return;
    };
    n.device_link(&hashed("eth0Mvp1"));
    let cfg = n.config(
        v,
        json!({"deviceID": "eth0Mvp1", "mtu": 1400, "promiscMode": true, "owner": 0, "group": 6}),
    );
    let reply = n
        .call(
            "ADD",
            cfg,
            &n.pod,
            "net1",
            "IgnoreUnknown=1;MAC=02:aa:bb:cc:dd:01;K8S_POD_NAME=p",
        )
        .await;
    assert!(reply.success, "{} {}", tag(v), reply.stdout);
    let link = n.link(&n.pod, "net1").unwrap();
    assert_eq!(link.mac.as_deref(), Some("02:aa:bb:cc:dd:01"));
    assert_eq!(link.mtu, 1400);
    assert!(link.has_flag("PROMISC"), "{} {link}", tag(v));
    assert_eq!(tap_owner(&link), (0, 6));
    let iface = &reply.json().unwrap()["interfaces"][0];
    assert_eq!(iface["mac"], "02:aa:bb:cc:dd:01");
    if v.is_v1() {
        assert_eq!(iface["mtu"], 1400);
    }
}

async fn add_takes_mac_from_every_source(v: SpecVersion) {
    let Some(mut n) = Node::new(&format!("{} add mac sources", tag(v))) else {
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
        (json!({}), "MAC=02:00:00:00:01:03", "02:00:00:00:01:03"),
    ];
    for (i, (extra, args, want)) in cases.into_iter().enumerate() {
        let id = format!("eth0Mvp{}", 10 + i);
        n.device_link(&hashed(&id));
        let pod = n.add_pod(&format!("p{i}"));
        let mut cfg = n.config(v, extra);
        cfg["deviceID"] = json!(id);
        let reply = n.call("ADD", cfg, &pod, "net1", args).await;
        assert!(reply.success, "{} {}", tag(v), reply.stdout);
        assert_eq!(
            n.link(&pod, "net1").unwrap().mac.as_deref(),
            Some(want),
            "{} case {i}",
            tag(v)
        );
    }
}

async fn add_finds_legacy_unhashed_link(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} legacy link name", tag(v))) else {
        return;
    };
    n.device_link("ens33Mvp0");
    // Only a link the device plugin marked is taken under its raw name.
    n.lab
        .ip(
            &n.nl.node,
            &[
                "link",
                "set",
                "ens33Mvp0",
                "alias",
                "secnet-deviceplugin:ens33Mvp0",
            ],
        )
        .unwrap();
    let reply = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "ens33Mvp0"})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    assert!(reply.success, "{} {}", tag(v), reply.stdout);
    assert_eq!(n.link(&n.pod, "net1").unwrap().kind, "macvtap");
    assert!(n.link(&n.nl.node, "ens33Mvp0").is_none());
}

async fn add_standalone_creates_macvtap_on_master(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} standalone", tag(v))) else {
        return;
    };
    let before = n.links(&n.node);
    let cfg = n.config(v, json!({"master": "ens33", "mode": "vepa", "mtu": 1300}));
    let reply = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(reply.success, "{} {}", tag(v), reply.stdout);
    let link = n.link(&n.pod, "net1").unwrap();
    assert_eq!(link.kind, "macvtap");
    assert_eq!(link.mode.as_deref(), Some("vepa"));
    assert_eq!(link.mtu, 1300);
    assert_eq!(
        n.links(&n.node),
        before,
        "{} nothing new in the node namespace",
        tag(v)
    );
    let del = n.call("DEL", cfg, &n.pod, "net1", "").await;
    assert!(del.success, "{}", del.stdout);
    assert!(n.link(&n.pod, "net1").is_none());
}

async fn add_failure_gives_device_link_back(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} failed add restores", tag(v))) else {
        return;
    };
    let host = hashed("eth0Mvp2");
    n.device_link(&host);
    // The lower device's own MAC is refused by the kernel once the link is in the pod.
    let lower_mac = n.link(&n.nl.node, "ens33").unwrap().mac.unwrap();
    let reply = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "eth0Mvp2"})),
            &n.pod,
            "net1",
            &format!("MAC={lower_mac}"),
        )
        .await;
    assert!(
        !reply.success,
        "{} ADD should fail: {}",
        tag(v),
        reply.stdout
    );
    assert!(reply.error_code().is_some(), "{}", reply.stdout);
    assert!(
        n.link(&n.nl.node, &host).is_some(),
        "{} the device link must be back on the node",
        tag(v)
    );
    assert_eq!(
        n.links(&n.pod),
        vec!["lo".to_string()],
        "{} nothing left in the pod",
        tag(v)
    );
}

async fn add_failure_removes_standalone_link(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} failed standalone add cleans", tag(v))) else {
        return;
    };
    let lower_mac = n.link(&n.nl.node, "ens33").unwrap().mac.unwrap();
    let before = n.links(&n.node);
    let reply = n
        .call(
            "ADD",
            n.config(v, json!({"master": "ens33"})),
            &n.pod,
            "net1",
            &format!("MAC={lower_mac}"),
        )
        .await;
    assert!(!reply.success, "{}", reply.stdout);
    assert_eq!(
        n.links(&n.pod),
        vec!["lo".to_string()],
        "{} nothing left in the pod",
        tag(v)
    );
    assert_eq!(n.links(&n.node), before);
}

async fn add_refuses_missing_and_wrong_links(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} missing links", tag(v))) else {
        return;
    };
    let r = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "eth0Mvp9"})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    assert_error(&r, 11, &hashed("eth0Mvp9"));
    // A link with the right name that is not a macvtap is not moved.
    n.lab
        .ip(
            &n.nl.node,
            &[
                "link",
                "add",
                &hashed("eth0Mvp8"),
                "type",
                "veth",
                "peer",
                "name",
                "vx",
            ],
        )
        .unwrap();
    let r = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "eth0Mvp8"})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    // The same answer as for a missing link: nothing said about the host's links.
    assert_error(
        &r,
        11,
        "no macvtap of the device plugin for deviceID eth0Mvp8",
    );
    assert!(!r.stdout.contains("veth"), "{}", r.stdout);
    assert!(n.link(&n.nl.node, &hashed("eth0Mvp8")).is_some());
    let r = n
        .call(
            "ADD",
            n.config(v, json!({"master": "nope0"})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    assert_error(&r, 7, "[macvtap] standalone_masters");
    n.set_policy("[macvtap]\nstandalone_masters = nope0\n");
    let r = n
        .call(
            "ADD",
            n.config(v, json!({"master": "nope0"})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    assert_error(&r, 7, "master nope0 does not exist");
    n.set_policy(TEST_POLICY);
    // MTU above the lower device's is refused before anything moves.
    n.device_link(&hashed("eth0Mvp7"));
    let r = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "eth0Mvp7", "mtu": 9000})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    assert_error(
        &r,
        7,
        "mtu 9000 is larger than the lower device of this network allows",
    );
    assert!(
        !r.stdout.contains("ens33") && !r.stdout.contains("1500"),
        "the refusal names no node facts: {}",
        r.stdout
    );
    assert!(n.link(&n.nl.node, &hashed("eth0Mvp7")).is_some());
    // Existing CNI_IFNAME in the pod.
    let r = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "eth0Mvp7"})),
            &n.pod,
            "lo",
            "",
        )
        .await;
    assert_error(&r, 100, "already exists");
    assert_eq!(n.links(&n.pod), vec!["lo".to_string()]);
}

async fn add_refuses_bad_input_before_touching_anything(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} bad input", tag(v))) else {
        return;
    };
    let host = hashed("eth0Mvp3");
    n.device_link(&host);
    let good = n.config(v, json!({"deviceID": "eth0Mvp3"}));
    let pod = n.pod.path_str();
    let cases: Vec<(Call, u64, &str)> = vec![
        (
            Call::new(PLUGIN, "ADD", json!({"name": "x", "deviceID": "eth0Mvp3"})).container(
                "c",
                Some(&pod),
                "net1",
            ),
            7,
            "no cniVersion",
        ),
        (
            Call::new(
                PLUGIN,
                "ADD",
                json!({"cniVersion": "0.2.0", "name": "x", "deviceID": "eth0Mvp3"}),
            )
            .container("c", Some(&pod), "net1"),
            1,
            "0.2.0",
        ),
        (
            Call::new(PLUGIN, "ADD", json!({"cniVersion": "7.0.0", "name": "x"})).container(
                "c",
                Some(&pod),
                "net1",
            ),
            1,
            "7.0.0",
        ),
        (
            Call::new(PLUGIN, "ADD", n.config(v, json!({}))).container("c", Some(&pod), "net1"),
            7,
            "deviceID is required",
        ),
        (
            Call::new(
                PLUGIN,
                "ADD",
                n.config(v, json!({"deviceID": "eth0Mvp3", "mtu": "big"})),
            )
            .container("c", Some(&pod), "net1"),
            7,
            "mtu",
        ),
        (
            Call::new(PLUGIN, "ADD", good.clone()).container("c", None, "net1"),
            4,
            "CNI_NETNS",
        ),
        (
            Call::new(PLUGIN, "ADD", good.clone()).container("", Some(&pod), "net1"),
            4,
            "CNI_CONTAINERID",
        ),
        (
            Call::new(PLUGIN, "ADD", good.clone()).container("c", Some(&pod), ""),
            4,
            "CNI_IFNAME",
        ),
        (
            Call::new(PLUGIN, "ADD", good.clone())
                .container("c", Some(&pod), "net1")
                .args("MAC=02:00:00:00:00"),
            4,
            "not a MAC",
        ),
        (
            Call::new(PLUGIN, "ADD", good.clone())
                .container("c", Some(&pod), "net1")
                .args("FOO=1"),
            4,
            "IgnoreUnknown",
        ),
        (
            Call::new(PLUGIN, "ADD", good.clone()).container(
                "c",
                Some("/run/netns/secnet-does-not-exist"),
                "net1",
            ),
            3,
            "does-not-exist",
        ),
        (
            Call::new(PLUGIN, "FROB", good.clone()).container("c", Some(&pod), "net1"),
            4,
            "CNI_COMMAND",
        ),
    ];
    for (call, code, needle) in cases {
        let r = n.call_raw(call.clone()).await;
        assert_error(&r, code, needle);
        assert!(
            n.link(&n.nl.node, &host).is_some(),
            "{} {needle}: host link must stay",
            tag(v)
        );
    }
    // Not JSON at all: a decode error with its position.
    let mut raw = Call::new(PLUGIN, "ADD", json!({})).container("c", Some(&pod), "net1");
    raw.raw_stdin = Some(b"{\"cniVersion\": \"1.0.0\",\n \"name\": }".to_vec());
    assert_error(&n.call_raw(raw).await, 6, "line 2");
    let mut raw = Call::new(PLUGIN, "ADD", json!({})).container("c", Some(&pod), "net1");
    raw.raw_stdin = Some(b"[]".to_vec());
    assert_error(&n.call_raw(raw).await, 7, "cniVersion");
    assert_eq!(
        n.links(&n.pod),
        vec!["lo".to_string()],
        "{} nothing in the pod",
        tag(v)
    );
}

async fn check_verifies_link_mac_mtu(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} check", tag(v))) else {
        return;
    };
    n.device_link(&hashed("eth0Mvp4"));
    let cfg = n.config(v, json!({"deviceID": "eth0Mvp4", "mtu": 1450}));
    let add = n
        .call("ADD", cfg.clone(), &n.pod, "net1", "MAC=02:00:00:00:04:04")
        .await;
    assert!(add.success, "{}", add.stdout);
    let mut check_cfg = cfg.clone();
    check_cfg["prevResult"] = add.json().unwrap();
    let check = n
        .call(
            "CHECK",
            check_cfg.clone(),
            &n.pod,
            "net1",
            "MAC=02:00:00:00:04:04",
        )
        .await;
    if !v.has_check() {
        assert_error(&check, 1, "CHECK");
        return;
    }
    assert!(
        check.success,
        "{} CHECK after ADD: {}",
        tag(v),
        check.stdout
    );
    n.lab
        .ip(
            &n.pod,
            &["link", "set", "net1", "address", "02:00:00:00:04:05"],
        )
        .unwrap();
    n.lab
        .ip(&n.pod, &["link", "set", "net1", "mtu", "1400"])
        .unwrap();
    let check = n.call("CHECK", check_cfg.clone(), &n.pod, "net1", "").await;
    assert_error(&check, 100, "MAC is 02:00:00:00:04:05");
    assert!(check.stdout.contains("MTU is 1400"), "{}", check.stdout);
    let mut no_prev = cfg.clone();
    no_prev.as_object_mut().unwrap().remove("prevResult");
    assert_error(
        &n.call("CHECK", no_prev, &n.pod, "net1", "").await,
        7,
        "prevResult",
    );
    n.nl.lab.ip(&n.pod, &["link", "del", "net1"]).unwrap();
    assert_error(
        &n.call("CHECK", check_cfg, &n.pod, "net1", "").await,
        100,
        "missing",
    );
}

async fn del_is_idempotent(v: SpecVersion) {
    let Some(mut n) = Node::new(&format!("{} del", tag(v))) else {
        return;
    };
    n.device_link(&hashed("eth0Mvp5"));
    let cfg = n.config(v, json!({"deviceID": "eth0Mvp5"}));
    assert!(n.call("ADD", cfg.clone(), &n.pod, "net1", "").await.success);
    for round in 0..2 {
        let r = n.call("DEL", cfg.clone(), &n.pod, "net1", "").await;
        assert!(r.success, "{} DEL round {round}: {}", tag(v), r.stdout);
        assert!(
            r.stdout.trim().is_empty(),
            "DEL prints nothing: {}",
            r.stdout
        );
    }
    assert_eq!(n.links(&n.pod), vec!["lo".to_string()]);
    // Empty CNI_NETNS and a netns that no longer exists both succeed.
    let r = n
        .call_raw(Call::new(PLUGIN, "DEL", cfg.clone()).container("c", None, "net1"))
        .await;
    assert!(r.success, "{}", r.stdout);
    let gone = n.add_pod("gone");
    n.nl.lab.ip(&gone, &["link", "show"]).unwrap();
    n.nl.lab.delete_netns(&gone).unwrap();
    let r = n.call("DEL", cfg.clone(), &gone, "net1", "").await;
    assert!(
        r.success,
        "{} DEL with the netns gone: {}",
        tag(v),
        r.stdout
    );
    // A foreign link with the same name is left alone.
    n.lab
        .ip(
            &n.pod,
            &[
                "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
            ],
        )
        .unwrap();
    assert!(n.call("DEL", cfg, &n.pod, "net1", "").await.success);
    assert!(n.link(&n.pod, "net1").is_some());
}

async fn concurrent_adds_for_different_devices(v: SpecVersion) {
    let Some(mut n) = Node::new(&format!("{} concurrent adds", tag(v))) else {
        return;
    };
    let count = 8;
    let mut pods = Vec::new();
    for i in 0..count {
        n.device_link(&hashed(&format!("eth0Mvp{}", 20 + i)));
        pods.push(n.add_pod(&format!("c{i}")));
    }
    let n = &n;
    let replies = futures_join(pods.iter().enumerate().map(|(i, pod)| {
        let cfg = n.config(v, json!({"deviceID": format!("eth0Mvp{}", 20 + i)}));
        async move { n.call("ADD", cfg, pod, "net1", "").await }
    }))
    .await;
    let mut macs = std::collections::HashSet::new();
    for (i, r) in replies.iter().enumerate() {
        assert!(r.success, "{} ADD {i}: {}", tag(v), r.stdout);
        macs.insert(n.link(&pods[i], "net1").unwrap().mac.unwrap());
    }
    assert_eq!(macs.len(), count, "{} distinct MACs", tag(v));
}

async fn futures_join<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.collect();
    let mut out = Vec::new();
    // Drive them concurrently on the current-thread runtime.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(results.into_iter().map(Option::unwrap));
    out
}

#[tokio::test]
async fn version_lists_every_supported_version() {
    let r = secnet::cni::exec(
        &Call::new(PLUGIN, "VERSION", json!({"cniVersion": "1.0.0"})),
        None,
    )
    .await
    .unwrap();
    assert!(r.success);
    let v = r.json().unwrap();
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    assert_eq!(v["cniVersion"], "1.0.0");
}

#[tokio::test]
async fn status_and_gc_on_1_1_0() {
    let Some(n) = Node::new("[1.1.0] status and gc") else {
        return;
    };
    let v = SpecVersion::V1_1_0;
    let ok = n
        .call_raw(Call::new(
            PLUGIN,
            "STATUS",
            n.config(v, json!({"master": "ens33"})),
        ))
        .await;
    assert!(ok.success, "{}", ok.stdout);
    let ok = n
        .call_raw(Call::new(
            PLUGIN,
            "STATUS",
            n.config(v, json!({"deviceID": "eth0Mvp0"})),
        ))
        .await;
    assert!(ok.success, "{}", ok.stdout);
    let down = n
        .call_raw(Call::new(
            PLUGIN,
            "STATUS",
            n.config(v, json!({"master": "nope1"})),
        ))
        .await;
    assert_error(&down, 50, "nope1");
    let mut gc = n.config(v, json!({"deviceID": "eth0Mvp0"}));
    gc["cni.dev/valid-attachments"] = json!([]);
    let r = n.call_raw(Call::new(PLUGIN, "GC", gc)).await;
    assert!(r.success, "{}", r.stdout);
    let r = n
        .call_raw(Call::new(
            PLUGIN,
            "STATUS",
            n.config(SpecVersion::V1_0_0, json!({"deviceID": "x"})),
        ))
        .await;
    assert_error(&r, 1, "STATUS");
}

async fn interrupted_add_converges(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} interrupted add", tag(v))) else {
        return;
    };
    // Device mode, killed right after the move: the link sits in the pod under its
    // host name. A retried ADD adopts it; DEL removes it.
    let host = hashed("eth0Mvp6");
    n.device_link(&host);
    n.nl.lab
        .ip(&n.nl.node, &["link", "set", &host, "netns", &n.pod.name])
        .unwrap();
    let cfg = n.config(v, json!({"deviceID": "eth0Mvp6"}));
    let r = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(r.success, "{} retried ADD: {}", tag(v), r.stdout);
    assert_eq!(n.link(&n.pod, "net1").unwrap().kind, "macvtap");
    assert!(n.link(&n.pod, &host).is_none());
    assert!(n.call("DEL", cfg.clone(), &n.pod, "net1", "").await.success);
    n.device_link(&host);
    n.nl.lab
        .ip(&n.nl.node, &["link", "set", &host, "netns", &n.pod.name])
        .unwrap();
    assert!(n.call("DEL", cfg, &n.pod, "net1", "").await.success);
    assert_eq!(
        n.links(&n.pod),
        vec!["lo".to_string()],
        "{} DEL removes the half-attached link",
        tag(v)
    );
    // Standalone, killed after creating its temporary link.
    let temp = cni_kit::naming::standalone_temp_name(
        &format!("{}-{}", n.container_id, n.pod.name),
        "net1",
    );
    n.nl.lab
        .ip(
            &n.nl.node,
            &[
                "link",
                "add",
                &temp,
                "link",
                "ens33",
                "netns",
                &n.pod.name,
                "type",
                "macvtap",
            ],
        )
        .unwrap();
    let cfg = n.config(v, json!({"master": "ens33"}));
    let r = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(r.success, "{} retried standalone ADD: {}", tag(v), r.stdout);
    assert!(
        n.link(&n.pod, &temp).is_none(),
        "{} the leftover is replaced",
        tag(v)
    );
    assert!(n.call("DEL", cfg, &n.pod, "net1", "").await.success);
    assert_eq!(n.links(&n.pod), vec!["lo".to_string()]);
}

async fn killed_add_then_del_leaves_nothing(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} killed add", tag(v))) else {
        return;
    };
    let host = hashed("eth0Mvp7");
    let cfg = n.config(v, json!({"deviceID": "eth0Mvp7"}));
    // SIGKILL the plugin at different points of ADD (the exec timeout kills it).
    for delay_ms in [0u64, 1, 2, 3, 5, 8, 12, 20, 40] {
        if n.link(&n.nl.node, &host).is_none() {
            n.device_link(&host);
        }
        let mut call = secnet::cni::Call::new(PLUGIN, "ADD", cfg.clone()).container(
            &format!("{}-{}", n.container_id, n.pod.name),
            Some(&n.pod.path_str()),
            "net1",
        );
        call.timeout = std::time::Duration::from_millis(delay_ms);
        let _ = secnet::cni::exec(&call, Some(&n.nl.node_ns)).await;
        let del = n.call("DEL", cfg.clone(), &n.pod, "net1", "").await;
        assert!(
            del.success,
            "{} DEL after a kill at {delay_ms} ms: {}",
            tag(v),
            del.stdout
        );
        assert_eq!(
            n.links(&n.pod),
            vec!["lo".to_string()],
            "{} left in the pod after a kill at {delay_ms} ms",
            tag(v)
        );
    }
    if n.link(&n.nl.node, &host).is_none() {
        n.device_link(&host);
    }
    let r = n.call("ADD", cfg, &n.pod, "net1", "").await;
    assert!(r.success, "{} ADD after the kills: {}", tag(v), r.stdout);
}

/// The links of the node and the pod, and the owners of every /dev/tapN: what an
/// attack must leave unchanged.
fn snapshot(n: &Node) -> (Vec<String>, Vec<String>) {
    (n.links(&n.nl.node), n.links(&n.pod))
}

async fn add_refuses_what_the_node_policy_does_not_allow(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} node policy refusals", tag(v))) else {
        return;
    };
    n.device_link(&hashed("eth0Mvp30"));
    let before = snapshot(&n);
    let policy_file = n.policy_path();
    let cases: Vec<(Option<&str>, serde_json::Value, &str)> = vec![
        // No policy file: standalone mode is off.
        (
            None,
            json!({"master": "ens33"}),
            "does not exist, so [macvtap] standalone_masters",
        ),
        // A master the admin did not list (here: the node's uplink).
        (
            Some("[macvtap]\nstandalone_masters = ens34\n"),
            json!({"master": "ens33"}),
            "[macvtap] standalone_masters",
        ),
        // passthru only when listed.
        (
            Some("[macvtap]\nstandalone_masters = ens33\n"),
            json!({"master": "ens33", "mode": "passthru", "promiscMode": true}),
            "[macvtap] standalone_modes",
        ),
        (
            Some("[macvtap]\nstandalone_masters = ens33\nstandalone_modes = bridge\n"),
            json!({"master": "ens33", "mode": "vepa"}),
            "[macvtap] standalone_modes",
        ),
        // chown of /dev/tapN to a uid or gid the admin did not allow.
        (
            None,
            json!({"deviceID": "eth0Mvp30", "owner": 0}),
            "[macvtap] tap_owners",
        ),
        (
            Some("[macvtap]\ntap_groups = 107\n"),
            json!({"deviceID": "eth0Mvp30", "group": 0}),
            "[macvtap] tap_groups",
        ),
        // The device plugin's macvtap on a lower device the admin did not list.
        (
            Some("[macvtap]\ndevice_lower_devices = ens34\n"),
            json!({"deviceID": "eth0Mvp30"}),
            "[macvtap] device_lower_devices",
        ),
    ];
    for (policy, extra, needle) in cases {
        n.set_policy_file(policy);
        let r = n
            .call("ADD", n.config(v, extra.clone()), &n.pod, "net1", "")
            .await;
        assert_error(&r, 7, needle);
        assert!(
            r.stdout.contains(&policy_file),
            "{} the refusal names the policy file: {}",
            tag(v),
            r.stdout
        );
        assert_eq!(snapshot(&n), before, "{} {extra}: the node changed", tag(v));
    }
    // Allowed explicitly, it works.
    n.set_policy("[macvtap]\nstandalone_masters = ens33\nstandalone_modes = private\n");
    let cfg = n.config(v, json!({"master": "ens33", "mode": "private"}));
    let r = n.call("ADD", cfg.clone(), &n.pod, "net1", "").await;
    assert!(r.success, "{} {}", tag(v), r.stdout);
    assert!(n.call("DEL", cfg, &n.pod, "net1", "").await.success);
    // A broken policy file is the admin's error, named with its line.
    n.set_policy("[macvtap]\nstandalone_master = ens33\n");
    let r = n
        .call(
            "ADD",
            n.config(v, json!({"deviceID": "eth0Mvp30"})),
            &n.pod,
            "net1",
            "",
        )
        .await;
    assert_error(&r, 7, "plugins.conf:2");
    assert_eq!(snapshot(&n), before);
}

async fn add_takes_only_the_device_plugins_links(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} device links only", tag(v))) else {
        return;
    };
    // A VM's macvtap, unmarked, named as a deviceID.
    n.device_link("macvtap0");
    // Another pod's raw-named link, marked for its own deviceID.
    n.device_link("ens33Mvp40");
    n.lab
        .ip(
            &n.nl.node,
            &[
                "link",
                "set",
                "ens33Mvp40",
                "alias",
                "secnet-deviceplugin:ens33Mvp40",
            ],
        )
        .unwrap();
    // A hashed link marked for another deviceID.
    n.device_link(&hashed("ens33Mvp41"));
    n.lab
        .ip(
            &n.nl.node,
            &[
                "link",
                "set",
                &hashed("ens33Mvp41"),
                "alias",
                "secnet-deviceplugin:ens33Mvp42",
            ],
        )
        .unwrap();
    let before = snapshot(&n);
    for id in ["macvtap0", "ens33", "lo", "ens33Mvp41", "../ens33"] {
        let r = n
            .call(
                "ADD",
                n.config(v, json!({"deviceID": id})),
                &n.pod,
                "net1",
                "",
            )
            .await;
        assert_error(&r, 11, "no macvtap of the device plugin");
        assert!(
            !r.stdout.contains("veth") && !r.stdout.contains("loopback"),
            "{}",
            r.stdout
        );
        assert_eq!(
            snapshot(&n),
            before,
            "{} deviceID {id}: the node changed",
            tag(v)
        );
    }
    // The marked one is taken for its own deviceID.
    let cfg = n.config(v, json!({"deviceID": "ens33Mvp40"}));
    let r = n.call("ADD", cfg, &n.pod, "net1", "").await;
    assert!(r.success, "{} {}", tag(v), r.stdout);
    assert!(n.link(&n.nl.node, "ens33Mvp40").is_none());
}

async fn device_mode_works_without_a_policy_file(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} no policy file", tag(v))) else {
        return;
    };
    n.set_policy_file(None);
    n.device_link(&hashed("eth0Mvp31"));
    let cfg = n.config(v, json!({"deviceID": "eth0Mvp31", "mtu": 1400}));
    let r = n
        .call("ADD", cfg.clone(), &n.pod, "net1", "MAC=02:00:00:00:31:01")
        .await;
    assert!(r.success, "{} {}", tag(v), r.stdout);
    let link = n.link(&n.pod, "net1").unwrap();
    assert_eq!(tap_owner(&link), (107, 107));
    assert!(n.call("DEL", cfg, &n.pod, "net1", "").await.success);
}

async fn del_succeeds_whatever_add_would_refuse(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} del ignores add-only input", tag(v))) else {
        return;
    };
    n.device_link(&hashed("eth0Mvp32"));
    let good = n.config(v, json!({"deviceID": "eth0Mvp32"}));
    assert!(
        n.call("ADD", good.clone(), &n.pod, "net1", "")
            .await
            .success
    );
    let cases: Vec<(serde_json::Value, &str)> = vec![
        (good.clone(), "MAC=01:00:5e:00:00:01"),
        (good.clone(), "MAC=zz"),
        (good.clone(), "FOO=1"),
        (
            n.config(
                v,
                json!({"deviceID": "eth0Mvp32", "runtimeConfig": {"mac": "ff:ff:ff:ff:ff:ff"}}),
            ),
            "",
        ),
        (
            n.config(
                v,
                json!({"deviceID": "eth0Mvp32", "args": {"cni": {"mac": "x"}}}),
            ),
            "",
        ),
        (n.config(v, json!({"master": "ens33", "mode": "bogus"})), ""),
        (
            n.config(v, json!({"master": "nope9", "mode": "passthru"})),
            "",
        ),
        (n.config(v, json!({})), ""),
        (
            n.config(
                v,
                json!({"deviceID": "eth0Mvp32", "mtu": "big", "owner": -1}),
            ),
            "",
        ),
    ];
    n.set_policy_file(None);
    for (i, (cfg, args)) in cases.into_iter().enumerate() {
        let r = n.call("DEL", cfg.clone(), &n.pod, "net1", args).await;
        assert!(
            r.success,
            "{} DEL case {i} ({cfg}, {args:?}): {}",
            tag(v),
            r.stdout
        );
        if i == 0 {
            assert_eq!(
                n.links(&n.pod),
                vec!["lo".to_string()],
                "{} the first DEL removed net1",
                tag(v)
            );
        }
    }
    if v.has_status_and_gc() {
        let mut gc = n.config(v, json!({"mode": "bogus", "mtu": "x"}));
        gc["cni.dev/valid-attachments"] = json!([]);
        let r = n.call_raw(Call::new(PLUGIN, "GC", gc)).await;
        assert!(r.success, "{} GC: {}", tag(v), r.stdout);
    }
}

async fn del_with_a_fifo_as_netns_does_not_hang(v: SpecVersion) {
    let Some(n) = Node::new(&format!("{} fifo netns", tag(v))) else {
        return;
    };
    let fifo = n.scratch.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let fifo = fifo.display().to_string();
    let cfg = n.config(v, json!({"deviceID": "eth0Mvp33"}));
    let mut del = Call::new(PLUGIN, "DEL", cfg.clone()).container("c1", Some(&fifo), "net1");
    del.timeout = std::time::Duration::from_secs(5);
    let r = n.call_raw(del).await;
    assert!(r.success, "{} DEL: {}", tag(v), r.stdout);
    let mut add = Call::new(PLUGIN, "ADD", cfg).container("c1", Some(&fifo), "net1");
    add.timeout = std::time::Duration::from_secs(5);
    assert_error(&n.call_raw(add).await, 3, "not a network namespace");
    // Runtime input used in names and paths: only the safe character set.
    let r = n
        .call_raw(
            Call::new(PLUGIN, "DEL", n.config(v, json!({"deviceID": "x"}))).container(
                "/etc/passwd",
                None,
                "net1",
            ),
        )
        .await;
    assert_error(&r, 4, "CNI_CONTAINERID");
}
