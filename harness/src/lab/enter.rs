//! Where a child process runs: which network and mount namespaces it enters between
//! fork and exec (the only place secnet changes namespaces of a process).

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use cni_kit::netns::NetNs;

#[derive(Debug, Default)]
pub struct Enter {
    pub net: Option<NetNs>,
    /// A mount namespace file (the node's private view of /var/lib/cni, ...).
    pub mnt: Option<File>,
}

impl Enter {
    pub fn net(path: impl AsRef<Path>) -> std::io::Result<Enter> {
        Ok(Enter {
            net: Some(NetNs::open(path)?),
            mnt: None,
        })
    }

    pub fn with_mnt(mut self, path: impl AsRef<Path>) -> std::io::Result<Enter> {
        self.mnt = Some(File::open(path)?);
        Ok(self)
    }

    fn fds(&self) -> (Option<RawFd>, Option<RawFd>) {
        (
            self.net.as_ref().map(NetNs::raw_fd),
            self.mnt.as_ref().map(|f| f.as_raw_fd()),
        )
    }

    /// Makes `cmd`'s child enter the namespaces before exec.
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        let (net, mnt) = self.fds();
        if net.is_none() && mnt.is_none() {
            return;
        }
        // SAFETY: only setns(2), which is async-signal-safe, runs in the child.
        unsafe {
            cmd.pre_exec(move || enter(net, mnt));
        }
    }

    /// The same for a std command.
    pub fn apply_std(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let (net, mnt) = self.fds();
        if net.is_none() && mnt.is_none() {
            return;
        }
        // SAFETY: as above.
        unsafe {
            cmd.pre_exec(move || enter(net, mnt));
        }
    }
}

fn enter(net: Option<RawFd>, mnt: Option<RawFd>) -> std::io::Result<()> {
    // Mount first: entering a mount namespace needs a single-threaded process, which
    // the freshly forked child is.
    for (fd, flag) in [
        (mnt, nix::libc::CLONE_NEWNS),
        (net, nix::libc::CLONE_NEWNET),
    ] {
        if let Some(fd) = fd
            && unsafe { nix::libc::setns(fd, flag) } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
