//! `secnet clean`: removes what runs left behind (a killed run, `--keep`), and
//! nothing else: processes living in the run's namespaces, the nodes' mount views
//! under /run/secnet/<run id>…, and network namespaces named `sn<6 hex>-…`; then
//! waits until the kernel has released them (a deleted namespace, its links and
//! its macvtaps' `/dev/tapN` go asynchronously).
//!
//! A run that is still going is left alone: every run id holds a liveness marker
//! (`lab::liveness`), `/run/secnet/live/<run id>.lock` (a user who cannot write
//! there, as a kind run without root: `$XDG_RUNTIME_DIR/secnet/live/`, else
//! `$TMPDIR/secnet-live-<uid>/`), locked with `flock` by the process that made the
//! id for as long as it lives (the kernel drops the lock when it exits or is
//! killed, so a killed run reads as dead).
//! `secnet clean` skips the runs whose lock is held and names them, unless
//! `--force`, on every provider: netns namespaces, kind clusters `secnet-<run>` and
//! the labelled objects of an existing cluster alike.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::lab::is_ours;
// The liveness markers live in `lab` (every run id gets one); their readers are
// re-exported here, where users look for them.
pub use crate::lab::liveness::{
    LIVE_DIR, LiveRun, forget_live, live_dirs, live_runs, liveness, remove_dead_markers, spare,
};
use crate::lab::{CommandError, RELEASE_TIMEOUT, release, run};

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("removed, but still there after {RELEASE_TIMEOUT:?}: {0}")]
    Unreleased(String),
}

const RUN_ROOT: &str = "/run/secnet";

#[derive(Debug, Default)]
pub struct Cleaned {
    pub namespaces: Vec<String>,
    pub run_dirs: Vec<String>,
    pub processes: Vec<i32>,
    /// Runs left alone because they are still alive (their marker is locked).
    pub skipped: Vec<LiveRun>,
}

/// The run id a namespace, run dir or scratch dir name starts with.
fn run_of(name: &str) -> &str {
    let name = name.strip_prefix("secnet-").unwrap_or(name);
    name.split_once('-').map_or(name, |(id, _)| id)
}

/// What exists of some runs: namespaces, run dirs (with their nodes' mount
/// namespace files) and the processes living in them.
#[derive(Debug, Default)]
pub struct Found {
    pub namespaces: Vec<String>,
    pub run_dirs: Vec<PathBuf>,
    pub mnt_files: Vec<PathBuf>,
    pub processes: Vec<i32>,
    /// `/dev/tapN` of macvtaps in namespaces the run deleted, not yet released.
    pub tap_nodes: Vec<PathBuf>,
}

impl Found {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.run_dirs.is_empty()
            && self.processes.is_empty()
            && self.tap_nodes.is_empty()
    }

    /// Only what the kernel or an exiting process still releases on its own.
    fn only_releasing(&self) -> bool {
        self.namespaces.is_empty() && self.run_dirs.is_empty()
    }

    /// One line per kind, for a leak report.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.namespaces.is_empty() {
            parts.push(format!("namespaces {}", self.namespaces.join(" ")));
        }
        if !self.run_dirs.is_empty() {
            parts.push(format!(
                "state dirs {}",
                self.run_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        if !self.processes.is_empty() {
            let names: Vec<String> = self
                .processes
                .iter()
                .map(|p| {
                    format!(
                        "{p} ({})",
                        std::fs::read_to_string(format!("/proc/{p}/comm"))
                            .unwrap_or_default()
                            .trim()
                    )
                })
                .collect();
            parts.push(format!("processes {}", names.join(" ")));
        }
        if !self.tap_nodes.is_empty() {
            parts.push(format!(
                "device nodes {}",
                self.tap_nodes
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
        parts.join("; ")
    }
}

/// Finds everything whose name `matches` (namespace names and run dir names).
pub(crate) fn find(matches: impl Fn(&str) -> bool) -> Result<Found, CommandError> {
    let listing = run("ip", &["netns", "list"], Duration::from_secs(10))?;
    let namespaces: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| matches(n))
        .map(str::to_string)
        .collect();
    let run_dirs: Vec<PathBuf> = std::fs::read_dir(RUN_ROOT)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&matches))
                .collect()
        })
        .unwrap_or_default();
    let mnt_files: Vec<PathBuf> = run_dirs.iter().flat_map(|d| node_mount_files(d)).collect();
    let ns_inodes = namespace_inodes(&namespaces, &mnt_files);
    let run_paths: Vec<String> = run_dirs.iter().map(|d| d.display().to_string()).collect();
    let mut processes = processes_in(&ns_inodes);
    for pid in processes_naming(&run_paths) {
        if !processes.contains(&pid) {
            processes.push(pid);
        }
    }
    let tap_nodes = release::pending(&matches);
    Ok(Found {
        namespaces,
        run_dirs,
        mnt_files,
        processes,
        tap_nodes,
    })
}

