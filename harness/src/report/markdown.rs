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
    let _ = write!(
        m,
        "\n## Summary\n\n**{}** in {:.1} s\n\n*failed*: the implementation under test is wrong; *error*: the harness or cluster broke, the implementation was not judged; *flaky*: passed on a retry.\n\n| scenario | backend | workload | status | time | note |\n|---|---|---|---|---|---|\n",
        report.summary.line(),
        report.wall_s
    );
    for sc in &report.scenarios {
        let note = match sc.status {
            Status::Failed => "see Failures".to_string(),
            Status::Error => "see Errors".to_string(),
            Status::Flaky => format!("passed on run {} of {}", sc.attempts.runs, sc.attempts.runs),
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
    for (status, title) in [
        (Status::Failed, "Failures"),
        (Status::Error, "Errors"),
        (Status::Flaky, "Flaky"),
    ] {
        let these: Vec<&ScenarioReport> = report
            .scenarios
            .iter()
            .filter(|s| s.status == status)
            .collect();
        if !these.is_empty() {
            let _ = writeln!(m, "\n## {title}");
            for sc in these {
                failure(&mut m, report, sc);
            }
        }
    }
    m
}

fn failure(m: &mut String, report: &Report, sc: &ScenarioReport) {
    let _ = write!(m, "\n### {}\n\n", inline(&sc.name));
    let _ = writeln!(m, "- **expected**: {}", inline(sc.claim()));
    let observed = match sc.status {
        // A flaky scenario passed in the end: what it saw is the failed attempt's.
        Status::Flaky => sc
            .attempts
            .earlier
            .last()
            .map_or("", |a| a.message.as_str()),
        _ => sc.message.as_str(),
    };
    let _ = writeln!(
        m,
        "- **observed**: {}",
        inline(observed.lines().next().unwrap_or("(no message)"))
    );
    if !sc.id.is_empty() {
        let _ = writeln!(m, "- **rerun**: `secnet conform --focus {}`", sc.id);
    }
    if sc.attempts.runs > 1 {
        let _ = writeln!(
            m,
            "- **runs**: {} ({})",
            sc.attempts.runs,
            sc.attempts
                .earlier
                .iter()
                .map(|a| a.status.word())
                .chain([sc.status.word()])
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
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
    for d in sc.observed.uniqueness.iter().flat_map(|u| &u.duplicates) {
        let _ = writeln!(m, "- **duplicate**: {}", inline(&d.to_string()));
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
    if !observed.is_empty() {
        let fence = fence_for(observed);
        let _ = write!(m, "\n{fence}text\n{}\n{fence}\n", observed.trim_end());
    }
}

fn status_word(s: Status) -> String {
    match s {
        Status::Failed | Status::Error | Status::Flaky => format!("**{}**", s.word()),
        _ => s.word().to_string(),
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
