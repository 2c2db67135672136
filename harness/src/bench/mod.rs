//! `secnet bench`: CNI ADD and DEL latency of the plugins under test, side by side in
//! one run with Debian's reference `macvlan` and with the cost of spawning a no-op
//! process through the same path, so that machine noise cancels out in the ratios.

pub mod bare;
pub mod deviceplugin;
pub mod harness;
pub mod migration;
pub mod report;
pub mod rss;
pub mod scale;
pub mod stats;
pub mod svg;
pub mod targets;
pub mod vms;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::cni::{Call, exec};
use crate::conform::implementation::{Resolved, cni_versions, preferred_version};
use crate::lab::node::NodeLab;
use crate::report::WriteError;
use stats::Stats;

/// The no-op process timed beside the plugins: what spawning alone costs.
const SPAWN_BASELINE: &str = "/bin/true";

#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    pub cni_bin_dir: PathBuf,
    pub reference_bin_dir: PathBuf,
    /// The macvtap device plugin binary.
    pub device_plugin: PathBuf,
    /// A (baseline) and B (candidate): every CNI and device plugin row measured for
    /// both, B's ratio taken against A's (instead of the bundled rows above).
    pub ab: Option<(Resolved, Resolved)>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("secnet bench needs root (network namespaces)")]
    NotRoot,
    #[error("{what} {path} does not exist: {fix}")]
    Missing {
        what: &'static str,
        path: PathBuf,
        fix: &'static str,
    },
    #[error("failed to set up the bench lab: {0}")]
    Lab(#[from] crate::lab::CommandError),
    /// Boxed: the OVS errors carry a command's output and a log tail.
    #[error("failed to set up the bench lab: {0}")]
    Ovs(Box<crate::cluster::netns::ovs::OvsError>),
    #[error("failed to enter the bench node {node}: {source}")]
    Enter {
        node: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to make a scratch dir: {0}")]
    Scratch(#[source] std::io::Error),
    /// `msg` is what the plugin printed (its CNI error) or why it did not run.
    #[error("{plugin} {command} failed during the benchmark: {msg}")]
    Plugin {
        plugin: String,
        command: String,
        msg: String,
    },
    /// One part of the bench (device plugin, scale, …) failed.
    #[error("{part} bench: {source}")]
    Part {
        part: &'static str,
        #[source]
        source: Box<BenchError>,
    },
    #[error("{0} does not exist (cargo build --release --bins)")]
    NoBinary(PathBuf),
    #[error(transparent)]
    Kubelet(#[from] crate::kubelet::KubeletError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    #[error(transparent)]
    Fixture(#[from] crate::objects::FixtureError),
    #[error("{0} holds no pod")]
    NoPod(String),
    /// The seed fixtures did not apply.
    #[error("failed to apply the seed: {0}")]
    Seed(#[source] crate::cluster::ClusterError),
    #[error(transparent)]
    Conform(#[from] crate::conform::ConformError),
    #[error("bare cluster: {0}")]
    Bare(String),
    #[error("{0} scenario(s) failed during the benchmark")]
    ScenariosFailed(usize),
    #[error("teardown after {pods} pods: {errors}")]
    Teardown { pods: usize, errors: String },
    #[error(transparent)]
    Image(#[from] crate::vm::image::ImageError),
    #[error(transparent)]
    Qemu(#[from] crate::vm::qemu::QemuError),
    /// `console` is the tail of the guest's kernel console.
    #[error("{guest}: {source}\n{console}")]
    Boot {
        guest: String,
        #[source]
        source: crate::vm::agent::AgentError,
        console: String,
    },
    #[error("{guest}: {source}")]
    Agent {
        guest: String,
        #[source]
        source: crate::vm::agent::AgentError,
    },
    #[error("{guest}: no NIC with MAC {mac}")]
    NoNic { guest: String, mac: String },
    #[error("{guest}: configuring {dev}: {output}")]
    Configure {
        guest: String,
        dev: String,
        output: String,
    },
    #[error("{guest}: no ping reply from {target}")]
    NoReply { guest: String, target: String },
}

impl From<crate::cluster::netns::ovs::OvsError> for BenchError {
    fn from(e: crate::cluster::netns::ovs::OvsError) -> BenchError {
        BenchError::Ovs(Box::new(e))
    }
}

impl BenchError {
    fn part(part: &'static str) -> impl FnOnce(BenchError) -> BenchError {
        move |e| BenchError::Part {
            part,
            source: Box::new(e),
        }
    }

    fn enter(node: &crate::lab::Ns) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
        move |source| BenchError::Enter {
            node: node.name.clone(),
            source,
        }
    }
}

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub(crate) name: String,
    pub(crate) operation: String,
    pub(crate) stats: Stats,
    /// Median of this row over the median of its reference row, if any.
    pub(crate) ratio_to_reference: Option<f64>,
    pub(crate) reference: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub(crate) iterations: usize,
    pub(crate) quick: bool,
    pub(crate) rows: Vec<Row>,
    pub(crate) binaries: Value,
    /// Peak RSS of the plugins (per invocation) and of the device plugin daemon.
    pub(crate) memory: Vec<rss::MemRow>,
    /// Per-pod attach cost per pod count, on one node (`pods_per_node`).
    pub(crate) one_node: Vec<scale::ScalePoint>,
    /// The same over a 10-node cluster up to 500 pods (not with --quick).
    pub(crate) scale: Vec<scale::ScalePoint>,
    pub(crate) vm_boot: Vec<vms::BootPoint>,
    pub(crate) vm_accel: Option<String>,
    pub(crate) targets: Vec<targets::Target>,
    /// Parts that could not be measured, and why.
    pub(crate) notes: Vec<String>,
}

impl BenchReport {
    /// The first table (latency rows) only; [`BenchReport::markdown`] adds the rest.
    pub fn rows_markdown(&self) -> String {
        let mut m = format!(
            "# secnet bench ({} iterations per row)\n\n| row | op | median ms | p95 ms | mean ms | ratio to reference |\n|---|---|---|---|---|---|\n",
            self.iterations
        );
        for r in &self.rows {
            let ratio = match (&r.reference, r.ratio_to_reference) {
                (Some(name), Some(x)) => format!("{x:.2}x of {name}"),
                _ => "-".into(),
            };
            let _ = writeln!(
                m,
                "| {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                r.name, r.operation, r.stats.median_ms, r.stats.p95_ms, r.stats.mean_ms, ratio
            );
        }
        let _ = writeln!(m, "\nBinary sizes: {}", self.binaries);
        m
    }

    pub fn markdown(&self) -> String {
        report::markdown(self)
    }

    pub fn write(&self, dir: &Path) -> Result<(), WriteError> {
        std::fs::create_dir_all(dir).map_err(|source| WriteError {
            path: dir.display().to_string(),
            source,
        })?;
        for (name, text) in [
            (
                "bench.json",
                serde_json::to_string_pretty(self).expect("bench serializes"),
            ),
            ("bench.md", self.markdown()),
            ("bench-scale.svg", report::scale_svg(self)),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(|source| WriteError {
                path: path.display().to_string(),
                source,
            })?;
        }
        Ok(())
    }
}

/// A plugin configuration measured by one pair of rows (ADD, DEL).
struct Subject {
    name: String,
    plugin: PathBuf,
    config: Value,
    /// A macvtap the device plugin would have made before ADD (not timed).
    device_link: Option<String>,
    /// The subject whose medians this one's ratio is taken against: Debian's
    /// macvlan, or the upstream binary of the same plugin when given.
    reference: Option<usize>,
    /// Runs on the OVS node: ovs-vswitchd follows every link event of its namespace
    /// and slows link creation there (macvtap standalone ADD 2.5 → 3.7 ms), so the
    /// other plugins are measured on a node without it.
    on_ovs_node: bool,
}

pub async fn run(opts: &Options) -> Result<BenchReport, BenchError> {
    if !crate::prereq::is_root() {
        return Err(BenchError::NotRoot);
    }
    let macvtap = opts.cni_bin_dir.join("macvtap");
    let macvlan = opts.reference_bin_dir.join("macvlan");
    if !macvtap.exists() {
        return Err(BenchError::Missing {
            what: "plugin under test",
            path: macvtap,
            fix: "cargo build --release --bins",
        });
    }
    if !macvlan.exists() {
        return Err(BenchError::Missing {
            what: "reference plugin",
            path: macvlan,
            fix: "apt-get install containernetworking-plugins",
        });
    }
    let iterations = if opts.quick { 30 } else { 200 };
    let mut nl = NodeLab::new()?;
    let pod = nl.pod("pod")?;
    // A device ID as the device plugin names them: lower device + `Mvp` + index.
    let device_id = format!("{}Mvp0", nl.uplink);
    let uplink = nl.uplink.clone();
    // The bundled OVS CNI against userspace Open vSwitch in the bench node, when
    // both are there (started once, not timed per call).
    let ovs_plugin = opts.cni_bin_dir.join("ovs");
    let ovs = match ovs_plugin.exists() && crate::prereq::find_program("ovsdb-server").is_some() {
        true => {
            let mut ovs_nl = NodeLab::new()?;
            let ovs_pod = ovs_nl.pod("pod")?;
            let started = BenchOvs::start(&ovs_nl)?;
            Some((started, ovs_nl, ovs_pod))
        }
        false => None,
    };
    // The bench's own node policy: the plugins refuse a standalone master or an OVS
    // socket no policy names, so the rows must not depend on whether this machine
    // has an /etc/secnet/plugins.conf, nor on what it says.
    let policy_dir = crate::lab::ScratchDir::new(&format!("{}-bench-policy", nl.lab.run_id))
        .map_err(BenchError::Scratch)?;
    let policy = bench_policy(
        policy_dir.path(),
        &uplink,
        ovs.as_ref().map(|(o, _, _)| o.ovs.socket.as_path()),
    )?;
    let mut subjects: Vec<Subject> = vec![
        Subject {
            name: "no-op process (spawn cost)".into(),
            plugin: PathBuf::from(SPAWN_BASELINE),
            config: json!({}),
            device_link: None,
            reference: None,
            on_ovs_node: false,
        },
        Subject {
            name: "debian macvlan (reference, Go)".into(),
            plugin: macvlan.clone(),
            config: json!({"cniVersion": "1.0.0", "name": "b", "type": "macvlan", "master": uplink, "mode": "bridge"}),
            device_link: None,
            reference: None,
            on_ovs_node: false,
        },
        Subject {
            name: "bundled macvtap, device mode".into(),
            plugin: macvtap.clone(),
            config: json!({"cniVersion": "1.0.0", "name": "b", "type": "macvtap", "deviceID": device_id}),
            device_link: Some(device_id.clone()),
            reference: Some(1),
            on_ovs_node: false,
        },
        Subject {
            name: "bundled macvtap, standalone".into(),
            plugin: macvtap.clone(),
            config: json!({"cniVersion": "1.0.0", "name": "b", "type": "macvtap", "master": uplink, "mode": "bridge"}),
            device_link: None,
            reference: Some(1),
            on_ovs_node: false,
        },
    ];
    if let Some((a, b)) = &opts.ab {
        // A/B replaces the bundled rows: each CNI of A, then of B (ratio B/A).
        subjects.truncate(2);
        let socket = ovs
            .as_ref()
            .map(|(o, _, _)| format!("unix:{}", o.ovs.socket.display()));
        subjects.extend(ab_subjects(a, b, &device_id, &uplink, socket.as_deref()));
    }
    // The upstream Go macvtap CNI, when the user put it in --reference-bin-dir
    // (Debian ships none): same device-mode flow, CNI 0.4.0 (its newest).
    let upstream_macvtap = opts.reference_bin_dir.join("macvtap");
    if opts.ab.is_none() && upstream_macvtap.exists() {
        subjects.push(Subject {
            name: "upstream macvtap (given), device mode".into(),
            plugin: upstream_macvtap,
            config: json!({"cniVersion": "0.4.0", "name": "b", "type": "macvtap", "deviceID": device_id}),
            device_link: Some(device_id.clone()),
            reference: None,
            on_ovs_node: false,
        });
        subjects[2].reference = Some(subjects.len() - 1);
    }
    if let Some((o, _, _)) = ovs.as_ref().filter(|_| opts.ab.is_none()) {
        subjects.push(Subject {
            name: "bundled ovs, VLAN 100 access port (userspace OVS)".into(),
            plugin: ovs_plugin.clone(),
            config: json!({"cniVersion": "1.0.0", "name": "b", "type": "ovs", "bridge": "br1", "vlan": 100,
                "socket_file": format!("unix:{}", o.ovs.socket.display())}),
            device_link: None,
            reference: Some(1),
            on_ovs_node: true,
        });
        // The upstream ovs-cni, when given, on the same bridge.
        let upstream_ovs = opts.reference_bin_dir.join("ovs");
        if upstream_ovs.exists() {
            let ours = subjects.len() - 1;
            subjects.push(Subject {
                name: "upstream ovs-cni (given), VLAN 100 access port".into(),
                plugin: upstream_ovs,
                config: json!({"cniVersion": "0.4.0", "name": "b", "type": "ovs", "bridge": "br1", "vlan": 100,
                    "socket_file": format!("unix:{}", o.ovs.socket.display())}),
                device_link: None,
                reference: None,
                on_ovs_node: true,
            });
            subjects[ours].reference = Some(subjects.len() - 1);
        }
    }
    let mut samples: Vec<(Vec<Duration>, Vec<Duration>)> =
        subjects.iter().map(|_| (Vec::new(), Vec::new())).collect();
    // A subject that fails once (e.g. a mode its implementation does not offer) is
    // not measured further; the report says why.
    let mut failed: Vec<Option<String>> = subjects.iter().map(|_| None).collect();
    // The kernel's own cost of moving a macvtap into a pod, through `ip`: the floor
    // under any device-mode ADD (the device plugin made the link in the host netns).
    let mut kernel_move = Vec::new();
    // Interleave the subjects so slow phases of the machine hit all of them alike.
    for i in 0..iterations {
        let floor_link = "mvtfloor";
        nl.device_link(floor_link)?;
        let t = std::time::Instant::now();
        nl.lab
            .ip(&nl.node, &["link", "set", floor_link, "netns", &pod.name])?;
        kernel_move.push(t.elapsed());
        nl.lab.ip(&pod, &["link", "del", floor_link])?;
        for ((s, (adds, dels)), failed) in subjects
            .iter()
            .zip(samples.iter_mut())
            .zip(failed.iter_mut())
        {
            if failed.is_some() {
                continue;
            }
            if let Some(id) = &s.device_link {
                let name = cni_kit::naming::hashed_link_name(id);
                nl.device_link(&name)?;
            }
            let (node_ns, pod) = match (&ovs, s.on_ovs_node) {
                (Some((_, ovs_nl, ovs_pod)), true) => (&ovs_nl.node_ns, ovs_pod),
                _ => (&nl.node_ns, &pod),
            };
            let call = |cmd: &str| {
                Call::new(&s.plugin, cmd, s.config.clone())
                    .container(&format!("bench{i}"), Some(&pod.path_str()), "net1")
                    .env(cni_kit::policy::POLICY_ENV, &policy)
            };
            for (cmd, out) in [("ADD", &mut *adds), ("DEL", &mut *dels)] {
                // The spawn-cost row has no CNI answer to check: its exit status is
                // the whole result.
                let baseline = s.plugin == Path::new(SPAWN_BASELINE);
                let started = std::time::Instant::now();
                let error = match exec(&call(cmd), Some(node_ns)).await {
                    Ok(reply) if reply.success || (baseline && reply.status.success()) => {
                        out.push(reply.elapsed);
                        continue;
                    }
                    // It exited 0 and printed nothing, which the ADD result check
                    // refuses: the spawn is all that is timed.
                    Err(crate::cni::ExecError::Spec { .. }) if baseline => {
                        out.push(started.elapsed());
                        continue;
                    }
                    Ok(reply) => reply.error_text(),
                    Err(e) => e.to_string(),
                };
                let error = BenchError::Plugin {
                    plugin: s.name.clone(),
                    command: cmd.into(),
                    msg: error,
                };
                if s.reference.is_none() && opts.ab.is_none() {
                    return Err(error); // a reference row: nothing to compare against
                }
                *failed = Some(format!("{error}; not measured"));
                let _ = nl.lab.ip(pod, &["link", "del", "net1"]);
                break;
            }
        }
    }
    // Peak RSS per invocation, reaped with wait4 (not timed; a few ADD/DEL each).
    let mut memory = Vec::new();
    let rss_runs = if opts.quick { 3 } else { 10 };
    for (s, _) in subjects.iter().zip(&failed).filter(|(_, f)| f.is_none()) {
        let (node, pod) = match (&ovs, s.on_ovs_node) {
            (Some((_, ovs_nl, ovs_pod)), true) => (&ovs_nl.node, ovs_pod),
            _ => (&nl.node, &pod),
        };
        let enter = crate::lab::enter::Enter::net(node.path()).map_err(BenchError::enter(node))?;
        let mut peaks = Vec::new();
        for i in 0..rss_runs {
            if let Some(id) = &s.device_link {
                nl.device_link(&cni_kit::naming::hashed_link_name(id))?;
            }
            for cmd in ["ADD", "DEL"] {
                let call = Call::new(&s.plugin, cmd, s.config.clone())
                    .container(&format!("rss{i}"), Some(&pod.path_str()), "net1")
                    .env(cni_kit::policy::POLICY_ENV, &policy);
                let m = rss::run_cni(&call, &enter).map_err(|e| BenchError::Plugin {
                    plugin: s.name.clone(),
                    command: cmd.into(),
                    msg: e.to_string(),
                })?;
                if !m.success {
                    return Err(BenchError::Plugin {
                        plugin: s.name.clone(),
                        command: cmd.into(),
                        msg: m.stdout,
                    });
                }
                peaks.push(m.maxrss_kb);
            }
        }
        memory.push(rss::MemRow::of(
            &s.name,
            &format!("per invocation ({rss_runs} ADD + {rss_runs} DEL), ru_maxrss"),
            &peaks,
        ));
    }
    let mut rows = Vec::new();
    let median_of = |i: usize, op: usize| {
        Stats::of(if op == 0 {
            &samples[i].0
        } else {
            &samples[i].1
        })
        .median_ms
    };
    for ((s, (adds, dels)), _) in subjects
        .iter()
        .zip(&samples)
        .zip(&failed)
        .filter(|(_, f)| f.is_none())
    {
        for (op, data) in [(0, adds), (1, dels)] {
            let stats = Stats::of(data);
            let is_baseline = s.plugin == Path::new(SPAWN_BASELINE);
            let (reference, ratio) = match s.reference.filter(|r| failed[*r].is_none()) {
                Some(r) => (
                    Some(subjects[r].name.to_string()),
                    Some(stats.median_ms / median_of(r, op)),
                ),
                None => (None, None),
            };
            rows.push(Row {
                name: s.name.clone(),
                operation: if is_baseline {
                    "spawn".into()
                } else if op == 0 {
                    "ADD".into()
                } else {
                    "DEL".into()
                },
                stats,
                ratio_to_reference: ratio,
                reference,
            });
        }
    }
    rows.dedup_by(|a, b| a.operation == "spawn" && b.operation == "spawn");
    rows.insert(
        1,
        Row {
            name: "kernel floor: ip link set netns (device-mode move)".into(),
            operation: "move".into(),
            stats: Stats::of(&kernel_move),
            ratio_to_reference: None,
            reference: None,
        },
    );
    if let Some((o, _, _)) = &ovs {
        rows.push(Row {
            name: "userspace OVS start: ovsdb-server + ovs-vswitchd + netdev bridge".into(),
            operation: "start".into(),
            stats: Stats::of(&[o.started_in]),
            ratio_to_reference: None,
            reference: None,
        });
    }
    drop(ovs);
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let binaries = json!({
        "macvtap_bytes": size(&macvtap),
        "macvlan_bytes": size(&macvlan),
        "ovs_bytes": size(&ovs_plugin),
    });
    drop(nl);
    let mut notes: Vec<String> = failed.into_iter().flatten().collect();
    match &opts.ab {
        None => {
            let (dp_rows, dp_mem) =
                deviceplugin::run(&opts.device_plugin, deviceplugin::NAME, opts.quick)
                    .await
                    .map_err(BenchError::part("device plugin"))?;
            rows.extend(dp_rows);
            memory.push(dp_mem);
        }
        Some((a, b)) => {
            let (dp_rows, dp_mem, dp_notes) = deviceplugin::run_ab(a, b, opts.quick).await;
            rows.extend(dp_rows);
            memory.extend(dp_mem);
            notes.extend(dp_notes);
        }
    }
    let (one_node_rows, one_node) = harness::pods_per_node(opts.quick).await?;
    rows.extend(one_node_rows);
    let mut scale_points = Vec::new();
    if !opts.quick {
        let (r, p) = scale::run(&[1, 10, 50, 500], 10)
            .await
            .map_err(BenchError::part("scale"))?;
        rows.extend(r);
        scale_points = p;
    }
    let (mut vm_boot, mut vm_accel) = (Vec::new(), None);
    match vms::run(opts.quick).await {
        Ok((r, p, accel)) => {
            rows.extend(r);
            vm_boot = p;
            vm_accel = Some(accel.to_string());
        }
        Err(e) => notes.push(format!("VM boot not measured: {e}")),
    }
    match migration::run(opts.quick).await {
        Ok(r) => rows.extend(r),
        Err(e) => notes.push(format!("live migration not measured: {e}")),
    }
    rows.extend(harness::conform_phases(opts.quick).await?);
    // The bare tier where the Kubernetes binaries are.
    match std::env::var_os("SECNET_K8S_BIN_DIR") {
        Some(dir) => match bare::rows(dir.into()).await {
            Ok(r) => rows.extend(r),
            Err(e) => notes.push(format!("bare cluster not measured: {e}")),
        },
        None => notes.push(
            "bare cluster not measured: SECNET_K8S_BIN_DIR (the Kubernetes server binaries) is not set".into(),
        ),
    }
    let flat = if scale_points.is_empty() {
        &one_node
    } else {
        &scale_points
    };
    let targets = match opts.ab {
        None => targets::evaluate(&rows, flat, opts.quick),
        Some(_) => targets::evaluate_ab(&rows),
    };
    Ok(BenchReport {
        iterations,
        quick: opts.quick,
        rows,
        binaries,
        memory,
        one_node,
        scale: scale_points,
        vm_boot,
        vm_accel,
        targets,
        notes,
    })
}

/// The CNI subjects of an A/B bench: macvtap in device and standalone mode and ovs
/// on a VLAN 100 access port (when OVS runs), A's then B's, B's ratio against A's.
/// Each talks the CNI version its binary claims (1.0.0, else its newest).
fn ab_subjects(
    a: &Resolved,
    b: &Resolved,
    device_id: &str,
    uplink: &str,
    ovs_socket: Option<&str>,
) -> Vec<Subject> {
    let mut out: Vec<Subject> = Vec::new();
    // Indices are those of the final list: the no-op and macvlan come first.
    let base = 2;
    let kinds: [(&str, &str, bool); 3] = [
        ("macvtap", "device mode", true),
        ("macvtap", "standalone", false),
        ("ovs", "VLAN 100 access port (userspace OVS)", false),
    ];
    for (plugin, what, device) in kinds {
        if plugin == "ovs" && ovs_socket.is_none() {
            continue;
        }
        let mut a_index = None;
        for (side, imp) in [("A", a), ("B", b)] {
            let Some(path) = imp.cni(plugin).0 else {
                continue;
            };
            let version = cni_versions(&path)
                .map(|v| preferred_version(&v))
                .unwrap_or_else(|_| "0.4.0".into());
            let config = match (plugin, device) {
                ("ovs", _) => {
                    json!({"cniVersion": version, "name": "b", "type": "ovs", "bridge": "br1", "vlan": 100,
                    "socket_file": ovs_socket})
                }
                (_, true) => {
                    json!({"cniVersion": version, "name": "b", "type": "macvtap", "deviceID": device_id})
                }
                _ => {
                    json!({"cniVersion": version, "name": "b", "type": "macvtap", "master": uplink, "mode": "bridge"})
                }
            };
            let reference = match side {
                "A" => Some(1), // A against Debian's macvlan
                _ => a_index,
            };
            if side == "A" {
                a_index = Some(base + out.len());
            }
            out.push(Subject {
                name: format!(
                    "{side}: {plugin}, {what} ({}, CNI {version})",
                    path.display()
                ),
                plugin: path,
                config,
                device_link: device.then(|| device_id.to_string()),
                reference,
                on_ovs_node: plugin == "ovs",
            });
        }
    }
    out
}

/// OVS daemons in the bench node with bridge `br1`; stopped and their directory
/// removed on drop.
/// Writes `dir/plugins.conf` allowing the bench lab's uplink as a standalone master
/// and its OVS socket; returns the file's path.
fn bench_policy(dir: &Path, uplink: &str, socket: Option<&Path>) -> Result<String, BenchError> {
    let mut text = format!("[macvtap]\nstandalone_masters = {uplink}\n");
    if let Some(socket) = socket {
        let _ = write!(text, "[ovs]\nsockets = {}\n", socket.display());
    }
    let path = dir.join("plugins.conf");
    std::fs::write(&path, text).map_err(BenchError::Scratch)?;
    Ok(path.display().to_string())
}

struct BenchOvs {
    ovs: crate::cluster::netns::ovs::Ovs,
    started_in: Duration,
}

impl BenchOvs {
    fn start(nl: &NodeLab) -> Result<BenchOvs, BenchError> {
        // mkdtemp (0700, unguessable); the daemons' directory is removed on drop.
        let dir = crate::lab::ScratchDir::new(&format!("{}-bench-ovs", nl.lab.run_id))
            .map_err(BenchError::Scratch)?
            .into_path();
        let t = std::time::Instant::now();
        let enter =
            crate::lab::enter::Enter::net(nl.node.path()).map_err(BenchError::enter(&nl.node))?;
        let ovs = crate::cluster::netns::ovs::Ovs::start(&enter, &dir).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        let mut bench = BenchOvs {
            ovs,
            started_in: Duration::ZERO,
        };
        bench.ovs.add_bridge(crate::cluster::netns::ovs::BRIDGE)?;
        bench.started_in = t.elapsed();
        Ok(bench)
    }
}

impl Drop for BenchOvs {
    fn drop(&mut self) {
        self.ovs.stop();
        let _ = std::fs::remove_dir_all(&self.ovs.dir);
    }
}

/// The seed's device plugin ConfigMap, its DaemonSet and the `dataplane` NAD applied
/// to a benchmark's cluster (scenarios get them from the runner).
pub async fn apply_seed(
    cluster: &crate::cluster::netns::NetnsCluster,
    fixtures_dir: &std::path::Path,
) -> Result<(), BenchError> {
    use crate::cluster::Cluster;
    for rel in [
        "seed/macvtap-deviceplugin-config.yaml",
        "seed/macvtap-daemonset.yaml",
        "seed/macvtap-nad.yaml",
    ] {
        let objects = crate::objects::load_file(&fixtures_dir.join(rel))?;
        cluster.apply(objects).await.map_err(BenchError::Seed)?;
    }
    Ok(())
}

#[cfg(test)]
mod ab_tests {
    use super::*;
    use crate::conform::implementation::Choice;

    #[test]
    fn ab_subjects_pair_each_cni_with_b_against_a() {
        let bundled = crate::bins::bundled("macvtap");
        if !crate::prereq::require("A/B bench subjects", bundled.clone().err()) {
            return;
        }
        let dir = crate::lab::ScratchDir::new("secnet-bench-ab").unwrap();
        std::os::unix::fs::symlink(bundled.unwrap(), dir.path().join("macvtap")).unwrap();
        let a = Resolved::bundled();
        let b = Choice {
            cni_bin_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        // Without OVS: macvtap device and standalone, A then B each.
        let s = ab_subjects(&a, &b, "ens33Mvp0", "ens33", None);
        let names: Vec<&str> = s.iter().map(|s| &s.name[..2]).collect();
        assert_eq!(names, ["A:", "B:", "A:", "B:"]);
        assert_eq!(s[0].reference, Some(1), "A against Debian's macvlan");
        assert_eq!(
            s[1].reference,
            Some(2),
            "B against A (index in the full list)"
        );
        assert_eq!(s[3].reference, Some(4));
        assert!(s[0].device_link.is_some() && s[2].device_link.is_none());
        assert_eq!(s[1].config["cniVersion"], "1.0.0", "the version it claims");
        // With OVS: B has no ovs in its dir, A's row stays alone.
        let s = ab_subjects(&a, &b, "ens33Mvp0", "ens33", Some("unix:/x.sock"));
        assert_eq!(s.len(), 5);
        assert!(s[4].name.starts_with("A: ovs") && s[4].on_ovs_node);
    }
}
