//! `secnet compare`: the selected scenarios on A, then on B; regressions first.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Selection, Sides, could_not_run, exit_code};

pub const AFTER_HELP: &str = "A and B are each a bin dir and/or --plugin overrides; A defaults to the bundled plugins.\n\nExamples:\n  secnet compare --b-plugin macvtap=./macvtap --backends macvtap --report cmp/\n  secnet compare --b-bin-dir /opt/upstream/bin --b-plugin macvtap-deviceplugin=/opt/upstream/bin/macvtap-deviceplugin\n  secnet compare --a-bin-dir old/ --b-bin-dir new/ --label mac\n\nWrites compare.json, compare.md and compare.html (regressions first). Exit codes: 0 no\nregression, 1 a regression, 2 could not run.";

#[derive(clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    sides: Sides,
    /// Write compare.json, compare.md and compare.html here.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    select: Selection,
    /// Keep the namespaces of failed scenarios and print how to enter them.
    #[arg(long)]
    keep: bool,
    /// Directory with Debian's reference CNI plugins (bridge, host-local, macvlan).
    #[arg(long, default_value = "/usr/lib/cni")]
    reference_bin_dir: PathBuf,
}

#[cfg(test)]
impl CompareArgs {
    pub fn sides(self) -> Sides {
        self.sides
    }
}

pub fn run(args: CompareArgs) -> ExitCode {
    let (a, b) = match args.sides.resolve() {
        Ok(ab) => ab,
        Err(e) => return could_not_run("compare", e),
    };
    let base = args.select.apply(secnet::conform::Options {
        reference_bin_dir: args.reference_bin_dir,
        keep: args.keep,
        ..secnet::conform::Options::bundled()
    });
    let a = secnet::conform::Options {
        implementation: a,
        ..base.clone()
    };
    let b = secnet::conform::Options {
        implementation: b,
        ..base
    };
    let c = match super::runtime().block_on(secnet::compare::run(&a, &b)) {
        Ok(c) => c,
        Err(e) => return could_not_run("compare", e),
    };
    let md = secnet::compare::render::markdown(&c);
    // The table (up to the messages) on stdout; the whole story in the files.
    println!("{}", md.split("\n## Messages").next().unwrap_or(&md));
    if let Some(dir) = args.report {
        if let Err(e) = c.write(&dir) {
            return could_not_run("compare", e);
        }
        eprintln!("secnet compare: report in {}", dir.display());
    }
    exit_code(c.regressions.is_empty())
}
