//! Frames through userspace Open vSwitch: access ports on one VLAN reach each
//! other, other VLANs are isolated, a trunk port receives tagged frames of its
//! allowed VLANs only (no 8021q module here: tcpdump -e shows the tags).

#[path = "plugins/ovs_cni.rs"]
mod common;

use std::process::Stdio;
use std::time::Duration;

use cni_kit::SpecVersion;
use common::*;
use secnet::lab::Ns;
use secnet::lab::enter::Enter;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const V: SpecVersion = SpecVersion::V1_0_0;

async fn attach(n: &OvsNode, pod: &Ns, extra: serde_json::Value, cidr: Option<&str>) {
    let r = n.call("ADD", n.config(V, extra), pod, "net1", "").await;
    assert!(r.success, "ADD: {}", r.stdout);
    if let Some(cidr) = cidr {
        n.nl.lab
            .ip(pod, &["addr", "add", cidr, "dev", "net1"])
            .unwrap();
    }
}

#[tokio::test]
async fn same_vlan_pods_ping_other_vlan_is_isolated() {
    let Some(mut n) = OvsNode::new("vlan reachability") else {
        return;
    };
    let a = n.add_pod("a");
    let b = n.add_pod("b");
    let c = n.add_pod("c");
    attach(&n, &a, json!({"vlan": 100}), Some("10.100.0.1/24")).await;
    attach(&n, &b, json!({"vlan": 100}), Some("10.100.0.2/24")).await;
    attach(&n, &c, json!({"vlan": 200}), Some("10.100.0.3/24")).await;
    assert!(n.ping(&a, "10.100.0.2").await, "same VLAN must reach");
    assert!(
        !n.ping(&a, "10.100.0.3").await,
        "VLAN 200 must be isolated from 100"
    );
    assert!(!n.ping(&c, "10.100.0.1").await, "and the other way round");
}

/// Captures what `ns` sees on `ifname` (link-level headers) while `during` runs.
async fn capture<F: std::future::Future<Output = ()>>(ns: &Ns, ifname: &str, during: F) -> String {
    let mut cmd = tokio::process::Command::new("tcpdump");
    cmd.args(["-nn", "-e", "-l", "-i", ifname, "arp or vlan"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Enter::net(ns.path()).unwrap().apply(&mut cmd).unwrap();
    let mut child = cmd.spawn().expect("tcpdump runs");
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("listening on") {
                break;
            }
        }
    })
    .await
    .expect("tcpdump started");
    during.await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let _ = child.wait().await;
    out
}

#[tokio::test]
async fn trunk_receives_tagged_frames_of_allowed_vlans_only() {
    let test = "trunk capture";
    if !secnet::prereq::require_program(test, "tcpdump", "tcpdump") {
        return;
    }
    let Some(mut n) = OvsNode::new(test) else {
        return;
    };
    let trunk = n.add_pod("trunk");
    attach(
        &n,
        &trunk,
        json!({"trunk": [{"id": 10}, {"minID": 20, "maxID": 21}]}),
        None,
    )
    .await;
    let mut senders = Vec::new();
    for vlan in [10, 20, 30] {
        let p = n.add_pod(&format!("v{vlan}"));
        attach(
            &n,
            &p,
            json!({"vlan": vlan}),
            Some(&format!("10.{vlan}.0.2/24")),
        )
        .await;
        senders.push((vlan, p));
    }
    let seen = capture(&trunk, "net1", async {
        for (vlan, p) in &senders {
            // Nobody answers: the ARP requests are flooded in the sender's VLAN.
            let _ = n
                .run_in(
                    p,
                    &["ping", "-c", "1", "-W", "1", &format!("10.{vlan}.0.99")],
                )
                .await;
        }
    })
    .await;
    for vlan in [10, 20] {
        let ok = seen.lines().any(|l| {
            l.contains(&format!("vlan {vlan},")) && l.contains(&format!("10.{vlan}.0.99"))
        });
        assert!(ok, "tagged VLAN {vlan} ARP missing from the trunk:\n{seen}");
    }
    assert!(
        !seen.contains("10.30.0.99"),
        "VLAN 30 is not allowed on the trunk:\n{seen}"
    );
}
