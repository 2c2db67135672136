//! Open vSwitch on a real cluster's nodes: the `openvswitch` component's DaemonSet
//! (`fixtures/components/openvswitch/openvswitch.yaml`) runs ovsdb-server and
//! ovs-vswitchd in every node's network namespace with the userspace datapath, as the
//! netns nodes do (`cluster::netns::ovs`): bridge `br1`, the node's trunk `ens34`.
//! What the scenarios read from the nodes (a bridge's ports, frames on a pod's
//! interface) is exec'd in that DaemonSet's pod on the node.
//!
//! The trunk: kind's nodes are containers on one Linux bridge (the engine's network),
//! each with one veth, `eth0`, that carries the node's address. ovs-vswitchd cannot
//! take `eth0` as a port (it would read every frame of the node's own stack, see
//! `cluster::netns::ovs::UPLINK`), and a macvlan on it delivers only unicast frames
//! to its own MAC, never to the pods' MACs behind br1. So `ens34` is a VXLAN device on
//! `eth0` with a multicast group: every node joins the group, broadcast and unknown
//! unicast go to all nodes, learnt MACs go straight to their node, and the whole
//! Ethernet frame, 802.1Q tag included, crosses the LAN: the VLANs trunk between nodes
//! with no peer list, no 8021q module and nothing to configure on the engine's bridge.
//! (Checked on the netns fabric: VLAN 100 across nodes, VLAN 200 isolated, a trunk
//! port sees VLAN 100 tagged and not 200.)

use k8s_openapi::api::core::v1::Pod as KPod;
use kube::api::{Api, ListParams};

use super::KubeCluster;
use crate::cluster::{Cluster, ClusterError, PodView};

/// The bridge and the node's trunk port: one name for the netns nodes, the
/// DaemonSet (its `${OVS_BRIDGE}`/`${OVS_UPLINK}`) and the scenarios' port checks.
pub use crate::cluster::netns::ovs::{BRIDGE, UPLINK};

pub const NAMESPACE: &str = "kube-system";
/// The DaemonSet's pods.
pub const POD_SELECTOR: &str = "app=secnet-openvswitch";
/// The node's own interface the VXLAN trunk rides on (kind's node veth).
pub const UNDERLAY: &str = "eth0";
/// VXLAN network id, multicast group (link-local scope: it stays on the LAN) and UDP
/// port of the trunk; the port is not 4789 so that a CNI's own VXLAN is left alone.
pub const VXLAN_ID: &str = "4242";
pub const VXLAN_GROUP: &str = "239.0.42.42";
pub const VXLAN_PORT: &str = "4799";

/// `ovs-vsctl list-ports <bridge>`, run in the OVS pod (its default database socket
/// is the node's `/var/run/openvswitch/db.sock`).
pub fn list_ports_argv(bridge: &str) -> Vec<String> {
    ["ovs-vsctl", "--timeout=10", "list-ports", bridge]
        .map(String::from)
        .to_vec()
}

