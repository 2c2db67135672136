//! One QEMU guest: launched inside its virt-launcher pod's network namespace with the
//! NICs its bindings prepared, the kernel console logged to a file, the agent on
//! stdio. TCG by default, KVM when it really works. Killed on drop; it also dies
//! with the harness (PR_SET_PDEATHSIG) and `secnet clean` finds it in the pod netns.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::agent::Agent;
use super::image::GuestImage;
use crate::lab::enter::Enter;

pub const QEMU: &str = "qemu-system-x86_64";

/// How a guest NIC reaches the pod's network.
#[derive(Debug)]
pub enum Backend {
    /// An open tap device (a macvtap's `/dev/tapN`), passed as an fd.
    TapFd(OwnedFd),
    /// A tap interface in the pod netns, opened by QEMU by name.
    TapName(String),
}

#[derive(Debug)]
pub struct Nic {
    pub(crate) backend: Backend,
    pub(crate) mac: String,
}

impl Nic {
    /// The same NIC with its own copy of the tap fd (QEMU takes its copy; the
    /// binding keeps one).
    pub fn try_clone(&self) -> Result<Nic, QemuError> {
        let backend = match &self.backend {
            Backend::TapFd(fd) => Backend::TapFd(fd.try_clone().map_err(|e| {
                QemuError::DupTapFd(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })?),
            Backend::TapName(n) => Backend::TapName(n.clone()),
        };
        Ok(Nic {
            backend,
            mac: self.mac.clone(),
        })
    }
}

#[derive(Debug)]
pub struct LaunchSpec {
    pub(crate) name: String,
    pub(crate) image: GuestImage,
    /// The network namespace QEMU runs in (the virt-launcher pod's).
    pub(crate) netns: Option<PathBuf>,
    pub(crate) nics: Vec<Nic>,
    pub(crate) console_log: PathBuf,
    pub(crate) memory_mb: u32,
    /// The kernel command line ([`CMDLINE`] normally).
    pub(crate) cmdline: String,
    /// QEMU's QMP socket (migration, NIC hot-plug), if any.
    pub(crate) qmp: Option<PathBuf>,
    /// `-incoming <uri>`: the target of a live migration, waiting for the guest.
    pub(crate) incoming: Option<String>,
}

pub struct Qemu {
    pub name: String,
    child: Option<Child>,
    pub(crate) console_log: PathBuf,
    pub(crate) started: Instant,
    pub(crate) accel: &'static str,
    pub argv: Vec<String>,
    /// Its QMP socket, if it has one.
    pub(crate) qmp: Option<PathBuf>,
}

/// `kvm` when a guest really boots with it (nested setups often open /dev/kvm and
/// create VMs that never run), else `tcg`. `SECNET_ACCEL=tcg|kvm` overrides. Probed
/// by booting `image` once per machine boot; the answer is kept next to the image
/// cache (`accel-<boot id>`), so test processes do not each pay for it.
pub fn accel(image: &GuestImage) -> &'static str {
    static ACCEL: OnceLock<&'static str> = OnceLock::new();
    ACCEL.get_or_init(|| match std::env::var("SECNET_ACCEL").as_deref() {
        Ok("kvm") => "kvm",
        Ok("tcg") => "tcg",
        _ => {
            let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .unwrap_or_default()
                .trim()
                .to_string();
            let memo = image
                .dir
                .parent()
                .unwrap_or(&image.dir)
                .join(format!("accel-{boot_id}"));
            match std::fs::read_to_string(&memo).as_deref() {
                Ok("kvm") => "kvm",
                Ok("tcg") => "tcg",
                _ => {
                    let a = if kvm_boots(image) { "kvm" } else { "tcg" };
                    let _ = std::fs::write(&memo, a);
                    a
                }
            }
        }
    })
}

/// Boots `image` with KVM and waits up to 3 s for the agent (KVM boots in well under
/// a second; a broken KVM hangs or fails).
fn kvm_boots(image: &GuestImage) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let spec = LaunchSpec {
        name: "secnet-kvm-probe".into(),
        image: image.clone(),
        netns: None,
        nics: Vec::new(),
        console_log: PathBuf::from("/dev/null"),
        memory_mb: 128,
        cmdline: CMDLINE.into(),
        qmp: None,
        incoming: None,
    };
    let mut cmd = Command::new(QEMU);
    cmd.args(argv(&spec, "kvm"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let Ok(mut child) = crate::lab::command::own_group(&mut cmd).spawn() else {
        return false;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(out) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(super::agent::READY) {
                    let _ = tx.send(());
                    break;
                }
            }
        });
    }
    let ok = rx.recv_timeout(Duration::from_secs(3)).is_ok();
    crate::lab::command::signal_group(&mut child, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    ok
}

/// The kernel command line: console on ttyS0, agent on ttyS1, no reboot on panic,
/// and the probes a tiny guest does not need switched off (faster under TCG).
pub const CMDLINE: &str = "console=ttyS0 panic=-1 rdinit=/init 8250.nr_uarts=2 loglevel=4 \
     i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd cryptomgr.notests tsc=reliable \
     no_timer_check random.trust_cpu=on mitigations=off pci=lastbus=0";

