//! What one side of a cluster comparison saw while a scenario ran: each pod's
//! network-status and device IDs as the cluster handed the pod out, each node's
//! extended resources whenever the scenario read them, and every call the plugins
//! under test received (through [`Recording`] wrappers).
//!
//! The recorder is process-wide and off unless `secnet compare` turned it on: the
//! two sides run one scenario at a time, so "the scenario being recorded" is one
//! slot, and `cluster::any::AnyCluster` feeds it without the scenarios knowing
//! (plain values: this module sits below the clusters).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Everything one side observed during one scenario, in the order it happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub(crate) pods: Vec<PodObs>,
    pub(crate) resources: Vec<ResourcesObs>,
    pub(crate) cni_calls: Vec<CniCallObs>,
}

/// A pod as `create_pod` returned it (or its refusal).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodObs {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) node: String,
    /// False when the cluster refused the pod (the message is not compared: the
    /// emulation and the API server word their refusals differently).
    pub(crate) created: bool,
    /// The `k8s.v1.cni.cncf.io/network-status` annotation, byte for byte.
    pub(crate) network_status: Option<String>,
    /// Device IDs per resource from the kubelet's checkpoint (the pod's entries of
    /// `kubelet_internal_checkpoint`).
    pub(crate) devices: BTreeMap<String, Vec<String>>,
}

/// One node's extended resources as a scenario read them (consecutive identical
/// readings of a node are one: scenarios poll, and their polls are not the point).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourcesObs {
    pub(crate) node: String,
    pub(crate) capacity: BTreeMap<String, u64>,
    pub(crate) allocatable: BTreeMap<String, u64>,
    pub(crate) allocated: BTreeMap<String, u64>,
}

/// One call a plugin under test received, as its recording wrapper saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CniCallObs {
    pub(crate) plugin: String,
    pub(crate) command: String,
    pub(crate) container_id: String,
    pub(crate) ifname: String,
    pub(crate) args: String,
    /// The network configuration on stdin (what multus built for the delegate).
    pub(crate) config: String,
    /// The plugin's exit status.
    pub(crate) status: i32,
}

static CURRENT: Mutex<Option<Observed>> = Mutex::new(None);

fn current() -> std::sync::MutexGuard<'static, Option<Observed>> {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts recording a scenario (what was recorded before is dropped).
pub fn begin() {
    *current() = Some(Observed::default());
}

/// Stops recording; what was recorded since [`begin`].
pub fn end() -> Observed {
    current().take().unwrap_or_default()
}

/// Whether a scenario is being recorded.
pub fn recording() -> bool {
    current().is_some()
}

/// What a cluster handed out for one pod: where, its network-status annotation,
/// its device IDs per resource (`None`: the cluster refused the pod).
pub struct PodHandedOut {
    pub(crate) namespace: String,
    pub(crate) node: String,
    pub(crate) network_status: Option<String>,
    pub(crate) devices: BTreeMap<String, Vec<String>>,
}

/// A pod the cluster handed out (or refused: `pod` is None); `namespace` is the
/// fixture's, used for a refused pod.
pub fn pod_created(namespace: &str, name: &str, pod: Option<PodHandedOut>) {
    if let Some(obs) = current().as_mut() {
        let created = pod.is_some();
        let pod = pod.unwrap_or(PodHandedOut {
            namespace: namespace.into(),
            node: String::new(),
            network_status: None,
            devices: BTreeMap::new(),
        });
        obs.pods.push(PodObs {
            // Where the cluster put it (a real cluster's run namespace).
            namespace: pod.namespace,
            name: name.into(),
            node: pod.node,
            created,
            network_status: pod.network_status,
            devices: pod.devices,
        });
    }
}

/// A node's extended-resource accounting as a scenario read it.
pub fn node_resources(node: &str, reading: ResourcesObs) {
    if let Some(obs) = current().as_mut() {
        let reading = ResourcesObs {
            node: node.into(),
            ..reading
        };
        let last = obs.resources.iter().rev().find(|o| o.node == node);
        if last != Some(&reading) {
            obs.resources.push(reading);
        }
    }
}

/// Recording wrappers for the CNIs under test: a directory of `/bin/sh` scripts,
/// one per plugin, each writing the call (environment, stdin, exit status) into
/// `calls/` and running the real binary with the same stdin and arguments. The
/// wrappers are what the cluster runs (netns: secnet's multus execs them; bare:
/// the plugins image carries them and real multus execs them on the node), so both
/// sides' calls are seen the same way. VERSION calls are passed through unrecorded.
pub struct Recording {
    pub(crate) bin_dir: PathBuf,
    pub(crate) calls_dir: PathBuf,
}

