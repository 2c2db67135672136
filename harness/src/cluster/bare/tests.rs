//! Root tests against a real Kubernetes. Opt-in: they need the Kubernetes server
//! binaries, which CI does not have; `SECNET_K8S_BIN_DIR` names their directory.
//! They are `#[ignore]`d so that nextest lists them as skipped, never as passed:
//! `SECNET_K8S_BIN_DIR=DIR cargo nextest run -p secnet --run-ignored all cluster::bare`.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::cluster::netns::topology::Topology;

pub(crate) const BIN_DIR_ENV: &str = "SECNET_K8S_BIN_DIR";

/// The binaries' directory. The tests that call this are ignored by default; run on
/// purpose without the directory, they fail saying what is missing.
pub(crate) fn k8s_bin_dir(test: &str) -> Option<PathBuf> {
    if !crate::prereq::require_root(test) {
        return None;
    }
    match std::env::var_os(BIN_DIR_ENV) {
        Some(d) => Some(PathBuf::from(d)),
        None => panic!(
            "{test}: needs real Kubernetes binaries: set {BIN_DIR_ENV} to a directory with kube-apiserver, kube-controller-manager, kube-scheduler and kubelet (kubernetes-server-linux-amd64.tar.gz)"
        ),
    }
}

pub(crate) fn options(bin: PathBuf, images: Vec<PathBuf>, pause_image: &str) -> BareOptions {
    BareOptions {
        run_id: crate::lab::new_run_id(),
        topology: Topology::builtin(),
        k8s_bin_dir: bin,
        images,
        pause_image: pause_image.to_string(),
        timeout: Duration::from_secs(90),
        addons: Vec::new(),
        wait_capacity: None,
        ovs: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real Kubernetes binaries: SECNET_K8S_BIN_DIR=DIR, --run-ignored all"]
async fn a_real_cluster_comes_up_with_every_node_ready_and_leaves_nothing() {
    let Some(bin) = k8s_bin_dir("bare cluster bring-up") else {
        return;
    };
    let opts = options(bin, Vec::new(), "secnet.local/pause:none");
    let run_id = opts.run_id.clone();
    let cluster = BareCluster::up(&opts).await.unwrap();
    eprintln!("bare cluster {run_id}: {:?}", cluster.timings);
    for (what, node, kib) in cluster.memory() {
        eprintln!("  {what:<24} {node:<6} {:>5} MiB", kib / 1024);
    }
    // The admin kubeconfig works for kubectl too, when it is there.
    let kubectl = cluster.plan.nodes[0]
        .kubelet
        .program
        .with_file_name("kubectl");
    if kubectl.exists() {
        let out = crate::lab::Cmd::new(&kubectl)
            .arg(format!("--kubeconfig={}", cluster.kubeconfig.display()))
            .args(["get", "nodes", "-o", "wide"])
            .run()
            .unwrap();
        eprintln!("{out}");
        assert!(out.contains("node1") && out.contains("Ready"), "{out}");
    }
    cluster.down().unwrap();
    let left = leftovers(&run_id);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// A bin dir whose kube-apiserver fails at once (`fails`) or never gets ready, the
/// other components idle: bring-up runs for real up to the API server (namespaces,
/// cgroups, mount views, etcd and containerd from the distribution).
fn fake_bin_dir(dir: &std::path::Path, apiserver_fails: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in cluster::K8S_BINARIES {
        let body = match (name, apiserver_fails) {
            ("kube-apiserver", true) => "echo 'fake kube-apiserver: refusing to start' >&2; exit 3",
            _ => "exec sleep 1000",
        };
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

/// The distribution's programs bring-up needs before the API server.
fn distribution_programs(test: &str) -> bool {
    if !crate::prereq::require_root(test) {
        return false;
    }
    for (program, package) in [
        ("etcd", "etcd-server"),
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("unshare", "util-linux"),
    ] {
        let missing = crate::prereq::find_program(program)
            .is_none()
            .then(|| format!("needs {program} (apt-get install {package})"));
        if !crate::prereq::require(test, missing) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_bring_up_names_the_component_and_leaves_nothing() {
    if !distribution_programs("bare bring-up failure cleanup") {
        return;
    }
    let scratch = crate::lab::ScratchDir::new("secnet-bare-fake").unwrap();
    let bin = fake_bin_dir(scratch.path(), true);
    let mut opts = options(bin, Vec::new(), "secnet.local/pause:none");
    opts.timeout = Duration::from_secs(30);
    let run_id = opts.run_id.clone();
    let err = match BareCluster::up(&opts).await {
        Ok(_) => panic!("a cluster whose API server exits came up"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("kube-apiserver exited") && err.contains("refusing to start"),
        "{err}"
    );
    let left = leftovers(&run_id);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

const CHILD_ENV: &str = "SECNET_BARE_INTERRUPT_CHILD";

/// The child of the Ctrl-C test: brings a cluster up (real binaries when
/// `SECNET_K8S_BIN_DIR` is set, else an API server that never gets ready) until it
/// is interrupted, as `secnet conform` does. Does nothing unless the parent runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_child() {
    let Some(run_id) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    // Under the run's own directory: a child killed outright leaves it to the sweep.
    let fake = cluster::run_dir(&run_id.to_string_lossy()).join("bare/test");
    let bin = match std::env::var_os(BIN_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => fake_bin_dir(&fake, false),
    };
    let mut opts = options(bin, Vec::new(), "secnet.local/pause:none");
    opts.run_id = run_id.to_string_lossy().into_owned();
    opts.timeout = Duration::from_secs(120);
    // Listening before bring-up starts (as `secnet conform` is by then): bring-up's
    // first poll runs a while before its first await.
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).unwrap();
    tokio::select! {
        up = BareCluster::up(&opts) => {
            let _cluster = up.unwrap();
            eprintln!("UP");
            int.recv().await;
        }
        _ = int.recv() => eprintln!("interrupted during bring-up"),
    }
}

/// Starts the interrupt child for run `run_id` and waits until its bring-up has
/// processes in the run's cgroup (containerd, etcd, …) and both nodes' mount views.
fn start_child_until_running(run_id: &str) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let child = std::process::Command::new(exe)
        .args([
            "--exact",
            "cluster::bare::tests::interrupt_child",
            "--nocapture",
        ])
        .env(CHILD_ENV, run_id)
        .spawn()
        .unwrap();
    // Interrupt once containerd and etcd run (processes in the run's cgroup) and the
    // nodes' mount views exist.
    let cg = format!("/secnet-{run_id}");
    let t0 = std::time::Instant::now();
    let views = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(run_id) && l.contains("/mnt "))
            .count()
    };
    while (cgroup::pids(&cg).len() < 6 || views() < 2) && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        cgroup::pids(&cg).len() >= 6,
        "bring-up did not get far: {:?}",
        cgroup::pids(&cg)
    );
    child
}

/// Whatever the assertions say, the run is swept afterwards (a failing test leaks
/// nothing either).
struct SweepAfter(String);

impl Drop for SweepAfter {
    fn drop(&mut self) {
        sweep(&self.0);
    }
}

#[test]
fn ctrl_c_during_bring_up_leaves_nothing() {
    if !distribution_programs("bare Ctrl-C cleanup") {
        return;
    }
    let run_id = crate::lab::new_run_id();
    let _sweep = SweepAfter(run_id.clone());
    let mut child = start_child_until_running(&run_id);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "child: {status}");
    let left = leftovers(&run_id);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// A run killed outright (SIGKILL: no unwinding) leaves everything; `sweep`, what
/// `secnet clean --run <id>` does for a bare run, finds it all by the run id.
#[test]
fn a_killed_run_is_swept_by_its_run_id() {
    if !distribution_programs("bare sweep after SIGKILL") {
        return;
    }
    let run_id = crate::lab::new_run_id();
    let _sweep = SweepAfter(run_id.clone());
    let mut child = start_child_until_running(&run_id);
    child.kill().unwrap();
    child.wait().unwrap();
    let before = leftovers(&run_id);
    assert!(
        before.iter().any(|l| l.starts_with("processes"))
            && before.iter().any(|l| l.starts_with("netns"))
            && before.iter().any(|l| l.starts_with("mount")),
        "a killed run should leave processes, namespaces and mounts: {before:#?}"
    );
    let errors = sweep(&run_id);
    assert!(errors.is_empty(), "{errors:?}");
    let left = leftovers(&run_id);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// The device plugin's DaemonSet and ConfigMap as real clusters get them
/// (fixtures/components/macvtap/macvtap.yaml), for an image with our binaries in `dir`.
pub(crate) fn macvtap_documents(image: &str, dir: &str, lower: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/components/macvtap/macvtap.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let vars: std::collections::BTreeMap<String, String> = [
        ("MACVTAP_IMAGE", image.to_string()),
        ("MACVTAP_DP_CMD", format!("{dir}/macvtap-deviceplugin")),
        ("MACVTAP_CNI_SRC", format!("{dir}/macvtap")),
        ("MACVTAP_INSTALL_CNI", format!("{dir}/install-cni")),
        ("LOWER_DEVICE", lower.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let text = crate::cluster::kube::components::substitute(&text, &vars).unwrap();
    text.split("\n---")
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .map(|d| serde_saphyr::from_str::<serde_json::Value>(d).unwrap())
        .collect()
}

pub(crate) const RESOURCE: &str = "macvtap.network.kubevirt.io/dataplane";

/// The least-privilege device-plugin DaemonSet (fixtures/components/macvtap) on real
/// kubelets, containerd and runc: it starts, registers capacity 50 on every node, and
/// a pod asking for the resource gets its /dev/tapN (and, with thin multus from
/// `SECNET_MULTUS_BIN`, the macvtap as net1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real Kubernetes binaries: SECNET_K8S_BIN_DIR=DIR, --run-ignored all"]
async fn the_macvtap_daemonset_allocates_on_a_real_kubelet() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams, ListParams, PostParams};
    use tokio::io::AsyncReadExt;
    let Some(bin) = k8s_bin_dir("bare device-plugin DaemonSet") else {
        return;
    };
    let scratch = crate::lab::ScratchDir::new("secnet-bare-images").unwrap();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug");
    let plugin_bins: Vec<PathBuf> = ["macvtap-deviceplugin", "macvtap", "install-cni"]
        .iter()
        .map(|b| target.join(b))
        .collect();
    let (pause_ref, probe_ref, plugin_ref) = (
        "secnet.local/pause:bare",
        "secnet.local/busybox:bare",
        "secnet.local/plugins:bare",
    );
    let images = vec![
        (super::oci::pause(pause_ref).unwrap(), "pause.tar"),
        (super::oci::busybox(probe_ref).unwrap(), "busybox.tar"),
        (
            super::oci::plugins(plugin_ref, &plugin_bins).unwrap(),
            "plugins.tar",
        ),
    ]
    .into_iter()
    .map(|(spec, file)| {
        let path = scratch.path().join(file);
        spec.write(&path).unwrap();
        path
    })
    .collect();
    let mut opts = options(bin, images, pause_ref);
    opts.addons = macvtap_documents(plugin_ref, super::oci::PLUGIN_DIR, "ens33");
    opts.wait_capacity = Some((RESOURCE.into(), "50".into()));
    let run_id = opts.run_id.clone();
    let cluster = BareCluster::up(&opts).await.unwrap();
    let t = &cluster.timings;
    eprintln!(
        "bare cluster {run_id}: {t:?}; API ready -> every node Ready with the device plugin registered: {:?}",
        t.capacity_ready.saturating_sub(t.api_ready)
    );
    for (what, node, kib) in cluster.memory() {
        eprintln!("  {what:<24} {node:<6} {:>5} MiB", kib / 1024);
    }
    let ds_pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "kube-system");
    for p in ds_pods
        .list(&ListParams::default().labels("app=secnet-macvtap"))
        .await
        .unwrap()
    {
        let st = p.status.unwrap_or_default();
        eprintln!(
            "  {} on {:?}: {:?}",
            p.metadata.name.unwrap_or_default(),
            p.spec.and_then(|s| s.node_name),
            st.phase
        );
    }
    let multus = std::env::var_os("SECNET_MULTUS_BIN").map(PathBuf::from);
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "macvtap-pod", "namespace": "default"},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{
                "name": "probe", "image": probe_ref, "imagePullPolicy": "Never",
                "command": ["sleep", "3600"],
                "resources": {"limits": {RESOURCE: "1"}}
            }]
        }
    });
    match &multus {
        Some(m) => {
            cluster.install_multus_thin(m).await.unwrap();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let nad = crate::objects::load_file(
                &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("fixtures/seed/macvtap-nad.yaml"),
            )
            .unwrap();
            let mut doc = crate::cluster::kube::apply::document(&nad[0]).unwrap();
            doc["metadata"]["namespace"] = "default".into();
            cluster::apply(&cluster.client, &doc).await.unwrap();
            pod["metadata"]["annotations"] =
                serde_json::json!({"k8s.v1.cni.cncf.io/networks": "dataplane"});
        }
        None => eprintln!("no SECNET_MULTUS_BIN: the pod gets its /dev/tapN, no net1"),
    }
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let pod: Pod = serde_json::from_value(pod).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let t0 = std::time::Instant::now();
    let running = loop {
        let p = pods.get("macvtap-pod").await.unwrap();
        let phase = p.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Running") {
            break p;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            let kubelet_log = cluster
                .nodes
                .iter()
                .filter_map(|n| n.kubelet.as_ref())
                .map(|k| k.log_tail(30))
                .collect::<Vec<_>>()
                .join("\n---\n");
            panic!("pod not Running: {:#?}\nkubelets:\n{kubelet_log}", p.status);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    eprintln!(
        "pod Running after {:?} on {:?}",
        t0.elapsed(),
        running.spec.and_then(|s| s.node_name)
    );
    let exec = |cmd: Vec<&'static str>| {
        let pods = pods.clone();
        async move {
            let mut p = pods
                .exec("macvtap-pod", cmd, &AttachParams::default().stderr(false))
                .await
                .unwrap();
            let mut out = String::new();
            p.stdout().unwrap().read_to_string(&mut out).await.unwrap();
            p.join().await.unwrap();
            out
        }
    };
    let dev = exec(vec!["ls", "/dev"]).await;
    eprintln!(
        "ls /dev in the pod: {}",
        dev.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    assert!(
        dev.split_whitespace().any(|d| d.starts_with("tap")),
        "no /dev/tapN in the pod: {dev}"
    );
    if multus.is_some() {
        let link = exec(vec!["ip", "-d", "link", "show", "net1"]).await;
        eprintln!("net1: {link}");
        assert!(link.contains("macvtap"), "net1 is no macvtap: {link}");
        let status = running.metadata.annotations.unwrap_or_default();
        eprintln!(
            "network-status: {:?}",
            status.get("k8s.v1.cni.cncf.io/network-status")
        );
    }
    cluster.down().unwrap();
    let left = leftovers(&run_id);
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// The `existing` provider's own code path (run namespace, conflict check,
/// server-side apply of the macvtap component set, capacity wait, a portable
/// scenario, cleanup) against a real API server, kubelets and containerd: a bare
/// cluster stands in for the user's cluster, with the plugins image imported under
/// the name the component set uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs real Kubernetes binaries: SECNET_K8S_BIN_DIR=DIR, --run-ignored all"]
async fn the_existing_provider_runs_on_a_real_cluster() {
    let Some(bin) = k8s_bin_dir("existing provider on a bare cluster") else {
        return;
    };
    let scratch = crate::lab::ScratchDir::new("secnet-bare-images").unwrap();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug");
    let plugin_bins: Vec<PathBuf> = ["macvtap-deviceplugin", "macvtap", "install-cni"]
        .iter()
        .map(|b| target.join(b))
        .collect();
    let pause_ref = "secnet.local/pause:bare";
    let images = vec![
        (super::oci::pause(pause_ref).unwrap(), "pause.tar"),
        (
            super::oci::plugins(crate::cluster::kube::components::SECNET_IMAGE, &plugin_bins)
                .unwrap(),
            "plugins.tar",
        ),
    ]
    .into_iter()
    .map(|(spec, file)| {
        let path = scratch.path().join(file);
        spec.write(&path).unwrap();
        path
    })
    .collect();
    let mut opts = options(bin, images, pause_ref);
    // A user's cluster has multus's CRD; multus itself is not needed by this scenario.
    opts.addons = vec![super::multus::nad_crd()];
    let cluster = BareCluster::up(&opts).await.unwrap();
    let out = std::process::Command::new(target.join("secnet"))
        .args(["conform", "--cluster", "existing", "--kubeconfig"])
        .arg(&cluster.kubeconfig)
        .args([
            "--components",
            "macvtap",
            "--focus",
            "capacity 50 on every node",
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    let run_id = opts.run_id.clone();
    cluster.down().unwrap();
    assert!(leftovers(&run_id).is_empty(), "{:?}", leftovers(&run_id));
    assert!(
        out.status.success(),
        "secnet conform --cluster existing failed: {said}"
    );
    assert!(said.contains("1 passed"), "{said}");
}
