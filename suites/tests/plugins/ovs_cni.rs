//! A node with userspace Open vSwitch for the plugin tests: the harness's node lab
//! (a fresh netns per test), ovsdb-server + ovs-vswitchd inside it with a temp dir,
//! bridge `br1`. Everything goes away on drop, also when a test panics.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use cni_kit::SpecVersion;
use secnet::cluster::netns::ovs::Ovs;
use secnet::cni::{Call, Reply, exec};
use secnet::lab::Ns;
use secnet::lab::enter::Enter;
use secnet::lab::node::NodeLab;
use serde_json::{Value, json};

#[path = "bundled.rs"]
mod bundled;

pub const PLUGIN: bundled::Bundled = bundled::Bundled("ovs");
pub const BRIDGE: &str = "br1";
pub const CACHE_DIR: &str = "/var/lib/cni/ovs-cni/cache";

pub struct OvsNode {
    pub ovs: Ovs,
    pub nl: NodeLab,
    pub pod: Ns,
    pub dir: PathBuf,
    pub container_id: String,
}

impl std::ops::Deref for OvsNode {
    type Target = NodeLab;
    fn deref(&self) -> &NodeLab {
        &self.nl
    }
}

/// Whether the test may run: root and Open vSwitch (fails under CI=true otherwise).
pub fn prerequisites(test: &str) -> bool {
    secnet::prereq::require_root(test)
        && secnet::prereq::require_program(test, "ovsdb-server", "openvswitch-switch")
        && secnet::prereq::require_program(test, "ovs-vswitchd", "openvswitch-switch")
}

impl OvsNode {
    /// `None` when the test must skip (not root or no OVS, outside CI).
    pub fn new(test: &str) -> Option<OvsNode> {
        if !prerequisites(test) {
            return None;
        }
        let mut nl = NodeLab::new().expect("node lab");
        let pod = nl.pod("pod").expect("pod netns");
        let dir = std::env::temp_dir().join(format!("{}-ovs", nl.lab.run_id));
        let enter = Enter::net(nl.node.path()).expect("open node netns");
        let ovs = Ovs::start(&enter, &dir).unwrap_or_else(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            panic!("{test}: start OVS: {e}")
        });
        let container_id = format!("{}-c0", nl.lab.run_id);
        let node = OvsNode {
            ovs,
            nl,
            pod,
            dir,
            container_id,
        };
        node.ovs.add_bridge(BRIDGE).expect("add br1");
        node.set_policy(&node.test_policy());
        Some(node)
    }

    /// The node policy the tests run with unless they set another: this node's
    /// socket (and one where nothing listens), trunks allowed.
    pub fn test_policy(&self) -> String {
        format!(
            "[ovs]\nsockets = {}, {}\ntrunk = true\n",
            self.ovs.socket.display(),
            self.dir.join("nothing-here.sock").display()
        )
    }

    pub fn policy_path(&self) -> String {
        self.dir.join("plugins.conf").display().to_string()
    }

    /// Replaces the node policy the plugin reads (`SECNET_PLUGIN_POLICY`).
    pub fn set_policy(&self, text: &str) {
        std::fs::write(self.policy_path(), text).expect("write the policy");
    }

    pub fn socket_file(&self) -> String {
        format!("unix:{}", self.ovs.socket.display())
    }

    pub fn add_pod(&mut self, name: &str) -> Ns {
        self.nl.pod(name).expect("extra pod netns")
    }

    /// The network configuration for `version` with `extra` fields merged in.
    pub fn config(&self, version: SpecVersion, extra: Value) -> Value {
        let mut c = json!({"cniVersion": version.as_str(), "name": "ovs-net", "type": "ovs",
            "bridge": BRIDGE, "socket_file": self.socket_file()});
        for (k, v) in extra.as_object().expect("object").clone() {
            c[k] = v;
        }
        c
    }

    pub fn cid(&self, pod: &Ns) -> String {
        format!("{}-{}", self.container_id, pod.name)
    }

    pub fn call_for(
        &self,
        command: &str,
        config: Value,
        pod: &Ns,
        ifname: &str,
        args: &str,
    ) -> Call {
        let mut call = Call::new(PLUGIN, command, config)
            .container(&self.cid(pod), Some(&pod.path_str()), ifname)
            .args(args);
        call.path = format!("{}:/usr/lib/cni", call.path);
        call
    }

    pub async fn call(
        &self,
        command: &str,
        config: Value,
        pod: &Ns,
        ifname: &str,
        args: &str,
    ) -> Reply {
        self.call_raw(self.call_for(command, config, pod, ifname, args))
            .await
    }

    pub async fn call_raw(&self, call: Call) -> Reply {
        let call = call.env(cni_kit::policy::POLICY_ENV, &self.policy_path());
        exec(&call, Some(&self.nl.node_ns))
            .await
            .expect("plugin runs")
    }

    pub fn ports(&self) -> Vec<String> {
        self.ovs.ports(BRIDGE).expect("list ports")
    }

    /// `ovs-vsctl get <table> <record> <column>`, trimmed.
    pub fn get(&self, table: &str, record: &str, column: &str) -> String {
        self.ovs
            .vsctl(&["get", table, record, column])
            .expect("ovs-vsctl get")
            .trim()
            .to_string()
    }

    pub fn cache_file(&self, pod: &Ns, ifname: &str) -> PathBuf {
        PathBuf::from(CACHE_DIR).join(format!("{}-{ifname}", self.cid(pod)))
    }

    /// Runs a command inside `ns`.
    pub async fn run_in(&self, ns: &Ns, argv: &[&str]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(argv[0]);
        cmd.args(&argv[1..]).kill_on_drop(true);
        Enter::net(ns.path()).unwrap().apply(&mut cmd).unwrap();
        tokio::time::timeout(Duration::from_secs(20), cmd.output())
            .await
            .expect("command timed out")
            .expect("command runs")
    }

    pub async fn ping(&self, from: &Ns, ip: &str) -> bool {
        // A few tries: ovs-vswitchd picks new ports up asynchronously.
        for _ in 0..3 {
            if self
                .run_in(from, &["ping", "-c", "1", "-W", "1", "-q", ip])
                .await
                .status
                .success()
            {
                return true;
            }
        }
        false
    }
}

impl Drop for OvsNode {
    fn drop(&mut self) {
        self.ovs.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
        // Cache entries of this test's containers (a failed test may leave some).
        if let Ok(entries) = std::fs::read_dir(CACHE_DIR) {
            for e in entries.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with(&self.container_id)
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[allow(unused_imports)] // not every test binary uses it
pub use secnet::cni::assert_error;
