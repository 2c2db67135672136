//! secnet's multus on one node as a daemon (thick multus's per-node daemon): what
//! it loaded at start, whether it serves, and its restart.
//!
//! At start it picks the node's cluster network the way multus's config
//! generation does: the first CNI config file, by name, of the node's CNI config
//! dir (`/etc/cni/net.d` on a real node). Every ADD reads that file again, so an
//! edit of it counts for the next pod; a new file that sorts first counts only
//! after a restart. A restart drops what the daemon holds: an ADD arriving while it
//! is down fails (the shim's connection is refused), and an ADD it was serving when
//! it went down fails before its next network (the shim's connection is reset).
//! Kubelet would retry the sandbox; secnet reports the failed start. Either way no
//! pod starts with only some of its networks. What a pod got at ADD (its delegates,
//! for DEL) stays with the pod, as multus keeps it in its on-disk cache.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use super::NetnsError;
use crate::lab::wait::{Pace, Seen, poll_until};
use crate::multus::{Nad, delegate};

/// The node's CNI config dir, inside the node's directory of the run.
pub const CONF_DIR: &str = "net.d";
/// The primary network's conflist every node starts with.
pub const PRIMARY_FILE: &str = "10-secnet-pod-network.conflist";

pub struct MultusDaemon {
    node: String,
    conf_dir: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    serving: bool,
    /// Bumped by every stop: an ADD started under an older one was cut off.
    generation: u64,
    /// The file the cluster network is read from, picked at start.
    cluster_network: Option<PathBuf>,
    /// ADDs being served now.
    in_flight: usize,
}

/// One pod's ADD as the daemon serves it.
pub struct Add<'a> {
    daemon: &'a MultusDaemon,
    generation: u64,
    cluster_network: PathBuf,
}

/// The primary network's conflist of a node whose pods get addresses of `subnet`.
pub fn primary_conflist(network: &str, subnet: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [{
            "type": "bridge",
            "bridge": "cni0",
            "isGateway": true,
            "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}]}
        }]
    })
}

impl MultusDaemon {
    /// Writes the node's primary conflist (`network` on `subnet`) into the node's
    /// CNI config dir under `node_dir` and starts the daemon.
    pub fn start(
        node: &str,
        node_dir: &Path,
        network: &str,
        subnet: &str,
    ) -> Result<MultusDaemon, NetnsError> {
        let conf_dir = node_dir.join(CONF_DIR);
        let file = conf_dir.join(PRIMARY_FILE);
        std::fs::create_dir_all(&conf_dir)
            .and_then(|()| {
                std::fs::write(&file, primary_conflist(network, subnet).to_string() + "\n")
            })
            .map_err(|e| NetnsError::io("write the primary CNI config", &file, e))?;
        let daemon = MultusDaemon {
            node: node.into(),
            conf_dir,
            state: Mutex::new(State::default()),
        };
        daemon.serve()?;
        Ok(daemon)
    }

    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding it leaves plain data behind: keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first CNI config file by name (`.conf`, `.conflist`, `.json`), as multus
    /// picks its cluster network when it generates its config.
    pub fn first_config(&self) -> Result<PathBuf, NetnsError> {
        let entries = std::fs::read_dir(&self.conf_dir)
            .map_err(|e| NetnsError::io("read the CNI config dir", &self.conf_dir, e))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|x| x.to_str()),
                    Some("conf" | "conflist" | "json")
                )
            })
            .collect();
        files.sort();
        files.into_iter().next().ok_or_else(|| {
            NetnsError::io(
                "find a CNI config in",
                &self.conf_dir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no .conf/.conflist file"),
            )
        })
    }

    /// Starts serving: the cluster network's file picked anew.
    fn serve(&self) -> Result<(), NetnsError> {
        let file = self.first_config()?;
        let mut s = self.state();
        s.cluster_network = Some(file);
        s.serving = true;
        Ok(())
    }

    /// Stops: what it held is dropped, ADDs in flight are cut off.
    fn stop(&self) {
        let mut s = self.state();
        s.serving = false;
        s.generation += 1;
        s.cluster_network = None;
    }

    /// Restarts once an ADD is in flight (up to `wait_for_add`), down for `down_for`.
    pub async fn restart(&self, wait_for_add: Duration, down_for: Duration) -> Result<(), String> {
        let seen = poll_until::<(), String, std::convert::Infallible, _, _>(
            wait_for_add,
            Pace::every(Duration::from_millis(2)),
            || {
                let n = self.state().in_flight;
                let seen = if n > 0 {
                    Seen::Ready(())
                } else {
                    Seen::NotYet("none".to_string())
                };
                async move { Ok(seen) }
            },
        )
        .await;
        if let Ok(Err(last)) = seen {
            return Err(format!(
                "waited {wait_for_add:?} for a pod's ADD in flight on node {} to restart multus under it, saw {last}",
                self.node
            ));
        }
        self.stop();
        tokio::time::sleep(down_for).await;
        self.serve().map_err(|e| e.to_string())
    }

    /// A pod's ADD begins: refused while the daemon is down.
    pub fn begin(&self) -> Result<Add<'_>, String> {
        let mut s = self.state();
        match (&s.cluster_network, s.serving) {
            (Some(file), true) => {
                let add = Add {
                    daemon: self,
                    generation: s.generation,
                    cluster_network: file.clone(),
                };
                s.in_flight += 1;
                Ok(add)
            }
            _ => Err(format!(
                "multus on node {} is not serving (restarting): the shim's connection to its daemon was refused",
                self.node
            )),
        }
    }
}

