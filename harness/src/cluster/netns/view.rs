//! A node's private mount view: its own `/var/lib/cni` and
//! `/var/lib/kubelet/device-plugins`, backed by directories of the run, held by a
//! persistent mount namespace file (as `ip netns` does for network namespaces).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::run;

/// The node paths that are private to each node, and their backing directory names.
pub const PRIVATE: [(&str, &str); 3] = [
    ("/var/lib/cni", "cni"),
    ("/var/lib/kubelet/device-plugins", "device-plugins"),
    // The node's ovsdb-server socket, where OVS CNIs look by default.
    ("/var/run/openvswitch", "openvswitch"),
];

const T: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
pub struct MountView {
    pub dir: PathBuf,
    pub ns_file: PathBuf,
}

impl MountView {
    /// The host-side path of what the node sees at `node_path`.
    pub fn host_path(&self, node_path: &str) -> PathBuf {
        let (_, backing) = PRIVATE
            .iter()
            .find(|(p, _)| *p == node_path)
            .expect("a private node path");
        self.dir.join(backing)
    }

    pub fn create(dir: &Path) -> Result<MountView, String> {
        for (_, backing) in PRIVATE {
            std::fs::create_dir_all(dir.join(backing))
                .map_err(|e| format!("failed to create {}: {e}", dir.join(backing).display()))?;
        }
        let ns_file = dir.join("mnt");
        std::fs::write(&ns_file, b"")
            .map_err(|e| format!("failed to create {}: {e}", ns_file.display()))?;
        let mut script = String::from("set -e; ");
        for (node_path, backing) in PRIVATE {
            script.push_str(&format!(
                "mkdir -p {node_path}; mount --bind {} {node_path}; ",
                dir.join(backing).display()
            ));
        }
        let mount_arg = format!("--mount={}", ns_file.display());
        // Slave propagation: pod namespaces mounted on the host later (/run/netns/…)
        // appear in the view, while the view's own bind mounts stay inside it.
        run(
            "unshare",
            &[&mount_arg, "--propagation", "slave", "sh", "-c", &script],
            T,
        )
        .map_err(|e| e.to_string())?;
        Ok(MountView {
            dir: dir.to_path_buf(),
            ns_file,
        })
    }

    pub fn destroy(&self) -> Result<(), String> {
        run("umount", &[&self.ns_file.display().to_string()], T)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Makes `run_dir` a private mount point: persistent mount namespace files may only
/// live on a mount whose propagation is private.
pub fn privatize(run_dir: &Path) -> Result<(), String> {
    let d = run_dir.display().to_string();
    run("mount", &["--bind", &d, &d], T).map_err(|e| e.to_string())?;
    run("mount", &["--make-private", &d], T).map_err(|e| e.to_string())?;
    Ok(())
}

pub fn unprivatize(run_dir: &Path) -> Result<(), String> {
    run("umount", &[&run_dir.display().to_string()], T)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The host's node paths (`/var/lib/cni`, ...) the runs' views mount onto, and
/// which of them a run created. Every run holds a shared lock on them while up; the
/// dirs it created are removed at teardown only when no other run holds it: removing
/// a directory that another run's view has a mount on would detach that mount (the
/// other run's kubelet.sock and CNI state would vanish under it).
pub struct HostDirs {
    lock: std::fs::File,
    created: Vec<PathBuf>,
}

const HOST_DIRS_LOCK: &str = "/run/secnet/host-dirs.lock";

impl HostDirs {
    /// Takes the shared lock (waiting while a run removes dirs) and notes which of
    /// the node paths do not exist yet (the views create them).
    pub fn claim() -> Result<HostDirs, String> {
        let path = Path::new(HOST_DIRS_LOCK);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| format!("failed to open {}: {e}", path.display()))?;
        flock(&lock, nix::libc::LOCK_SH)
            .map_err(|e| format!("failed to lock {}: {e}", path.display()))?;
        Ok(HostDirs {
            lock,
            created: missing_host_dirs(),
        })
    }

    /// Removes the (empty) dirs this run created, unless another run is up.
    pub fn release(self) {
        if flock(&self.lock, nix::libc::LOCK_EX | nix::libc::LOCK_NB).is_ok() {
            for d in &self.created {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

fn flock(file: &std::fs::File, how: i32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { nix::libc::flock(file.as_raw_fd(), how) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Which of the node paths do not exist on the host yet (created by the views, to be
/// removed again at teardown when empty).
fn missing_host_dirs() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (node_path, _) in PRIVATE {
        // Kept: it lives on the shared /run, and removing it while another run's
        // view has it bind-mounted would detach that view's mount.
        if node_path == "/var/run/openvswitch" {
            continue;
        }
        let mut p = PathBuf::from(node_path);
        let mut chain = Vec::new();
        while !p.exists() {
            chain.push(p.clone());
            if !p.pop() {
                break;
            }
        }
        out.extend(chain);
    }
    out
}
