//! Root tests against a real Kubernetes. Opt-in: they need the Kubernetes server
//! binaries, which CI does not have; `SECNET_K8S_BIN_DIR` names their directory.
//! Without it they say so and pass (also under `CI=true`: CI has none by design).

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::cluster::netns::topology::Topology;

pub const BIN_DIR_ENV: &str = "SECNET_K8S_BIN_DIR";

/// The binaries' directory, or `None` after saying why the test does not run.
pub fn k8s_bin_dir(test: &str) -> Option<PathBuf> {
    if !crate::prereq::require_root(test) {
        return None;
    }
    match std::env::var_os(BIN_DIR_ENV) {
        Some(d) => Some(PathBuf::from(d)),
        None => {
            eprintln!(
                "SKIP {test}: opt-in, needs real Kubernetes binaries: set {BIN_DIR_ENV} to a directory with kube-apiserver, kube-controller-manager, kube-scheduler and kubelet (kubernetes-server-linux-amd64.tar.gz)"
            );
            None
        }
    }
}

pub fn options(bin: PathBuf, images: Vec<PathBuf>, pause_image: &str) -> BareOptions {
    BareOptions {
        run_id: crate::lab::new_run_id(),
        topology: Topology::builtin(),
        k8s_bin_dir: bin,
        images,
        pause_image: pause_image.to_string(),
        timeout: Duration::from_secs(90),
        addons: Vec::new(),
        wait_capacity: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let scratch = crate::lab::ScratchDir::new("secnet-bare-fake").unwrap();
    let bin = match std::env::var_os(BIN_DIR_ENV) {
        Some(d) => PathBuf::from(d),
        None => fake_bin_dir(scratch.path(), false),
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
#[allow(dead_code)] // used by the DaemonSet test once the images land
pub fn macvtap_documents(image: &str, dir: &str, lower: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/components/macvtap/macvtap.yaml");
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
