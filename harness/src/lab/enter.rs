//! Where a child process runs: which network and mount namespaces it enters between
//! fork and exec (the only place secnet changes namespaces of a process).

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
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

    /// Duplicates of the namespace fds, owned by the command's pre-exec hook so they
    /// live as long as the command (the caller's `Enter` may be dropped earlier).
    pub(crate) fn fds(&self) -> std::io::Result<EnterFds> {
        let net = match &self.net {
            Some(ns) => Some(
                nix::unistd::dup(unsafe { BorrowedFd::borrow_raw(ns.raw_fd()) })
                    .map_err(std::io::Error::from)?,
            ),
            None => None,
        };
        let mnt = match &self.mnt {
            Some(f) => Some(f.try_clone()?.into()),
            None => None,
        };
        Ok(EnterFds { net, mnt })
    }

    /// Makes `cmd`'s child enter the namespaces before exec.
    pub fn apply(&self, cmd: &mut tokio::process::Command) -> std::io::Result<()> {
        let EnterFds { net, mnt } = self.fds()?;
        if net.is_none() && mnt.is_none() {
            return Ok(());
        }
        // SAFETY: only setns(2), which is async-signal-safe, runs in the child.
        unsafe {
            cmd.pre_exec(move || {
                enter(
                    net.as_ref().map(AsRawFd::as_raw_fd),
                    mnt.as_ref().map(AsRawFd::as_raw_fd),
                )
            });
        }
        Ok(())
    }

    /// The same for a std command.
    pub fn apply_std(&self, cmd: &mut std::process::Command) -> std::io::Result<()> {
        self.fds()?.install(cmd);
        Ok(())
    }
}

/// Namespace fds a child enters between fork and exec (see [`Enter::fds`]).
pub(crate) struct EnterFds {
    net: Option<OwnedFd>,
    mnt: Option<OwnedFd>,
}

impl EnterFds {
    pub(crate) fn install(self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let EnterFds { net, mnt } = self;
        if net.is_none() && mnt.is_none() {
            return;
        }
        // SAFETY: only setns(2), which is async-signal-safe, runs in the child.
        unsafe {
            cmd.pre_exec(move || {
                enter(
                    net.as_ref().map(AsRawFd::as_raw_fd),
                    mnt.as_ref().map(AsRawFd::as_raw_fd),
                )
            });
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
