//! Run-specific values out of an [`Observed`], so that two clusters' observations
//! of one scenario can be compared byte for byte. What is replaced, everywhere
//! (network-status, device lists, CNI_ARGS, delegate configs):
//!
//! | value | becomes | why |
//! |---|---|---|
//! | the run namespace (`secnet-sn…` on real clusters, the fixture's `default` on netns) as a pod's namespace or the `<ns>/` of a network name | `<ns>` | each real run has a namespace of its own |
//! | run ids `sn` + 6 hex | `<run>` | per run |
//! | pod UIDs (UUIDs) | `<uid>` | per pod |
//! | container/sandbox IDs (the CNI_CONTAINERID of a recorded call, and any 32–64 hex) | `<cid>` | per sandbox (containerd: 64 hex; netns: `<run>-<scope>-<hash>`) |
//! | device IDs the checkpoint names | `<device>` | which free device a kubelet picks is not specified (the real one takes any) |
//! | IPv4/IPv6 addresses (a prefix length is kept) | `<ipv4>`, `<ipv6>` | host-local hands out the next free address of a range that other scenarios of a shared cluster used before |
//! | MAC addresses | `<mac>` | the kernel's are random; requested ones are checked by the scenarios themselves |
//! | a scenario's scope in names (`<run>-a3`, `<run>-b3`) and the random part of its scratch dirs | `<run>-<scope>`, `<random>` | A and B run in scopes of their own |
//! | sandbox network namespace files (`/run/netns/<run>-…`, `/var/run/netns/cni-<uuid>`) | `<netns>` | each runtime names them its own way |
//! | random veth names (`veth` + 8 hex) | `veth<id>` | random per attachment |
//! | a node's own resources (cpu, memory, pods, hugepages, ephemeral-storage) | left out | the netns kubelet double has none; only extended resources (`domain/name`) are compared |
//!
//! Pod names, node names, interface names, networks, plugin types, keys, their
//! order and everything else is kept.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::observe::record::{CniCallObs, Observed, PodObs};

static RUN_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bsn[0-9a-f]{6}\b").unwrap());
static UUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b").unwrap()
});
static CONTAINER_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[0-9a-f]{32,64}\b").unwrap());
static MAC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b").unwrap());
// The macvtap device plugin's device IDs (`<resource>Mvp<n>`, upstream's scheme
// too), for pods the recording did not see allocated (refused, or of a DaemonSet).
static DEVICE_ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b\w+Mvp\d+\b").unwrap());
// A scenario's scope in names (`<run>-a3-pod`, `<run>-b3-pod`): A's and B's differ.
static SCOPE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<run>-[ab]\d+\b").unwrap());
// mkdtemp's six random characters after a scope's scratch-dir name.
static SCRATCH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(<run>-<scope>-[A-Za-z0-9]+)-[A-Za-z0-9]{6}/").unwrap());
// A pod sandbox's network namespace file: each runtime names them its own way
// (netns: /run/netns/<run>-<scope>-pod-…; containerd: /var/run/netns/cni-<uuid>).
static NETNS_PATH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?:/var)?/run/netns/[^"\s;]+"#).unwrap());
// The host side of a veth the kernel or a plugin named at random.
static VETH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\bveth[0-9a-f]{8}\b").unwrap());
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:\d{1,3}\.){3}\d{1,3}\b").unwrap());
// An IPv6 address: hex groups with at least two colons (MACs are replaced first).
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:[0-9a-f]{1,4}:){1,7}(?:(?::[0-9a-f]{1,4}){1,6}|[0-9a-f]{1,4}|:)|::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?")
        .unwrap()
});

/// Replaces the run-specific values of one side's observations.
pub struct Normaliser {
    namespaces: Vec<String>,
    devices: Vec<String>,
    containers: Vec<String>,
}

impl Normaliser {
    /// Learns the side's namespaces and device IDs from its pods.
    pub fn for_side(obs: &Observed) -> Normaliser {
        let mut namespaces: Vec<String> = obs.pods.iter().map(|p| p.namespace.clone()).collect();
        namespaces.sort();
        namespaces.dedup();
        let mut devices: Vec<String> = obs
            .pods
            .iter()
            .flat_map(|p| p.devices.values().flatten().cloned())
            .collect();
        // Longest first: `dataplaneMvp12` before `dataplaneMvp1`.
        devices.sort();
        devices.dedup();
        devices.sort_by_key(|d| std::cmp::Reverse(d.len()));
        let mut containers: Vec<String> = obs
            .cni_calls
            .iter()
            .map(|c| c.container_id.clone())
            .filter(|c| !c.is_empty())
            .collect();
        containers.sort();
        containers.dedup();
        containers.sort_by_key(|c| std::cmp::Reverse(c.len()));
        Normaliser {
            namespaces,
            devices,
            containers,
        }
    }

