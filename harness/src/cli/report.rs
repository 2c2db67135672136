//! `secnet report DIR`: the human reports again from `DIR/report.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::could_not_run;

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The directory a `secnet conform --report DIR` wrote.
    dir: PathBuf,
}

pub fn run(args: ReportArgs) -> ExitCode {
    let dir = args.dir;
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
