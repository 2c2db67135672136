//! Supervised daemons of the bare cluster (etcd, the control plane, containerd,
//! kubelets): each in its namespaces and cgroup, leading its own process group, its
//! output in a log file under the run directory; stopped on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::cgroup;
use super::plan::Process;
use crate::lab::command;
use crate::lab::enter::Enter;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("failed to open log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start {program}: {source}{hint}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
        hint: String,
    },
    #[error("failed to enter the namespaces of {name}: {source}")]
    Enter {
        name: String,
        source: std::io::Error,
    },
}

/// How long a daemon gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

pub struct Daemon {
    pub(crate) name: String,
    pub(crate) log: PathBuf,
    child: Option<Child>,
}

/// Where a daemon runs: namespaces to enter (none: the host's), cgroup to join.
#[derive(Default)]
pub struct Placement<'a> {
    pub(crate) enter: Option<&'a Enter>,
    pub(crate) cgroup: Option<&'a str>,
}

impl Daemon {
    pub fn spawn(p: &Process, at: Placement) -> Result<Daemon, ProcessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log)
            .map_err(|source| ProcessError::Log {
                path: p.log.clone(),
                source,
            })?;
        let err = log.try_clone().map_err(|source| ProcessError::Log {
            path: p.log.clone(),
            source,
        })?;
        let mut cmd = Command::new(&p.program);
        cmd.args(&p.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        if let Some(enter) = at.enter {
            enter
                .apply_std(&mut cmd)
                .map_err(|source| ProcessError::Enter {
                    name: p.name.clone(),
                    source,
                })?;
        }
        if let Some(cg) = at.cgroup {
            cgroup::join_before_exec(&mut cmd, cg);
        }
        let child = command::own_group(&mut cmd)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: p.program.clone(),
                hint: if source.kind() == std::io::ErrorKind::NotFound {
                    " (not found: check --k8s-bin-dir, or install the distribution's package)"
                        .into()
                } else {
                    String::new()
                },
                source,
            })?;
        Ok(Daemon {
            name: p.name.clone(),
            log: p.log.clone(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the daemon exited, if it did.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut()?.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }

    /// Resident memory of the daemon's process, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
    }

    /// The last `n` lines of its log (for errors).
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// SIGTERM to its group, SIGKILL after `grace`; reaped.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            command::stop_group(&mut child, grace);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_logs_to_its_file_and_is_stopped_with_its_group() {
        let dir = crate::lab::ScratchDir::new("secnet-daemon-test").unwrap();
        let p = Process {
            name: "sleeper".into(),
            program: "sh".into(),
            args: vec!["-c".into(), "echo started; sleep 1000 & wait".into()],
            log: dir.path().join("sleeper.log"),
        };
        let mut d = Daemon::spawn(&p, Placement::default()).unwrap();
        let pid = d.pid().unwrap() as i32;
        let t0 = std::time::Instant::now();
        while !d.log_tail(1).contains("started") && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(d.log_tail(5), "started");
        assert!(d.rss_kib().unwrap() > 0);
        assert!(d.exited().is_none());
        drop(d);
        // The group (the shell and its sleep) is gone: no live process is in it
        // (an orphan's zombie waits for init, which may reap late). A member SIGKILLed
        // while it was running shows as running until it is scheduled to die: give it
        // a moment, as a loaded machine needs.
        let in_group = || -> Vec<String> {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
                .filter(|stat| {
                    let Some((_, rest)) = stat.rsplit_once(')') else {
                        return false;
                    };
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    fields.get(2) == Some(&pid.to_string().as_str()) && fields[0] != "Z"
                })
                .collect()
        };
        let t0 = std::time::Instant::now();
        let mut alive = in_group();
        while !alive.is_empty() && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
            alive = in_group();
        }
        assert!(alive.is_empty(), "process group {pid} survived: {alive:?}");
    }

    #[test]
    fn a_missing_program_says_where_to_look() {
        let dir = crate::lab::ScratchDir::new("secnet-daemon-test").unwrap();
        let p = Process {
            name: "x".into(),
            program: "/nonexistent/kube-apiserver".into(),
            args: vec![],
            log: dir.path().join("x.log"),
        };
        let e = Daemon::spawn(&p, Placement::default())
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("/nonexistent/kube-apiserver") && e.contains("--k8s-bin-dir"),
            "{e}"
        );
    }
}
