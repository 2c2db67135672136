//! Frames on a pod's interface, captured from the node's Open vSwitch pod: tcpdump
//! started detached in the pod's network namespace (found through `/proc`, the pod
//! is hostPID) and stopped by a second exec that prints what it saw.

use super::run_in_ovs_pod;
use crate::cluster::kube::KubeCluster;
use crate::cluster::{ClusterError, PodView};

/// Starts tcpdump in a pod's network namespace from the OVS pod (hostPID): the first
/// process whose cgroup names the pod's UID (cgroupfs `pod<uid>`, systemd
/// `pod<uid with _>`) gives the namespace; tcpdump runs detached, writing under
/// `/tmp/secnet-capture-<token>`, and the script returns once it listens.
const START_CAPTURE: &str = r#"set -u
uid=$1 iface=$2 filter=$3 dir=/tmp/secnet-capture-$4
alt=$(printf %s "$uid" | tr - _)
self=$(readlink /proc/self/ns/net)
pid=
for d in /proc/[0-9]*; do
  if grep -qE "pod($uid|$alt)" "$d/cgroup" 2>/dev/null && [ "$(readlink "$d/ns/net")" != "$self" ]; then
    pid=${d#/proc/}; break
  fi
done
[ -n "$pid" ] || { echo "no process of pod $uid on this node" >&2; exit 1; }
mkdir -p "$dir"
setsid nsenter -t "$pid" -n tcpdump -nn -e -l -i "$iface" "$filter" >"$dir/out" 2>"$dir/err" </dev/null &
echo $! >"$dir/pid"
for _ in $(seq 100); do
  grep -q "listening on" "$dir/err" && exit 0
  kill -0 "$(cat "$dir/pid")" 2>/dev/null || { echo "tcpdump exited:" >&2; cat "$dir/err" >&2; rm -rf "$dir"; exit 1; }
  sleep 0.1
done
echo "tcpdump did not start listening within 10 s:" >&2; cat "$dir/err" >&2
kill -KILL "$(cat "$dir/pid")" 2>/dev/null; rm -rf "$dir"; exit 1
"#;

/// Stops the capture (SIGINT: tcpdump flushes what it saw), prints what it saw and
/// removes its directory.
const STOP_CAPTURE: &str = r#"dir=/tmp/secnet-capture-$1
pid=$(cat "$dir/pid") || exit 1
kill -INT "$pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL "$pid" 2>/dev/null
cat "$dir/out"
rm -rf "$dir"
"#;

/// The argv that starts capturing `filter` on `pod`'s `iface` (see `START_CAPTURE`).
pub fn start_capture_argv(pod: &PodView, iface: &str, filter: &str, token: &str) -> Vec<String> {
    [
        "bash",
        "-c",
        START_CAPTURE,
        "secnet-capture",
        &pod.uid,
        iface,
        filter,
        token,
    ]
    .map(String::from)
    .to_vec()
}

pub fn stop_capture_argv(token: &str) -> Vec<String> {
    ["bash", "-c", STOP_CAPTURE, "secnet-capture", token]
        .map(String::from)
        .to_vec()
}

/// A capture running in the OVS pod of a pod's node.
#[derive(Debug)]
pub struct Capture {
    node: String,
    token: String,
}

impl Capture {
    /// Starts capturing `filter` on `pod`'s `iface`; returns once tcpdump listens.
    pub async fn start(
        c: &KubeCluster,
        pod: &PodView,
        iface: &str,
        filter: &str,
    ) -> Result<Capture, ClusterError> {
        let token = format!("{}-{}", c.run_id(), pod.uid);
        let argv = start_capture_argv(pod, iface, filter, &token);
        run_in_ovs_pod(c, &pod.node, &argv).await?;
        Ok(Capture {
            node: pod.node.clone(),
            token,
        })
    }

    /// Stops it; what tcpdump printed (`tcpdump -e` lines).
    pub async fn stop(self, c: &KubeCluster) -> Result<String, ClusterError> {
        run_in_ovs_pod(c, &self.node, &stop_capture_argv(&self.token)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writable cgroup hierarchy to put the test's "pod" process in.
    fn cgroup_root() -> Option<std::path::PathBuf> {
        [
            "/sys/fs/cgroup/pids",
            "/sys/fs/cgroup/unified",
            "/sys/fs/cgroup",
        ]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists())
    }

    fn bash(argv: &[String]) -> std::process::Output {
        std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .unwrap()
    }

    /// The scripts the OVS pod runs, run for real on this machine: a "pod" is a
    /// process in a network namespace and in a cgroup named as the kubelet's systemd
    /// driver names pods; tcpdump must run in its namespace and see its ARP.
    #[test]
    fn capture_scripts_find_the_pod_by_cgroup_and_capture_in_its_namespace() {
        use crate::prereq::{find_program, require, require_root};
        let what = "the OVS pod's capture scripts";
        if !require_root(what) {
            return;
        }
        let tools = ["bash", "tcpdump", "nsenter", "setsid", "ping"];
        let missing = tools.into_iter().find(|p| find_program(p).is_none());
        if !require(what, missing.map(|p| format!("{p} is not installed"))) {
            return;
        }
        let Some(root) = cgroup_root() else {
            require(what, Some("no writable cgroup hierarchy"));
            return;
        };
        let mut lab = crate::lab::Lab::new();
        let ns = lab.netns("cap").unwrap();
        let ip = |args: &[&str]| lab.ip(&ns, args).unwrap();
        ip(&[
            "link", "add", "net1", "type", "veth", "peer", "name", "peer1",
        ]);
        ip(&["link", "set", "net1", "up"]);
        ip(&["link", "set", "peer1", "up"]);
        ip(&["addr", "add", "10.9.9.1/24", "dev", "peer1"]);
        let uid = "0f1e2d3c-aaaa-4bbb-8ccc-123456789abc";
        let cgroup = root.join(format!(
            "{}-kubepods-besteffort-pod{}.slice",
            lab.run_id,
            uid.replace('-', "_")
        ));
        std::fs::create_dir(&cgroup).unwrap();
        // `ip netns exec` enters the namespace and execs: the pid is sleep's.
        let mut sleeper = std::process::Command::new("ip")
            .args(["netns", "exec", &ns.name, "sleep", "30"])
            .spawn()
            .unwrap();
        std::fs::write(cgroup.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pod = PodView {
            namespace: "default".into(),
            name: "trunk".into(),
            uid: uid.into(),
            node: "node-a".into(),
            annotations: Default::default(),
            devices: Default::default(),
        };
        let token = lab.run_id.clone();
        let started = bash(&start_capture_argv(&pod, "net1", "arp", &token));
        // Nobody answers: the ARP request leaves peer1 and arrives on net1.
        let _ = std::process::Command::new("ip")
            .args([
                "netns", "exec", &ns.name, "ping", "-c", "1", "-W", "1", "-I", "peer1",
            ])
            .arg("10.9.9.2")
            .output();
        let stopped = bash(&stop_capture_argv(&token));
        let _ = sleeper.kill();
        let _ = sleeper.wait();
        let _ = std::fs::remove_dir(&cgroup);
        let errors = lab.teardown();
        assert!(
            started.status.success(),
            "start: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let seen = String::from_utf8_lossy(&stopped.stdout);
        assert!(
            seen.contains("who-has 10.9.9.2 tell 10.9.9.1"),
            "tcpdump -e on net1 saw:\n{seen}\nstop stderr: {}",
            String::from_utf8_lossy(&stopped.stderr)
        );
        assert!(
            !std::path::Path::new(&format!("/tmp/secnet-capture-{token}")).exists(),
            "the capture's directory is removed"
        );
        assert!(errors.is_empty(), "{errors:?}");
    }
}
