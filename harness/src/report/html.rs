//! `report.html`: one self-contained page (inline CSS and SVG, no network) with the
//! run's header (date, secnet version, host, cluster, the plugins under test as a
//! table), the summary, and one row per scenario that opens onto its phases,
//! diagnostics, topology drawing and reachability matrix.

use std::fmt::Write as _;

pub use super::escape;
use super::{Report, ScenarioReport, Status, implementation};
use crate::observe::Probe;

pub use super::topology::topology_svg;

pub const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em;margin-bottom:.3em}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em;text-align:left;vertical-align:top}\
table.facts td,table.facts th{border:none;padding:1px 12px 1px 0}table.facts th{color:#555;font-weight:600}\
.passed{color:#176f2c;font-weight:600}.failed{color:#b00020;font-weight:600}.error{color:#8a4b00;font-weight:600}.flaky{color:#6a1b9a;font-weight:600}.skipped{color:#777}\
.badge{display:inline-block;padding:2px 10px;border-radius:10px;margin-right:6px;color:#fff}\
.b-passed{background:#2e7d32}.b-failed{background:#c62828}.b-error{background:#e65100}.b-flaky{background:#6a1b9a}.b-skipped{background:#888}\
.scenarios{border:1px solid #ddd;border-radius:6px}\
.row{display:grid;grid-template-columns:5.5em minmax(0,1fr) 7em 5em 5.5em;gap:10px;align-items:baseline;padding:4px 10px;border-top:1px solid #eee}\
.row.head{font-weight:600;background:#f4f4f4;border-top:none}summary.row{cursor:pointer;list-style:none}summary.row::-webkit-details-marker{display:none}\
summary.row:hover{background:#f7f9ff}.time{white-space:nowrap;text-align:right;font-variant-numeric:tabular-nums}\
.body{padding:.2em 1em 1em 2em}\
pre{background:#f6f6f6;padding:.6em;overflow:auto;max-height:30em;font-size:.8em}\
.matrix td.ok{background:#dff0d8}.matrix td.bad{background:#f8d7da}.matrix td.none{background:#fafafa}\
.label{display:inline-block;background:#eef;border-radius:4px;padding:0 5px;margin:0 2px;font-size:.8em}";

pub fn render(report: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>secnet conform: {} {}</title><style>{STYLE}</style></head><body>",
        escape(&report.cluster),
        escape(&report.started_at)
    );
    let _ = write!(
        h,
        "<h1>secnet conform on the <code>{}</code> cluster</h1><table class=\"facts\">",
        escape(&report.cluster)
    );
    for (key, value) in report.facts() {
        if key != "implementation" {
            let _ = write!(h, "<tr><th>{key}</th><td>{}</td></tr>", escape(&value));
        }
    }
    h.push_str("</table>");
    let s = &report.summary;
    let _ = write!(
        h,
        "<p id=\"summary\"><span class=\"badge b-passed\">{} passed</span><span class=\"badge b-failed\" title=\"the implementation under test is wrong\">{} failed</span><span class=\"badge b-error\" title=\"the harness or cluster broke: the implementation was not judged\">{} error</span><span class=\"badge b-flaky\" title=\"passed on a retry\">{} flaky</span><span class=\"badge b-skipped\">{} skipped</span> in {:.1} s</p>",
        s.passed, s.failed, s.errors, s.flaky, s.skipped, report.wall_s
    );
    implementation_table(&mut h, &report.implementation);
    h.push_str("<h2>Scenarios</h2><div class=\"scenarios\"><div class=\"row head\"><span>status</span><span>scenario</span><span>backend</span><span>workload</span><span class=\"time\">time</span></div>");
    for (i, s) in report.scenarios.iter().enumerate() {
        scenario(&mut h, i, s);
    }
    h.push_str("</div></body></html>\n");
    h
}

/// The plugins under test as a table, then the implementation's other facts.
fn implementation_table(h: &mut String, imp: &serde_json::Value) {
    h.push_str("<h2>Implementation under test</h2>");
    let plugins = implementation::plugins(imp);
    if !plugins.is_empty() {
        h.push_str("<table class=\"plugins\"><tr><th>plugin</th><th>file</th><th>chosen by</th><th>CNI versions</th></tr>");
        for p in &plugins {
            let _ = write!(
                h,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                escape(&p.name),
                escape(&p.path),
                escape(&p.from),
                escape(&p.versions)
            );
        }
        h.push_str("</table>");
    }
    let facts = implementation::facts(imp);
    if !facts.is_empty() {
        h.push_str("<table class=\"facts\">");
        for (k, v) in facts {
            let _ = write!(
                h,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                escape(&k),
                escape(&v)
            );
        }
        h.push_str("</table>");
    }
}

fn status_class(s: Status) -> &'static str {
    s.word()
}

/// One scenario: its row, which opens onto what it observed.
fn scenario(h: &mut String, i: usize, s: &ScenarioReport) {
    // Failures and reachability checks are what people come to look at.
    let open = if s.status != Status::Passed && s.status != Status::Skipped
        || !s.observed.reachability.is_empty()
    {
        " open"
    } else {
        ""
    };
    let class = status_class(s.status);
    let labels: String = s
        .labels
        .iter()
        .map(|l| format!("<span class=\"label\">{}</span>", escape(l)))
        .collect();
    let _ = write!(
        h,
        "<details id=\"s{i}\"{open}><summary class=\"row\"><span class=\"{class}\">{class}</span><span>{} {labels}</span><span>{}</span><span>{}</span><span class=\"time\">{:.2} s</span></summary><div class=\"body\">",
        escape(&s.name),
        escape(&s.backend),
        escape(&s.workload),
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
        let _ = write!(h, "<p class=\"note\">note: {}</p>", escape(note));
    }
    for d in s.observed.uniqueness.iter().flat_map(|u| &u.duplicates) {
        let _ = write!(
            h,
            "<p class=\"duplicate\">duplicate: {}</p>",
            escape(&d.to_string())
        );
    }
    if !s.id.is_empty() && s.status != Status::Passed {
        let _ = write!(
            h,
            "<p class=\"rerun\">rerun: <code>secnet conform --focus {}</code></p>",
            escape(&s.id)
        );
    }
    for (n, a) in s.attempts.earlier.iter().enumerate() {
        let _ = write!(
            h,
            "<h4>Run {} of {}: {}</h4><pre>{}</pre>",
            n + 1,
            s.attempts.runs,
            a.status.word(),
            escape(&a.message)
        );
    }
    if !s.message.is_empty() {
        let _ = write!(h, "<h4>Diagnostics</h4><pre>{}</pre>", escape(&s.message));
    }
    if let Some(t) = &s.observed.topology {
        h.push_str("<h4>Topology</h4>");
        h.push_str(&topology_svg(t, &s.observed.guests, &s.observed.migrations));
    }
    if !s.observed.reachability.is_empty() {
        h.push_str("<h4>Reachability</h4>");
        h.push_str(&matrix(&s.observed.reachability));
    }
    h.push_str("</div></details>");
}

/// Who reached whom: rows are sources, columns targets (one per protocol probed);
/// a cell is green when the observation matches the expectation.
pub fn matrix(probes: &[Probe]) -> String {
    let mut froms: Vec<&str> = Vec::new();
    let mut tos: Vec<(&str, &str)> = Vec::new();
    for p in probes {
        if !froms.contains(&p.from.as_str()) {
            froms.push(&p.from);
        }
        if !tos.contains(&(p.to.as_str(), p.protocol.as_str())) {
            tos.push((&p.to, &p.protocol));
        }
    }
    let mut h = String::from("<table class=\"matrix\"><tr><th>from \\ to</th>");
    for (t, protocol) in &tos {
        let _ = write!(
            h,
            "<th>{}<br><small>{}</small></th>",
            escape(t),
            escape(protocol)
        );
    }
    h.push_str("</tr>");
    for f in &froms {
        let _ = write!(h, "<tr><th>{}</th>", escape(f));
        for (t, protocol) in &tos {
            let cell = probes
                .iter()
                .find(|p| p.from == *f && p.to == *t && p.protocol == *protocol);
            match cell {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_marks_mismatches() {
        let probes = vec![
            Probe {
                from: "a".into(),
                to: "b".into(),
                expected: true,
                observed: true,
                protocol: "icmp".into(),
            },
            Probe {
                from: "a".into(),
                to: "own <uplink>".into(),
                expected: false,
                observed: true,
                protocol: "icmp".into(),
            },
            Probe {
                from: "a".into(),
                to: "b".into(),
                expected: true,
                observed: false,
                protocol: "udp".into(),
            },
        ];
        let m = matrix(&probes);
        assert_eq!(m.matches("class=\"ok\"").count(), 1);
        assert_eq!(
            m.matches("class=\"bad\"").count(),
            2,
            "one column per protocol"
        );
        assert!(m.contains("<small>udp</small>"));
        assert!(m.contains("own &lt;uplink&gt;"));
    }
}
