//! bench.md (all tables, the targets table, the VM-boot reading) and
//! bench-scale.svg (per-pod attach cost vs pods, VM boot vs parallel guests).

use std::fmt::Write as _;

use super::BenchReport;
use super::scale::{ScalePoint, ratios};
use super::svg::{Panel, Series, render};
use super::targets;
use super::vms::BootPoint;

pub fn markdown(r: &BenchReport) -> String {
    let mut m = r.rows_markdown();
    m.push_str("\n## Peak memory\n\n| process | measured | n | median kB | max kB |\n|---|---|---|---|---|\n");
    for x in &r.memory {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} |",
            x.name, x.what, x.n, x.median_kb, x.max_kb
        );
    }
    m.push_str("\n## Scale: per-pod attach cost\n\n![per-pod attach cost and VM boot](bench-scale.svg)\n\n");
    for (title, points) in [
        ("pods on one node", &r.one_node),
        ("pods over a 10-node cluster", &r.scale),
    ] {
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            m,
            "{title}:\n\n| pods | nodes | all attached ms | per pod ms | ratio to 1 pod (flat: <= 2x) |\n|---|---|---|---|---|"
        );
        for (p, ratio) in points.iter().zip(ratios(points)) {
            let _ = writeln!(
                m,
                "| {} | {} | {:.1} | {:.2} | {ratio:.2}x |",
                p.pods, p.nodes, p.total_ms, p.per_pod_ms
            );
        }
        m.push('\n');
    }
    if r.scale.is_empty() {
        m.push_str("The 10-node scale run (1, 10, 50, 500 pods) is skipped with --quick.\n\n");
    }
    if !r.vm_boot.is_empty() {
        let accel = r.vm_accel.as_deref().unwrap_or("-");
        let _ = writeln!(
            m,
            "## VMs booted in parallel ({accel})\n\n| guests | agent ready, median s | slowest guest ready s | first ping, median s | ratio to 1 guest |\n|---|---|---|---|---|"
        );
        let first = r.vm_boot[0].ready_ms;
        for p in &r.vm_boot {
            let _ = writeln!(
                m,
                "| {} | {:.2} | {:.2} | {:.2} | {:.2}x |",
                p.guests,
                p.ready_ms / 1e3,
                p.ready_max_ms / 1e3,
                p.ping_ms / 1e3,
                p.ready_ms / first
            );
        }
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let _ = writeln!(m, "\n{}\n", vm_reading(&r.vm_boot, cores, accel));
    }
    m.push_str("## Targets\n\n");
    m.push_str(&targets::markdown(&r.targets));
    for n in &r.notes {
        let _ = writeln!(m, "\nNote: {n}");
    }
    m
}

/// Where the boot-time curve bends and why.
pub fn vm_reading(points: &[BootPoint], cores: usize, accel: &str) -> String {
    let Some(first) = points.first() else {
        return String::new();
    };
    let bend = points
        .iter()
        .find(|p| p.ready_ms > 1.5 * first.ready_ms)
        .map(|p| p.guests);
    let engine = if accel == "tcg" {
        "TCG translates guest code on the host CPU, so each guest's one vCPU keeps a host core busy for the whole boot"
    } else {
        "each guest's one vCPU runs on a host core"
    };
    let largest = points.last().map(|p| p.guests).unwrap_or(1);
    let curve = match bend {
        Some(n) => format!(
            "The curve bends at {n} guests ({:.1}x the single-guest boot)",
            points
                .iter()
                .find(|p| p.guests == n)
                .map(|p| p.ready_ms / first.ready_ms)
                .unwrap_or(1.0)
        ),
        None => format!("Up to {largest} guests the curve stays flat (within 1.5x of one guest)"),
    };
    format!(
        "{curve}. This machine has {cores} core(s) and {engine}: up to {cores} guests boot side by side at about single-guest speed, beyond that they time-share the cores and each boot stretches by about guests/{cores} (plus the harness's own work and QEMU's I/O threads)."
    )
}

pub fn scale_svg(r: &BenchReport) -> String {
    let pts = |v: &[ScalePoint]| -> Vec<(f64, f64)> {
        v.iter().map(|p| (p.pods as f64, p.per_pod_ms)).collect()
    };
    let mut attach = vec![Series {
        label: "one node".into(),
        color: "#1f77b4",
        points: pts(&r.one_node),
    }];
    if !r.scale.is_empty() {
        attach.push(Series {
            label: "10-node cluster".into(),
            color: "#ff7f0e",
            points: pts(&r.scale),
        });
    }
    let boot = |f: fn(&BootPoint) -> f64| -> Vec<(f64, f64)> {
        r.vm_boot
            .iter()
            .map(|p| (p.guests as f64, f(p) / 1e3))
            .collect()
    };
    render(&[
        Panel {
            title: "per-pod attach cost vs pod count".into(),
            x_label: "pods created at once (log scale)".into(),
            y_label: "ms per pod".into(),
            log_x: true,
            series: attach,
        },
        Panel {
            title: format!(
                "VM boot vs parallel guests ({})",
                r.vm_accel.as_deref().unwrap_or("not run")
            ),
            x_label: "guests booted in parallel".into(),
            y_label: "seconds from QEMU start".into(),
            log_x: false,
            series: vec![
                Series {
                    label: "agent ready (median)".into(),
                    color: "#2ca02c",
                    points: boot(|p| p.ready_ms),
                },
                Series {
                    label: "first ping (median)".into(),
                    color: "#d62728",
                    points: boot(|p| p.ping_ms),
                },
            ],
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bp(guests: usize, ready_ms: f64) -> BootPoint {
        BootPoint {
            guests,
            ready_ms,
            ping_ms: ready_ms + 100.0,
            ready_max_ms: ready_ms,
        }
    }

    #[test]
    fn reading_names_the_bend() {
        let s = vm_reading(&[bp(1, 3000.0), bp(2, 3300.0), bp(4, 6600.0)], 2, "tcg");
        assert!(s.starts_with("The curve bends at 4 guests (2.2x"), "{s}");
        assert!(s.contains("2 core(s)") && s.contains("TCG"));
        let flat = vm_reading(&[bp(1, 3000.0), bp(2, 3100.0)], 2, "tcg");
        assert!(
            flat.starts_with("Up to 2 guests the curve stays flat"),
            "{flat}"
        );
        assert_eq!(vm_reading(&[], 2, "tcg"), "");
    }
}
