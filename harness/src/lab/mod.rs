//! Throw-away network namespaces and links for tests and scenarios. Every name
//! carries the run id; everything is removed on drop, also when a test panics.

pub mod command;
pub mod enter;
pub mod liveness;
pub mod node;
pub mod release;
pub mod scratch;
pub mod solicit;
pub mod wait;

use std::path::PathBuf;
use std::time::Duration;

use cni_kit::netns::NetNs;

pub use command::{Cmd, CommandError, run};
pub use scratch::ScratchDir;

/// Whether `name` (a namespace or run directory) is secnet's, optionally of run `run_id`.
pub fn is_ours(name: &str, run_id: Option<&str>) -> bool {
    let id = name.split_once('-').map_or(name, |(id, _)| id);
    let shaped = id.len() == 8
        && id.starts_with("sn")
        && id[2..].chars().all(|c| c.is_ascii_hexdigit())
        && name.len() > id.len() + 1;
    shaped && run_id.is_none_or(|r| r == id)
}

/// A new run id: `sn` + 6 hex digits, short enough to leave room in 15-character
/// interface names and recognisable by `secnet clean`; marked alive for as long
/// as this process lives (`liveness::mark_live`).
pub fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{}-{nanos}-{:?}",
        std::process::id(),
        std::thread::current().id()
    );
    let id = format!(
        "sn{:06x}",
        xxhash_rust::xxh64::xxh64(seed.as_bytes(), 0) & 0xff_ffff
    );
    // Held for this process's life: `secnet clean` leaves a live run alone.
    liveness::mark_live(&id);
    id
}

/// A named network namespace created by a [`Lab`].
#[derive(Debug, Clone)]
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    pub fn path_str(&self) -> String {
        self.path().display().to_string()
    }

    pub fn open(&self) -> std::io::Result<NetNs> {
        NetNs::open(self.path())
    }
}

const IP_TIMEOUT: Duration = Duration::from_secs(10);

/// Namespaces owned by one run.
#[derive(Debug)]
pub struct Lab {
    pub run_id: String,
    /// Name part between the run id and the namespace's own name (e.g. a scenario).
    scope: String,
    namespaces: Vec<Ns>,
}

impl Lab {
    pub fn new() -> Lab {
        Lab::scoped(&new_run_id(), "")
    }

    /// A lab of run `run_id` whose namespaces are named `<run id>-<scope>-<name>`.
    pub fn scoped(run_id: &str, scope: &str) -> Lab {
        Lab {
            run_id: run_id.to_string(),
            scope: scope.to_string(),
            namespaces: Vec::new(),
        }
    }

    /// The prefix every namespace of this lab carries.
    pub fn prefix(&self) -> String {
        if self.scope.is_empty() {
            self.run_id.clone()
        } else {
            format!("{}-{}", self.run_id, self.scope)
        }
    }

    /// Creates namespace `<run id>-<name>` with loopback up.
    pub fn netns(&mut self, name: &str) -> Result<Ns, CommandError> {
        let ns = Ns {
            name: format!("{}-{name}", self.prefix()),
        };
        run("ip", &["netns", "add", &ns.name], IP_TIMEOUT)?;
        self.namespaces.push(ns.clone());
        self.ip(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, ns: &Ns, args: &[&str]) -> Result<String, CommandError> {
        let mut full = vec!["-n", ns.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full, IP_TIMEOUT)
    }

    /// A veth pair `a_name` in `a` and `b_name` in `b`, both up.
    pub fn veth(&self, a: &Ns, a_name: &str, b: &Ns, b_name: &str) -> Result<(), CommandError> {
        self.ip(
            a,
            &[
                "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", &b.name,
            ],
        )?;
        self.ip(a, &["link", "set", a_name, "up"])?;
        self.ip(b, &["link", "set", b_name, "up"])?;
        Ok(())
    }

    /// Deletes one namespace now (e.g. to play a node reboot before CNI DEL).
    /// A namespace that is already gone is fine.
    pub fn delete_netns(&mut self, ns: &Ns) -> Result<(), CommandError> {
        self.namespaces.retain(|n| n.name != ns.name);
        if !ns.path().exists() {
            return Ok(());
        }
        release::record_namespace(&ns.name);
        run("ip", &["netns", "del", &ns.name], IP_TIMEOUT).map(|_| ())
    }

    /// The namespaces this lab owns, in creation order.
    pub fn namespaces(&self) -> &[Ns] {
        &self.namespaces
    }

    /// Gives up ownership: the namespaces outlive this lab (for `--keep`).
    pub fn forget(&mut self) -> Vec<String> {
        self.namespaces.drain(..).map(|n| n.name).collect()
    }

    /// Deletes every namespace of this lab; links inside go with them. Returns once
    /// the kernel has released their macvtaps' `/dev/tapN` too (up to 10 s; the
    /// kernel frees a deleted namespace asynchronously), or names what is left.
    pub fn teardown(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for ns in self.namespaces.drain(..).rev() {
            if !ns.path().exists() {
                continue;
            }
            release::record_namespace(&ns.name);
            if let Err(e) = run("ip", &["netns", "del", &ns.name], IP_TIMEOUT) {
                errors.push(e.to_string());
            }
        }
        let mine = format!("{}-", self.prefix());
        if let Err(left) = release::wait(|owner| owner.starts_with(&mine), RELEASE_TIMEOUT) {
            errors.push(format!(
                "the kernel did not release {} within {RELEASE_TIMEOUT:?} after the namespaces of {} were deleted",
                left.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                self.prefix()
            ));
        }
        errors
    }
}

/// How long a run waits for the kernel to release what it deleted.
pub(crate) const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for e in self.teardown() {
            eprintln!("secnet: cleanup: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_teardown_returns_once_the_kernel_released_the_taps() {
        if !crate::prereq::require_root("lab teardown waits for /dev/tapN") {
            return;
        }
        let mut lab = Lab::new();
        let mut taps = Vec::new();
        // Several namespaces with macvtaps: the kernel frees them from a workqueue,
        // so without the wait some /dev/tapN are still there when `ip netns del` returns.
        // ifindexes of this lab's own (as NodeLab does): /dev/tapN is host-wide.
        let base = 200_000 + (xxhash_rust::xxh64::xxh64(lab.prefix().as_bytes(), 0) % 0x7fff) * 100;
        for i in 0..4 {
            let ns = lab.netns(&format!("t{i}")).unwrap();
            lab.ip(
                &ns,
                &["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
            )
            .unwrap();
            let index = (base + i).to_string();
            lab.ip(
                &ns,
                &[
                    "link", "add", "mt0", "index", &index, "link", "v0", "type", "macvtap",
                ],
            )
            .unwrap();
            let found = release::tap_nodes_in(&ns.name);
            assert_eq!(found.len(), 1, "{found:?}");
            assert!(found[0].exists(), "{}", found[0].display());
            taps.extend(found);
        }
        let errors = lab.teardown();
        assert!(errors.is_empty(), "{errors:?}");
        for t in &taps {
            assert!(!t.exists(), "{} still there after teardown", t.display());
        }
        let prefix = format!("{}-", lab.prefix());
        assert!(release::pending(|o| o.starts_with(&prefix)).is_empty());
    }
}
