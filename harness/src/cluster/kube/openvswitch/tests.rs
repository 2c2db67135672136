//! The OVS pod lookups against the mocked API server, and the DaemonSet's own
//! script run for real on netns nodes.

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
    let mock =
        MockApi::new(move |r: &Recorded| {
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

/// The DaemonSet container's script and readiness probe, as rendered.
fn rendered_script_and_probe() -> (String, String) {
    use crate::cluster::kube::components::{self, Component};
    let set = components::sets(&Default::default())
        .into_iter()
        .find(|s| s.name == Component::Openvswitch)
        .unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/components");
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
    fn fetch(&self, url: &str) -> Result<String, crate::cluster::kube::components::ComponentError> {
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
    // The seed's OVS NADs name one bridge for every provider.
    assert_eq!(BRIDGE, crate::cluster::netns::ovs::BRIDGE);
}
