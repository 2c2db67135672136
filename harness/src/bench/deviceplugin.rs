//! The macvtap device plugin against the kubelet double, in a node namespace with a
//! veth lower device (the default topology's uplink): start → Register, start → all devices Healthy, Allocate
//! latency over distinct IDs, lower link down → Unhealthy, kubelet restart →
//! re-registration, and the plugin's peak RSS.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deviceplugin_api::{HEALTHY, UNHEALTHY};

use super::rss::{MemRow, vm_hwm_kb};
use super::stats::Stats;
use super::{BenchError, Row};
use crate::kubelet::DeviceManager;
use crate::lab::enter::Enter;
use crate::lab::node::NodeLab;

/// Upstream's device plugin registers ~10 s after start: give it room.
const BOUND: Duration = Duration::from_secs(20);
const RESOURCE: &str = "macvtap.network.kubevirt.io/dataplane";
pub const NAME: &str = "bundled macvtap device plugin";

/// The plugin process; killed on drop.
struct Plugin(Child);

impl Plugin {
    fn spawn(bin: &Path, nl: &NodeLab, dir: &Path, conf: &str) -> Result<Plugin, BenchError> {
        let log_path = dir.join("plugin.log");
        let failed = |msg: String| BenchError::Plugin {
            plugin: bin.display().to_string(),
            command: "start".into(),
            msg,
        };
        let log = std::fs::File::create(&log_path)
            .map_err(|e| failed(format!("failed to create {}: {e}", log_path.display())))?;
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("RUST_LOG", "warn")
            .env("DP_MACVTAP_CONF", conf)
            .arg("--device-plugin-dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| failed(format!("failed to reopen {}: {e}", log_path.display())))?,
            )
            .stderr(log);
        Enter::net(nl.node.path())
            .and_then(|e| e.apply_std(&mut cmd))
            .map_err(BenchError::enter(&nl.node))?;
        cmd.spawn()
            .map(Plugin)
            .map_err(|e| failed(format!("failed to run {}: {e}", bin.display())))
    }

    /// SIGTERM, then wait (SIGKILL after `BOUND`).
    fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + BOUND;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn row(name: &str, what: &str, samples: &[Duration]) -> Row {
    Row {
        name: format!("{name}: {what}"),
        operation: "device plugin".into(),
        stats: Stats::of(samples),
        ratio_to_reference: None,
        reference: None,
    }
}

/// Measures the plugin at `bin`; `quick` takes fewer samples (Allocate stays at
/// 50 distinct IDs).
pub async fn run(bin: &Path, name: &str, quick: bool) -> Result<(Vec<Row>, MemRow), BenchError> {
    if !bin.exists() {
        return Err(BenchError::NoBinary(bin.to_path_buf()));
    }
    let (starts, devices, flaps) = if quick { (3, 50, 3) } else { (10, 100, 10) };
    let nl = NodeLab::new()?;
    let conf = format!(
        r#"[{{"name": "dataplane", "lowerDevice": "{}", "capacity": {devices}}}]"#,
        nl.uplink
    );
    let dir = crate::lab::ScratchDir::new(&format!("{}-dp", nl.lab.run_id))
        .map_err(BenchError::Scratch)?;
    let mut kubelet = DeviceManager::start(dir.path())?;

    let (mut to_register, mut to_healthy) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let started = Instant::now();
        let plugin = Plugin::spawn(bin, &nl, dir.path(), &conf)?;
        let reg = kubelet
            .wait_for_registration(RESOURCE, started, BOUND)
            .await?;
        let view = kubelet
            .wait_until("a fresh healthy device list", BOUND, |s| {
                s.resource(RESOURCE)
                    .filter(|r| {
                        r.updated_at.is_some_and(|t| t > started) && r.allocatable() == devices
                    })
                    .cloned()
            })
            .await?;
        to_register.push(reg.at - started);
        to_healthy.push(view.updated_at.unwrap_or_else(Instant::now) - started);
        plugin.terminate();
    }

