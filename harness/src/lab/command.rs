//! The one runner for every external program secnet runs to completion: an
//! argument vector, a timeout, and the output in the error.
//!
//! - Both pipes are read while the child runs, so a child that writes more than a
//!   pipe buffer (64 KiB) never blocks on it and then reads as a timeout.
//! - The child leads its own process group. On timeout (or when an async caller
//!   gives up) the whole group is killed, grandchildren included; when the child
//!   exits, whatever it left running in its group is killed too. The child is reaped
//!   only after that, so its process group id cannot have been reused.
//! - Long-running daemons (dnsmasq, OVS, QEMU, the device plugin) keep their own
//!   spawn but also get a group of their own ([`own_group`]) and are stopped as a
//!   group ([`signal_group`]).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::enter::{Enter, EnterFds};

/// How much of each stream an error message carries (its end: where errors are).
const ERROR_TAIL: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("failed to run {cmdline}: {source}")]
    Spawn {
        cmdline: String,
        source: std::io::Error,
    },
    #[error("{cmdline} timed out after {timeout:?} (its process group was killed){}", streams(.stdout, .stderr))]
    Timeout {
        cmdline: String,
        timeout: Duration,
        /// The tail of what it wrote before it was killed.
        stdout: String,
        stderr: String,
    },
    #[error("{cmdline} was abandoned by its caller (its process group was killed)")]
    Cancelled { cmdline: String },
    #[error("{cmdline} failed ({status}){}", streams(.stdout, .stderr))]
    Failed {
        cmdline: String,
        status: String,
        /// Tails, at most 4 KiB each.
        stdout: String,
        stderr: String,
    },
}

fn streams(stdout: &str, stderr: &str) -> String {
    match (stdout.trim().is_empty(), stderr.trim().is_empty()) {
        (_, false) if stdout.trim().is_empty() => format!(": {}", stderr.trim()),
        (false, false) => format!(": {}\nstdout: {}", stderr.trim(), stdout.trim()),
        (false, true) => format!("; stdout: {}", stdout.trim()),
        _ => String::new(),
    }
}

/// The last `ERROR_TAIL` bytes of `bytes`, as text.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(ERROR_TAIL);
    let text = String::from_utf8_lossy(&bytes[start..]);
    if start > 0 {
        format!("[… {start} bytes cut] {text}")
    } else {
        text.into_owned()
    }
}

/// What a finished command left: its status and everything it wrote.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) cmdline: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    pub(crate) elapsed: Duration,
}

impl Output {
    pub(crate) fn success(&self) -> bool {
        self.status.success()
    }

    pub(crate) fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// `Ok(self)` when the command exited 0, else the error with both tails.
    pub(crate) fn check(self) -> Result<Output, CommandError> {
        if self.success() {
            Ok(self)
        } else {
            Err(CommandError::Failed {
                status: self.status.to_string(),
                stdout: tail(&self.stdout),
                stderr: tail(&self.stderr),
                cmdline: self.cmdline,
            })
        }
    }
}

/// A command to run to completion (build it, then [`Cmd::output`] / [`Cmd::run`] or
/// their async forms).
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_clear: bool,
    stdin: Option<Vec<u8>>,
    enter: Option<std::io::Result<EnterFds>>,
    timeout: Duration,
    cancel: Option<Arc<AtomicBool>>,
}

impl Cmd {
    /// `program` with a 10 s timeout, stdin from /dev/null.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_os_string(),
            args: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            stdin: None,
            enter: None,
            timeout: Duration::from_secs(10),
            cancel: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Starts from an empty environment (then only what [`Cmd::env`] sets).
    pub(crate) fn env_clear(mut self) -> Cmd {
        self.env_clear = true;
        self
    }

    /// Bytes written to the child's stdin (then closed).
    pub fn stdin(mut self, bytes: Vec<u8>) -> Cmd {
        self.stdin = Some(bytes);
        self
    }

