//! Liveness markers: every run id holds one, `/run/secnet/live/<run id>.lock` (a
//! user who cannot write there, as a kind run without root:
//! `$XDG_RUNTIME_DIR/secnet/live/`, else `$TMPDIR/secnet-live-<uid>/`), locked with
//! `flock` by the process that made the id for as long as it lives (the kernel
//! drops the lock when it exits or is killed, so a killed run reads as dead).
//! [`super::new_run_id`] takes it; `secnet clean` and the providers' sweeps read it
//! to leave live runs alone.

use std::path::{Path, PathBuf};

use super::is_ours;

/// Where runs keep their liveness markers.
pub const LIVE_DIR: &str = "/run/secnet/live";

/// Every directory a marker may be in, the first choice first: [`LIVE_DIR`], then
/// the user's runtime directory, then one per user under the temporary directory.
pub fn live_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(LIVE_DIR)];
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR") {
        dirs.push(PathBuf::from(runtime).join("secnet/live"));
    }
    dirs.push(std::env::temp_dir().join(format!("secnet-live-{}", nix::unistd::getuid())));
    dirs
}

/// A run whose liveness marker is held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveRun {
    pub run_id: String,
    /// What the marker says about its holder (`pid 123 secnet`), for people.
    pub holder: String,
}

fn marker_name(run_id: &str) -> String {
    format!("{run_id}.lock")
}

/// Where `run_id`'s marker is, if it has one.
fn marker_path(run_id: &str) -> Option<PathBuf> {
    live_dirs()
        .into_iter()
        .map(|d| d.join(marker_name(run_id)))
        .find(|p| p.is_file())
}

/// Markers this process holds: locked until it exits.
static HELD: std::sync::Mutex<Vec<(PathBuf, nix::fcntl::Flock<std::fs::File>)>> =
    std::sync::Mutex::new(Vec::new());

/// Marks `run_id` alive for the rest of this process's life: creates and locks its
/// marker in the first of [`live_dirs`] it can write. Best effort: where none can
/// be written there is no marker (and `clean` treats the run as gone).
pub(crate) fn mark_live(run_id: &str) {
    let mut errors = Vec::new();
    for dir in live_dirs() {
        match try_mark_live(&dir, run_id) {
            Ok(()) => return,
            Err(e) => errors.push(format!("{}: {e}", dir.display())),
        }
    }
    tracing::debug!("no liveness marker for run {run_id}: {}", errors.join("; "));
}

fn try_mark_live(dir: &Path, run_id: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::DirBuilderExt;
    // 0755 under /run (root's); a user's own directories are theirs alone.
    let mode = if dir == Path::new(LIVE_DIR) {
        0o755
    } else {
        0o700
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    // Close-on-exec (std's default): a plugin or QEMU this run starts must not keep
    // the lock after the run is gone.
    let path = dir.join(marker_name(run_id));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    let mut lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| std::io::Error::from(errno))?;
    lock.set_len(0)?;
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    write!(lock, "pid {} {}", std::process::id(), comm.trim())?;
    HELD.lock().expect("held markers").push((path, lock));
    forget_at_exit();
    Ok(())
}

/// Has the markers removed at the process's normal exit, once: a test binary, or
/// any other user of the library that never calls [`forget_live`], left one file
/// per run id in the live directory (~700 a CI run). A killed process still leaves
/// its marker, unlocked: `secnet clean` removes those.
fn forget_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn at_exit() {
        // Never wait at exit: a thread that held the list when exit began may
        // never run again.
        let mut held = match HELD.try_lock() {
            Ok(held) => held,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        for (path, lock) in std::mem::take(&mut *held) {
            let _ = std::fs::remove_file(&path);
            drop(lock);
        }
    }
    ONCE.call_once(|| {
        // SAFETY: atexit only records the pointer of a function that lives as long
        // as the program.
        unsafe {
            nix::libc::atexit(at_exit);
        }
    });
}

/// Removes the markers this process holds, as it ends: a run leaves no file with
/// its id (without a marker `clean` reads a run as gone, as after a kill).
pub fn forget_live() {
    let held = std::mem::take(&mut *HELD.lock().unwrap_or_else(|p| p.into_inner()));
    for (path, lock) in held {
        // Unlinked while still locked: no other process can take it for live between.
        let _ = std::fs::remove_file(&path);
        drop(lock);
    }
}

/// Whether some process still holds `run_id`'s marker; `None` when it has none.
pub fn liveness(run_id: &str) -> Option<LiveRun> {
    let path = marker_path(run_id)?;
    let file = std::fs::File::open(&path).ok()?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock) {
        // Nobody holds it: the run is gone (the lock drops with `_free`).
        Ok(_free) => None,
        Err((_, _)) => Some(LiveRun {
            run_id: run_id.to_string(),
            holder: std::fs::read_to_string(&path).unwrap_or_default(),
        }),
    }
}

/// The runs (of `run_id` only, when given) whose marker is held now.
pub fn live_runs(run_id: Option<&str>) -> Vec<LiveRun> {
    let mut live: Vec<LiveRun> = live_dirs()
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_suffix(".lock")?.to_string();
            is_ours(&format!("{name}-x"), run_id).then_some(name)
        })
        .filter_map(|id| liveness(&id))
        .collect();
    live.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    live.dedup_by(|a, b| a.run_id == b.run_id);
    live
}

/// Whether run `run_id` is alive and, unless `force`, to be left alone.
pub fn spare(run_id: &str, force: bool) -> Option<LiveRun> {
    if force { None } else { liveness(run_id) }
}

/// Removes the markers of runs that are gone (of `run_id` only, when given).
pub fn remove_dead_markers(run_id: Option<&str>) {
    let entries = live_dirs()
        .into_iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(Result::ok);
    for e in entries {
        let Some(id) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".lock"))
            .map(str::to_string)
        else {
            continue;
        };
        if is_ours(&format!("{id}-x"), run_id) && liveness(&id).is_none() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_live_while_its_holder_lives() {
        if !crate::prereq::require_root("liveness markers under /run/secnet") {
            return;
        }
        let id = crate::lab::new_run_id();
        // new_run_id marked it for this process.
        let live = liveness(&id).expect("this process holds its run's marker");
        assert!(
            live.holder
                .starts_with(&format!("pid {}", std::process::id())),
            "{live:?}"
        );
        assert!(live_runs(Some(&id)).iter().any(|l| l.run_id == id));
        // What every provider's clean asks (kind clusters and existing objects too).
        assert_eq!(spare(&id, false), Some(live.clone()));
        assert_eq!(spare(&id, true), None, "--force spares nothing");
        // A marker nobody holds: a dead run.
        let dead = "sn0dead0";
        let dead_path = Path::new(LIVE_DIR).join(marker_name(dead));
        std::fs::write(&dead_path, "pid 1 gone").unwrap();
        assert_eq!(liveness(dead), None);
        remove_dead_markers(Some(dead));
        assert!(!dead_path.exists(), "a dead run's marker is removed");
        assert!(marker_path(&id).is_some(), "a live run's marker stays");
    }
}
