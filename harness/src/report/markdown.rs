//! `report.md`: the run's header, a summary table, and one section per failure
//! (expected, observed, where to look, the whole text in a fenced block).

use std::fmt::Write as _;

use super::{Report, ScenarioReport, Status, implementation};

pub fn render(report: &Report) -> String {
    let mut m = format!("# secnet conform on `{}`\n\n", report.cluster);
    for (key, value) in report.facts() {
        let _ = writeln!(m, "- **{key}**: {}", inline(&value));
    }
    let plugins = implementation::plugins(&report.implementation);
    if !plugins.is_empty() {
        m.push_str("\n| plugin | file | chosen by | CNI versions |\n|---|---|---|---|\n");
        for p in &plugins {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} |",
                cell(&p.name),
                code_cell(&p.path),
                cell(&p.from),
                cell(&p.versions)
            );
        }
    }
    let s = &report.summary;
    let _ = write!(
        m,
        "\n## Summary\n\n**{} passed, {} failed, {} skipped** in {:.1} s\n\n| scenario | backend | workload | status | time | note |\n|---|---|---|---|---|---|\n",
        s.passed, s.failed, s.skipped, report.wall_s
    );
    for sc in &report.scenarios {
        let note = match sc.status {
            Status::Failed => "see Failures".to_string(),
            _ => sc.message.lines().next().unwrap_or_default().to_string(),
        };
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {:.2} s | {} |",
            cell(&sc.name),
            cell(&sc.backend),
            cell(&sc.workload),
            status_word(sc.status),
            sc.duration_s,
            cell(&note)
        );
    }
    let failed: Vec<&ScenarioReport> = report
        .scenarios
        .iter()
        .filter(|s| s.status == Status::Failed)
        .collect();
    if !failed.is_empty() {
        m.push_str("\n## Failures\n");
        for sc in failed {
            failure(&mut m, report, sc);
        }
    }
    m
}

fn failure(m: &mut String, report: &Report, sc: &ScenarioReport) {
    let _ = write!(m, "\n### {}\n\n", inline(&sc.name));
    let _ = writeln!(m, "- **expected**: {}", inline(sc.claim()));
    let _ = writeln!(
        m,
        "- **observed**: {}",
        inline(sc.message.lines().next().unwrap_or("(no message)"))
    );
    for p in sc
        .observed
        .reachability
        .iter()
        .filter(|p| p.expected != p.observed)
    {
        let _ = writeln!(
            m,
            "- **reachability**: {} → {}: expected {}, observed {}",
            inline(&p.from),
            inline(&p.to),
            if p.expected { "reach" } else { "isolation" },
            if p.observed { "a reply" } else { "no reply" }
        );
    }
    let _ = writeln!(
        m,
        "- **artifacts**: this scenario in `report.json`, `junit.xml` and `report.html` next to this file{}",
        match implementation::run_id(&report.implementation) {
            Some(id) => format!(
                "; a `--keep` run leaves its namespaces or objects (run `{id}`) until `secnet clean --run {id}`"
            ),
            None => String::new(),
        }
    );
    if !sc.message.is_empty() {
        let fence = fence_for(&sc.message);
        let _ = write!(m, "\n{fence}text\n{}\n{fence}\n", sc.message.trim_end());
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "**failed**",
        Status::Skipped => "skipped",
    }
}

/// A fence longer than any run of backticks in `text`.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

/// Text for one table cell: pipes escaped, one line.
fn cell(text: &str) -> String {
    inline(text).replace('|', "\\|")
}

fn code_cell(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        format!("`{}`", cell(text).replace('`', "'"))
    }
}

/// One line of text (newlines folded).
fn inline(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outgrow_the_backticks_inside() {
        assert_eq!(fence_for("plain"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
    }
}
