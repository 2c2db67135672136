//! A node's private mount view: its own `/var/lib/cni`,
//! `/var/lib/kubelet/device-plugins` and `/var/lib/kubelet/pod-resources`, backed by directories of the run, held by a
//! persistent mount namespace file (as `ip netns` does for network namespaces).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::NetnsError;
use crate::lab::run;

/// The node paths that are private to each node, and their backing directory names.
/// The views create the host directories they mount over and never remove them: a
/// directory that is a mount point in another run's view can still be removed from
/// the host (Linux >= 3.18), and the kernel then detaches that view's mount, so that
/// run's device plugin loses `kubelet.sock` and its own socket (it served, but never
/// registered).
pub const PRIVATE: [(&str, &str); 4] = [
    ("/var/lib/cni", "cni"),
    ("/var/lib/kubelet/device-plugins", "device-plugins"),
    // The kubelet's pod-resources socket, where the macvtap CNI checks allocations.
    ("/var/lib/kubelet/pod-resources", "pod-resources"),
    // The node's ovsdb-server socket, where OVS CNIs look by default.
    ("/var/run/openvswitch", "openvswitch"),
];

const T: Duration = Duration::from_secs(10);

/// What the netns node's administrator allows the bundled plugins (its policy file
/// at `crate::cni::chain::NODE_POLICY`): OVS on the default socket and bridge br1
/// with trunks (the ovs-trunk NAD); no standalone macvtap.
pub const NODE_POLICY: &str = "[ovs]\nbridges = br1\ntrunk = true\n";

#[derive(Debug, Default)]
pub struct MountView {
    pub(crate) dir: PathBuf,
    pub(crate) ns_file: PathBuf,
}

impl MountView {
    /// The host-side path of what the node sees at `node_path`.
    pub fn host_path(&self, node_path: &str) -> PathBuf {
        let (_, backing) = PRIVATE
            .iter()
            .find(|(p, _)| *p == node_path)
            .expect("a private node path");
        self.dir.join(backing)
    }

    pub fn create(dir: &Path) -> Result<MountView, NetnsError> {
        for (_, backing) in PRIVATE {
            std::fs::create_dir_all(dir.join(backing))
                .map_err(|e| NetnsError::io("create", &dir.join(backing), e))?;
        }
        let policy = dir.join("cni/secnet/plugins.conf");
        std::fs::create_dir_all(dir.join("cni/secnet"))
            .and_then(|()| std::fs::write(&policy, NODE_POLICY))
            .map_err(|e| NetnsError::io("write", &policy, e))?;
        let ns_file = dir.join("mnt");
        std::fs::write(&ns_file, b"").map_err(|e| NetnsError::io("create", &ns_file, e))?;
        let mut script = String::from("set -e; ");
        for (node_path, backing) in PRIVATE {
            script.push_str(&format!(
                "mkdir -p {node_path}; mount --bind {} {node_path}; ",
                dir.join(backing).display()
            ));
        }
        let mount_arg = format!("--mount={}", ns_file.display());
        // Slave propagation: pod namespaces mounted on the host later (/run/netns/…)
        // appear in the view, while the view's own bind mounts stay inside it.
        run(
            "unshare",
            &[&mount_arg, "--propagation", "slave", "sh", "-c", &script],
            T,
        )?;
        Ok(MountView {
            dir: dir.to_path_buf(),
            ns_file,
        })
    }

    pub fn destroy(&self) -> Result<(), NetnsError> {
        run("umount", &[&self.ns_file.display().to_string()], T)?;
        Ok(())
    }
}

/// Makes `run_dir` a private mount point: persistent mount namespace files may only
/// live on a mount whose propagation is private.
pub fn privatize(run_dir: &Path) -> Result<(), NetnsError> {
    let d = run_dir.display().to_string();
    run("mount", &["--bind", &d, &d], T)?;
    run("mount", &["--make-private", &d], T)?;
    Ok(())
}

/// Undoes `privatize`. A scenario running next to this one may be creating a mount
/// namespace at this moment (its copy of the mount table holds this one busy for a
/// while): then the mount is detached lazily, which frees the directory at once.
pub fn unprivatize(run_dir: &Path) -> Result<(), NetnsError> {
    let d = run_dir.display().to_string();
    if run("umount", &[&d], T).is_err() {
        run("umount", &["--lazy", &d], T)?;
    }
    Ok(())
}