/// Waits (up to `timeout`) until nothing whose name `matches` is left, for what goes
/// on its own: processes exiting, namespaces and `/dev/tapN` the kernel frees
/// asynchronously. Returns at once what cannot go on its own (a namespace or run
/// dir still there); the error is what is left.
pub fn wait_gone(matches: impl Fn(&str) -> bool, timeout: Duration) -> Result<(), Found> {
    let deadline = std::time::Instant::now() + timeout;
    let mut nap = Duration::from_millis(5);
    loop {
        let found = find(&matches).unwrap_or_default();
        if found.is_empty() {
            return Ok(());
        }
        if !found.only_releasing() || std::time::Instant::now() >= deadline {
            return Err(found);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(100));
    }
}

fn namespace_inodes(namespaces: &[String], mnt_files: &[PathBuf]) -> Vec<(u64, &'static str)> {
    let mut out: Vec<(u64, &'static str)> = namespaces
        .iter()
        .filter_map(|n| inode(&Path::new("/run/netns").join(n)).map(|i| (i, "net")))
        .collect();
    out.extend(
        mnt_files
            .iter()
            .filter_map(|f| inode(f).map(|i| (i, "mnt"))),
    );
    out
}

/// What is left of a scenario whose names start with `prefix` (`<run id>-s<n>`).
pub fn leftovers(prefix: &str) -> Result<Found, CommandError> {
    let dash = format!("{prefix}-");
    find(|n| n == prefix || n.starts_with(&dash))
}

/// Deletes our leftovers, the runs' scratch dirs (`$TMPDIR/secnet-<run id>-XXXXXX`)
/// too, and waits until the kernel has released them; returns what was removed.
/// Live runs included: this is how a run removes its own things (see
/// [`clean_dead`] for `secnet clean`).
pub fn clean(run_id: Option<&str>) -> Result<Cleaned, CleanError> {
    clean_except(run_id, &[])
}

/// `secnet clean`: like [`clean`], but a run that is still alive (its marker is
/// locked) is left untouched and named in `skipped`, unless `force`.
pub fn clean_dead(run_id: Option<&str>, force: bool) -> Result<Cleaned, CleanError> {
    let live = if force { Vec::new() } else { live_runs(run_id) };
    let mut cleaned = clean_except(run_id, &live)?;
    remove_dead_markers(run_id);
    cleaned.skipped = live;
    Ok(cleaned)
}

fn clean_except(run_id: Option<&str>, live: &[LiveRun]) -> Result<Cleaned, CleanError> {
    let alive = |n: &str| live.iter().any(|l| l.run_id == run_of(n));
    // Bare runs first: their processes live in the run's cgroup and their mount
    // views hold namespaces; the bare sweep knows that layout.
    let mut bare_left = Vec::new();
    for id in bare_runs(run_id) {
        if !live.iter().any(|l| l.run_id == id) {
            bare_left.extend(crate::cluster::bare::sweep(&id));
        }
    }
    if !bare_left.is_empty() {
        return Err(CleanError::Unreleased(bare_left.join("; ")));
    }
    let ours = |n: &str| is_ours(n, run_id) && !alive(n);
    let mut cleaned = clean_found(find(ours)?)?;
    cleaned.run_dirs.extend(remove_scratch_dirs(|n| {
        is_scratch_dir(n, run_id) && !alive(n)
    }));
    wait_gone(ours, RELEASE_TIMEOUT).map_err(|left| CleanError::Unreleased(left.describe()))?;
    Ok(cleaned)
}

/// Runs (all, or `run_id`) that left something of a bare cluster: a cgroup
/// `/secnet-<run id>` in any hierarchy, or a `/run/secnet/<run id>/bare` directory.
pub fn bare_runs(run_id: Option<&str>) -> Vec<String> {
    let mut runs = std::collections::BTreeSet::new();
    let wanted =
        |id: &str| is_ours(&format!("{id}-x"), run_id) && id.len() == 8 && id.starts_with("sn");
    for h in crate::cluster::bare::cgroup::hierarchies() {
        for e in std::fs::read_dir(&h).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_prefix("secnet-").filter(|id| wanted(id)) {
                runs.insert(id.to_string());
            }
        }
    }
    for e in std::fs::read_dir("/run/secnet")
        .into_iter()
        .flatten()
        .flatten()
    {
        let id = e.file_name().to_string_lossy().into_owned();
        if wanted(&id) && e.path().join("bare").exists() {
            runs.insert(id);
        }
    }
    runs.into_iter().collect()
}