    let plugin = Plugin::spawn(bin, &nl, dir.path(), &conf)?;
    kubelet
        .wait_for_devices(RESOURCE, devices, HEALTHY, BOUND)
        .await?;
    // Each Allocate makes a fresh macvtap for a distinct device ID.
    let mut allocate = Vec::new();
    for i in 0..devices {
        let id = format!("dataplaneMvp{i}");
        let t = Instant::now();
        kubelet.allocate(RESOURCE, &[id]).await?;
        allocate.push(t.elapsed());
    }

    let (mut to_unhealthy, mut to_healthy_again) = (Vec::new(), Vec::new());
    for _ in 0..flaps {
        for (state, health, out) in [
            ("down", UNHEALTHY, &mut to_unhealthy),
            ("up", HEALTHY, &mut to_healthy_again),
        ] {
            // Timed from issuing `ip link set` (its spawn included): the plugin's
            // netlink listener often reports before `ip` has even exited.
            let acked = Instant::now();
            nl.lab.ip(&nl.node, &["link", "set", &nl.uplink, state])?;
            let view = kubelet
                .wait_for_devices(RESOURCE, devices, health, BOUND)
                .await?;
            out.push(
                view.updated_at
                    .unwrap_or_else(Instant::now)
                    .saturating_duration_since(acked),
            );
        }
    }

    let mut re_register = Vec::new();
    for _ in 0..starts {
        let restarted = Instant::now();
        kubelet.restart().await?;
        let reg = kubelet
            .wait_for_registration(RESOURCE, restarted, BOUND)
            .await?;
        re_register.push(reg.at - restarted);
        kubelet
            .wait_for_devices(RESOURCE, devices, HEALTHY, BOUND)
            .await?;
    }

    let peak = vm_hwm_kb(plugin.0.id()).unwrap_or(0);
    plugin.terminate();
    kubelet.stop().await;
    drop(dir);
    drop(nl);
    Ok((
        vec![
            row(name, "start -> Register received", &to_register),
            row(
                name,
                &format!("start -> {devices} Healthy devices listed"),
                &to_healthy,
            ),
            row(
                name,
                &format!("Allocate, 1 new ID ({devices} distinct IDs)"),
                &allocate,
            ),
            row(
                name,
                "lower link down (`ip link set` issued) -> kubelet sees Unhealthy",
                &to_unhealthy,
            ),
            row(
                name,
                "lower link up (`ip link set` issued) -> kubelet sees Healthy",
                &to_healthy_again,
            ),
            row(name, "kubelet restart -> Register received", &re_register),
        ],
        MemRow::of(
            name,
            &format!(
                "peak RSS of the daemon (VmHWM after {starts} kubelet restarts, {devices} Allocates, {flaps} flaps)"
            ),
            &[peak],
        ),
    ))
}

/// A's device plugin, then B's; B's rows carry their ratio to A's same row. A side
/// that cannot be measured (e.g. it never registers, or never reports Unhealthy)
/// becomes a note and its rows are left out.
pub async fn run_ab(
    a: &crate::conform::implementation::Resolved,
    b: &crate::conform::implementation::Resolved,
    quick: bool,
) -> (Vec<Row>, Vec<MemRow>, Vec<String>) {
    let (mut rows, mut memory, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    let mut a_rows: Vec<Row> = Vec::new();
    for (side, imp) in [("A", a), ("B", b)] {
        let bin = Path::new(&imp.device_plugin[0]);
        let name = format!("{side}: device plugin ({})", bin.display());
        match run(bin, &name, quick).await {
            Ok((mut side_rows, mem)) => {
                if side == "A" {
                    a_rows = side_rows.clone();
                } else {
                    for (r, base) in side_rows.iter_mut().zip(&a_rows) {
                        r.ratio_to_reference = Some(r.stats.median_ms / base.stats.median_ms);
                        r.reference = Some(base.name.clone());
                    }
                }
                rows.extend(side_rows);
                memory.push(mem);
            }
            Err(e) => notes.push(format!("{name}: not measured: {e}")),
        }
    }
    (rows, memory, notes)
}
