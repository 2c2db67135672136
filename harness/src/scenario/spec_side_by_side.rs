//! Several runs' clause tables side by side (`secnet report spec-table A B …`):
//! one column per run, headed by what was under test, and the rows where the
//! runs' verdicts differ marked. Reads back what [`super::spec_clauses::write`] wrote.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::spec_clauses::CLAUSES;

/// The file a `--profile multi-net-spec --report DIR` run writes.
pub const FILE: &str = "spec-conformance.json";

/// One run's clause table, as read back.
#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub(crate) under_test: String,
    pub(crate) source: PathBuf,
    /// (clause, verdict, detail), in the file's order.
    #[serde(skip)]
    pub(crate) rows: Vec<(String, String, String)>,
}

/// Reads `path` (a spec-conformance.json, or the report directory holding one).
/// The error names the file and the field that is missing or of the wrong type.
pub fn read(path: &Path) -> Result<Column, String> {
    let file = if path.is_dir() {
        path.join(FILE)
    } else {
        path.to_path_buf()
    };
    let not_ours = |what: String| format!("{}: not a {FILE}: {what}", file.display());
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| not_ours(format!("{e}")))?;
    let string = |v: &Value, field: &str| -> Result<String, String> {
        v.get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| not_ours(format!("field `{field}` missing or not a string")))
    };
    let under_test = string(&json, "under_test")?;
    let clauses = json
        .get("clauses")
        .and_then(Value::as_array)
        .ok_or_else(|| not_ours("field `clauses` missing or not a list".into()))?;
    let rows = clauses
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let field =
                |f: &str| string(c, f).map_err(|e| e.replacen("`", &format!("`clauses[{i}]."), 1));
            Ok((field("clause")?, field("verdict")?, field("detail")?))
        })
        .collect::<Result<_, String>>()?;
    Ok(Column {
        under_test,
        source: file,
        rows,
    })
}

/// One clause across the runs.
#[derive(Debug, Clone, Serialize)]
pub struct SideRow {
    pub(crate) clause: String,
    /// Each run's verdict, in column order (`absent` when the run has no row).
    pub(crate) verdicts: Vec<String>,
    pub(crate) details: Vec<String>,
    /// The runs' verdicts are not all the same.
    pub(crate) differs: bool,
    /// How upstream multus departs from the clause, as secnet documents it.
    pub(crate) multus_diverges: Option<&'static str>,
}

