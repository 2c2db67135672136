//! Two clusters' observations of one scenario, normalised, compared field by
//! field: every difference named by what it is about (`aspect`), where (`subject`)
//! and both values, and marked explained when [`super::explained`] lists it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::normalise::{Normaliser, leaves, pod_of};
use crate::observe::record::{CniCallObs, Observed, PodObs, ResourcesObs};

/// One difference between A and B (normalised values; `-` where a side has none).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// `pods`, `network-status`, `network-status key order`, `devices`,
    /// `resources`, `cni calls`, `cni args`, `cni config`.
    pub(crate) aspect: String,
    /// The pod, node or call it is about, and the field (`pod p1 /1/mac`).
    pub(crate) subject: String,
    pub(crate) a: String,
    pub(crate) b: String,
    /// Why it is deliberate, when it is (from the explained table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) explained: Option<String>,
}

const NONE: &str = "-";

/// Every difference between `a` and `b` (what both sides observed of `scenario`),
/// each checked against the explained table.
pub fn differences(scenario: &str, a: &Observed, b: &Observed) -> Vec<Difference> {
    let (na, nb) = (Normaliser::for_side(a), Normaliser::for_side(b));
    let mut out = Vec::new();
    pods(a, b, &na, &nb, &mut out);
    resources(&a.resources, &b.resources, &mut out);
    calls(&a.cni_calls, &b.cni_calls, &na, &nb, &mut out);
    for d in &mut out {
        d.explained = super::explained::reason(scenario, &d.aspect, &d.subject, &d.a, &d.b)
            .map(str::to_string);
    }
    out
}

fn diff(out: &mut Vec<Difference>, aspect: &str, subject: String, a: String, b: String) {
    if a != b {
        out.push(Difference {
            aspect: aspect.into(),
            subject,
            a,
            b,
            explained: None,
        });
    }
}

/// Pods by name: refused or created, network-status field by field (and its keys'
/// order), devices.
fn pods(a: &Observed, b: &Observed, na: &Normaliser, nb: &Normaliser, out: &mut Vec<Difference>) {
    // The last time a name was created counts (scenarios create some pods again).
    let by_name = |obs: &Observed, n: &Normaliser| -> BTreeMap<String, PodObs> {
        obs.pods
            .iter()
            .map(|p| (p.name.clone(), n.pod(p)))
            .collect()
    };
    let (pa, pb) = (by_name(a, na), by_name(b, nb));
    let names: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
    for name in names {
        let (x, y) = (pa.get(name), pb.get(name));
        let state = |p: Option<&PodObs>| match p {
            None => "not created".to_string(),
            Some(p) if !p.created => "refused".into(),
            Some(_) => "created".into(),
        };
        diff(out, "pods", format!("pod {name}"), state(x), state(y));
        let (Some(x), Some(y)) = (x, y) else { continue };
        if !(x.created && y.created) {
            continue;
        }
        let status = |p: &PodObs| p.network_status.clone().unwrap_or_default();
        json_fields(
            out,
            "network-status",
            &format!("pod {name}"),
            &status(x),
            &status(y),
        );
        let raw_keys = |p: &PodObs, obs: &Observed| {
            obs.pods
                .iter()
                .rev()
                .find(|o| o.name == p.name)
                .and_then(|o| o.network_status.as_deref())
                .map(key_order)
                .unwrap_or_default()
        };
        diff(
            out,
            "network-status key order",
            format!("pod {name}"),
            raw_keys(x, a),
            raw_keys(y, b),
        );
        let devices = |p: &PodObs| format!("{:?}", p.devices);
        diff(
            out,
            "devices",
            format!("pod {name}"),
            devices(x),
            devices(y),
        );
    }
}