/// Port names, one a line (`ovs-vsctl list-ports`).
pub fn parse_ports(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The label and field selectors that find the OVS pod on `node`.
pub fn pod_list_params(node: &str) -> ListParams {
    ListParams::default()
        .labels(POD_SELECTOR)
        .fields(&format!("spec.nodeName={node}"))
}

fn node_error(node: &str, what: &str, message: String) -> ClusterError {
    ClusterError::Node {
        node: node.to_string(),
        what: what.to_string(),
        message,
    }
}

/// The Running OVS pod on `node`.
pub async fn pod_on(c: &KubeCluster, node: &str) -> Result<String, ClusterError> {
    let api: Api<KPod> = Api::namespaced(c.client().clone(), NAMESPACE);
    let what = "finding the Open vSwitch pod";
    let pods = api.list(&pod_list_params(node)).await.map_err(|e| {
        node_error(
            node,
            what,
            format!("listing {POD_SELECTOR} in {NAMESPACE}: {e}"),
        )
    })?;
    let running = |p: &&KPod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    pods.items
        .iter()
        .find(running)
        .and_then(|p| p.metadata.name.clone())
        .ok_or_else(|| {
            node_error(
                node,
                what,
                format!(
                    "no Running pod {POD_SELECTOR} in {NAMESPACE} ({} found): the bridge is read from the openvswitch component's pods (--components ...,openvswitch); Open vSwitch preinstalled on the hosts has none",
                    pods.items.len()
                ),
            )
        })
}

/// Whether the pod passed its readiness probe (ovs-vswitchd has the trunk open).
fn is_ready(pod: &KPod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until every one of `nodes` has a Ready OVS pod: before that, ovs-cni's ADD
/// finds no database socket or no bridge. A timeout names the nodes without one.
pub async fn wait_ready(
    c: &KubeCluster,
    nodes: &[String],
    timeout: std::time::Duration,
) -> Result<(), ClusterError> {
    let api: Api<KPod> = Api::namespaced(c.client().clone(), NAMESPACE);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let pods = api
            .list(&ListParams::default().labels(POD_SELECTOR))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let has_ready = |node: &String| {
            pods.iter().any(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_ref()) == Some(node) && is_ready(p)
            })
        };
        let missing: Vec<&String> = nodes.iter().filter(|n| !has_ready(n)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ClusterError::Timeout {
                what: format!(
                    "a Ready Open vSwitch pod ({POD_SELECTOR} in {NAMESPACE}) on every node"
                ),
                seconds: timeout.as_secs(),
                state: format!(
                    "none on {}: is {} loaded into the nodes? (kubectl -n {NAMESPACE} logs -l {POD_SELECTOR})",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::cluster::kube::components::OPENVSWITCH_IMAGE
                ),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Runs `argv` in the OVS pod on `node`; its stdout, or an error with its stderr.
async fn run_in_ovs_pod(
    c: &KubeCluster,
    node: &str,
    argv: &[String],
) -> Result<String, ClusterError> {
    let pod = pod_on(c, node).await?;
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = c.exec(NAMESPACE, &pod, &argv).await?;
    if !out.success {
        return Err(node_error(
            node,
            argv.first().copied().unwrap_or("exec"),
            format!("in {NAMESPACE}/{pod}: {}", out.stderr.trim()),
        ));
    }
    Ok(out.stdout)
}

/// The ports of `bridge` on `node`.
pub async fn ports(c: &KubeCluster, node: &str, bridge: &str) -> Result<Vec<String>, ClusterError> {
    Ok(parse_ports(
        &run_in_ovs_pod(c, node, &list_ports_argv(bridge)).await?,
    ))
}

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
    use serde_json::{Value, json};

    use super::*;
    use crate::cluster::kube::KubeOptions;
    use crate::cluster::kube::mock::{MockApi, Recorded, list, not_found};

    fn ovs_pod(name: &str, node: &str, phase: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "secnet-openvswitch"}},
            "spec": {"nodeName": node, "containers": [{"name": "openvswitch", "image": "x"}]},
            "status": {"phase": phase}})
    }

    /// Two nodes; node-a has a Pending and a Running OVS pod, node-b none. The pod
    /// list honours the field selector as the API server does.
    fn api() -> MockApi {
        MockApi::new(|r: &Recorded| match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/api/v1/nodes") => list(
                "NodeList",
                ["node-a", "node-b"]
                    .map(|n| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}))
                    .to_vec(),
            ),
            ("GET", "/api/v1/namespaces/kube-system/pods") => {
                let pods = if r.query.contains("spec.nodeName%3Dnode-a") {
                    vec![
                        ovs_pod("secnet-openvswitch-old", "node-a", "Pending"),
                        ovs_pod("secnet-openvswitch-a1", "node-a", "Running"),
                    ]
                } else {
                    vec![]
                };
                list("PodList", pods)
            }
            _ => not_found(&r.path),
        })
    }

    async fn cluster(mock: &MockApi) -> KubeCluster {
        KubeCluster::connect(mock.client(), "kind", "r1", KubeOptions::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_running_ovs_pod_on_the_node_is_found_by_label_and_node_name() {
        let mock = api();
        let c = cluster(&mock).await;
        assert_eq!(pod_on(&c, "node-a").await.unwrap(), "secnet-openvswitch-a1");
        let list = mock
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/pods"))
            .unwrap();
        assert!(
            list.query_has("labelSelector=app%3Dsecnet-openvswitch")
                && list.query_has("fieldSelector=spec.nodeName%3Dnode-a"),
            "{}",
            list.query
        );
        let err = pod_on(&c, "node-b").await.unwrap_err().to_string();
        assert!(
            err.contains("node-b")
                && err.contains("app=secnet-openvswitch")
                && err.contains("--components"),
            "{err}"
        );
    }

    /// The exec's round trip needs a websocket-capable fake server; the request
    /// the API server would get (pod, container-less, argv) is checked here.
    #[tokio::test]
    async fn ovs_ports_execs_list_ports_in_that_pod() {
        let mock = api();
        let c = cluster(&mock).await;
        let _ = ports(&c, "node-a", BRIDGE).await;
        let exec = mock
            .requests()
            .into_iter()
            .find(|r| r.path.ends_with("/exec"))
            .expect("an exec request");
        assert_eq!(
            exec.path,
            "/api/v1/namespaces/kube-system/pods/secnet-openvswitch-a1/exec"
        );
        let commands: Vec<&str> = exec
            .query
            .split('&')
            .filter_map(|p| p.strip_prefix("command="))
            .collect();
        assert_eq!(
            commands,
            ["ovs-vsctl", "--timeout%3D10", "list-ports", "br1"]
        );
    }

    #[tokio::test]
    async fn waiting_for_ovs_names_the_nodes_without_a_ready_pod() {
        let ready = json!([{"type": "Ready", "status": "True"}]);
        let mock = MockApi::new(move |r: &Recorded| {
            match r.path.as_str() {
            "/api/v1/nodes" => list(
                "NodeList",
                ["node-a", "node-b", "node-c"]
                    .map(|n| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}}))
                    .to_vec(),
            ),
            "/api/v1/namespaces/kube-system/pods" => {
                assert!(r.query_has("labelSelector=app%3Dsecnet-openvswitch"), "{}", r.query);
                let mut a = ovs_pod("ovs-a", "node-a", "Running");
                a["status"]["conditions"] = ready.clone();
                // Running but its probe has not passed yet.
                let b = ovs_pod("ovs-b", "node-b", "Running");
                let mut c = ovs_pod("ovs-c", "node-c", "Running");
                c["status"]["conditions"] = ready.clone();
                list("PodList", vec![a, b, c])
            }
            _ => not_found(&r.path),
        }
        });
        let c = cluster(&mock).await;
        let fast = std::time::Duration::from_millis(10);
        let nodes = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        wait_ready(&c, &nodes(&["node-a", "node-c"]), fast)
            .await
            .unwrap();
        let err = wait_ready(&c, &nodes(&["node-a", "node-b", "node-c"]), fast)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none on node-b:") && err.contains("localhost/secnet-ovs:dev"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_node_without_the_ovs_pod_is_an_error_before_any_exec() {
        let mock = api();
        let c = cluster(&mock).await;
        assert!(ports(&c, "node-b", BRIDGE).await.is_err());
        assert!(mock.requests().iter().all(|r| !r.path.ends_with("/exec")));
    }

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

    /// The DaemonSet container's script and readiness probe, as rendered.
    fn rendered_script_and_probe() -> (String, String) {
        use crate::cluster::kube::components::{self, Component};
        let set = components::sets(&Default::default())
            .into_iter()
            .find(|s| s.name == Component::Openvswitch)
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/components");
        let docs = components::render(&set, &dir, &NoFetch).unwrap();
        let container = &docs[0]["spec"]["template"]["spec"]["containers"][0];
        let text = |v: &Value| v.as_str().unwrap().to_string();
        (
            text(&container["command"][2]),
            text(&container["readinessProbe"]["exec"]["command"][2]),
        )
    }

    struct NoFetch;

    impl crate::cluster::kube::components::Fetcher for NoFetch {
        fn fetch(
            &self,
            url: &str,
        ) -> Result<String, crate::cluster::kube::components::ComponentError> {
            panic!("the openvswitch set is local, yet {url} was fetched")
        }
    }

    /// Runs the rendered DaemonSet script as a kind node would: two "nodes" (network
    /// namespaces whose `eth0` is a veth into one Linux bridge, as kind's nodes are
    /// on the engine's bridge), each with private /var/run/openvswitch and
    /// /var/lib/openvswitch. Once the readiness probe passes, "pods" on VLAN 100 reach
    /// each other across the nodes over the VXLAN trunk, VLAN 200 does not reach
    /// VLAN 100, and SIGTERM stops the daemons and removes the trunk.
    #[test]
    fn the_daemonset_script_trunks_vlans_between_nodes() {
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};

        use crate::prereq::{find_program, require, require_root};
        let what = "the openvswitch DaemonSet's script";
        if !require_root(what) {
            return;
        }
        let tools = [
            "bash",
            "unshare",
            "nsenter",
            "ovsdb-server",
            "ovs-vswitchd",
            "ping",
        ];
        let missing = tools.into_iter().find(|p| find_program(p).is_none());
        if !require(what, missing.map(|p| format!("{p} is not installed"))) {
            return;
        }
        let (script, probe) = rendered_script_and_probe();
        let mut lab = crate::lab::Lab::new();
        let fab = lab.netns("fab").unwrap();
        lab.ip(&fab, &["link", "add", "fb0", "type", "bridge"])
            .unwrap();
        lab.ip(&fab, &["link", "set", "fb0", "up"]).unwrap();
        let mut nodes = Vec::new();
        for i in 1..=2 {
            let node = lab.netns(&format!("node{i}")).unwrap();
            let port = format!("f{i}");
            lab.veth(&node, "eth0", &fab, &port).unwrap();
            lab.ip(&fab, &["link", "set", &port, "master", "fb0"])
                .unwrap();
            let addr = format!("172.31.0.{i}/24");
            lab.ip(&node, &["addr", "add", &addr, "dev", "eth0"])
                .unwrap();
            // The container's view: the node's network namespace, its own
            // /var/run/openvswitch and /var/lib/openvswitch (hostPath on the node).
            let wrapper = r#"mkdir -p /var/run/openvswitch /var/lib/openvswitch
mount -t tmpfs secnet-ovs-run /var/run/openvswitch
mount -t tmpfs secnet-ovs-db /var/lib/openvswitch
exec ip netns exec "$NODE" bash -c "$SCRIPT""#;
            let child = Command::new("unshare")
                .args(["--mount", "--propagation", "private", "bash", "-c", wrapper])
                .env("NODE", &node.name)
                .env("SCRIPT", &script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            nodes.push((node, child));
        }
        // Every exec is the same process: the script's pid names the node's view.
        let in_node = |pid: u32, argv: &[&str]| {
            Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-m", "-n", "--"])
                .args(argv)
                .output()
                .unwrap()
        };
        let outcome = (|| -> Result<(), String> {
            for (node, child) in &nodes {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !in_node(child.id(), &["bash", "-c", &probe])
                    .status
                    .success()
                {
                    if Instant::now() > deadline {
                        return Err(format!("{}: the readiness probe never passed", node.name));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            for (name, n, tag, addr) in [
                ("p1", 0, "100", "10.100.0.1/24"),
                ("p2", 1, "100", "10.100.0.2/24"),
                ("p3", 1, "200", "10.100.0.3/24"),
            ] {
                let pod = lab.netns(name).map_err(|e| e.to_string())?;
                let (node, child) = &nodes[n];
                let host_end = format!("v{name}");
                lab.veth(node, &host_end, &pod, "net1")
                    .map_err(|e| e.to_string())?;
                lab.ip(&pod, &["addr", "add", addr, "dev", "net1"])
                    .map_err(|e| e.to_string())?;
                let tag = format!("tag={tag}");
                let argv = [
                    "ovs-vsctl",
                    "add-port",
                    "br1",
                    &host_end,
                    "--",
                    "set",
                    "Port",
                    &host_end,
                    &tag,
                ];
                let out = in_node(child.id(), &argv);
                if !out.status.success() {
                    return Err(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
            let p1 = format!("{}-p1", lab.prefix());
            let ping = |ip: &str| {
                Command::new("ip")
                    .args(["netns", "exec", &p1, "ping", "-c", "1", "-W", "1", ip])
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false)
            };
            if !(0..5).any(|_| ping("10.100.0.2")) {
                return Err("p1 (node1, VLAN 100) cannot reach p2 (node2, VLAN 100)".into());
            }
            if ping("10.100.0.3") {
                return Err("p1 (VLAN 100) reached p3 (VLAN 200)".into());
            }
            Ok(())
        })();
        let mut stopped = Vec::new();
        for (node, mut child) in nodes {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(10);
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    _ if Instant::now() > deadline => break None,
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            let trunk_left = lab.ip(&node, &["link", "show", UPLINK]).is_ok();
            let mut log = String::new();
            if let Some(mut err) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut err, &mut log);
            }
            stopped.push((node.name.clone(), status, trunk_left, log));
        }
        let errors = lab.teardown();
        let logs: Vec<String> = stopped
            .iter()
            .map(|(n, _, _, log)| format!("--- {n} ---\n{log}"))
            .collect();
        outcome.unwrap_or_else(|e| panic!("{e}\n{}", logs.join("\n")));
        for (node, status, trunk_left, _) in &stopped {
            assert!(
                status.is_some_and(|s| s.success()),
                "{node}: SIGTERM: {status:?}"
            );
            assert!(!trunk_left, "{node}: {UPLINK} left after SIGTERM");
        }
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn ports_are_read_one_a_line() {
        assert_eq!(
            parse_ports("ens34\nveth1a2b3c4d\n\n"),
            ["ens34", "veth1a2b3c4d"]
        );
        assert!(parse_ports("").is_empty());
    }

    #[test]
    fn the_daemonset_and_the_scenarios_name_the_same_trunk_port() {
        let set = crate::cluster::kube::components::sets(&Default::default())
            .into_iter()
            .find(|s| s.name == crate::cluster::kube::components::Component::Openvswitch)
            .unwrap();
        assert_eq!(set.vars["OVS_UPLINK"], UPLINK);
        assert_eq!(set.vars["OVS_BRIDGE"], BRIDGE);
        assert_eq!(UPLINK, crate::cluster::netns::ovs::UPLINK);
    }
}
