//! A node namespace with a veth lower device `ens33`, a pod namespace, and the real
//! `macvtap` binary run inside the node namespace as a runtime would run it.

#![allow(dead_code)]

use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU32, Ordering};

use cni_kit::SpecVersion;
use cni_kit::netns::NetNs;
use secnet::cni::{Call, Reply, exec};
use secnet::lab::{Lab, Ns};
use serde_json::{Value, json};

pub const PLUGIN: &str = env!("CARGO_BIN_EXE_macvtap");

pub struct Node {
    pub lab: Lab,
    pub node: Ns,
    pub node_ns: NetNs,
    pub pod: Ns,
    pub container_id: String,
    next_index: AtomicU32,
}

pub fn hashed(id: &str) -> String {
    macvtap_cni::naming::hashed_link_name(id)
}

impl Node {
    /// `None` when the test must skip (not root, outside CI).
    pub fn new(test: &str) -> Option<Node> {
        if !secnet::prereq::require_root(test) {
            return None;
        }
        let mut lab = Lab::new();
        let node = lab.netns("node").expect("node netns");
        let fabric = lab.netns("fabric").expect("fabric netns");
        lab.veth(&node, "ens33", &fabric, "port0")
            .expect("uplink veth");
        let pod = lab.netns("pod").expect("pod netns");
        let node_ns = node.open().expect("open node netns");
        let container_id = format!("{}-c0", lab.run_id);
        let base =
            100_000 + (u32::from_str_radix(&lab.run_id[2..], 16).unwrap_or(0) % 0x7fff) * 1_000;
        Some(Node {
            lab,
            node,
            node_ns,
            pod,
            container_id,
            next_index: AtomicU32::new(base),
        })
    }

    /// What the device plugin does at Allocate: a macvtap named `name` on ens33.
    ///
    /// `/dev/tap<ifindex>` lives on the one host devtmpfs while every test namespace
    /// numbers its links from 1, so parallel tests would share `/dev/tap3`. A unique
    /// index per test (as on a real node, where all macvtaps start in one namespace)
    /// keeps each test's device node its own.
    pub fn device_link(&self, name: &str) {
        let index = self.next_index.fetch_add(1, Ordering::Relaxed).to_string();
        self.lab
            .ip(
                &self.node,
                &[
                    "link", "add", name, "index", &index, "link", "ens33", "type", "macvtap",
                    "mode", "bridge",
                ],
            )
            .expect("create device link");
        self.lab
            .ip(&self.node, &["link", "set", name, "up"])
            .expect("device link up");
    }

    pub fn add_pod(&mut self, name: &str) -> Ns {
        self.lab.netns(name).expect("extra pod netns")
    }

    pub fn config(&self, version: SpecVersion, extra: Value) -> Value {
        let mut c =
            json!({"cniVersion": version.as_str(), "name": "macvtap-net", "type": "macvtap"});
        for (k, v) in extra.as_object().expect("object").clone() {
            c[k] = v;
        }
        c
    }

    pub async fn call(
        &self,
        command: &str,
        config: Value,
        pod: &Ns,
        ifname: &str,
        args: &str,
    ) -> Reply {
        let call = Call::new(PLUGIN, command, config)
            .container(
                &format!("{}-{}", self.container_id, pod.name),
                Some(&pod.path_str()),
                ifname,
            )
            .args(args);
        exec(&call, Some(&self.node_ns)).await.expect("plugin runs")
    }

    pub async fn call_raw(&self, call: Call) -> Reply {
        exec(&call, Some(&self.node_ns)).await.expect("plugin runs")
    }

    /// `ip -j -d link show <name>` in `ns`, or None.
    pub fn link(&self, ns: &Ns, name: &str) -> Option<Value> {
        let out = self.lab.ip(ns, &["-j", "-d", "link", "show", name]).ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v.as_array()?.first().cloned()
    }

    pub fn links(&self, ns: &Ns) -> Vec<String> {
        let out = self
            .lab
            .ip(ns, &["-j", "link", "show"])
            .expect("list links");
        let v: Value = serde_json::from_str(&out).expect("ip json");
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["ifname"].as_str().unwrap().to_string())
            .collect()
    }
}

pub fn kind(link: &Value) -> &str {
    link["linkinfo"]["info_kind"].as_str().unwrap_or("")
}

pub fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

pub fn tap_owner(link: &Value) -> (u32, u32) {
    let meta = std::fs::metadata(format!("/dev/tap{}", link["ifindex"])).expect("/dev/tapN exists");
    (meta.uid(), meta.gid())
}

pub fn assert_error(reply: &Reply, code: u64, needle: &str) {
    assert!(!reply.success, "expected failure, got {}", reply.stdout);
    assert_eq!(
        reply.error_code(),
        Some(code),
        "wrong code: {}",
        reply.stdout
    );
    let text = reply.stdout.to_lowercase();
    assert!(
        text.contains(&needle.to_lowercase()),
        "{:?} not in {}",
        needle,
        reply.stdout
    );
}