/// The keys of a JSON text in the order they are written (serde_json's maps sort
/// them, so the bytes' order is read off the text).
fn key_order(raw: &str) -> String {
    static KEY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#""([^"\\]*)"\s*:"#).unwrap());
    KEY.captures_iter(raw)
        .map(|c| c[1].to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Field-by-field differences of two normalised JSON texts.
fn json_fields(out: &mut Vec<Difference>, aspect: &str, subject: &str, a: &str, b: &str) {
    let leaves_of = |s: &str| -> BTreeMap<String, String> {
        if s.is_empty() {
            return BTreeMap::new();
        }
        match serde_json::from_str::<Value>(s) {
            Ok(v) => leaves(&v).into_iter().collect(),
            Err(_) => [("/".to_string(), s.to_string())].into(),
        }
    };
    let (la, lb) = (leaves_of(a), leaves_of(b));
    let paths: std::collections::BTreeSet<&String> = la.keys().chain(lb.keys()).collect();
    for path in paths {
        let get = |l: &BTreeMap<String, String>| l.get(path).cloned().unwrap_or(NONE.into());
        diff(out, aspect, format!("{subject} {path}"), get(&la), get(&lb));
    }
}

/// Each node's extended resources (`domain/name`: the node's own cpu, memory, pods
/// are the machine's, which the netns kubelet double does not model): the last
/// reading, and the sequence of distinct readings.
fn resources(a: &[ResourcesObs], b: &[ResourcesObs], out: &mut Vec<Difference>) {
    let extended = |m: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        m.iter()
            .filter(|(k, _)| k.contains('/'))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    let per_node = |rs: &[ResourcesObs]| -> BTreeMap<String, Vec<String>> {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in rs {
            let reading = format!(
                "capacity {:?} allocatable {:?} allocated {:?}",
                extended(&r.capacity),
                extended(&r.allocatable),
                extended(&r.allocated)
            );
            let readings = m.entry(r.node.clone()).or_default();
            if readings.last() != Some(&reading) {
                readings.push(reading);
            }
        }
        m
    };
    let (ra, rb) = (per_node(a), per_node(b));
    let nodes: std::collections::BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
    for node in nodes {
        let last = |m: &BTreeMap<String, Vec<String>>| {
            m.get(node)
                .and_then(|v| v.last().cloned())
                .unwrap_or_else(|| NONE.into())
        };
        diff(
            out,
            "resources",
            format!("node {node}"),
            last(&ra),
            last(&rb),
        );
        let seq = |m: &BTreeMap<String, Vec<String>>| {
            m.get(node)
                .map(|v| v.join(" → "))
                .unwrap_or_else(|| NONE.into())
        };
        diff(
            out,
            "resources seen on the way",
            format!("node {node}"),
            seq(&ra),
            seq(&rb),
        );
    }
}

/// Per pod, the calls its plugins received in order (`plugin COMMAND ifname
/// exit`); where the sequences agree, each call's CNI_ARGS and config. A DEL
/// repeated for one attachment counts once in the sequence and is compared on its
/// own (`cni repeated DEL`); DELs of sandboxes this scenario never ADDed (an
/// earlier scenario's, torn down late) are counted apart (`cni DEL of an earlier
/// sandbox`).
fn calls(
    a: &[CniCallObs],
    b: &[CniCallObs],
    na: &Normaliser,
    nb: &Normaliser,
    out: &mut Vec<Difference>,
) {
    struct PerPod {
        calls: BTreeMap<String, Vec<CniCallObs>>,
        repeated_dels: BTreeMap<String, usize>,
        earlier: usize,
    }
    let per_pod = |cs: &[CniCallObs], n: &Normaliser| -> PerPod {
        let added: std::collections::BTreeSet<(&str, &str)> = cs
            .iter()
            .filter(|c| c.command == "ADD")
            .map(|c| (c.container_id.as_str(), c.ifname.as_str()))
            .collect();
        let mut p = PerPod {
            calls: BTreeMap::new(),
            repeated_dels: BTreeMap::new(),
            earlier: 0,
        };
        // Each pod's last call as recorded (command, container, ifname).
        let mut last: BTreeMap<String, (&str, &str, &str)> = BTreeMap::new();
        for c in cs {
            // Node-lab calls carry no pod; their DELs without ADD are the scenario's.
            let pod = pod_of(&c.args);
            if c.command == "DEL"
                && pod != NONE
                && !added.contains(&(c.container_id.as_str(), c.ifname.as_str()))
            {
                p.earlier += 1;
                continue;
            }
            let key = (
                c.command.as_str(),
                c.container_id.as_str(),
                c.ifname.as_str(),
            );
            let repeat = c.command == "DEL" && last.get(&pod) == Some(&key);
            last.insert(pod.clone(), key);
            if repeat {
                *p.repeated_dels.entry(pod).or_default() += 1;
            } else {
                p.calls.entry(pod).or_default().push(n.call(c));
            }
        }
        p
    };
    let (pa, pb) = (per_pod(a, na), per_pod(b, nb));
    diff(
        out,
        "cni DEL of an earlier sandbox",
        "calls".into(),
        pa.earlier.to_string(),
        pb.earlier.to_string(),
    );
    let (ca, cb) = (&pa.calls, &pb.calls);
    let pods: std::collections::BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
    let sig = |c: &CniCallObs| format!("{} {} {} exit {}", c.plugin, c.command, c.ifname, c.status);
    for pod in pods {
        let empty = Vec::new();
        let (xs, ys) = (ca.get(pod).unwrap_or(&empty), cb.get(pod).unwrap_or(&empty));
        let seq = |cs: &[CniCallObs]| {
            if cs.is_empty() {
                NONE.to_string()
            } else {
                cs.iter().map(sig).collect::<Vec<_>>().join("; ")
            }
        };
        diff(out, "cni calls", format!("pod {pod}"), seq(xs), seq(ys));
        let repeated = |p: &PerPod| p.repeated_dels.get(pod).copied().unwrap_or(0).to_string();
        diff(
            out,
            "cni repeated DEL",
            format!("pod {pod}"),
            repeated(&pa),
            repeated(&pb),
        );
        // Calls are compared one to one where both sides made the same call at the
        // same position.
        for (i, (x, y)) in xs.iter().zip(ys).enumerate() {
            if sig(x) != sig(y) {
                continue;
            }
            let subject = format!("pod {pod} call {} ({} {})", i + 1, x.plugin, x.command);
            diff(
                out,
                "cni args",
                subject.clone(),
                x.args.clone(),
                y.args.clone(),
            );
            json_fields(out, "cni config", &subject, &x.config, &y.config);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, status: &str) -> PodObs {
        PodObs {
            namespace: ns.into(),
            name: "macvtap-pod".into(),
            node: "node1".into(),
            created: true,
            network_status: Some(status.into()),
            devices: [(
                "macvtap.network.kubevirt.io/dataplane".into(),
                vec!["dataplaneMvp3".into()],
            )]
            .into(),
        }
    }

    #[test]
    fn equal_after_normalising_is_no_difference() {
        let a = Observed {
            pods: vec![pod(
                "default",
                r#"[{"name":"default/dataplane","interface":"net1","mac":"02:11:22:33:44:55"}]"#,
            )],
            ..Observed::default()
        };
        let mut b = a.clone();
        b.pods[0] = pod(
            "secnet-sn0a0b0c",
            r#"[{"name":"secnet-sn0a0b0c/dataplane","interface":"net1","mac":"9a:bb:cc:dd:ee:ff"}]"#,
        );
        b.pods[0].devices = [(
            "macvtap.network.kubevirt.io/dataplane".into(),
            vec!["dataplaneMvp17".into()],
        )]
        .into();
        assert_eq!(differences("seed/x", &a, &b), []);
    }

    #[test]
    fn a_field_only_one_side_has_is_a_difference_naming_it() {
        let a = Observed {
            pods: vec![pod("default", r#"[{"name":"x","interface":"net1"}]"#)],
            ..Observed::default()
        };
        let b = Observed {
            pods: vec![pod(
                "default",
                r#"[{"name":"x","interface":"net1","dns":{}}]"#,
            )],
            ..Observed::default()
        };
        let d = differences("seed/x", &a, &b);
        let subjects: Vec<(&str, &str, &str, &str)> = d
            .iter()
            .map(|d| {
                (
                    d.aspect.as_str(),
                    d.subject.as_str(),
                    d.a.as_str(),
                    d.b.as_str(),
                )
            })
            .collect();
        assert_eq!(
            subjects,
            [
                ("network-status", "pod macvtap-pod /0/dns", "-", "{}"),
                (
                    "network-status key order",
                    "pod macvtap-pod",
                    "name,interface",
                    "name,interface,dns"
                ),
            ]
        );
    }

    #[test]
    fn call_order_per_pod_counts_and_args_are_compared_call_by_call() {
        let call = |cmd: &str, args: &str| CniCallObs {
            plugin: "macvtap".into(),
            command: cmd.into(),
            container_id: "c".into(),
            ifname: "net1".into(),
            args: args.into(),
            config: r#"{"type":"macvtap"}"#.into(),
            status: 0,
        };
        let a = Observed {
            cni_calls: vec![
                call("ADD", "K8S_POD_NAME=p;MAC=02:00:00:00:00:01"),
                call("DEL", "K8S_POD_NAME=p"),
            ],
            ..Observed::default()
        };
        let b = Observed {
            cni_calls: vec![
                call("ADD", "IgnoreUnknown=1;K8S_POD_NAME=p"),
                call("DEL", "K8S_POD_NAME=p"),
                call("DEL", "K8S_POD_NAME=p"),
            ],
            ..Observed::default()
        };
        let d = differences("seed/x", &a, &b);
        assert_eq!(d.len(), 2, "{d:#?}");
        // B's second DEL (containerd's) counts once in the sequence and is a
        // difference of its own, explained.
        assert_eq!(d[0].aspect, "cni repeated DEL");
        assert_eq!((d[0].a.as_str(), d[0].b.as_str()), ("0", "1"));
        assert!(d[0].explained.is_some());
        assert_eq!(d[1].aspect, "cni args");
        assert_eq!(d[1].subject, "pod p call 1 (macvtap ADD)");
        assert_eq!(d[1].a, "K8S_POD_NAME=p;MAC=<mac>");
        assert!(d[1].explained.is_none());
    }

    /// What netns and a real cluster (run sn592f52) recorded of five scenarios.
    fn captured() -> Vec<(String, Observed, Observed)> {
        let text = include_str!("../../fixtures/compare/netns-vs-bare.json");
        let v: Value = serde_json::from_str(text).unwrap();
        v["scenarios"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let side = |k: &str| serde_json::from_value(s[k].clone()).unwrap();
                (
                    s["name"].as_str().unwrap().to_string(),
                    side("a"),
                    side("b"),
                )
            })
            .collect()
    }

    #[test]
    fn the_captured_runs_differ_only_in_explained_ways() {
        let runs = captured();
        assert_eq!(runs.len(), 5);
        for (name, a, b) in &runs {
            assert!(!a.pods.is_empty() || !a.resources.is_empty(), "{name}");
            let d = differences(name, a, b);
            let unexplained: Vec<_> = d.iter().filter(|d| d.explained.is_none()).collect();
            assert!(unexplained.is_empty(), "{name}: {unexplained:#?}");
        }
        // The kubelet restart: the double's transient 0 is seen on netns only.
        let (name, a, b) = runs
            .iter()
            .find(|r| r.0.starts_with("fault/kubelet"))
            .unwrap();
        let d = differences(name, a, b);
        assert!(
            d.iter().any(|d| d.aspect == "resources seen on the way"
                && d.a.contains("dataplane\": 0")
                && d.explained.is_some()),
            "{d:#?}"
        );
    }

    #[test]
    fn pods_a_restarting_kubelet_double_refused_are_explained_differences() {
        let (name, a, b) = captured()
            .into_iter()
            .find(|r| r.0.starts_with("fault/kubelet restart while"))
            .unwrap();
        let d = differences(&name, &a, &b);
        let refused: Vec<&Difference> = d
            .iter()
            .filter(|d| d.aspect == "pods" && d.a == "refused" && d.b == "created")
            .collect();
        assert!(!refused.is_empty(), "{d:#?}");
        assert!(refused.iter().all(|d| d.explained.is_some()), "{d:#?}");
        // The same difference in another scenario is not explained.
        let elsewhere = differences("seed/capacity accounting", &a, &b);
        assert!(
            elsewhere
                .iter()
                .any(|d| d.aspect == "pods" && d.explained.is_none()),
            "{elsewhere:#?}"
        );
    }

    #[test]
    fn a_planted_difference_in_captured_calls_is_unexplained() {
        let (name, a, mut b) = captured()
            .into_iter()
            .find(|r| r.0.starts_with("seed/macvtap-pod-with-mac"))
            .unwrap();
        // B's multus "forgets" the requested MAC on the ADD.
        let add = b
            .cni_calls
            .iter_mut()
            .find(|c| c.command == "ADD" && c.plugin == "macvtap")
            .unwrap();
        add.args = add
            .args
            .split(';')
            .filter(|kv| !kv.starts_with("MAC="))
            .collect::<Vec<_>>()
            .join(";");
        // ... and its network-status says net1 has another interface name.
        let ns = b.pods[0].network_status.take().unwrap();
        b.pods[0].network_status = Some(ns.replacen("\"net1\"", "\"net9\"", 1));
        let d = differences(&name, &a, &b);
        let unexplained: Vec<(&str, &str)> = d
            .iter()
            .filter(|d| d.explained.is_none())
            .map(|d| (d.aspect.as_str(), d.subject.as_str()))
            .collect();
        assert_eq!(
            unexplained,
            [
                ("network-status", "pod macvtap-pod-with-mac /1/interface"),
                ("cni args", "pod macvtap-pod-with-mac call 1 (macvtap ADD)"),
            ],
            "{d:#?}"
        );
    }
}
