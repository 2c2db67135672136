//! The run's cgroup on this host's cgroup v1 (hybrid) hierarchies: the same path in
//! every hierarchy, holding the kubelets' `cgroupRoot`s and the nodes' daemons (so
//! containerd's shims and every container are found by it), killed and removed as one
//! tree at the end.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const MOUNT: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to {action} cgroup {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no cgroup hierarchy under {MOUNT}: the bare cluster needs cgroup v1 (or hybrid) mounted there"
    )]
    NoHierarchy,
    #[error("processes of cgroup {path} still alive {waited:?} after SIGKILL: {pids:?}")]
    Survivors {
        path: String,
        waited: Duration,
        pids: Vec<i32>,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Every mounted hierarchy (v1 controllers, name=systemd, the hybrid unified one).
pub fn hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(MOUNT) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.is_symlink() && p.join("cgroup.procs").exists())
        .collect();
    out.sort();
    out
}

fn in_hierarchy(h: &Path, cgroup: &str) -> PathBuf {
    h.join(cgroup.trim_start_matches('/'))
}

/// Creates `cgroup` (an absolute cgroup path) in every hierarchy. New cpuset levels
/// get their parent's CPUs and memory nodes (an empty cpuset admits no process).
pub fn create(cgroup: &str) -> Result<(), CgroupError> {
    let hs = hierarchies();
    if hs.is_empty() {
        return Err(CgroupError::NoHierarchy);
    }
    for h in hs {
        let mut dir = h.clone();
        for part in cgroup.trim_start_matches('/').split('/') {
            let parent = dir.clone();
            dir = dir.join(part);
            if dir.exists() {
                continue;
            }
            std::fs::create_dir(&dir).map_err(io("create", &dir))?;
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if let Ok(v) = std::fs::read_to_string(parent.join(f)) {
                    std::fs::write(dir.join(f), v.trim()).map_err(io("set up", &dir))?;
                }
            }
        }
    }
    Ok(())
}

/// The `cgroup.procs` files a child writes "0" into between fork and exec to join
/// `cgroup` in every hierarchy (see [`join_before_exec`]).
pub fn procs_files(cgroup: &str) -> Vec<CString> {
    hierarchies()
        .iter()
        .map(|h| {
            let p = in_hierarchy(h, cgroup).join("cgroup.procs");
            CString::new(p.display().to_string()).expect("no NUL in a cgroup path")
        })
        .collect()
}

/// Makes `cmd`'s child join the cgroup before exec, so that nothing it forks escapes.
pub fn join_before_exec(cmd: &mut std::process::Command, cgroup: &str) {
    use std::os::unix::process::CommandExt;
    let files = procs_files(cgroup);
    // SAFETY: only open(2), write(2) and close(2) run in the child; the paths were
    // allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for f in &files {
                let fd = nix::libc::open(f.as_ptr(), nix::libc::O_WRONLY | nix::libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = nix::libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                let err = std::io::Error::last_os_error();
                nix::libc::close(fd);
                if !ok {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
}

/// Process ids anywhere in `cgroup`'s tree, in any hierarchy.
pub fn pids(cgroup: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for h in hierarchies() {
        collect_pids(&in_hierarchy(&h, cgroup), &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&e.path(), out);
            }
        }
    }
}

/// SIGKILLs every process of the tree until none is left (a process forking while
/// we kill shows up in the next round), up to `timeout`.
pub fn kill_all(cgroup: &str, timeout: Duration) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        let left = pids(cgroup);
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(CgroupError::Survivors {
                path: cgroup.to_string(),
                waited: timeout,
                pids: left,
            });
        }
        for pid in left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the tree in every hierarchy, deepest first. Gone already is fine.
pub fn remove(cgroup: &str) -> Result<(), CgroupError> {
    for h in hierarchies() {
        let top = in_hierarchy(&h, cgroup);
        if top.exists() {
            remove_tree(&top)?;
        }
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    // A cgroup whose last process just died can be busy for a moment.
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if tries < 40 => {
                let _ = e;
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(io("remove", dir)(e)),
        }
    }
}

/// Whether any hierarchy still has `cgroup`.
pub fn exists(cgroup: &str) -> bool {
    hierarchies()
        .iter()
        .any(|h| in_hierarchy(h, cgroup).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_joined_killed_and_removed() {
        if !crate::prereq::require_root("cgroup trees") || hierarchies().is_empty() {
            return;
        }
        let cg = format!("/secnet-{}-cgtest/a", crate::lab::new_run_id());
        let top = cg.rsplit_once('/').unwrap().0.to_string();
        create(&cg).unwrap();
        let mut cmd = std::process::Command::new("sh");
        // A child that forks a grandchild: both must be found and killed.
        cmd.args(["-c", "sleep 1000 & sleep 1000"]);
        join_before_exec(&mut cmd, &cg);
        let mut child = cmd.spawn().unwrap();
        let t0 = Instant::now();
        while pids(&top).len() < 2 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(pids(&top).len() >= 2, "{:?}", pids(&top));
        kill_all(&top, Duration::from_secs(5)).unwrap();
        let _ = child.wait();
        remove(&top).unwrap();
        assert!(!exists(&top));
    }
}
