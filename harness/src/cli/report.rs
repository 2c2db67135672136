//! `secnet report DIR`: the human reports again from `DIR/report.json`;
//! `secnet report spec-table A B …`: several runs' clause tables side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use super::could_not_run;

pub(crate) const AFTER_HELP: &str = "Examples:\n  secnet report reports/\n  secnet report spec-table netns-multus/ bare/ --out side/   # clause tables side by side";

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ReportArgs {
    /// The directory a `secnet conform --report DIR` wrote.
    #[arg(required = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    table: Option<Table>,
}

#[derive(clap::Subcommand)]
enum Table {
    /// Put the clause tables of `--profile multi-net-spec` runs side by side: one
    /// column per run, headed by what was under test, differing rows marked ≠.
    SpecTable(SpecTableArgs),
}

#[derive(clap::Args)]
struct SpecTableArgs {
    /// Each run's spec-conformance.json (or the --report directory holding it).
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    /// Also write spec-side-by-side.md and .json here.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> ExitCode {
    match (args.table, args.dir) {
        (Some(Table::SpecTable(t)), _) => spec_table(t),
        (None, Some(dir)) => rerender(dir),
        (None, None) => could_not_run("report", "name a report directory"),
    }
}

fn rerender(dir: PathBuf) -> ExitCode {
    let report = match secnet::report::Report::load(&dir) {
        Ok(r) => r,
        Err(e) => return could_not_run("report", e),
    };
    if let Err(e) = report.write(&dir) {
        return could_not_run("report", e);
    }
    eprintln!("secnet report: wrote {}", dir.join("report.html").display());
    ExitCode::SUCCESS
}

fn spec_table(args: SpecTableArgs) -> ExitCode {
    use secnet::scenario::spec_side_by_side as side;
    let columns = match args
        .runs
        .iter()
        .map(|p| side::read(p))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(c) => c,
        Err(e) => return could_not_run("report spec-table", e),
    };
    let rows = side::side_by_side(&columns);
    print!("{}", side::text(&columns, &rows));
    if let Some(dir) = args.out {
        if let Err(e) = side::write(&dir, &columns, &rows) {
            return could_not_run("report spec-table", e);
        }
        eprintln!(
            "secnet report: wrote {}",
            dir.join("spec-side-by-side.md").display()
        );
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{Cli, Cmd};
    use super::*;

    fn report(args: &[&str]) -> ReportArgs {
        let cli = Cli::try_parse_from(["secnet", "report"].iter().chain(args)).unwrap();
        match cli.command {
            Cmd::Report(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_directory_rerenders_and_spec_table_takes_two_runs_or_more() {
        let a = report(&["reports/"]);
        assert!(a.table.is_none());
        assert_eq!(a.dir, Some(PathBuf::from("reports/")));
        let Some(Table::SpecTable(t)) = report(&["spec-table", "a", "b", "--out", "o"]).table
        else {
            panic!("spec-table not parsed");
        };
        assert_eq!(t.runs, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(t.out, Some(PathBuf::from("o")));
        assert!(Cli::try_parse_from(["secnet", "report", "spec-table", "a"]).is_err());
    }
}