impl Add<'_> {
    /// The cluster network as its file says now: its name and plugin configs.
    pub fn primary(&self) -> Result<(String, Vec<Value>), String> {
        let file = &self.cluster_network;
        let text = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "multus on node {}: cannot read the cluster network's config {}: {e}",
                self.daemon.node,
                file.display()
            )
        })?;
        let nad = Nad {
            namespace: "node".into(),
            name: file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("cluster-network")
                .into(),
            config: text,
            resource_name: None,
        };
        let (_, plugins) = delegate::normalize_config(&nad).map_err(|e| {
            let why = match e {
                crate::multus::MultusError::NadConfig { problem, fix, .. } => {
                    format!("{problem}; {fix}")
                }
                other => other.to_string(),
            };
            format!(
                "multus on node {}: the cluster network's config {}: {why}",
                self.daemon.node,
                file.display()
            )
        })?;
        let name = plugins[0]["name"].as_str().unwrap_or_default().to_string();
        Ok((name, plugins))
    }

    /// Whether the daemon still serves this ADD (not restarted since it began).
    pub fn still_served(&self) -> Result<(), String> {
        let s = self.daemon.state();
        if s.serving && s.generation == self.generation {
            Ok(())
        } else {
            Err(format!(
                "multus on node {} restarted during the pod's ADD: the shim's connection was reset, the networks attached so far are deleted and the start fails",
                self.daemon.node
            ))
        }
    }
}

impl Drop for Add<'_> {
    fn drop(&mut self) {
        let mut s = self.daemon.state();
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

impl super::NetnsCluster {
    /// secnet's multus on the node with index `i`.
    pub(super) fn multus_on(&self, i: usize) -> &MultusDaemon {
        &self.multus[i]
    }

    fn multus_of(&self, node: &str) -> Result<&MultusDaemon, String> {
        self.multus
            .iter()
            .find(|d| d.node == node)
            .ok_or_else(|| format!("no node {node} in this cluster"))
    }

    pub async fn restart_multus(
        &self,
        node: &str,
        wait_for_add: Duration,
        down_for: Duration,
    ) -> Result<(), String> {
        self.multus_of(node)?.restart(wait_for_add, down_for).await
    }

    /// The host path of `file` in `node`'s CNI config dir (a plain file name only).
    fn cni_config_path(&self, node: &str, file: &str) -> Result<PathBuf, String> {
        if file.is_empty() || file.contains('/') || file.starts_with('.') {
            return Err(format!(
                "{file:?} is not a file name for the CNI config dir"
            ));
        }
        Ok(self.multus_of(node)?.conf_dir.join(file))
    }

    /// Replaces `file` at once (written aside, then renamed over it), as a careful
    /// installer does: a pod's ADD reads the old text or the new, whole.
    pub fn write_cni_config(&self, node: &str, file: &str, text: &str) -> Result<(), String> {
        let path = self.cni_config_path(node, file)?;
        let aside = path.with_file_name(format!(".{file}.new"));
        std::fs::write(&aside, text)
            .and_then(|()| std::fs::rename(&aside, &path))
            .map_err(|e| format!("write {}: {e}", path.display()))
    }

    pub fn read_cni_config(&self, node: &str, file: &str) -> Result<String, String> {
        let path = self.cni_config_path(node, file)?;
        std::fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))
    }

    /// The file (name) multus on `node` reads the cluster network from now.
    pub fn primary_cni_config(&self, node: &str) -> Result<String, String> {
        let d = self.multus_of(node)?;
        let s = d.state();
        let file = s
            .cluster_network
            .as_ref()
            .ok_or_else(|| format!("multus on node {node} is not serving"))?;
        Ok(file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_restart_cuts_off_the_add_in_flight_and_reads_the_config_dir_anew() {
        let dir = crate::lab::ScratchDir::new("secnet-multus-daemon").unwrap();
        let d = MultusDaemon::start("node1", dir.path(), "pod-net", "10.9.0.0/24").unwrap();
        let add = d.begin().unwrap();
        let (name, plugins) = add.primary().unwrap();
        assert_eq!(name, "pod-net");
        assert_eq!(plugins[0]["type"], "bridge");
        assert_eq!(plugins[0]["cniVersion"], "1.0.0");
        // A file that sorts first counts only after a restart.
        std::fs::write(
            d.conf_dir().join("05-other.conflist"),
            r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        assert_eq!(add.primary().unwrap().0, "pod-net");
        d.restart(Duration::from_secs(1), Duration::from_millis(20))
            .await
            .unwrap();
        let cut = add.still_served().unwrap_err();
        assert!(cut.contains("restarted during the pod's ADD"), "{cut}");
        drop(add);
        let after = d.begin().unwrap();
        after.still_served().unwrap();
        assert_eq!(after.primary().unwrap().0, "other");
        drop(after);
        // Nothing in flight: the restart waits, then says what it waited for.
        let err = d
            .restart(Duration::from_millis(30), Duration::ZERO)
            .await
            .unwrap_err();
        assert!(err.contains("in flight on node node1"), "{err}");
        d.stop();
        let refused = d.begin().err().unwrap();
        assert!(refused.contains("not serving"), "{refused}");
    }
}
