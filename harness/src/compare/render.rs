//! `compare.md` and `compare.html`: two columns (A, B), regressions first, then
//! fixes, then the rest; the failure messages below. Same look as `report.html`.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Comparison, Row, Side};
use crate::report::Status;
use crate::report::html::{STYLE, escape};

pub fn status(s: Status) -> &'static str {
    s.word()
}

fn change(r: &Row) -> &'static str {
    if r.regressed() {
        "REGRESSION"
    } else if r.fixed() {
        "fixed"
    } else {
        ""
    }
}

/// `macvtap=PATH (from)` per plugin, from an implementation's description.
fn plugins(implementation: &Value) -> Vec<String> {
    implementation["plugins"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, p)| {
                    let path = p["path"].as_str().unwrap_or("(missing)");
                    let from = p["from"].as_str().unwrap_or("?");
                    format!("{name}={path} ({from})")
                })
                .collect()
        })
        .unwrap_or_default()
}

fn headline(c: &Comparison) -> String {
    format!(
        "{} regression(s), {} fixed, {} scenario(s) in {:.1} s (run {})",
        c.regressions.len(),
        c.fixed.len(),
        c.scenarios.len(),
        c.wall_s,
        c.run_id
    )
}

pub fn markdown(c: &Comparison) -> String {
    let mut m = String::from("# secnet compare: A (baseline) vs B (candidate)\n\n");
    let _ = writeln!(m, "**{}**\n", headline(c));
    for (side, implementation) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(m, "- {side}: {}", plugins(implementation).join(", "));
    }
    m.push_str("\n| scenario | A | B | change |\n|---|---|---|---|\n");
    let cell = |s: &Side| format!("{} {:.2} s", status(s.status), s.duration_s);
    for r in c.ordered() {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} |",
            r.name.replace('|', "\\|"),
            cell(&r.a),
            cell(&r.b),
            change(r)
        );
    }
    let failures: Vec<(&Row, &str, &Side)> = c
        .ordered()
        .into_iter()
        .flat_map(|r| [(r, "A", &r.a), (r, "B", &r.b)])
        .filter(|(_, _, s)| !s.message.is_empty())
        .collect();
    if !failures.is_empty() {
        m.push_str("\n## Messages\n");
        for (r, side, s) in failures {
            let _ = write!(
                m,
                "\n### {} — {side} {}\n\n```\n{}\n```\n",
                r.name,
                status(s.status),
                s.message.trim_end()
            );
        }
    }
    m
}

pub fn html(c: &Comparison) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>secnet compare {}</title><style>{STYLE}.regression{{background:#fde2e4}}.fix{{background:#e3f4e1}}</style></head><body>",
        escape(&c.run_id)
    );
    h.push_str("<h1>secnet compare: A (baseline) vs B (candidate)</h1>");
    let _ = write!(
        h,
        "<p id=\"summary\"><span class=\"badge b-failed\">{} regression(s)</span><span class=\"badge b-passed\">{} fixed</span> {} scenario(s) in {:.1} s, run <code>{}</code></p>",
        c.regressions.len(),
        c.fixed.len(),
        c.scenarios.len(),
        c.wall_s,
        escape(&c.run_id)
    );
    h.push_str("<table><tr><th></th><th>implementation</th></tr>");
    for (side, implementation) in [("A", &c.a), ("B", &c.b)] {
        let _ = write!(
            h,
            "<tr><td>{side}</td><td><code>{}</code></td></tr>",
            plugins(implementation)
                .iter()
                .map(|p| escape(p))
                .collect::<Vec<_>>()
                .join("<br>")
        );
    }
    h.push_str("</table><h2>Scenarios</h2><table><tr><th>scenario</th><th>A</th><th>B</th><th>change</th></tr>");
    let cell = |s: &Side| {
        let class = status(s.status);
        format!(
            "<td class=\"{class}\">{class} <small>{:.2} s</small></td>",
            s.duration_s
        )
    };
    let ordered = c.ordered();
    for (i, r) in ordered.iter().enumerate() {
        let class = if r.regressed() {
            " class=\"regression\""
        } else if r.fixed() {
            " class=\"fix\""
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr{class}><td><a href=\"#c{i}\">{}</a></td>{}{}<td>{}</td></tr>",
            escape(&r.name),
            cell(&r.a),
            cell(&r.b),
            change(r)
        );
    }
    h.push_str("</table>");
    for (i, r) in ordered.iter().enumerate() {
        if r.a.message.is_empty() && r.b.message.is_empty() {
            continue;
        }
        let open = if r.regressed() { " open" } else { "" };
        let _ = write!(
            h,
            "<details id=\"c{i}\"{open}><summary>{} <b>{}</b></summary><table><tr><th>A: {}</th><th>B: {}</th></tr><tr><td><pre>{}</pre></td><td><pre>{}</pre></td></tr></table></details>",
            escape(&r.name),
            change(r),
            status(r.a.status),
            status(r.b.status),
            escape(&r.a.message),
            escape(&r.b.message)
        );
    }
    h.push_str("</body></html>\n");
    h
}
