//! `secnet bench`: CNI ADD+DEL latency beside the reference plugins, or A beside B.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{Sides, could_not_run};

pub(crate) const AFTER_HELP: &str = "Examples:\n  secnet bench --quick --report reports/\n  secnet bench --quick --b-bin-dir /opt/upstream/bin --b-plugin macvtap-deviceplugin=/opt/upstream/bin/macvtap-deviceplugin\n\nWith any --a-…/--b-… flag every CNI and device plugin row is measured for A (baseline,\ndefault: bundled) and B (candidate, default: bundled), interleaved, with the ratio B/A.";

#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// Fewer iterations (for CI).
    #[arg(long)]
    quick: bool,
    /// Write bench.json, bench.md and bench-scale.svg here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Directory with the CNI binaries under test [default: the bundled ones].
    #[arg(long)]
    cni_bin_dir: Option<PathBuf>,
    /// Directory with Debian's reference plugins.
    #[arg(long, default_value = "/usr/lib/cni")]
    reference_bin_dir: PathBuf,
    #[command(flatten)]
    sides: Sides,
}

pub fn run(args: BenchArgs) -> ExitCode {
    let ab = if args.sides.given() {
        match args.sides.resolve() {
            Ok(ab) => Some(ab),
            Err(e) => return could_not_run("bench", e),
        }
    } else {
        None
    };
    let cni_bin_dir = args.cni_bin_dir.unwrap_or_else(secnet::bins::bin_dir);
    let opts = secnet::bench::Options {
        ab,
        quick: args.quick,
        device_plugin: cni_bin_dir.join("macvtap-deviceplugin"),
        cni_bin_dir,
        reference_bin_dir: args.reference_bin_dir,
    };
    let b = match super::runtime().block_on(secnet::bench::run(&opts)) {
        Ok(b) => b,
        Err(e) => return could_not_run("bench", e),
    };
    println!("{}", b.markdown());
    if let Some(dir) = args.report
        && let Err(e) = b.write(&dir)
    {
        return could_not_run("bench", e);
    }
    ExitCode::SUCCESS
}
