//! The real `ovs` binary against real userspace Open vSwitch in a fresh namespace
//! per test, for every supported spec version (test names `v1_0_0::…`, messages
//! `[1.0.0] …`).

mod common;

use cni_kit::SpecVersion;
use common::*;
use serde_json::json;

macro_rules! for_every_version {
    ($($test:ident),* $(,)?) => {
        mod v0_3_0 { $( #[tokio::test] async fn $test() { super::$test(cni_kit::SpecVersion::V0_3_0).await } )* }
        mod v0_3_1 { $( #[tokio::test] async fn $test() { super::$test(cni_kit::SpecVersion::V0_3_1).await } )* }
        mod v0_4_0 { $( #[tokio::test] async fn $test() { super::$test(cni_kit::SpecVersion::V0_4_0).await } )* }
        mod v1_0_0 { $( #[tokio::test] async fn $test() { super::$test(cni_kit::SpecVersion::V1_0_0).await } )* }
        mod v1_1_0 { $( #[tokio::test] async fn $test() { super::$test(cni_kit::SpecVersion::V1_1_0).await } )* }
    };
}

for_every_version!(add_attaches_access_port_and_del_removes_it,);

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
    assert_eq!(kind(&link), "veth");
    assert_eq!(
        pod_if["mac"],
        link["address"],
        "{} result MAC == kernel MAC",
        tag(v)
    );
    assert!(flags(&link).contains(&"UP".to_string()));
    let host_link = n.link(&n.node, &host).expect("host veth on the node");
    assert_eq!(result["interfaces"][0]["mac"], host_link["address"]);
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
