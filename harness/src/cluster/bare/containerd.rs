//! One node's containerd (Debian's 1.6 + runc): its own root, state, socket, CNI
//! directories and cgroup parent, running in the node's network namespace and in a
//! mount namespace of its own, so that nothing it mounts reaches the host.
//!
//! How it runs, and why:
//! - `unshare --mount --propagation slave` after entering the node's network
//!   namespace by fd (as `nsenter --net` does; `ip netns exec` would remount /sys and
//!   runc then finds no cgroup mount). Inside, `/run/containerd` (where containerd
//!   1.6 puts shim sockets whatever its config says) is a private tmpfs, and
//!   `/var/lib/cni` (libcni's result cache, host-local's leases) and optionally
//!   `/var/run/openvswitch` are bind mounts of this node's directories: the host sees
//!   them at [`Containerd::cni_state_dir`] without ever sharing them with another node.
//! - The CRI plugin: `sandbox_image` is secnet's pause image, `restrict_oom_score_adj`
//!   (root lacks CAP_SYS_RESOURCE here), cgroupfs, overlayfs, the sandbox network
//!   namespaces under the state directory, `bin_dir`/`conf_dir` the node's own.
//! - The CNI `bin_dir` holds a wrapper per plugin that appends the call (command,
//!   container ID, ifname, CNI_ARGS) to [`Containerd::cni_calls`]'s log and then
//!   execs the real binary: the runtime's calls are recorded, the plugins run as is.
//! - [`Containerd::shutdown`] stops and removes every sandbox through CRI (the real
//!   CNI DEL), then everything is killed and removed; dropping a `Containerd` (a
//!   failure, a panic) kills and removes without the CRI step: processes (containerd,
//!   shims, containers, found by mount namespace and cgroup), cgroup directories and
//!   the node directory. Mounts go with the mount namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cri::{Cri, CriError};
use crate::lab::Cmd;
use crate::lab::enter::Enter;

/// How to get the runtime, for error messages.
pub const INSTALL: &str = "apt-get install containerd runc";
/// The containerd namespace the CRI plugin uses (images must be imported there).
pub const K8S_NAMESPACE: &str = "k8s.io";
/// cgroup v1 controllers runc creates the sandboxes' cgroups in (cgroupfs driver).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const IMPORT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to enter the network namespace {netns} for containerd: {source}")]
    Enter {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start containerd: {source} ({INSTALL})")]
    Spawn {
        #[source]
        source: std::io::Error,
    },
    #[error(
        "containerd of node {node} exited ({status}) during start-up; its log {log_path}:\n{log}"
    )]
    Exited {
        node: String,
        status: String,
        log_path: String,
        log: String,
    },
    #[error(
        "containerd of node {node} did not answer CRI Version within {timeout:?} ({source}); its log {log_path}:\n{log}"
    )]
    NotReady {
        node: String,
        timeout: Duration,
        source: Box<CriError>,
        log_path: String,
        log: String,
    },
    #[error("ctr images import {archive} into node {node}'s containerd failed: {source}")]
    Import {
        node: String,
        archive: String,
        #[source]
        source: Box<crate::lab::CommandError>,
    },
    #[error(
        "plugin {name} for node {node}'s CNI bin_dir: {path} does not exist (build or install it)"
    )]
    NoPlugin {
        node: String,
        name: String,
        path: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ContainerdError {
    let path = path.display().to_string();
    move |source| ContainerdError::Io { what, path, source }
}

/// What one node's containerd is made of.
#[derive(Debug, Clone)]
pub struct Options {
    pub run_id: String,
    /// The node's name (short: it is part of the cgroup parent).
    pub node: String,
    /// The node's network namespace file (`/run/netns/<run id>-…`).
    pub netns: PathBuf,
    /// The node's directory, created here and removed on stop; the socket lives in
    /// it, so keep it short (a Unix socket path has at most 107 bytes).
    pub dir: PathBuf,
    /// The sandbox (pause) image's reference; import it before the first sandbox.
    pub pause_image: String,
    /// CNI plugins by the name a configuration's `type` uses, and their binaries.
    pub cni_plugins: Vec<(String, PathBuf)>,
    /// The networks (file name, conflist) the CRI plugin loads, in file-name order:
    /// the first is the pod's `eth0` and must give it an IP (containerd 1.6 refuses a
    /// sandbox without one), the next ones become `eth1`, `eth2`, … (`max_conf_num`).
    pub networks: Vec<(String, String)>,
    /// The node's ovsdb-server directory, seen as `/var/run/openvswitch` by the
    /// plugins (where OVS CNIs find `db.sock` by default).
    pub ovs_dir: Option<PathBuf>,
}

/// One CNI call as the wrapper recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniCall {
    pub plugin: String,
    pub command: String,
    pub container_id: String,
    pub ifname: String,
    pub(crate) args: String,
}

