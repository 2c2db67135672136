//! A bare node's private mount view: the kubelet's, containerd's and CNI's host
//! paths (`/var/lib/kubelet`, `/run/containerd`, `/opt/cni/bin`, …) bound to the
//! node's own directories, held by a persistent mount namespace file. Its daemons,
//! their shims and containers all live in it; what they mount stays in it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::lab::{CommandError, run};

const T: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("failed to create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to make the mount view {ns_file}: {source}")]
    Unshare {
        ns_file: PathBuf,
        source: CommandError,
    },
}

#[derive(Debug)]
pub struct NodeView {
    pub(crate) ns_file: PathBuf,
}

impl NodeView {
    /// `private`: node path → backing directory (created here).
    pub fn create(ns_file: &Path, private: &[(String, PathBuf)]) -> Result<NodeView, ViewError> {
        let mut script = String::from("set -e; ");
        for (node_path, backing) in private {
            std::fs::create_dir_all(backing).map_err(|source| ViewError::Create {
                path: backing.clone(),
                source,
            })?;
            // The mount point is created on the host (as the netns views do) and left
            // there: another run's view may hold it as a mount point.
            script.push_str(&format!(
                "mkdir -p {node_path}; mount --bind {} {node_path}; ",
                backing.display()
            ));
        }
        // Shared inside the view (still a slave of the host's): what the kubelet and
        // runc mount with Bidirectional propagation reaches the node's other processes.
        script.push_str("mount --make-rshared /");
        std::fs::write(ns_file, b"").map_err(|source| ViewError::Create {
            path: ns_file.to_path_buf(),
            source,
        })?;
        let mount_arg = format!("--mount={}", ns_file.display());
        // Slave: the host's later mounts (/run/netns/<node>) still appear inside.
        run(
            "unshare",
            &[&mount_arg, "--propagation", "slave", "sh", "-c", &script],
            T,
        )
        .map_err(|source| ViewError::Unshare {
            ns_file: ns_file.to_path_buf(),
            source,
        })?;
        Ok(NodeView {
            ns_file: ns_file.to_path_buf(),
        })
    }

    /// Releases the namespace file; the view dies with its last process.
    pub fn destroy(ns_file: &Path) -> Result<(), CommandError> {
        let f = ns_file.display().to_string();
        if run("umount", &[&f], T).is_err() {
            run("umount", &["--lazy", &f], T)?;
        }
        Ok(())
    }
}