    /// One string with every run-specific value replaced.
    pub fn text(&self, s: &str) -> String {
        let mut s = s.to_string();
        for ns in &self.namespaces {
            if s == *ns {
                return "<ns>".into();
            }
            if let Some(rest) = s.strip_prefix(&format!("{ns}/")) {
                s = format!("<ns>/{rest}");
            }
            s = s.replace(&format!("K8S_POD_NAMESPACE={ns}"), "K8S_POD_NAMESPACE=<ns>");
        }
        for d in &self.devices {
            s = replace_word(&s, d, "<device>");
        }
        for c in &self.containers {
            s = replace_word(&s, c, "<cid>");
        }
        let s = NETNS_PATH.replace_all(&s, "<netns>");
        let s = DEVICE_ID.replace_all(&s, "<device>");
        let s = VETH.replace_all(&s, "veth<id>");
        let s = UUID.replace_all(&s, "<uid>");
        let s = CONTAINER_ID.replace_all(&s, "<cid>");
        let s = RUN_ID.replace_all(&s, "<run>");
        let s = SCOPE.replace_all(&s, "<run>-<scope>");
        let s = SCRATCH.replace_all(&s, "$1-<random>/");
        let s = MAC.replace_all(&s, "<mac>");
        let s = IPV4.replace_all(&s, "<ipv4>");
        let s = IPV6.replace_all(&s, |c: &regex::Captures| {
            // `::` alone in text that is no address (e.g. a Rust path) stays.
            if c[0].len() > 2 {
                "<ipv6>".to_string()
            } else {
                c[0].to_string()
            }
        });
        s.to_string()
    }

    /// A JSON document with every string normalised; keys and order kept. Text
    /// that is not JSON is normalised as text.
    pub fn json(&self, raw: &str) -> Value {
        match serde_json::from_str::<Value>(raw) {
            Ok(v) => self.value(v),
            Err(_) => Value::String(self.text(raw)),
        }
    }

    fn value(&self, v: Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(a) => Value::Array(a.into_iter().map(|v| self.value(v)).collect()),
            Value::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, self.value(v))).collect())
            }
            other => other,
        }
    }

    pub fn pod(&self, p: &PodObs) -> PodObs {
        PodObs {
            namespace: self.text(&p.namespace),
            name: self.text(&p.name),
            node: p.node.clone(),
            created: p.created,
            network_status: p
                .network_status
                .as_ref()
                .map(|s| serde_json::to_string(&self.json(s)).expect("JSON serializes")),
            devices: p
                .devices
                .iter()
                .map(|(r, ids)| (r.clone(), ids.iter().map(|d| self.text(d)).collect()))
                .collect(),
        }
    }

    pub fn call(&self, c: &CniCallObs) -> CniCallObs {
        CniCallObs {
            plugin: c.plugin.clone(),
            command: c.command.clone(),
            container_id: self.text(&c.container_id),
            ifname: c.ifname.clone(),
            args: runtime_pairs_sorted(&self.text(&c.args)),
            config: serde_json::to_string(&self.json(&c.config)).expect("JSON serializes"),
            status: c.status,
        }
    }
}

/// CNI_ARGS as multus builds them (its own five pairs, then the runtime's CNI_ARGS
/// pairs, then `MAC=`/`IP=` of the selection) with the runtime's pairs sorted:
/// containerd writes them from a Go map, in a different order on each call.
pub fn runtime_pairs_sorted(args: &str) -> String {
    let pairs: Vec<&str> = args.split(';').collect();
    if pairs.len() < 5 || pairs[0] != "IgnoreUnknown=true" {
        return args.to_string();
    }
    let (own, rest) = pairs.split_at(5);
    let is_request = |p: &&str| p.starts_with("MAC=") || p.starts_with("IP=");
    let runtime_end = rest
        .iter()
        .rposition(|p| !is_request(p))
        .map_or(0, |i| i + 1);
    let (runtime, requests) = rest.split_at(runtime_end);
    let mut runtime = runtime.to_vec();
    runtime.sort_unstable();
    [own, &runtime, requests].concat().join(";")
}

/// `s` with every whole-word occurrence of `word` replaced (a device ID that is a
/// prefix of another is not touched inside it).
fn replace_word(s: &str, word: &str, with: &str) -> String {
    let re = Regex::new(&format!(r"\b{}\b", regex::escape(word))).expect("escaped word");
    re.replace_all(s, with).into_owned()
}

/// The pod name a call was for (`K8S_POD_NAME` in its CNI_ARGS), or `-`.
pub fn pod_of(args: &str) -> String {
    args.split(';')
        .find_map(|kv| kv.strip_prefix("K8S_POD_NAME="))
        .unwrap_or("-")
        .to_string()
}

