//! Device mode asks the kubelet whose device it is. The harness's kubelet double
//! (device manager and pod-resources API) admits pods with the real device plugin
//! running on the node; the real `macvtap` binary then attaches. A deviceID the
//! kubelet gave pod A does not attach to pod B, however the NAD names it.

#[path = "plugins/macvtap_cni.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cni_kit::SpecVersion;
use common::*;
use secnet::cni::Reply;
use secnet::kubelet::{DeviceManager, PodId};
use secnet::lab::Ns;
use secnet::lab::ScratchDir;
use secnet::lab::enter::Enter;
use serde_json::{Value, json};

const RESOURCE: &str = "macvtap.network.kubevirt.io/dp";
const BOUND: Duration = Duration::from_secs(10);

/// The device plugin process on the node; killed on drop.
struct DevicePlugin(Child);

impl Drop for DevicePlugin {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node with a kubelet (device manager + pod-resources) and the device plugin.
/// Field order is drop order: plugin, kubelet, its directory, then the node.
struct KubeletNode {
    _plugin: DevicePlugin,
    kubelet: DeviceManager,
    dir: ScratchDir,
    n: Node,
}

impl KubeletNode {
    /// `None` when the test must skip (not root, or the device plugin binary is not
    /// built; both fail under CI).
    async fn new(test: &str) -> Option<KubeletNode> {
        let n = Node::new(test)?;
        let plugin_bin = secnet::bins::bundled("macvtap-deviceplugin");
        if !secnet::prereq::require(test, plugin_bin.as_ref().err().cloned()) {
            return None;
        }
        let dir = ScratchDir::new(&format!("{}-kubelet", n.nl.lab.run_id)).expect("scratch dir");
        let mut kubelet = DeviceManager::start(dir.path()).expect("kubelet double");
        kubelet
            .serve_pod_resources(&dir.path().join("pod-resources.sock"))
            .expect("pod-resources socket");
        let log = std::fs::File::create(dir.path().join("plugin.log")).expect("plugin log");
        let mut cmd = Command::new(plugin_bin.expect("checked"));
        cmd.env_clear()
            .env(
                "DP_MACVTAP_CONF",
                r#"[{"name": "dp", "lowerDevice": "ens33", "capacity": 2}]"#,
            )
            .arg("--device-plugin-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        Enter::net(n.nl.node.path())
            .and_then(|e| e.apply_std(&mut cmd))
            .expect("enter the node");
        let plugin = DevicePlugin(cmd.spawn().expect("start the device plugin"));
        kubelet
            .wait_for_devices(RESOURCE, 2, deviceplugin_api::HEALTHY, BOUND)
            .await
            .expect("the device plugin registers its devices");
        Some(KubeletNode {
            _plugin: plugin,
            kubelet,
            dir,
            n,
        })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("pod-resources.sock")
    }

    /// The test policy, plus where the kubelet serves pod-resources and `extra`.
    fn set_policy(&self, extra: &str) {
        self.n.set_policy(&format!(
            "{TEST_POLICY}pod_resources_socket = {}\n{extra}",
            self.socket().display()
        ));
    }

    /// ADD of `conf` into `pod`'s net1, as the runtime calls it for `namespace/name`.
    async fn add_as(&self, conf: &Value, pod: &Ns, namespace: &str, name: &str) -> Reply {
        self.n
            .call("ADD", conf.clone(), pod, "net1", &k8s_args(namespace, name))
            .await
    }

    /// Admits `namespace/name` with one device and returns its ID.
    async fn admit(&self, namespace: &str, name: &str) -> String {
        let pod = PodId::new(namespace, name, &format!("uid-{namespace}-{name}"));
        let admitted = self
            .kubelet
            .admit(&pod, "compute", RESOURCE, 1)
            .await
            .expect("admission");
        admitted.ids[0].clone()
    }
}

fn k8s_args(namespace: &str, name: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};K8S_POD_INFRA_CONTAINER_ID=c;K8S_POD_UID=u"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_takes_only_a_device_the_kubelet_allocated_to_the_pod() {
    let Some(mut k) =
        KubeletNode::new("add_takes_only_a_device_the_kubelet_allocated_to_the_pod").await
    else {
        return;
    };
    k.set_policy("");
    let a_id = k.admit("tenant", "pod-a").await;
    let b_id = k.admit("tenant", "pod-b").await;
    assert_ne!(a_id, b_id);
    let host_link = hashed(&a_id);
    assert!(
        k.n.link(&k.n.nl.node, &host_link).is_some(),
        "Allocate made it"
    );

