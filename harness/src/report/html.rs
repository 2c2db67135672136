//! `report.html`: one self-contained page (inline CSS and SVG, no network) with the
//! summary, every scenario's outcome and diagnostics, a topology picture of its
//! cluster and its reachability matrix.

use std::fmt::Write as _;

use super::{Report, ScenarioReport, Status};
use crate::observe::{Probe, Topology, WorkloadSnap};

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em;text-align:left}\
.passed{color:#176f2c;font-weight:600}.failed{color:#b00020;font-weight:600}.skipped{color:#777}\
.badge{display:inline-block;padding:2px 10px;border-radius:10px;margin-right:6px;color:#fff}\
.b-passed{background:#2e7d32}.b-failed{background:#c62828}.b-skipped{background:#888}\
details{margin:.6em 0;border:1px solid #ddd;border-radius:6px;padding:.4em .8em}summary{cursor:pointer}\
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:30em;font-size:.8em}\
.matrix td.ok{background:#dff0d8}.matrix td.bad{background:#f8d7da}.matrix td.none{background:#fafafa}\
.label{display:inline-block;background:#eef;border-radius:4px;padding:0 5px;margin:0 2px;font-size:.8em}";

pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>secnet conform: {}</title><style>{STYLE}</style></head><body>",
        escape(&report.cluster)
    );
    let _ = write!(
        h,
        "<h1>secnet conform on the <code>{}</code> cluster</h1>",
        escape(&report.cluster)
    );
    let _ = write!(
        h,
        "<p id=\"summary\"><span class=\"badge b-passed\">{} passed</span><span class=\"badge b-failed\">{} failed</span><span class=\"badge b-skipped\">{} skipped</span> in {:.1} s</p>",
        report.summary.passed, report.summary.failed, report.summary.skipped, report.wall_s
    );
    h.push_str("<table><tr><th colspan=2>implementation under test</th></tr>");
    if let Some(map) = report.implementation.as_object() {
        for (k, v) in map {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td></tr>",
                escape(k),
                escape(&text)
            );
        }
    }
    h.push_str("</table><h2>Scenarios</h2><table><tr><th>scenario</th><th>backend</th><th>workload</th><th>labels</th><th>status</th><th>time</th></tr>");
    for (i, s) in report.scenarios.iter().enumerate() {
        let labels: String = s
            .labels
            .iter()
            .map(|l| format!("<span class=\"label\">{}</span>", escape(l)))
            .collect();
        let class = status_class(s.status);
        let _ = write!(
            h,
            "<tr><td><a href=\"#s{i}\">{}</a></td><td>{}</td><td>{}</td><td>{labels}</td><td class=\"{class}\">{class}</td><td>{:.2} s</td></tr>",
            escape(&s.name),
            escape(&s.backend),
            escape(&s.workload),
            s.duration_s
        );
    }
    h.push_str("</table>");
    for (i, s) in report.scenarios.iter().enumerate() {
        scenario(&mut h, i, s);
    }
    h.push_str("</body></html>\n");
    h
}

fn status_class(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
    }
}

fn scenario(h: &mut String, i: usize, s: &ScenarioReport) {
    // Failures and reachability checks are what people come to look at.
    let open = if s.status == Status::Failed || !s.observed.reachability.is_empty() {
        " open"
    } else {
        ""
    };
    let class = status_class(s.status);
    let _ = write!(
        h,
        "<details id=\"s{i}\"{open}><summary><span class=\"{class}\">{class}</span> {} <small>({:.2} s)</small></summary>",
        escape(&s.name),
        s.duration_s
    );
    if !s.observed.phases.is_empty() {
        let phases: Vec<String> = s
            .observed
            .phases
            .iter()
            .map(|p| format!("{} {:.2} s", escape(&p.name), p.seconds))
            .collect();
        let _ = write!(h, "<p class=\"phases\">{}</p>", phases.join(" &middot; "));
    }
    for note in &s.observed.notes {
        let _ = write!(h, "<p class=\"note\">not checked: {}</p>", escape(note));
    }
    if !s.message.is_empty() {
        let _ = write!(h, "<h4>Diagnostics</h4><pre>{}</pre>", escape(&s.message));
    }
    if let Some(t) = &s.observed.topology {
        h.push_str("<h4>Topology</h4>");
        h.push_str(&topology_svg(t));
    }
    if !s.observed.reachability.is_empty() {
        h.push_str("<h4>Reachability</h4>");
        h.push_str(&matrix(&s.observed.reachability));
    }
    h.push_str("</details>");
}

/// Who pinged whom: rows are sources, columns targets; a cell is green when the
/// observation matches the expectation.
pub fn matrix(probes: &[Probe]) -> String {
    let mut froms: Vec<&str> = Vec::new();
    let mut tos: Vec<&str> = Vec::new();
    for p in probes {
        if !froms.contains(&p.from.as_str()) {
            froms.push(&p.from);
        }
        if !tos.contains(&p.to.as_str()) {
            tos.push(&p.to);
        }
    }
    let mut h = String::from("<table class=\"matrix\"><tr><th>from \\ to</th>");
    for t in &tos {
        let _ = write!(h, "<th>{}</th>", escape(t));
    }
    h.push_str("</tr>");
    for f in &froms {
        let _ = write!(h, "<tr><th>{}</th>", escape(f));
        for t in &tos {
            match probes.iter().find(|p| p.from == *f && p.to == *t) {
                None => h.push_str("<td class=\"none\"></td>"),
                Some(p) => {
                    let class = if p.expected == p.observed {
                        "ok"
                    } else {
                        "bad"
                    };
                    let seen = if p.observed { "reached" } else { "no reply" };
                    let want = if p.expected {
                        "expected reach"
                    } else {
                        "expected isolation"
                    };
                    let _ = write!(
                        h,
                        "<td class=\"{class}\" title=\"{want}\">{seen}<br><small>{want}</small></td>"
                    );
                }
            }
        }
        h.push_str("</tr>");
    }
    h.push_str("</table>");
    h
}

const NODE_W: usize = 430;
const GAP: usize = 30;
const LINE: usize = 15;

fn workload_height(w: &WorkloadSnap) -> usize {
    24 + LINE * w.interfaces.len().max(1)
}

/// Nodes side by side above the fabric bar; workloads inside their node with one
/// line per interface; secondary interfaces wired to the node's uplink.
pub fn topology_svg(t: &Topology) -> String {
    let inner_h = t
        .nodes
        .iter()
        .map(|n| {
            60 + t
                .workloads
                .iter()
                .filter(|w| w.node == n.name)
                .map(|w| workload_height(w) + 10)
                .sum::<usize>()
                + 50
        })
        .max()
        .unwrap_or(120);
    let width = GAP + t.nodes.len().max(1) * (NODE_W + GAP);
    let height = inner_h + 110;
    let mut s = format!(
        "<svg class=\"topology\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"monospace\" font-size=\"11\">"
    );
    let fabric_y = inner_h + 60;
    let _ = write!(
        s,
        "<rect x=\"10\" y=\"{fabric_y}\" width=\"{}\" height=\"28\" rx=\"5\" fill=\"#455a64\"/><text x=\"20\" y=\"{}\" fill=\"#fff\" font-size=\"12\">fabric {}</text>",
        width - 20,
        fabric_y + 18,
        escape(&t.fabric)
    );
    for (i, n) in t.nodes.iter().enumerate() {
        let x = GAP + i * (NODE_W + GAP);
        let y = 20;
        let _ = write!(
            s,
            "<g class=\"node\"><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_W}\" height=\"{inner_h}\" rx=\"8\" fill=\"#e3f2fd\" stroke=\"#1565c0\"/>"
        );
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">node {}</text>",
            x + 10,
            y + 18,
            escape(&n.name)
        );
        if !n.bridges.is_empty() {
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\">bridges: {}</text>",
                x + 10,
                y + 34,
                escape(&n.bridges.join(", "))
            );
        }
        // The uplink sits on the node's bottom edge, wired to the fabric.
        let up_x = x + NODE_W / 2 - 80;
        let up_y = y + inner_h - 30;
        let _ = write!(
            s,
            "<rect x=\"{up_x}\" y=\"{up_y}\" width=\"160\" height=\"22\" rx=\"4\" fill=\"#fff3e0\" stroke=\"#ef6c00\"/><text x=\"{}\" y=\"{}\">{} {}</text>",
            up_x + 6,
            up_y + 15,
            escape(&n.uplink),
            escape(&n.address)
        );
        let _ = write!(
            s,
            "<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{fabric_y}\" stroke=\"#ef6c00\" stroke-width=\"2\"/>",
            up_x + 80,
            up_y + 22
        );
        let mut wy = y + 46;
        for w in t.workloads.iter().filter(|w| w.node == n.name) {
            let wh = workload_height(w);
            let fill = if w.kind == "vm" { "#f3e5f5" } else { "#ffffff" };
            let _ = write!(
                s,
                "<g class=\"workload\"><rect x=\"{}\" y=\"{wy}\" width=\"{}\" height=\"{wh}\" rx=\"5\" fill=\"{fill}\" stroke=\"#555\"/>",
                x + 10,
                NODE_W - 20
            );
            let _ = write!(
                s,
                "<text x=\"{}\" y=\"{}\" font-weight=\"bold\">{} {}</text>",
                x + 16,
                wy + 15,
                escape(&w.kind),
                escape(&w.name)
            );
            for (k, iface) in w.interfaces.iter().enumerate() {
                let ly = wy + 30 + k * LINE;
                let text = format!(
                    "{} {} {} {}",
                    iface.name,
                    iface.mac.as_deref().unwrap_or("-"),
                    iface.ips.join(","),
                    iface.attachment.as_deref().unwrap_or("")
                );
                let _ = write!(
                    s,
                    "<text x=\"{}\" y=\"{ly}\">{}</text>",
                    x + 22,
                    escape(&text)
                );
                if !iface
                    .attachment
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("cni0")
                {
                    let _ = write!(
                        s,
                        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{up_y}\" stroke=\"#1565c0\" stroke-dasharray=\"3,2\"/>",
                        x + NODE_W - 14,
                        ly - 4,
                        up_x + 150
                    );
                }
            }
            s.push_str("</g>");
            wy += wh + 10;
        }
        s.push_str("</g>");
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{InterfaceSnap, NodeSnap};

    #[test]
    fn matrix_marks_mismatches() {
        let probes = vec![
            Probe {
                from: "a".into(),
                to: "b".into(),
                expected: true,
                observed: true,
            },
            Probe {
                from: "a".into(),
                to: "own <uplink>".into(),
                expected: false,
                observed: true,
            },
        ];
        let m = matrix(&probes);
        assert_eq!(m.matches("class=\"ok\"").count(), 1);
        assert_eq!(m.matches("class=\"bad\"").count(), 1);
        assert!(m.contains("own &lt;uplink&gt;"));
    }

    #[test]
    fn topology_draws_every_node_workload_and_interface() {
        let t = Topology {
            fabric: "br0".into(),
            nodes: vec![NodeSnap {
                name: "node1".into(),
                uplink: "ens33".into(),
                address: "192.168.159.137".into(),
                bridges: vec!["cni0".into()],
            }],
            workloads: vec![WorkloadSnap {
                name: "macvtap-pod".into(),
                kind: "pod".into(),
                node: "node1".into(),
                interfaces: vec![InterfaceSnap {
                    name: "net1".into(),
                    network: "default/dataplane".into(),
                    mac: Some("02:23:45:67:89:01".into()),
                    ips: vec![],
                    attachment: Some("macvtap on ens33".into()),
                }],
            }],
        };
        let svg = topology_svg(&t);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        for needle in [
            "node node1",
            "pod macvtap-pod",
            "02:23:45:67:89:01",
            "ens33 192.168.159.137",
            "<line",
        ] {
            assert!(svg.contains(needle), "{needle}");
        }
    }
}
