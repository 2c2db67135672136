//! The performance targets against the measured rows: value, met or missed,
//! and by how much.

use std::fmt::Write as _;

use serde::Serialize;

use super::Row;
use super::scale::ScalePoint;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Target {
    pub(crate) target: String,
    pub(crate) goal: String,
    pub(crate) measured: String,
    /// None: not measured in this run.
    pub(crate) met: Option<bool>,
    pub(crate) margin: String,
    pub(crate) note: String,
}

fn median(rows: &[Row], name_contains: &str, op: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.name.contains(name_contains) && r.operation == op)
        .map(|r| r.stats.median_ms)
}

/// `value` against an upper bound `goal` (same unit).
pub(super) fn upper(value: f64, goal: f64, unit: &str) -> (bool, String) {
    if value <= goal {
        (
            true,
            format!(
                "{:.2} {unit} under ({:.1}% of the bound)",
                goal - value,
                value / goal * 100.0
            ),
        )
    } else {
        (
            false,
            format!(
                "{:.2} {unit} over ({:.1}x the bound)",
                value - goal,
                value / goal
            ),
        )
    }
}

fn not_measured(target: &str, goal: &str, why: &str) -> Target {
    Target {
        target: target.into(),
        goal: goal.into(),
        measured: "-".into(),
        met: None,
        margin: "-".into(),
        note: why.into(),
    }
}