/// A running containerd; killed and cleaned up on drop.
pub struct Containerd {
    pub opts: Options,
    pub(crate) socket: PathBuf,
    /// The cgroupfs parent of this node's sandboxes (`/secnet-<run id>-<node>`).
    pub cgroup_parent: String,
    /// From spawn to the first answer to CRI Version.
    pub started_in: Duration,
    /// Set once the CRI plugin answered (always, for a started `Containerd`).
    cri: Option<Cri>,
    child: Option<Child>,
    /// containerd's mount namespace (`/proc/<pid>/ns/mnt` target), to find its shims.
    mnt_ns: Option<String>,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("node", &self.opts.node)
            .field("socket", &self.socket)
            .finish()
    }
}

impl Containerd {
    /// The cgroupfs parent for `run_id`'s `node`.
    pub fn cgroup_parent_for(run_id: &str, node: &str) -> String {
        format!("/secnet-{run_id}-{node}")
    }

    /// Starts containerd for one node and waits until its CRI plugin answers. On
    /// failure nothing is left (the partly started daemon is dropped).
    pub async fn start(opts: Options) -> Result<Containerd, ContainerdError> {
        let t0 = Instant::now();
        let dir = &opts.dir;
        for sub in [
            "root",
            "state",
            "cni/bin",
            "cni/net.d",
            "cni/state",
            "run",
            "logs",
            "opt",
        ] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io("create", &path))?;
        }
        Containerd::write_plugins(&opts)?;
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml(&opts)).map_err(io("write", &config))?;
        let enter = Enter::net(&opts.netns).map_err(|source| ContainerdError::Enter {
            netns: opts.netns.display().to_string(),
            source,
        })?;
        let log_path = dir.join("containerd.log");
        let log = std::fs::File::create(&log_path).map_err(io("create", &log_path))?;
        let log_err = log.try_clone().map_err(io("open", &log_path))?;
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "slave", "sh", "-c"])
            .arg(mount_script(&opts, &config))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        enter
            .apply_std(&mut cmd)
            .map_err(|source| ContainerdError::Enter {
                netns: opts.netns.display().to_string(),
                source,
            })?;
        let child = crate::lab::command::own_group(&mut cmd)
            .spawn()
            .map_err(|source| ContainerdError::Spawn { source })?;
        let socket = dir.join("containerd.sock");
        let cgroup_parent = Containerd::cgroup_parent_for(&opts.run_id, &opts.node);
        // Owns the daemon from here on: an early return drops (kills) it.
        let mut me = Containerd {
            socket: socket.clone(),
            cgroup_parent,
            started_in: Duration::ZERO,
            cri: None,
            child: Some(child),
            mnt_ns: None,
            opts,
        };
        let deadline = t0 + START_TIMEOUT;
        loop {
            if let Some(status) = me.exited() {
                return Err(ContainerdError::Exited {
                    node: me.opts.node.clone(),
                    status,
                    log_path: log_path.display().to_string(),
                    log: me.log_tail(),
                });
            }
            if me.mnt_ns.is_none() {
                me.mnt_ns = me.read_mnt_ns();
            }
            let last = match Cri::connect(&socket, Duration::from_millis(200)).await {
                Ok(cri) => match cri.version().await {
                    Ok(_) => {
                        me.cri = Some(cri);
                        break;
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(ContainerdError::NotReady {
                    node: me.opts.node.clone(),
                    timeout: START_TIMEOUT,
                    source: Box::new(last),
                    log_path: log_path.display().to_string(),
                    log: me.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        me.mnt_ns = me.read_mnt_ns();
        me.started_in = t0.elapsed();
        Ok(me)
    }

    /// The node's CRI client.
    pub fn cri(&self) -> &Cri {
        self.cri
            .as_ref()
            .expect("a started Containerd has its CRI client")
    }

    /// The per-plugin wrappers in `cni/bin` (see the module doc).
    fn write_plugins(opts: &Options) -> Result<(), ContainerdError> {
        use std::os::unix::fs::PermissionsExt;
        let bin = opts.dir.join("cni/bin");
        let calls = opts.dir.join("cni/calls.log");
        for (name, real) in &opts.cni_plugins {
            if !real.is_file() {
                return Err(ContainerdError::NoPlugin {
                    node: opts.node.clone(),
                    name: name.clone(),
                    path: real.display().to_string(),
                });
            }
            let wrapper = bin.join(name);
            let script = format!(
                "#!/bin/sh\n# secnet: records the runtime's call, then runs the plugin itself.\n\
                 printf '%s\\t%s\\t%s\\t%s\\t%s\\n' {name} \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_IFNAME\" \"$CNI_ARGS\" >> {calls}\n\
                 exec {real} \"$@\"\n",
                name = shell_quote(name),
                calls = shell_quote(&calls.display().to_string()),
                real = shell_quote(&real.display().to_string()),
            );
            std::fs::write(&wrapper, script).map_err(io("write", &wrapper))?;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
                .map_err(io("chmod", &wrapper))?;
        }
        for (file, text) in &opts.networks {
            let path = opts.dir.join("cni/net.d").join(file);
            std::fs::write(&path, text).map_err(io("write", &path))?;
        }
        Ok(())
    }

    /// Host path of what the node's plugins see as `/var/lib/cni` (libcni's
    /// `results/` cache, host-local's `networks/`).
    pub fn cni_state_dir(&self) -> PathBuf {
        self.opts.dir.join("cni/state")
    }

    /// Every CNI call the runtime made so far, in order.
    pub fn cni_calls(&self) -> Vec<CniCall> {
        let text = std::fs::read_to_string(self.opts.dir.join("cni/calls.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut f = line.splitn(5, '\t');
                Some(CniCall {
                    plugin: f.next()?.into(),
                    command: f.next()?.into(),
                    container_id: f.next()?.into(),
                    ifname: f.next()?.into(),
                    args: f.next().unwrap_or_default().into(),
                })
            })
            .collect()
    }

    /// `ctr -a <socket> -n k8s.io images import <archive>` (unpacked for overlayfs);
    /// returns how long it took.
    pub fn import(&self, archive: &Path) -> Result<Duration, ContainerdError> {
        let t0 = Instant::now();
        Cmd::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", K8S_NAMESPACE, "images", "import"])
            .arg(archive)
            .timeout(IMPORT_TIMEOUT)
            .run()
            .map_err(|source| ContainerdError::Import {
                node: self.opts.node.clone(),
                archive: archive.display().to_string(),
                source: Box::new(source),
            })?;
        Ok(t0.elapsed())
    }

    /// `ctr -a <socket> -n k8s.io <args>`.
    pub fn ctr(&self, args: &[&str]) -> Result<String, crate::lab::CommandError> {
        Cmd::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(["-n", K8S_NAMESPACE])
            .args(args)
            .timeout(Duration::from_secs(30))
            .run()
    }

    /// The last lines of containerd's log.
    pub fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.opts.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            _ => None,
        }
    }

    fn read_mnt_ns(&self) -> Option<String> {
        let pid = self.child.as_ref()?.id();
        let own = std::fs::read_link("/proc/self/ns/mnt").ok()?;
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
        // Until unshare has run, the child is still in ours.
        (theirs != own).then(|| theirs.display().to_string())
    }

    /// Stops and removes every sandbox through CRI (the runtime's CNI DEL), then
    /// kills and removes everything. Returns what could not be cleaned.
    pub async fn shutdown(mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let cri = self.cri().clone();
        match cri.list_pod_sandboxes().await {
            Ok(all) => {
                for sandbox in all {
                    if let Err(e) = cri.stop_pod_sandbox(&sandbox.id).await {
                        errors.push(e.to_string());
                    }
                    if let Err(e) = cri.remove_pod_sandbox(&sandbox.id).await {
                        errors.push(e.to_string());
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        errors.extend(self.kill_and_remove());
        errors
    }

    /// Kills containerd, its shims and every process in this node's cgroups, removes
    /// the cgroup directories and the node directory. Idempotent.
    pub fn kill_and_remove(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let Some(mut child) = self.child.take() else {
            return errors;
        };
        if self.mnt_ns.is_none() {
            self.mnt_ns = self.read_mnt_ns_of(child.id());
        }
        crate::lab::command::stop_group(&mut child, Duration::from_secs(2));
        // Shims run in their own process groups, in containerd's mount namespace;
        // containers are in the node's cgroups. Kill both until none is left.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut pids = self.mount_ns_pids();
            pids.extend(cgroup_pids(&self.cgroup_parent));
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                errors.push(format!(
                    "node {}: processes {pids:?} of containerd survived SIGKILL for 10 s",
                    self.opts.node
                ));
                break;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        errors.extend(remove_cgroups(&self.cgroup_parent));
        if let Err(e) = std::fs::remove_dir_all(&self.opts.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            errors.push(format!("failed to remove {}: {e}", self.opts.dir.display()));
        }
        errors
    }

    fn read_mnt_ns_of(&self, pid: u32) -> Option<String> {
        let own = std::fs::read_link("/proc/self/ns/mnt").ok()?;
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
        (theirs != own).then(|| theirs.display().to_string())
    }

    /// Processes in containerd's mount namespace (containerd, its shims).
    fn mount_ns_pids(&self) -> Vec<u32> {
        let Some(ns) = &self.mnt_ns else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .is_ok_and(|l| l.display().to_string() == *ns)
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for e in self.kill_and_remove() {
            eprintln!("secnet: cleanup: {e}");
        }
    }
}

/// Every cgroup v1 hierarchy mounted under /sys/fs/cgroup (cpu, memory, pids, …).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// PIDs in `parent` (and below) in any hierarchy.
fn cgroup_pids(parent: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for h in cgroup_hierarchies() {
        let root = h.join(parent.trim_start_matches('/'));
        walk(&root, &mut |dir| {
            let text = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        });
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes `parent`'s cgroup directories, deepest first, in every hierarchy.
fn remove_cgroups(parent: &str) -> Vec<String> {
    let mut errors = Vec::new();
    for h in cgroup_hierarchies() {
        let root = h.join(parent.trim_start_matches('/'));
        let mut dirs = Vec::new();
        walk(&root, &mut |dir| dirs.push(dir.to_path_buf()));
        for dir in dirs.iter().rev() {
            if let Err(e) = std::fs::remove_dir(dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                errors.push(format!("failed to remove cgroup {}: {e}", dir.display()));
            }
        }
    }
    errors
}

/// Calls `f` on `dir` and every directory below it, parents first.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    if !dir.is_dir() {
        return;
    }
    f(dir);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), f);
            }
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The shell run inside the new mount namespace before containerd replaces it.
fn mount_script(opts: &Options, config: &Path) -> String {
    let dir = &opts.dir;
    let mut script = String::from("set -e; ");
    script.push_str(&format!(
        "mkdir -p /run/containerd /var/lib/cni; \
         mount -t tmpfs -o mode=0711 secnet-{run} /run/containerd; \
         mount --bind {cni} /var/lib/cni; ",
        run = opts.run_id,
        cni = shell_quote(&dir.join("cni/state").display().to_string()),
    ));
    if let Some(ovs) = &opts.ovs_dir {
        script.push_str(&format!(
            "mkdir -p /var/run/openvswitch; mount --bind {} /var/run/openvswitch; ",
            shell_quote(&ovs.display().to_string())
        ));
    }
    script.push_str(&format!(
        "exec containerd --config {}",
        shell_quote(&config.display().to_string())
    ));
    script
}

/// containerd's config (version 2 schema, as 1.6 reads it).
fn config_toml(opts: &Options) -> String {
    let d = |sub: &str| opts.dir.join(sub).display().to_string();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    format!(
        r#"# secnet's containerd for node {node} of run {run}
version = 2
root = "{root}"
state = "{state}"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[{cri}]
  sandbox_image = "{pause}"
  # Root lacks CAP_SYS_RESOURCE here: runc must not raise oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{runc}"

[{cri}.cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"
  max_conf_num = {max_conf_num}
"#,
        node = opts.node,
        run = opts.run_id,
        root = d("root"),
        state = d("state"),
        sock = d("containerd.sock"),
        opt = d("opt"),
        pause = opts.pause_image,
        runc = d("run/runc"),
        cni_bin = d("cni/bin"),
        cni_conf = d("cni/net.d"),
        max_conf_num = opts.networks.len().max(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            run_id: "sn000001".into(),
            node: "node1".into(),
            netns: "/run/netns/sn000001-node1".into(),
            dir: "/run/secnet/sn000001/ctd/node1".into(),
            pause_image: "secnet.local/pause:sn000001".into(),
            cni_plugins: Vec::new(),
            networks: vec![("10-a.conflist".into(), "{}".into())],
            ovs_dir: Some("/run/secnet/sn000001/ovs/node1".into()),
        }
    }

    #[test]
    fn containerd_config_points_at_the_nodes_own_dirs() {
        let text = config_toml(&opts());
        for want in [
            "sandbox_image = \"secnet.local/pause:sn000001\"",
            "restrict_oom_score_adj = true",
            "SystemdCgroup = false",
            "snapshotter = \"overlayfs\"",
            "bin_dir = \"/run/secnet/sn000001/ctd/node1/cni/bin\"",
            "conf_dir = \"/run/secnet/sn000001/ctd/node1/cni/net.d\"",
            "address = \"/run/secnet/sn000001/ctd/node1/containerd.sock\"",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        let script = mount_script(&opts(), Path::new("/c.toml"));
        assert!(
            script.contains("mount --bind '/run/secnet/sn000001/ovs/node1' /var/run/openvswitch")
        );
        assert!(
            script.ends_with("exec containerd --config '/c.toml'"),
            "{script}"
        );
    }
}