    let v = SpecVersion::V1_0_0;
    let conf = k.n.config(v, json!({"deviceID": a_id}));
    let pod_b = k.n.add_pod("podb");
    let before = (k.n.links(&k.n.nl.node), k.n.links(&pod_b));

    // Pod B (holding b_id) with A's deviceID written into its network configuration;
    // a pod of the same name in another namespace; a pod the kubelet does not know.
    for (namespace, name, why) in [
        ("tenant", "pod-b", "lists that pod without this device"),
        ("other", "pod-a", "lists no devices for that pod"),
        ("tenant", "pod-x", "lists no devices for that pod"),
    ] {
        let reply = k.add_as(&conf, &pod_b, namespace, name).await;
        assert_error(
            &reply,
            7,
            &format!("deviceID {a_id} is not allocated to pod {namespace}/{name}"),
        );
        assert_error(&reply, 7, why);
        assert_error(&reply, 7, "pod-resources check");
        assert_eq!(
            (k.n.links(&k.n.nl.node), k.n.links(&pod_b)),
            before,
            "{namespace}/{name}: node and pod unchanged"
        );
    }

    // Pod A gets its own device.
    let reply = k.add_as(&conf, &k.n.pod, "tenant", "pod-a").await;
    assert!(reply.success, "ADD for pod A: {}", reply.stdout);
    let net1 = k.n.link(&k.n.pod, "net1").expect("net1 in pod A");
    assert_eq!(net1.kind, "macvtap");
    assert!(net1.has_flag("UP"));
    assert_eq!(
        net1.alias.as_deref(),
        Some(format!("secnet-deviceplugin:{a_id}").as_str())
    );
    assert!(k.n.link(&k.n.nl.node, &host_link).is_none(), "moved");
    let reply =
        k.n.call("DEL", conf, &k.n.pod, "net1", &k8s_args("tenant", "pod-a"))
            .await;
    assert!(reply.success, "DEL: {}", reply.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_pod_resources_refuses_when_the_kubelet_cannot_be_asked() {
    let Some(k) =
        KubeletNode::new("require_pod_resources_refuses_when_the_kubelet_cannot_be_asked").await
    else {
        return;
    };
    let id = k.admit("tenant", "pod-a").await;
    let v = SpecVersion::V1_0_0;
    let conf = k.n.config(v, json!({"deviceID": id}));
    let before = k.n.links(&k.n.nl.node);

    // Required, but CNI_ARGS names no pod (a runtime other than the kubelet's).
    k.set_policy("require_pod_resources = true\n");
    let reply = k.n.call("ADD", conf.clone(), &k.n.pod, "net1", "").await;
    assert_error(&reply, 7, "[macvtap] require_pod_resources");
    assert_error(&reply, 7, "K8S_POD_NAME");

    // Required, and the socket is not there: try again later, naming the policy.
    let missing = k.dir.path().join("absent.sock");
    k.n.set_policy(&format!(
        "{TEST_POLICY}pod_resources_socket = {}\nrequire_pod_resources = true\n",
        missing.display()
    ));
    let reply = k.add_as(&conf, &k.n.pod, "tenant", "pod-a").await;
    assert_error(&reply, 11, "require_pod_resources is set");
    assert_error(&reply, 11, "does not exist");
    assert_eq!(k.n.links(&k.n.nl.node), before, "node unchanged");

    // Required, and a socket that never answers: refused after the timeout.
    let hung = k.dir.path().join("hung.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&hung).expect("bind hung socket");
    k.n.set_policy(&format!(
        "{TEST_POLICY}pod_resources_socket = {}\nrequire_pod_resources = true\n",
        hung.display()
    ));
    let started = std::time::Instant::now();
    let reply = k.add_as(&conf, &k.n.pod, "tenant", "pod-a").await;
    assert_error(&reply, 11, "no answer within 2s");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(k.n.links(&k.n.nl.node), before, "node unchanged");

    // Not required: a node without the socket works as with upstream's plugin.
    k.n.set_policy(&format!(
        "{TEST_POLICY}pod_resources_socket = {}\n",
        missing.display()
    ));
    let reply = k.add_as(&conf, &k.n.pod, "tenant", "pod-b").await;
    assert!(reply.success, "no socket, not required: {}", reply.stdout);
    let reply = k.n.call("DEL", conf, &k.n.pod, "net1", "").await;
    assert!(reply.success, "DEL: {}", reply.stdout);
}

/// The kubelet's socket is there but the kubelet is busy (its rate limit answers
/// `ResourceExhausted "rejected by rate limit"`) or slow: a fake kubelet on the real
/// gRPC socket answering exactly that. Rate limits are retried within the deadline;
/// one that does not clear, or an answer later than 2 s, is a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_or_slow_kubelet_fails_closed_and_its_rate_limit_is_retried() {
    use secnet::scenario::security::{FakeAnswer, FakeKubelet};
    let Some(n) = Node::new("a_busy_or_slow_kubelet_fails_closed_and_its_rate_limit_is_retried")
    else {
        return;
    };
    let id = "ens33Mvp0";
    n.device_link(&hashed(id));
    let socket = n.scratch.path().join("kubelet.sock");
    n.set_policy(&format!(
        "{TEST_POLICY}pod_resources_socket = {}\n",
        socket.display()
    ));
    let pods = vec![(
        "tenant".to_string(),
        "pod-a".to_string(),
        RESOURCE.to_string(),
        vec![id.to_string()],
    )];
    let conf = n.config(SpecVersion::V1_0_0, json!({"deviceID": id}));
    let args = k8s_args("tenant", "pod-a");
    let before = n.links(&n.nl.node);

    // Rate limited for good: refused (try again later), after retrying.
    let kubelet = FakeKubelet::start(&socket, FakeAnswer::RateLimited, pods.clone()).unwrap();
    let reply = n.call("ADD", conf.clone(), &n.pod, "net1", &args).await;
    assert_error(&reply, 11, "rejected by rate limit");
    assert_error(&reply, 11, "fails closed");
    assert!(kubelet.calls() > 3, "retried: {} calls", kubelet.calls());
    assert!(
        reply.elapsed < Duration::from_secs(8),
        "{:?}",
        reply.elapsed
    );
    assert_eq!(n.links(&n.nl.node), before, "node unchanged");
    drop(kubelet);

    // Late: refused once 2 s have passed, not when the answer comes.
    let kubelet = FakeKubelet::start(
        &socket,
        FakeAnswer::Late(Duration::from_secs(3)),
        pods.clone(),
    )
    .unwrap();
    let reply = n.call("ADD", conf.clone(), &n.pod, "net1", &args).await;
    assert_error(&reply, 11, "no answer within 2s");
    assert!(
        reply.elapsed < Duration::from_secs(3),
        "{:?}",
        reply.elapsed
    );
    assert_eq!(n.links(&n.nl.node), before, "node unchanged");
    drop(kubelet);

    // Rate limited three times, then the answer: the pod gets its own device.
    let kubelet =
        FakeKubelet::start(&socket, FakeAnswer::RateLimitedThenList(3), pods.clone()).unwrap();
    let reply = n.call("ADD", conf.clone(), &n.pod, "net1", &args).await;
    assert!(
        reply.success,
        "ADD after the rate limit cleared: {}",
        reply.stdout
    );
    assert_eq!(kubelet.calls(), 4);
    drop(kubelet);
    let reply = n.call("DEL", conf, &n.pod, "net1", &args).await;
    assert!(reply.success, "DEL: {}", reply.stdout);
}