/// Every leaf of a JSON document by its path (`/ips/0`), for field-by-field diffs.
pub fn leaves(v: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, path: String, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) if !o.is_empty() => {
                for (k, v) in o {
                    walk(v, format!("{path}/{k}"), out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, v) in a.iter().enumerate() {
                    walk(v, format!("{path}/{i}"), out);
                }
            }
            leaf => out.push((
                if path.is_empty() { "/".into() } else { path },
                leaf.to_string(),
            )),
        }
    }
    let mut out = Vec::new();
    walk(v, String::new(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_specific_values_are_replaced_and_the_rest_kept() {
        let obs = Observed {
            pods: vec![PodObs {
                namespace: "secnet-sn1a2b3c".into(),
                name: "macvtap-pod".into(),
                devices: [(
                    "macvtap.network.kubevirt.io/dataplane".into(),
                    vec!["dataplaneMvp1".into(), "dataplaneMvp12".into()],
                )]
                .into(),
                ..PodObs::default()
            }],
            ..Observed::default()
        };
        let n = Normaliser::for_side(&obs);
        assert_eq!(n.text("secnet-sn1a2b3c/dataplane"), "<ns>/dataplane");
        assert_eq!(n.text("secnet-sn1a2b3c"), "<ns>");
        assert_eq!(n.text("dataplaneMvp12,dataplaneMvp1"), "<device>,<device>");
        assert_eq!(
            n.text("fe80::c8e1:2ff:fe3a:1/64 10.250.250.3/24 0a:58:0a:f4:01:05"),
            "<ipv6>/64 <ipv4>/24 <mac>"
        );
        assert_eq!(
            n.text("IgnoreUnknown=1;K8S_POD_NAMESPACE=secnet-sn1a2b3c;K8S_POD_NAME=macvtap-pod;K8S_POD_UID=5d0e3b5c-9b8e-4f0e-8e4f-0a1b2c3d4e5f"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=<ns>;K8S_POD_NAME=macvtap-pod;K8S_POD_UID=<uid>"
        );
        assert_eq!(
            n.text("1f3c6b0d7e9a4c2b8d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c"),
            "<cid>"
        );
        assert_eq!(n.text("dataplaneMvp"), "dataplaneMvp", "not a device");
        // As run sn20ac84 recorded them: a CHECK's prevResult on each side, an OVS
        // DEL's prevResult on containerd, a scratch dir's socket.
        assert_eq!(
            n.text("/run/netns/sn20ac84-a3-pod"),
            n.text("/var/run/netns/cni-5d0e3b5c-9b8e-4f0e-8e4f-0a1b2c3d4e5f")
        );
        assert_eq!(
            n.text("unix:/tmp/sn20ac84-a30-sec-Mx1Ar5/ovs/db.sock"),
            n.text("unix:/tmp/sn20ac84-b30-sec-t7DXVX/ovs/db.sock")
        );
        assert_eq!(n.text("veth3323a970"), "veth<id>");
        assert_eq!(n.text("dataplaneMvp45"), "<device>");
        assert_eq!(pod_of("IgnoreUnknown=1;K8S_POD_NAME=p-1;X=2"), "p-1");
        // As real multus on containerd passed them (run sn803a06): the runtime's
        // pairs in a different order on two calls.
        let own = "IgnoreUnknown=true;K8S_POD_NAMESPACE=<ns>;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=<cid>;K8S_POD_UID=<uid>";
        assert_eq!(
            runtime_pairs_sorted(&format!(
                "{own};K8S_POD_NAMESPACE=<ns>;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=<cid>;K8S_POD_UID=<uid>;IgnoreUnknown=1;MAC=<mac>"
            )),
            runtime_pairs_sorted(&format!(
                "{own};IgnoreUnknown=1;K8S_POD_NAMESPACE=<ns>;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=<cid>;K8S_POD_UID=<uid>;MAC=<mac>"
            )),
        );
        assert!(
            runtime_pairs_sorted(&format!(
                "{own};K8S_POD_UID=<uid>;IgnoreUnknown=1;MAC=<mac>"
            ))
            .ends_with(";IgnoreUnknown=1;K8S_POD_UID=<uid>;MAC=<mac>")
        );
    }

    #[test]
    fn leaves_name_every_field_by_path() {
        let v: Value = serde_json::from_str(r#"{"a":[{"b":1},"x"],"c":{},"d":null}"#).unwrap();
        assert_eq!(
            leaves(&v),
            [
                ("/a/0/b".to_string(), "1".to_string()),
                ("/a/1".into(), "\"x\"".into()),
                ("/c".into(), "{}".into()),
                ("/d".into(), "null".into()),
            ]
        );
    }
}