    /// Runs the child inside `enter`'s namespaces.
    pub(crate) fn enter(mut self, enter: &Enter) -> Cmd {
        self.enter = Some(enter.fds());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// The command line as errors show it.
    pub fn cmdline(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion; any exit status is an `Ok` (see [`Output::check`]).
    pub(crate) fn output(self) -> Result<Output, CommandError> {
        let cmdline = self.cmdline();
        let Cmd {
            program,
            args,
            env,
            env_clear,
            stdin,
            enter,
            timeout,
            cancel,
        } = self;
        let spawn_err = |source| CommandError::Spawn {
            cmdline: cmdline.clone(),
            source,
        };
        let mut cmd = Command::new(&program);
        cmd.args(&args);
        if env_clear {
            cmd.env_clear();
        }
        cmd.envs(env)
            .stdin(match stdin {
                Some(_) => Stdio::piped(),
                None => Stdio::null(),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if let Some(fds) = enter {
            fds.map_err(spawn_err)?.install(&mut cmd);
        }
        // If secnet itself is killed (SIGKILL: no cleanup runs), the child goes too.
        // The thread that spawns it waits for it, so it cannot end first.
        // SAFETY: only prctl(2), async-signal-safe, runs in the child.
        unsafe {
            cmd.pre_exec(|| {
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let deadline = started + timeout;
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let pid = child.id() as i32;

        let writer = match (child.stdin.take(), stdin) {
            (Some(mut pipe), Some(bytes)) => Some(std::thread::spawn(move || {
                // A child may exit without reading its input: not our error.
                let _ = pipe.write_all(&bytes);
            })),
            _ => None,
        };
        let (done_tx, done_rx) = mpsc::channel();
        let stdout = read_all(child.stdout.take(), done_tx.clone());
        let stderr = read_all(child.stderr.take(), done_tx);

        let waited = wait_exit(pid, deadline, cancel.as_deref());
        // Exited or to be stopped: nothing of its group outlives it (a background
        // process it left would also hold the pipes open). Not reaped yet, so the
        // group id is still ours.
        kill_group(pid, nix::sys::signal::Signal::SIGKILL);
        let status = child.wait().map_err(spawn_err)?;
        // EOF once every holder of the pipes is gone; one that left the group
        // (setsid) is not waited for beyond the deadline.
        let until = deadline.max(Instant::now() + Duration::from_secs(1));
        for _ in 0..2 {
            if done_rx
                .recv_timeout(until.saturating_duration_since(Instant::now()))
                .is_err()
            {
                break;
            }
        }
        let stdout = std::mem::take(&mut *stdout.lock().unwrap_or_else(|p| p.into_inner()));
        let stderr = std::mem::take(&mut *stderr.lock().unwrap_or_else(|p| p.into_inner()));
        // The writer ends by itself: its pipe's reader is gone now (EPIPE).
        drop(writer);
        match waited {
            Waited::Exited => Ok(Output {
                cmdline,
                status,
                stdout,
                stderr,
                elapsed: started.elapsed(),
            }),
            Waited::TimedOut => Err(CommandError::Timeout {
                cmdline,
                timeout,
                stdout: tail(&stdout),
                stderr: tail(&stderr),
            }),
            Waited::Cancelled => Err(CommandError::Cancelled { cmdline }),
        }
    }

    /// Runs to completion and requires exit 0; returns stdout.
    pub fn run(self) -> Result<String, CommandError> {
        self.output()?.check().map(|o| o.stdout_text())
    }

    /// [`Cmd::output`] for async code: runs on a blocking thread; dropping the future
    /// kills the command's process group.
    pub(crate) async fn output_async(mut self) -> Result<Output, CommandError> {
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        self.cancel = Some(cancel);
        let cmdline = self.cmdline();
        tokio::task::spawn_blocking(move || self.output())
            .await
            .unwrap_or_else(|e| {
                Err(CommandError::Spawn {
                    cmdline,
                    source: std::io::Error::other(e.to_string()),
                })
            })
    }

    /// [`Cmd::run`] for async code.
    pub async fn run_async(self) -> Result<String, CommandError> {
        self.output_async().await?.check().map(|o| o.stdout_text())
    }
}

/// Runs `program args…`, returning stdout; the error carries the command line, the
/// status and the tails of both streams.
pub fn run(program: &str, args: &[&str], timeout: Duration) -> Result<String, CommandError> {
    Cmd::new(program).args(args).timeout(timeout).run()
}

/// Reads a pipe to its end on a thread into the returned buffer; signals `done`
/// when the pipe is closed.
fn read_all<R: Read + Send + 'static>(
    pipe: Option<R>,
    done: mpsc::Sender<()>,
) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let shared = buf.clone();
    std::thread::spawn(move || {
        if let Some(mut p) = pipe {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match p.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => shared
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        let _ = done.send(());
    });
    buf
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Waited {
    Exited,
    TimedOut,
    Cancelled,
}

/// Waits for `pid` to exit without reaping it (pidfd, else `waitid(WNOWAIT)` polls),
/// until `deadline` or until `cancel` is set.
fn wait_exit(pid: i32, deadline: Instant, cancel: Option<&AtomicBool>) -> Waited {
    use nix::libc;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a non-negative return is a descriptor we own.
    let pidfd = (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as i32) });
    let mut nap = Duration::from_micros(200);
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Waited::Cancelled;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // Short slices so that a cancel is noticed.
        let slice = left.min(Duration::from_millis(50));
        match &pidfd {
            Some(fd) => {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = slice.as_micros().div_ceil(1000) as i32;
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, ms) } > 0 {
                    return Waited::Exited;
                }
            }
            None => {
                // SAFETY: an all-zero siginfo is valid; waitid fills it.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                let flags = libc::WEXITED | libc::WNOWAIT | libc::WNOHANG;
                // SAFETY: pid is our unreaped child; info points to a live local.
                let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
                if r == 0 && unsafe { info.si_pid() } != 0 {
                    return Waited::Exited;
                }
                std::thread::sleep(nap.min(slice));
                nap = (nap * 2).min(Duration::from_millis(20));
            }
        }
        if left.is_zero() {
            return Waited::TimedOut;
        }
    }
}

fn kill_group(pgid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
}

/// Makes a daemon's process lead its own group, so that [`signal_group`] reaches
/// whatever it starts as well.
pub fn own_group(cmd: &mut Command) -> &mut Command {
    cmd.process_group(0)
}

/// Sends `signal` to the process group `child` leads (see [`own_group`]), unless
/// `child` has been reaped already (its group id may then be someone else's).
pub fn signal_group(child: &mut Child, signal: nix::sys::signal::Signal) {
    // `try_wait` answers from its cache for a reaped child; `None` means unreaped,
    // and only we reap it, so the group id stays ours until then.
    if let Ok(None) = child.try_wait() {
        kill_group(child.id() as i32, signal);
    }
}

/// Stops a daemon started with [`own_group`]: SIGTERM to its group, up to `grace`
/// for it to exit, then SIGKILL to the group; reaps it.
pub fn stop_group(child: &mut Child, grace: Duration) {
    signal_group(child, nix::sys::signal::Signal::SIGTERM);
    reap_group(child, grace);
}

/// Waits up to `grace` for a daemon already sent SIGTERM to exit, then SIGKILLs its
/// group; reaps it.
pub fn reap_group(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) | Err(_) = child.try_wait() {
        return;
    }
    let pid = child.id() as i32;
    wait_exit(pid, Instant::now() + grace, None);
    // Still running, or exited leaving something in its group: SIGKILL to the group
    // while the child is unreaped (its group id cannot have been reused).
    kill_group(pid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_runner_reads_both_pipes_while_the_child_runs() {
        // 1 MiB on each stream: far beyond a 64 KiB pipe buffer. A runner that reads
        // only after exit deadlocks here until the timeout.
        let t0 = Instant::now();
        let out = Cmd::new("sh")
            .args([
                "-c",
                "head -c 1048576 /dev/zero | tr '\\0' o; head -c 1048576 /dev/zero | tr '\\0' e >&2; echo done >&2",
            ])
            .timeout(Duration::from_secs(30))
            .output()
            .unwrap();
        assert!(out.success(), "{:?}", out.status);
        assert_eq!(out.stdout.len(), 1 << 20);
        assert!(out.stdout.iter().all(|b| *b == b'o'));
        assert_eq!(out.stderr.len(), (1 << 20) + 5);
        assert!(out.stderr.ends_with(b"done\n"));
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    }

    #[test]
    fn lab_runner_timeout_kills_the_whole_process_group() {
        let dir = super::super::ScratchDir::new("secnet-runner-test").unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!(
            "sleep 600 & echo $! > {}; echo started; sleep 600",
            pidfile.display()
        );
        let t0 = Instant::now();
        let err = Cmd::new("sh")
            .args(["-c", &script])
            .timeout(Duration::from_millis(500))
            .output()
            .unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let text = err.to_string();
        assert!(matches!(err, CommandError::Timeout { .. }), "{text}");
        assert!(
            text.contains("sh -c sleep 600") && text.contains("started"),
            "{text}"
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Killed, and (orphaned, so reaped by init) gone within moments.
        assert!(gone(pid), "grandchild {pid} survived the timeout");
    }

    #[test]
    fn lab_runner_kills_what_the_child_leaves_running_when_it_exits() {
        let dir = super::super::ScratchDir::new("secnet-runner-test").unwrap();
        let pidfile = dir.path().join("left.pid");
        // The background sleep keeps stdout open: without the group kill the runner
        // would wait for it until the timeout.
        let script = format!("sleep 600 & echo $! > {}; echo bye", pidfile.display());
        let t0 = Instant::now();
        let out = Cmd::new("sh")
            .args(["-c", &script])
            .timeout(Duration::from_secs(20))
            .run()
            .unwrap();
        assert_eq!(out, "bye\n");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        let pid = std::fs::read_to_string(&pidfile).unwrap();
        assert!(
            gone(pid.trim().parse().unwrap()),
            "{pid} outlived its parent's run"
        );
    }

    /// Whether `pid` is gone (or a zombie about to be reaped by init) within 3 s.
    fn gone(pid: i32) -> bool {
        (0..300).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(10));
            }
            !alive
        })
    }

    #[test]
    fn lab_runner_failure_names_command_status_and_output() {
        let err = Cmd::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .run()
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh -c echo out"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("err") && err.contains("stdout: out"), "{err}");
        let missing = run("/nonexistent/prog", &[], Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            missing.starts_with("failed to run /nonexistent/prog"),
            "{missing}"
        );
    }

    #[test]
    fn lab_runner_bounds_the_output_in_errors() {
        let err = Cmd::new("sh")
            .args(["-c", "head -c 100000 /dev/zero | tr '\\0' x >&2; exit 1"])
            .run()
            .unwrap_err()
            .to_string();
        assert!(err.len() < 2 * ERROR_TAIL + 200, "{}", err.len());
        assert!(err.contains("bytes cut"), "{err}");
    }

    #[test]
    fn lab_runner_feeds_stdin_and_sets_the_environment() {
        let out = Cmd::new("sh")
            .args(["-c", "cat; echo \"$FOO\"; echo \"${HOME:-unset}\""])
            .env_clear()
            .env("FOO", "bar")
            .stdin(b"in\n".to_vec())
            .run()
            .unwrap();
        assert_eq!(out, "in\nbar\nunset\n");
    }

    #[tokio::test]
    async fn lab_runner_async_drop_kills_the_group() {
        let dir = super::super::ScratchDir::new("secnet-runner-test").unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("echo $$ > {}; sleep 600", pidfile.display());
        let fut = Cmd::new("sh")
            .args(["-c", &script])
            .timeout(Duration::from_secs(600))
            .output_async();
        let r = tokio::time::timeout(Duration::from_millis(500), fut).await;
        assert!(r.is_err(), "the command cannot finish in 500 ms");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(gone(pid), "{pid} survived its abandoned future");
    }
}