impl Recording {
    /// Writes a wrapper per `(name, real binary)` under `dir` (which must be visible
    /// at the same path on the nodes: a scratch dir under `$TMPDIR`).
    pub fn create(dir: &Path, plugins: &[(String, PathBuf)]) -> std::io::Result<Recording> {
        use std::os::unix::fs::PermissionsExt as _;
        let bin_dir = dir.join("bin");
        let calls_dir = dir.join("calls");
        std::fs::create_dir_all(&bin_dir)?;
        std::fs::create_dir_all(&calls_dir)?;
        for (name, real) in plugins {
            let real = std::fs::canonicalize(real)?;
            let path = bin_dir.join(name);
            std::fs::write(&path, wrapper(name, &real, &calls_dir))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(Recording { bin_dir, calls_dir })
    }

    /// The calls recorded since the last `take`, oldest first; removes them.
    pub fn take(&self) -> Vec<CniCallObs> {
        let mut stems: Vec<String> = std::fs::read_dir(&self.calls_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".env").map(str::to_string)
            })
            .collect();
        // `<nanoseconds>-<pid>`: the time sorts them (same width until 2286).
        stems.sort();
        let calls = stems
            .iter()
            .filter_map(|stem| parse_call(&self.calls_dir, stem))
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.calls_dir) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        calls
    }
}

fn parse_call(dir: &Path, stem: &str) -> Option<CniCallObs> {
    let env = std::fs::read_to_string(dir.join(format!("{stem}.env"))).ok()?;
    let field = |key: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_default()
            .to_string()
    };
    let status = std::fs::read_to_string(dir.join(format!("{stem}.rc")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        // No status file: the wrapper was killed while the plugin ran.
        .unwrap_or(-1);
    Some(CniCallObs {
        plugin: field("plugin"),
        command: field("command"),
        container_id: field("containerid"),
        ifname: field("ifname"),
        args: field("args"),
        config: std::fs::read_to_string(dir.join(format!("{stem}.stdin"))).unwrap_or_default(),
        status,
    })
}

/// The wrapper script for one plugin.
fn wrapper(name: &str, real: &Path, calls: &Path) -> String {
    let (real, calls) = (real.display(), calls.display());
    format!(
        "#!/bin/sh\n\
         # secnet compare: records this CNI call, then runs the plugin under test.\n\
         case \"$CNI_COMMAND\" in ADD|DEL|CHECK|GC|STATUS) ;; *) exec '{real}' \"$@\" ;; esac\n\
         f='{calls}'/$(date +%s%N)-$$\n\
         cat > \"$f.stdin\"\n\
         printf 'plugin=%s\\ncommand=%s\\ncontainerid=%s\\nifname=%s\\nargs=%s\\n' '{name}' \"$CNI_COMMAND\" \"$CNI_CONTAINERID\" \"$CNI_IFNAME\" \"$CNI_ARGS\" > \"$f.tmp\"\n\
         '{real}' \"$@\" < \"$f.stdin\"\n\
         rc=$?\n\
         echo $rc > \"$f.rc\"\n\
         mv \"$f.tmp\" \"$f.env\"\n\
         exit $rc\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wrapper records a real call of a real program and passes stdin,
    /// arguments, stdout and the exit status through.
    #[test]
    fn the_wrapper_records_a_call_and_passes_everything_through() {
        let dir = crate::lab::ScratchDir::new("secnet-record-test").unwrap();
        let fake = dir.path().join("plugin.sh");
        std::fs::write(&fake, "#!/bin/sh\ncat\necho \"args:$*\"\nexit 3\n").unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rec = Recording::create(
            &dir.path().join("rec"),
            &[("macvtap".to_string(), fake.clone())],
        )
        .unwrap();
        let run = |command: &str| {
            let mut child = std::process::Command::new(rec.bin_dir.join("macvtap"))
                .arg("x")
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", "c1")
                .env("CNI_IFNAME", "net1")
                .env("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"{\"type\":\"macvtap\"}")
                .unwrap();
            child.wait_with_output().unwrap()
        };
        let out = run("ADD");
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "{\"type\":\"macvtap\"}args:x\n"
        );
        run("VERSION");
        run("DEL");
        let calls = rec.take();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(calls[0].command, "ADD");
        assert_eq!(calls[1].command, "DEL");
        assert_eq!(calls[0].plugin, "macvtap");
        assert_eq!(calls[0].args, "IgnoreUnknown=1;K8S_POD_NAME=p");
        assert_eq!(calls[0].config, "{\"type\":\"macvtap\"}");
        assert_eq!((calls[0].ifname.as_str(), calls[0].status), ("net1", 3));
        assert!(rec.take().is_empty(), "take empties the directory");
    }
}