/// QEMU's argument vector (without the program).
pub fn argv(spec: &LaunchSpec, accel: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "-name",
        &spec.name,
        "-accel",
        accel,
        "-M",
        "pc",
        "-m",
        &spec.memory_mb.to_string(),
        "-smp",
        "1",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-kernel",
        &spec.image.kernel.display().to_string(),
        "-initrd",
        &spec.image.initrd.display().to_string(),
        "-append",
        &spec.cmdline,
        "-serial",
        &format!("file:{}", spec.console_log.display()),
        "-serial",
        "stdio",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if accel == "kvm" {
        a.extend(["-cpu".into(), "host".into()]);
    }
    if let Some(q) = &spec.qmp {
        a.extend([
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", q.display()),
        ]);
    }
    if let Some(uri) = &spec.incoming {
        a.extend(["-incoming".into(), uri.clone()]);
    }
    let mut fd = 3;
    for (i, nic) in spec.nics.iter().enumerate() {
        let netdev = match &nic.backend {
            Backend::TapFd(_) => {
                fd += 1;
                format!("tap,id=n{i},fd={}", fd - 1)
            }
            Backend::TapName(name) => {
                format!("tap,id=n{i},ifname={name},script=no,downscript=no")
            }
        };
        a.extend([
            "-netdev".into(),
            netdev,
            "-device".into(),
            format!("virtio-net-pci,netdev=n{i},mac={}", nic.mac),
        ]);
    }
    a
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("failed to enter {netns}: {source}")]
    Enter {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to dup the tap fd: {0}")]
    DupTapFd(#[source] nix::errno::Errno),
    #[error("failed to run {QEMU} (apt-get install qemu-system-x86): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("{QEMU} has no {0} pipe")]
    NoPipe(&'static str),
    #[error("failed to hand QEMU's stdio to the async runtime: {0}")]
    Pipe(#[source] std::io::Error),
}

impl Qemu {
    /// Starts the guest; returns it with the host end of its agent channel (within a
    /// tokio runtime).
    pub fn spawn(spec: LaunchSpec) -> Result<(Qemu, Agent), QemuError> {
        let accel = accel(&spec.image);
        let args = argv(&spec, accel);
        let mut cmd = Command::new(QEMU);
        cmd.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ns) = &spec.netns {
            Enter::net(ns)
                .and_then(|e| e.apply_std(&mut cmd))
                .map_err(|source| QemuError::Enter {
                    netns: ns.display().to_string(),
                    source,
                })?;
        }
        // Tap fds become 3, 4, … in the child. Move them out of that range first so
        // that dup2 never overwrites one still to be placed.
        let mut fds: Vec<OwnedFd> = Vec::new();
        for nic in &spec.nics {
            if let Backend::TapFd(fd) = &nic.backend {
                let high = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(64))
                    .map_err(QemuError::DupTapFd)?;
                // SAFETY: fcntl returned a new descriptor that we own.
                fds.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(high) });
            }
        }
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        // SAFETY: only dup2 and prctl, async-signal-safe, run in the child.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                for (i, fd) in raw.iter().enumerate() {
                    if nix::libc::dup2(*fd, 3 + i as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = crate::lab::command::own_group(&mut cmd)
            .spawn()
            .map_err(QemuError::Spawn)?;
        drop(fds);
        let stdin = child.stdin.take().ok_or(QemuError::NoPipe("stdin"))?;
        let stdout = child.stdout.take().ok_or(QemuError::NoPipe("stdout"))?;
        let agent = Agent::new(
            tokio::process::ChildStdout::from_std(stdout).map_err(QemuError::Pipe)?,
            tokio::process::ChildStdin::from_std(stdin).map_err(QemuError::Pipe)?,
        );
        Ok((
            Qemu {
                name: spec.name,
                child: Some(child),
                console_log: spec.console_log,
                started,
                accel,
                argv: args,
                qmp: spec.qmp,
            },
            agent,
        ))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if QEMU has stopped, with its stderr.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                Some(format!("{status}: {}", err.trim()))
            }
            _ => None,
        }
    }

    /// The kernel console so far (the tail when long).
    pub fn console(&self) -> String {
        console_tail(&self.console_log, 6000)
    }

    /// Kills QEMU and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::lab::command::signal_group(&mut child, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn console_tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_else(|e| format!("(no console log at {}: {e})", path.display()));
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::image::KernelFormat;

    fn spec(nics: Vec<Nic>) -> LaunchSpec {
        LaunchSpec {
            name: "vm".into(),
            image: GuestImage {
                dir: "/c".into(),
                kernel: "/c/vmlinux".into(),
                initrd: "/c/initrd.cpio".into(),
                format: KernelFormat::Pvh,
                kernel_version: "x".into(),
                built: false,
                elapsed: Duration::ZERO,
            },
            netns: None,
            nics,
            console_log: "/tmp/console.log".into(),
            memory_mb: 128,
            cmdline: CMDLINE.into(),
            qmp: None,
            incoming: None,
        }
    }

    #[test]
    fn tap_fds_are_numbered_from_3_and_named_taps_by_ifname() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let s = spec(vec![
            Nic {
                backend: Backend::TapFd(f.into()),
                mac: "02:00:00:00:00:01".into(),
            },
            Nic {
                backend: Backend::TapName("tap-net2".into()),
                mac: "02:00:00:00:00:02".into(),
            },
        ]);
        let a = argv(&s, "tcg").join(" ");
        assert!(
            a.contains(
                "-netdev tap,id=n0,fd=3 -device virtio-net-pci,netdev=n0,mac=02:00:00:00:00:01"
            ),
            "{a}"
        );
        assert!(
            a.contains("-netdev tap,id=n1,ifname=tap-net2,script=no,downscript=no"),
            "{a}"
        );
        assert!(
            a.contains("-serial file:/tmp/console.log -serial stdio"),
            "{a}"
        );
        assert!(a.contains("-accel tcg"));
        assert!(!a.contains("-cpu host"));
    }
}