/// The clauses in the spec's order (then any a run has that this secnet does not
/// know, e.g. from another version), one verdict per column.
pub fn side_by_side(columns: &[Column]) -> Vec<SideRow> {
    let mut ids: Vec<String> = CLAUSES.iter().map(|c| c.id.to_string()).collect();
    for c in columns {
        for (id, _, _) in &c.rows {
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
    }
    ids.into_iter()
        .map(|id| {
            let (verdicts, details): (Vec<String>, Vec<String>) = columns
                .iter()
                .map(|c| match c.rows.iter().find(|(i, _, _)| *i == id) {
                    Some((_, v, d)) => (v.clone(), d.clone()),
                    None => ("absent".into(), String::new()),
                })
                .unzip();
            let differs = verdicts.iter().any(|v| *v != verdicts[0]);
            let multus_diverges = CLAUSES
                .iter()
                .find(|c| c.id == id)
                .and_then(|c| c.multus_diverges);
            SideRow {
                clause: id,
                verdicts,
                details,
                differs,
                multus_diverges,
            }
        })
        .collect()
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The side-by-side table as Markdown: verdicts, then what each run saw on the
/// rows that differ.
pub fn markdown(columns: &[Column], rows: &[SideRow]) -> String {
    let differ = rows.iter().filter(|r| r.differs).count();
    let mut out = format!(
        "## Spec conformance side by side\n\n{} clauses, {differ} with different verdicts (marked ≠).\n\n| clause | ",
        rows.len()
    );
    for c in columns {
        let _ = write!(out, "{} | ", cell(&c.under_test));
    }
    out.push_str("≠ | upstream multus (documented) |\n|---|");
    out.push_str(&"---|".repeat(columns.len() + 2));
    out.push('\n');
    for r in rows {
        let _ = write!(out, "| {} | ", r.clause);
        for v in &r.verdicts {
            let _ = write!(out, "{v} | ");
        }
        let _ = writeln!(
            out,
            "{} | {} |",
            if r.differs { "≠" } else { "" },
            cell(r.multus_diverges.unwrap_or("conforms"))
        );
    }
    if differ > 0 {
        out.push_str("\n### Where the runs differ\n");
        for r in rows.iter().filter(|r| r.differs) {
            let _ = writeln!(out, "\n**{}**\n", r.clause);
            for ((c, v), d) in columns.iter().zip(&r.verdicts).zip(&r.details) {
                let _ = writeln!(out, "- {}: {v}: {}", c.under_test, cell(d));
            }
        }
    }
    out
}

/// The table as aligned text: a numbered legend of the columns, then one line
/// per clause, `≠` where the runs differ.
pub fn text(columns: &[Column], rows: &[SideRow]) -> String {
    let differ = rows.iter().filter(|r| r.differs).count();
    let mut out = format!(
        "spec conformance side by side: {} clauses, {differ} differ\n",
        rows.len()
    );
    for (i, c) in columns.iter().enumerate() {
        let _ = writeln!(
            out,
            "  [{}] {} ({})",
            i + 1,
            c.under_test,
            c.source.display()
        );
    }
    let _ = write!(out, "  {:<14}", "clause");
    for i in 0..columns.len() {
        let _ = write!(out, " {:<8}", format!("[{}]", i + 1));
    }
    out.push('\n');
    for r in rows {
        let _ = write!(out, "  {:<14}", r.clause);
        for v in &r.verdicts {
            let _ = write!(out, " {v:<8}");
        }
        let _ = writeln!(out, "{}", if r.differs { " ≠" } else { "" });
    }
    out
}

/// Writes `spec-side-by-side.md` and `spec-side-by-side.json` into `dir`.
pub fn write(dir: &Path, columns: &[Column], rows: &[SideRow]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("spec-side-by-side.md"), markdown(columns, rows))?;
    let json = serde_json::json!({"columns": columns, "clauses": rows});
    std::fs::write(
        dir.join("spec-side-by-side.json"),
        serde_json::to_string_pretty(&json).expect("rows serialize"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::ScratchDir;
    use crate::scenario::spec_clauses::{self, Row};

    /// A clause table as a run writes it, every clause `pass` but `failing`.
    fn written(dir: &Path, under_test: &str, failing: &str) {
        let rows: Vec<Row> = CLAUSES
            .iter()
            .map(|c| Row {
                clause: c.id,
                version: c.since,
                level: c.level,
                asks: c.asks,
                verdict: if c.id == failing { "fail" } else { "pass" }.into(),
                detail: format!("seen by {under_test}"),
                multus_diverges: c.multus_diverges,
                scenario: String::new(),
            })
            .collect();
        spec_clauses::write(dir, &rows, under_test).unwrap();
    }

    #[test]
    fn two_written_tables_read_back_side_by_side_with_their_differences_marked() {
        let tmp = ScratchDir::new("secnet-spec-side").unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        written(&a, "emulation", "§7.5");
        written(&b, "real multus", "§7.4");
        let columns = vec![read(&a).unwrap(), read(&b.join(FILE)).unwrap()];
        assert_eq!(columns[1].under_test, "real multus");
        let rows = side_by_side(&columns);
        assert_eq!(rows.len(), CLAUSES.len());
        let differing: Vec<_> = rows
            .iter()
            .filter(|r| r.differs)
            .map(|r| &r.clause)
            .collect();
        assert_eq!(differing, ["§7.4", "§7.5"]);
        let r75 = rows.iter().find(|r| r.clause == "§7.5").unwrap();
        assert_eq!(r75.verdicts, ["fail", "pass"]);
        let md = markdown(&columns, &rows);
        assert!(md.contains("| emulation | real multus | ≠ |"), "{md}");
        assert!(
            md.contains("- real multus: fail: seen by real multus"),
            "{md}"
        );
        write(tmp.path(), &columns, &rows).unwrap();
        assert!(tmp.path().join("spec-side-by-side.json").exists());
    }

    #[test]
    fn a_file_that_is_not_a_clause_table_names_the_file_and_field() {
        let tmp = ScratchDir::new("secnet-spec-side").unwrap();
        written(tmp.path(), "emulation", "");
        let file = tmp.path().join(FILE);
        let mut json: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        json["clauses"][2]
            .as_object_mut()
            .unwrap()
            .remove("verdict");
        std::fs::write(&file, json.to_string()).unwrap();
        let e = read(tmp.path()).unwrap_err();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("`clauses[2].verdict`"), "{e}");
        // A report.json is not a clause table either.
        std::fs::write(&file, r#"{"cluster": "netns", "scenarios": []}"#).unwrap();
        let e = read(&file).unwrap_err();
        assert!(e.contains("`under_test`"), "{e}");
    }
}
