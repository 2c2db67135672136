//! `install-cni`: puts CNI plugin binaries into the node's CNI directory from an
//! image that has no shell and no `cp`. Each file is written under a temporary name
//! in the destination directory and renamed over its target, so a runtime starting a
//! plugin at that moment execs either the old binary or the new one, never half of
//! one. Also what an idle container runs (`--idle`), instead of a shell's `sleep`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const USAGE: &str = "usage: install-cni SOURCE... DEST (DEST a directory, or a file path for one SOURCE) | install-cni --idle";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Install {
        sources: Vec<PathBuf>,
        dest: PathBuf,
    },
    /// Wait for SIGTERM or SIGINT, then exit 0 (a DaemonSet's container that only
    /// has to exist after the init step did the work).
    Idle,
}

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{0}; {USAGE}")]
    Usage(String),
    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Reads the command line (without the program name).
pub fn parse(args: &[String]) -> Result<Action, InstallError> {
    if args == ["--idle"] {
        return Ok(Action::Idle);
    }
    if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
        return Err(InstallError::Usage(format!("unknown option {flag:?}")));
    }
    match args.split_last() {
        Some((dest, sources)) if !sources.is_empty() => Ok(Action::Install {
            sources: sources.iter().map(PathBuf::from).collect(),
            dest: PathBuf::from(dest),
        }),
        _ => Err(InstallError::Usage("need a SOURCE and a DEST".into())),
    }
}

/// Installs every source; returns the paths written. Stops at the first failure
/// (what was installed before it stays: each file is whole either way).
pub fn install(sources: &[PathBuf], dest: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let targets: Vec<PathBuf> = if dest.is_dir() {
        sources
            .iter()
            .map(|s| {
                s.file_name().map(|n| dest.join(n)).ok_or_else(|| {
                    InstallError::Usage(format!("source {} has no file name", s.display()))
                })
            })
            .collect::<Result<_, _>>()?
    } else if sources.len() == 1 {
        vec![dest.to_path_buf()]
    } else {
        return Err(InstallError::Usage(format!(
            "{} is not a directory, and there are {} sources",
            dest.display(),
            sources.len()
        )));
    };
    for (source, target) in sources.iter().zip(&targets) {
        install_one(source, target)?;
    }
    Ok(targets)
}

/// Copies `source` to a temporary file next to `target`, flushes it to disk, makes
/// it 0755 and renames it over `target`.
fn install_one(source: &Path, target: &Path) -> Result<(), InstallError> {
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io {
            action,
            path,
            source,
        }
    };
    let name = target
        .file_name()
        .ok_or_else(|| InstallError::Usage(format!("{} has no file name", target.display())))?;
    let temp = target.with_file_name(format!(
        ".{}.install-cni-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut input = File::open(source).map_err(io_err("open", source))?;
    let _ = std::fs::remove_file(&temp);
    let written = (|| {
        let mut output = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&temp)
            .map_err(io_err("create", &temp))?;
        io::copy(&mut input, &mut output).map_err(io_err("write", &temp))?;
        output.sync_all().map_err(io_err("flush", &temp))?;
        // After the write: the mode does not depend on the umask, and the file is
        // executable only once it is whole.
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("set the mode of", &temp))?;
        std::fs::rename(&temp, target).map_err(io_err("rename into place", target))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

/// Blocks until SIGTERM or SIGINT arrives (as PID 1 in a container no default
/// handler would end the process, so the signals are waited for explicitly).
pub fn idle() -> Result<(), InstallError> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    let blocked = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    blocked
        .and_then(|()| set.wait())
        .map(|_| ())
        .map_err(|e| InstallError::Io {
            action: "wait for SIGTERM in",
            path: PathBuf::from("--idle"),
            source: e.into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_lines() {
        assert_eq!(parse(&args(&["--idle"])).unwrap(), Action::Idle);
        assert_eq!(
            parse(&args(&["/a/macvtap", "/b/ovs", "/host"])).unwrap(),
            Action::Install {
                sources: vec!["/a/macvtap".into(), "/b/ovs".into()],
                dest: "/host".into()
            }
        );
        for bad in [&[][..], &["/only"], &["-f", "/a", "/b"], &["--idle", "x"]] {
            let e = parse(&args(bad)).unwrap_err().to_string();
            assert!(e.contains("usage: install-cni"), "{bad:?}: {e}");
        }
    }
}