/// Evaluates the targets. `scale` holds the per-pod attach points (largest pod
/// count last); `conform_quick` says the conform row skipped fault/dhcp scenarios.
pub fn evaluate(rows: &[Row], scale: &[ScalePoint], conform_quick: bool) -> Vec<Target> {
    let mut out = Vec::new();
    let macvlan = median(rows, "debian macvlan", "ADD");
    let floor = median(rows, "kernel floor", "move");
    let standalone = median(rows, "bundled macvtap, standalone", "ADD");
    for (mode, row) in [
        ("standalone", "bundled macvtap, standalone"),
        ("device mode", "bundled macvtap, device mode"),
    ] {
        let target = format!("macvtap CNI ADD median ({mode})");
        let goal = "<= 3 ms incl. spawn, and below Debian macvlan";
        match (median(rows, row, "ADD"), macvlan) {
            (Some(v), Some(m)) => {
                let (under3, margin) = upper(v, 3.0, "ms");
                let below = v < m;
                let mut note = format!("{:.2}x of macvlan ({m:.2} ms)", v / m);
                if mode == "device mode"
                    && let Some(f) = floor
                {
                    let _ = write!(
                        note,
                        "; bounded by the kernel's netns move of the macvtap (kernel floor row: {f:.2} ms), which no plugin can undercut: {:.2} ms of the ADD is spent beyond that move",
                        v - f
                    );
                    if let Some(sa) = standalone {
                        let _ = write!(
                            note,
                            "; standalone (link made inside the pod, no move) is {sa:.2} ms"
                        );
                    }
                }
                out.push(Target {
                    target,
                    goal: goal.into(),
                    measured: format!("{v:.2} ms"),
                    met: Some(under3 && below),
                    margin,
                    note,
                });
            }
            _ => out.push(not_measured(&target, goal, "row missing")),
        }
    }
    let target = "OVS CNI ADD median beyond spawn";
    let goal = "<= 8 ms";
    match (
        median(rows, "bundled ovs", "ADD"),
        median(rows, "no-op process", "spawn"),
    ) {
        (Some(v), Some(spawn)) => {
            let beyond = v - spawn;
            let (met, margin) = upper(beyond, 8.0, "ms");
            out.push(Target {
                target: target.into(),
                goal: goal.into(),
                measured: format!("{beyond:.2} ms ({v:.2} ms ADD - {spawn:.2} ms spawn)"),
                met: Some(met),
                margin,
                note: "userspace (netdev) OVS in the node namespace".into(),
            });
        }
        _ => out.push(not_measured(
            target,
            goal,
            "OVS not run (no ovsdb-server or no ovs plugin)",
        )),
    }
    for (target, goal_ms, row) in [
        (
            "device plugin start -> registration",
            1000.0,
            "start -> Register received",
        ),
        (
            "device plugin re-registration after kubelet restart",
            1000.0,
            "kubelet restart -> Register received",
        ),
        ("device plugin Allocate median", 5.0, "Allocate, 1 new ID"),
    ] {
        let goal = format!("< {goal_ms} ms");
        match median(rows, row, "device plugin") {
            Some(v) => {
                let (met, margin) = upper(v, goal_ms, "ms");
                let p95 = rows
                    .iter()
                    .find(|r| r.name.contains(row))
                    .map(|r| r.stats.p95_ms)
                    .unwrap_or(0.0);
                out.push(Target {
                    target: target.into(),
                    goal,
                    measured: format!("{v:.2} ms (p95 {p95:.2} ms)"),
                    met: Some(met),
                    margin,
                    note: "against the kubelet double, over its unix socket".into(),
                });
            }
            None => out.push(not_measured(target, &goal, "row missing")),
        }
    }
    let target = "per-pod attach cost flat from 1 to 500 pods";
    let goal = "within 2x of the cost at 1 pod";
    match (scale.first(), scale.last()) {
        (Some(first), Some(_)) if first.per_pod_ms > 0.0 => {
            let (worst, at) = scale
                .iter()
                .map(|p| (p.per_pod_ms / first.per_pod_ms, p.pods))
                .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
            let largest = scale.iter().map(|p| p.pods).max().unwrap_or(0);
            let (flat, margin) = upper(worst, 2.0, "x");
            let measured = format!(
                "worst {worst:.2}x (at {at} pods; {})",
                scale
                    .iter()
                    .map(|p| format!("{} ms at {}", fmt(p.per_pod_ms), p.pods))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            out.push(Target {
                target: target.into(),
                goal: goal.into(),
                measured,
                met: (largest >= 500).then_some(flat),
                margin,
                note: if largest >= 500 {
                    "10 nodes x 50 pods at 500".into()
                } else {
                    format!(
                        "measured up to {largest} pods only (--quick); the full run goes to 500"
                    )
                },
            });
        }
        _ => out.push(not_measured(target, goal, "no scale points")),
    }
    let target = "full secnet conform incl. VMs";
    let goal = "< 2 min";
    match rows.iter().find(|r| r.name.starts_with("secnet conform (")) {
        Some(r) => {
            let s = r.stats.median_ms / 1e3;
            let (met, margin) = upper(s, 120.0, "s");
            out.push(Target {
                target: target.into(),
                goal: goal.into(),
                measured: format!("{s:.1} s ({})", r.name),
                met: Some(met),
                margin,
                note: if conform_quick {
                    "--quick skips the fault and dhcp scenarios".into()
                } else {
                    "every scenario".into()
                },
            });
        }
        None => out.push(not_measured(target, goal, "conform not run")),
    }
    out
}

fn fmt(ms: f64) -> String {
    format!("{ms:.1}")
}

pub fn markdown(targets: &[Target]) -> String {
    let mut m = String::from(
        "| target | goal | measured | met | by how much | note |\n|---|---|---|---|---|---|\n",
    );
    for t in targets {
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {met} | {} | {} |",
            t.target, t.goal, t.measured, t.margin, t.note
        );
    }
    m
}

