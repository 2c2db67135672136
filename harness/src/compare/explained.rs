//! The differences between the netns cluster (secnet's kubelet double and multus
//! emulation) and a real cluster that are known and deliberate, each with why. The
//! one place they are written down: `secnet compare --a-cluster netns --b-cluster
//! bare` shows a difference this table matches as "explained" and exits non-zero
//! on any other. The README's list is this table.

use std::sync::LazyLock;

use regex::Regex;

/// A kind of difference: the aspect, and regexes over the scenario's name, the
/// subject and the (normalised) A and B values, all of which must match (anchored).
pub struct Known {
    pub(crate) scenario: &'static str,
    pub(crate) aspect: &'static str,
    pub(crate) subject: &'static str,
    pub(crate) a: &'static str,
    pub(crate) b: &'static str,
    pub(crate) reason: &'static str,
}

const RESTART_ADMISSION: &str = "a pod created while the node's kubelet restarts: the netns kubelet double refuses it at once (its device manager is empty until the device plugin registers again; the scenario accepts a refusal), the real kubelet finds it when it is back and admits it once the plugin has registered (the scheduler placed it by the Node's capacity, which a restart does not clear)";

/// Known differences, A = netns, B = a real cluster (Kubernetes 1.36, containerd
/// 1.6, thin multus 4.x), seen on the runs the README names.
pub const KNOWN: &[Known] = &[
    Known {
        scenario: ".*",
        aspect: "resources seen on the way",
        subject: "node .*",
        a: ".*",
        b: ".*",
        reason: "a real node's capacity and allocatable are its Node object's status, which the kubelet writes every 10 s, so short states the netns kubelet double shows at once (a restarted kubelet's 0 until the plugin registers again, allocatable 0 while devices are Unhealthy) may never reach the API; the last reading of each node is compared as `resources`",
    },
    Known {
        scenario: ".*",
        aspect: "cni repeated DEL",
        subject: "pod .*",
        a: "0",
        b: "[1-9][0-9]*",
        reason: "containerd 1.6 calls CNI DEL when it stops a sandbox and again when it removes it (the kubelet's RemovePodSandbox, at garbage collection); the netns kubelet double deletes a sandbox once (DEL twice is tested on its own by the macvtap-cni and ovs scenarios)",
    },
    Known {
        scenario: ".*",
        aspect: "cni DEL of an earlier sandbox",
        subject: "calls",
        a: "0",
        b: "[1-9][0-9]*",
        reason: "containerd's second DEL of a sandbox (RemovePodSandbox at the kubelet's garbage collection) can come while a later scenario runs on the shared real cluster; on netns each scenario's cluster is gone when it ends",
    },
    Known {
        scenario: "fault/pod netns deleted before CNI DEL.*",
        aspect: "verdict",
        subject: ".*",
        a: "passed",
        b: "failed",
        reason: "containerd 1.6 skips the CNI DEL of a sandbox whose network namespace is gone, so the pod network's host-local lease stays: the runtime's behaviour, not the plugins' (the netns kubelet double calls DEL as the CNI spec asks)",
    },
    Known {
        scenario: "fault/kubelet restart while pods start.*",
        aspect: "pods",
        subject: "pod .*",
        a: "refused",
        b: "created",
        reason: RESTART_ADMISSION,
    },
    Known {
        scenario: "fault/kubelet restart while pods start.*",
        aspect: "resources",
        subject: "node .*",
        a: r"capacity \{[^}]*: 0\}.*",
        b: ".*",
        reason: "the scenario reads the node once, right after the restart: the netns double's device manager is empty until the plugin registers again (capacity 0, only the pods admitted before the restart allocated), the real Node's status still has the capacity last written, and its kubelet admitted the pods created during the restart too (the admission row)",
    },
    Known {
        scenario: "fault/kubelet restart while pods start.*",
        aspect: "cni calls",
        subject: "pod .*",
        a: "-",
        b: ".*",
        reason: RESTART_ADMISSION,
    },
];

struct Compiled {
    known: &'static Known,
    scenario: Regex,
    subject: Regex,
    a: Regex,
    b: Regex,
}

static COMPILED: LazyLock<Vec<Compiled>> = LazyLock::new(|| {
    let anchored = |re: &str| Regex::new(&format!("^(?s:{re})$")).expect("explained regex");
    KNOWN
        .iter()
        .map(|known| Compiled {
            known,
            scenario: anchored(known.scenario),
            subject: anchored(known.subject),
            a: anchored(known.a),
            b: anchored(known.b),
        })
        .collect()
});

/// Why a difference of `aspect` about `subject` (`a` against `b`), seen in
/// `scenario`, is deliberate, if the table says so.
pub fn reason(
    scenario: &str,
    aspect: &str,
    subject: &str,
    a: &str,
    b: &str,
) -> Option<&'static str> {
    COMPILED
        .iter()
        .find(|c| {
            c.known.aspect == aspect
                && c.scenario.is_match(scenario)
                && c.subject.is_match(subject)
                && c.a.is_match(a)
                && c.b.is_match(b)
        })
        .map(|c| c.known.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_compiles_and_names_a_reason() {
        assert_eq!(COMPILED.len(), KNOWN.len());
        for k in KNOWN {
            assert!(!k.reason.is_empty(), "{} {}", k.aspect, k.subject);
        }
    }
}