/// `$TMPDIR/secnet-<run id>-XXXXXX` (a run's mkdtemp scratch dir) that `wanted`
/// names: what a killed run left of its scratch files.
fn remove_scratch_dirs(wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let tmp = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&tmp) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if !name.to_str().is_some_and(&wanted) {
            continue;
        }
        let path = entry.path();
        if std::fs::remove_dir_all(&path).is_ok() {
            removed.push(path.display().to_string());
        }
    }
    removed
}

/// Whether `name` is a run's scratch dir: `secnet-<run id>-` and mkdtemp's six
/// characters.
pub fn is_scratch_dir(name: &str, run_id: Option<&str>) -> bool {
    let Some((id, suffix)) = name
        .strip_prefix("secnet-")
        .and_then(|rest| rest.split_once('-'))
    else {
        return false;
    };
    suffix.len() == 6
        && suffix.chars().all(|c| c.is_ascii_alphanumeric())
        // `<id>-x` is the shape `is_ours` knows: exactly a run id, nothing more.
        && is_ours(&format!("{id}-x"), run_id)
}

/// Removes what `find` found: processes first, then mount views, dirs, namespaces.
pub fn clean_found(found: Found) -> Result<Cleaned, CommandError> {
    let t = Duration::from_secs(10);
    let Found {
        namespaces,
        run_dirs,
        mnt_files,
        processes,
        tap_nodes: _,
    } = found;
    let ns_inodes = namespace_inodes(&namespaces, &mnt_files);
    for pid in &processes {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // Their mounts and namespaces are released only once they are gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline && !processes_in(&ns_inodes).is_empty() {
        std::thread::sleep(Duration::from_millis(10));
    }
    for f in &mnt_files {
        let _ = run("umount", &[&f.display().to_string()], t);
    }
    let mut removed_dirs = Vec::new();
    for d in &run_dirs {
        let _ = run("umount", &[&d.display().to_string()], t);
        if std::fs::remove_dir_all(d).is_ok() {
            removed_dirs.push(d.display().to_string());
        }
    }
    for name in &namespaces {
        // Another cleaner (a drop guard) may have been quicker.
        if Path::new("/run/netns").join(name).exists() {
            release::record_namespace(name);
            run("ip", &["netns", "del", name], t)?;
        }
    }
    Ok(Cleaned {
        namespaces,
        run_dirs: removed_dirs,
        processes,
        skipped: Vec::new(),
    })
}

fn node_mount_files(run_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(run_dir.join("nodes"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path().join("mnt"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}

fn inode(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// PIDs whose command line names one of the run's directories (dnsmasq's lease
/// file, ...): found even after their namespace files are gone.
fn processes_naming(run_paths: &[String]) -> Vec<i32> {
    if run_paths.is_empty() {
        return Vec::new();
    }
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let cmdline = String::from_utf8_lossy(&cmdline);
                    run_paths.iter().any(|p| cmdline.contains(&format!("{p}/")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// PIDs whose network or mount namespace is one of `inodes`.
fn processes_in(inodes: &[(u64, &str)]) -> Vec<i32> {
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
                .filter(|pid| *pid != me)
                .filter(|pid| {
                    inodes.iter().any(|(ino, kind)| {
                        inode(Path::new(&format!("/proc/{pid}/ns/{kind}"))) == Some(*ino)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_run_prefixed_names() {
        assert!(is_ours("sn0a1b2c-node", None));
        assert!(is_ours("sn0a1b2c-s3", Some("sn0a1b2c")));
        assert!(!is_ours("sn0a1b2c-node", Some("sn000000")));
        for other in [
            "cni-1234",
            "snx-node",
            "sn0a1b2c",
            "sn0a1b2cd-x",
            "sn0a1bzz-x",
            "myns",
        ] {
            assert!(!is_ours(other, None), "{other}");
        }
    }

    #[test]
    fn names_lead_to_their_run() {
        assert_eq!(run_of("sn0a1b2c-s1-node1"), "sn0a1b2c");
        assert_eq!(run_of("secnet-sn0a1b2c-Ab3xYz"), "sn0a1b2c");
        assert_eq!(run_of("sn0a1b2c"), "sn0a1b2c");
    }

    #[test]
    fn clean_recognises_run_scratch_dirs_only() {
        assert!(is_scratch_dir("secnet-sn0a1b2c-Ab3xYz", None));
        assert!(is_scratch_dir("secnet-sn0a1b2c-Ab3xYz", Some("sn0a1b2c")));
        assert!(!is_scratch_dir("secnet-sn0a1b2c-Ab3xYz", Some("sn000000")));
        for other in [
            "secnet-sn0a1b2c",
            "secnet-suite-conform-Ab3xYz",
            "secnet-sn0a1b2c-dp-Ab3xYz",
            "sn0a1b2c-dp-Ab3xYz",
            "secnet-sn0a1b2c-Ab3x",
        ] {
            assert!(!is_scratch_dir(other, None), "{other}");
        }
    }
}