/// An A/B run's targets: every B CNI ADD and device plugin row no slower than A's
/// (ratio B/A <= 1.0). The single-run targets are about the bundled rows, which an
/// A/B run names by side instead.
pub fn evaluate_ab(rows: &[Row]) -> Vec<Target> {
    rows.iter()
        .filter(|r| {
            r.name.starts_with("B: ") && (r.operation == "ADD" || r.operation == "device plugin")
        })
        .map(|r| {
            let target = format!("{} {} B/A", r.name, r.operation);
            let goal = "B/A <= 1.0 (median)";
            match r.ratio_to_reference {
                Some(x) => {
                    let (met, margin) = upper(x, 1.0, "x");
                    Target {
                        target,
                        goal: goal.into(),
                        measured: format!("{x:.2}x ({:.2} ms)", r.stats.median_ms),
                        met: Some(met),
                        margin,
                        note: r.reference.clone().unwrap_or_default(),
                    }
                }
                None => not_measured(&target, goal, "A's row is missing"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Stats;
    use std::time::Duration;

    fn row(name: &str, op: &str, ms: f64) -> Row {
        Row {
            name: name.into(),
            operation: op.into(),
            stats: Stats::of(&[Duration::from_secs_f64(ms / 1e3)]),
            ratio_to_reference: None,
            reference: None,
        }
    }

    #[test]
    fn ab_targets_are_b_over_a_per_add_and_device_plugin_row() {
        let mut faster = row("B: macvtap, device mode (x)", "ADD", 20.0);
        faster.ratio_to_reference = Some(0.9);
        faster.reference = Some("A: macvtap, device mode (y)".into());
        let mut slower = row(
            "B: device plugin (x): start -> Register received",
            "device plugin",
            9.0,
        );
        slower.ratio_to_reference = Some(1.5);
        let orphan = row("B: ovs, VLAN 100 access port (x)", "ADD", 5.0);
        let rows = [
            row("A: macvtap, device mode (y)", "ADD", 22.0),
            row("B: macvtap, device mode (x)", "DEL", 1.0),
            faster,
            slower,
            orphan,
        ];
        let t = evaluate_ab(&rows);
        assert_eq!(t.len(), 3, "{t:?}");
        assert_eq!(t[0].met, Some(true));
        assert!(t[0].measured.starts_with("0.90x"), "{t:?}");
        assert_eq!(t[1].met, Some(false));
        assert_eq!(t[2].met, None);
    }

    fn point(pods: usize, per_pod_ms: f64) -> ScalePoint {
        ScalePoint {
            pods,
            nodes: 1,
            total_ms: per_pod_ms * pods as f64,
            per_pod_ms,
        }
    }

    fn rows() -> Vec<Row> {
        vec![
            row("no-op process (spawn cost)", "spawn", 1.0),
            row("kernel floor: ip link set netns", "move", 28.0),
            row("debian macvlan (reference, Go)", "ADD", 6.0),
            row("bundled macvtap, device mode", "ADD", 30.0),
            row("bundled macvtap, standalone", "ADD", 2.5),
            row("bundled ovs, VLAN 100", "ADD", 7.0),
            row("dp: start -> Register received", "device plugin", 40.0),
            row(
                "dp: kubelet restart -> Register received",
                "device plugin",
                20.0,
            ),
            row(
                "dp: Allocate, 1 new ID (50 distinct IDs)",
                "device plugin",
                1.5,
            ),
            row("secnet conform (30 scenarios)", "wall", 150_000.0),
        ]
    }

    #[test]
    fn met_and_missed_with_margins() {
        let t = evaluate(
            &rows(),
            &[point(1, 40.0), point(10, 20.0), point(500, 90.0)],
            false,
        );
        let by = |name: &str| t.iter().find(|t| t.target.contains(name)).unwrap().clone();
        let standalone = by("standalone");
        assert_eq!(standalone.met, Some(true));
        assert!(
            standalone.margin.starts_with("0.50 ms under"),
            "{}",
            standalone.margin
        );
        let device = by("device mode");
        assert_eq!(device.met, Some(false));
        assert!(
            device.margin.starts_with("27.00 ms over (10.0x"),
            "{}",
            device.margin
        );
        assert!(device.note.contains("kernel floor row: 28.00 ms"));
        let ovs = by("OVS");
        assert_eq!(ovs.met, Some(true));
        assert!(ovs.measured.starts_with("6.00 ms"));
        assert_eq!(by("start -> registration").met, Some(true));
        assert_eq!(by("Allocate").met, Some(true));
        let flat = by("flat");
        assert_eq!(flat.met, Some(false));
        assert!(
            flat.measured.starts_with("worst 2.25x (at 500 pods"),
            "{}",
            flat.measured
        );
        let conform = by("conform");
        assert_eq!(conform.met, Some(false));
        assert!(conform.margin.starts_with("30.00 s over"));
        let md = markdown(&t);
        assert!(md.contains("| macvtap CNI ADD median (standalone) |"));
        assert!(md.contains("**missed**"));
        assert_eq!(md.lines().count(), 2 + t.len());
    }

    #[test]
    fn partial_runs_say_what_was_not_measured() {
        let t = evaluate(&rows()[..5], &[point(1, 40.0), point(10, 30.0)], true);
        let by = |name: &str| t.iter().find(|t| t.target.contains(name)).unwrap().clone();
        assert_eq!(by("OVS").met, None);
        assert_eq!(by("Allocate").met, None);
        let flat = by("flat");
        assert_eq!(flat.met, None);
        assert!(flat.note.contains("up to 10 pods only"));
        assert!(markdown(&t).contains("not measured"));
    }
}
