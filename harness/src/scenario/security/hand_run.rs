//! The device plugin under test run by hand, outside any cluster: in a namespace
//! of the scenario's choice, on a lower device of its making, registered with the
//! kubelet double on a socket directory of the scenario's. For what a cluster
//! cannot set up: the machine's own namespace, a lower device the node would not
//! have, a namespace whose indexes the scenario fills.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deviceplugin_api::HEALTHY;
use serde_json::Value;

use super::super::kit::{lab_failure, scratch_dir};
use crate::kubelet::DeviceManager;
use crate::lab::enter::Enter;
use crate::lab::{Ns, command};
use crate::scenario::{Ctx, Failure};

const PREFIX: &str = "macvtap.network.kubevirt.io";
/// Upstream's device plugin registers ~10 s after start.
const START_BOUND: Duration = Duration::from_secs(20);

/// The device plugin under test, started by hand in `netns` (`None`: secnet's own)
/// with a one-device resource on `lower`, registered with a kubelet double.
pub(super) struct HandRun {
    child: Child,
    kubelet: Option<DeviceManager>,
    pub(crate) resource: String,
    /// The resource's one device ID (`<name>Mvp0`).
    pub(crate) id: String,
    dir: crate::lab::ScratchDir,
}

impl HandRun {
    pub async fn start(
        ctx: &Ctx,
        tag: &str,
        netns: Option<&Ns>,
        lower: &str,
    ) -> Result<HandRun, Failure> {
        let Some((program, args)) = ctx.device_plugin.split_first() else {
            return Err(Failure::error("no device plugin command to run"));
        };
        let dir = scratch_dir(ctx, tag)?;
        let kubelet = DeviceManager::start(dir.path())
            .map_err(|e| Failure::caused("failed to start the kubelet double", e).harness())?;
        // Unique per run and scenario: macvtap names derive from the device ID, and
        // the machine's namespace is shared with every other run.
        let name: String = format!("{}{}{tag}", ctx.run_id, ctx.scope)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let conf = format!(r#"[{{"name": "{name}", "lowerDevice": "{lower}", "capacity": 1}}]"#);
        let log = std::fs::File::create(dir.path().join("plugin.log"))?;
        // A private mount of the socket directory where upstream's plugin looks (it
        // has no flag for it); the bundled one is also told by its environment.
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "slave", "sh", "-c"])
            .arg(r#"d=/var/lib/kubelet/device-plugins; if [ -d $d ]; then mount --bind "$0" $d; fi; exec "$@""#)
            .arg(dir.path())
            .arg(program)
            .args(args)
            .env("DP_MACVTAP_CONF", &conf)
            .env("DP_MACVTAP_DEVICE_PLUGIN_DIR", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(ns) = netns {
            Enter::net(ns.path())
                .and_then(|e| e.apply_std(&mut cmd))
                .map_err(|e| Failure::caused("failed to enter the node lab", e).harness())?;
        }
        let child = command::own_group(&mut cmd)
            .spawn()
            .map_err(|e| Failure::caused(format!("failed to run {program}"), e).harness())?;
        let resource = format!("{PREFIX}/{name}");
        let run = HandRun {
            child,
            kubelet: Some(kubelet),
            id: format!("{name}Mvp0"),
            resource,
            dir,
        };
        run.kubelet()
            .wait_for_devices(&run.resource, 1, HEALTHY, START_BOUND)
            .await
            .map_err(|e| {
                Failure::caused("the device plugin did not list its device", e).with_line(run.log())
            })?;
        Ok(run)
    }

    pub fn kubelet(&self) -> &DeviceManager {
        self.kubelet.as_ref().expect("a kubelet until stopped")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("plugin.log")).unwrap_or_default()
    }

    /// Allocate of the one device: the ifindex of the `/dev/tapN` handed out.
    pub async fn allocate_index(&self) -> Result<u32, Failure> {
        let answer = self
            .kubelet()
            .allocate(&self.resource, std::slice::from_ref(&self.id))
            .await
            .map_err(|e| Failure::caused("Allocate failed", e).with_line(self.log()))?;
        let path = answer
            .container_responses
            .first()
            .and_then(|c| c.devices.first())
            .map(|d| d.host_path.clone())
            .unwrap_or_default();
        path.strip_prefix("/dev/tap")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Failure::msg(format!("Allocate handed out {path:?}, not a /dev/tapN")))
    }

    pub async fn stop(mut self) {
        command::reap_group(&mut self.child, Duration::from_secs(3));
        if let Some(kubelet) = self.kubelet.take() {
            kubelet.stop().await;
        }
    }
}

impl Drop for HandRun {
    fn drop(&mut self) {
        command::signal_group(&mut self.child, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// The ifindex `link` got in `netns` (`None`: secnet's own).
pub(super) fn ifindex(netns: Option<&Ns>, link: &str) -> Result<u32, Failure> {
    let shown = in_ns(netns, &["-j", "link", "show", link])?;
    serde_json::from_str::<Value>(&shown)?
        .get(0)
        .and_then(|l| l["ifindex"].as_u64())
        .map(|i| i as u32)
        .ok_or_else(|| Failure::msg(format!("{link} has no ifindex")))
}

/// `ip <args>` in `netns` (`None`: secnet's own).
pub(super) fn in_ns(netns: Option<&Ns>, args: &[&str]) -> Result<String, Failure> {
    let mut full = Vec::new();
    if let Some(ns) = netns {
        full.extend(["-n", ns.name.as_str()]);
    }
    full.extend_from_slice(args);
    crate::lab::run("ip", &full, Duration::from_secs(10)).map_err(lab_failure)
}

/// Moves `netns`'s ifindex counter ~3000 further (1500 veth pairs in one
/// `ip -batch`, ~0.3 s; they go with the namespace). /dev/tapN is the machine's
/// while indexes are per namespace, and scenarios and tests beside this one make
/// macvtaps in fresh namespaces at small indexes all the time: their nodes come and
/// go at the indexes a young namespace hands out next (in CI a squatter held only
/// 68 of its 80 nodes). Not ~600: the tap-number suite test moves its node there,
/// and the squatter's 80 nodes there failed it.
pub(super) fn move_counter_past_neighbours(ctx: &Ctx, netns: &Ns) -> Result<(), Failure> {
    let batch: String = (0..1500)
        .map(|i| format!("link add fill{i} type veth peer name fillp{i}\n"))
        .collect();
    let file = ctx.work_dir.join(format!(
        "{}-{}-{}-fill.batch",
        ctx.run_id, ctx.scope, netns.name
    ));
    std::fs::write(&file, batch)?;
    let filled = in_ns(Some(netns), &["-batch", &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    filled.map(|_| ())
}

/// Both ends are up: a lower device must be up for its devices to be healthy.
pub(super) fn counter_probe(netns: Option<&Ns>, name: &str, far: &Ns) -> Result<u32, Failure> {
    in_ns(
        netns,
        &[
            "link", "add", name, "up", "type", "veth", "peer", "name", "far", "netns", &far.name,
        ],
    )?;
    in_ns(Some(far), &["link", "set", "far", "up"])?;
    ifindex(netns, name)
}
