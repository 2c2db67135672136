//! The shared node lab from the harness, plus what these tests assert with.

#![allow(dead_code)]

use cni_kit::SpecVersion;
use cni_kit::policy::POLICY_ENV;
use secnet::cni::{Call, Reply, exec};
use secnet::lab::node::{LinkFacts, NodeLab};
use secnet::lab::{Ns, ScratchDir};
use serde_json::{Value, json};

#[path = "bundled.rs"]
mod bundled;

pub const PLUGIN: bundled::Bundled = bundled::Bundled("macvtap");

/// The node policy the tests run with unless they set another: standalone mode on
/// ens33 (bridge, private, vepa) and the tap owners the tests ask for.
pub const TEST_POLICY: &str =
    "[macvtap]\nstandalone_masters = ens33\ntap_owners = 107, 0\ntap_groups = 107, 6\n";

pub struct Node {
    pub nl: NodeLab,
    pub pod: Ns,
    pub container_id: String,
    /// Holds this test's node policy file (`SECNET_PLUGIN_POLICY`).
    pub scratch: ScratchDir,
}

pub fn hashed(id: &str) -> String {
    cni_kit::naming::hashed_link_name(id)
}

pub fn tap_owner(link: &LinkFacts) -> (u32, u32) {
    secnet::lab::node::tap_owner(link).expect("/dev/tapN exists")
}

impl std::ops::Deref for Node {
    type Target = NodeLab;
    fn deref(&self) -> &NodeLab {
        &self.nl
    }
}

impl Node {
    /// `None` when the test must skip (not root, outside CI).
    pub fn new(test: &str) -> Option<Node> {
        if !secnet::prereq::require_root(test) {
            return None;
        }
        let mut nl = NodeLab::new().expect("node lab");
        let pod = nl.pod("pod").expect("pod netns");
        let container_id = format!("{}-c0", nl.lab.run_id);
        let scratch = ScratchDir::new(&format!("{}-policy", nl.lab.run_id)).expect("scratch dir");
        let node = Node {
            nl,
            pod,
            container_id,
            scratch,
        };
        node.set_policy(TEST_POLICY);
        Some(node)
    }

    pub fn policy_path(&self) -> String {
        self.scratch
            .path()
            .join("plugins.conf")
            .display()
            .to_string()
    }

    /// Replaces the node policy the plugin reads (`None`: no policy file at all).
    pub fn set_policy_file(&self, text: Option<&str>) {
        let path = self.policy_path();
        match text {
            Some(t) => std::fs::write(&path, t).expect("write the policy"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    pub fn set_policy(&self, text: &str) {
        self.set_policy_file(Some(text));
    }

    pub fn device_link(&self, name: &str) {
        self.nl.device_link(name).expect("create device link");
    }

    pub fn add_pod(&mut self, name: &str) -> Ns {
        self.nl.pod(name).expect("extra pod netns")
    }

    pub fn links(&self, ns: &Ns) -> Vec<String> {
        self.nl.links(ns).expect("list links")
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
        self.call_raw(call).await
    }

    pub async fn call_raw(&self, call: Call) -> Reply {
        let call = call.env(POLICY_ENV, &self.policy_path());
        exec(&call, Some(&self.nl.node_ns))
            .await
            .expect("plugin runs")
    }
}

pub use secnet::cni::assert_error;
