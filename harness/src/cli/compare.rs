//! `secnet compare`: the selected scenarios on A, then on B; regressions first.

use std::path::PathBuf;
use std::process::ExitCode;

use secnet::cluster::provider::Provider;

use super::{Selection, Sides, could_not_run, exit_code};

pub(crate) const AFTER_HELP: &str = "A and B are each a bin dir and/or --plugin overrides; A defaults to the bundled plugins.\nOr A and B are clusters (--a-cluster, --b-cluster): the same plugins (--a-bin-dir/--a-plugin) on\nboth, and what each cluster observed compared (network-status, device IDs, capacity, the CNI\ncalls and their CNI_ARGS and configs): every difference listed, the known ones explained.\n\nExamples:\n  secnet compare --a-cluster netns --b-cluster bare --k8s-bin-dir DIR --component-bin multus=MDIR --label seed --report cmp/\n  secnet compare --b-plugin macvtap=./macvtap --backends macvtap --report cmp/\n  secnet compare --b-bin-dir /opt/upstream/bin --b-plugin macvtap-deviceplugin=/opt/upstream/bin/macvtap-deviceplugin\n  secnet compare --a-bin-dir old/ --b-bin-dir new/ --label mac\n\nWrites compare.json, compare.md and compare.html (regressions first). Exit codes: 0 no\nregression, 1 a regression, 2 could not run. With clusters: compare-clusters.json and\ncompare-clusters.md; exit 1 on an unexplained difference.";

#[derive(clap::Args)]
pub(crate) struct CompareArgs {
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
    /// A's cluster, to compare clusters rather than plugins [default: netns].
    #[arg(long, value_enum, hide_possible_values = true)]
    a_cluster: Option<Provider>,
    /// B's cluster, e.g. bare (a real Kubernetes from --k8s-bin-dir) against netns.
    #[arg(long, value_enum, hide_possible_values = true)]
    b_cluster: Option<Provider>,
    #[command(flatten)]
    bare: super::conform::BareArgs,
}

#[cfg(test)]
impl CompareArgs {
    pub(crate) fn sides(self) -> Sides {
        self.sides
    }
}

pub fn run(args: CompareArgs) -> ExitCode {
    if args.a_cluster.is_some() || args.b_cluster.is_some() {
        return run_clusters(args);
    }
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

/// `--a-cluster X --b-cluster Y`: one implementation (A's flags) on two clusters.
fn run_clusters(args: CompareArgs) -> ExitCode {
    let (a_cluster, b_cluster) = (
        args.a_cluster.unwrap_or(Provider::Netns),
        args.b_cluster.unwrap_or(Provider::Netns),
    );
    if a_cluster == b_cluster {
        return could_not_run(
            "compare",
            format!("--a-cluster and --b-cluster are both {a_cluster}: name two clusters"),
        );
    }
    if args.sides.b_bin_dir.is_some() || !args.sides.b_plugin.is_empty() {
        return could_not_run(
            "compare",
            "compare one axis at a time: with --a-cluster/--b-cluster both clusters run A's plugins (--a-bin-dir, --a-plugin); drop --b-bin-dir/--b-plugin",
        );
    }
    let implementation = match args.sides.resolve() {
        Ok((a, _)) => a,
        Err(e) => return could_not_run("compare", e),
    };
    let base = args.select.apply(secnet::conform::Options {
        reference_bin_dir: args.reference_bin_dir,
        keep: args.keep,
        implementation,
        bare: args.bare.options(),
        ..secnet::conform::Options::bundled()
    });
    let side = |cluster| secnet::conform::Options {
        cluster,
        ..base.clone()
    };
    let (a, b) = (side(a_cluster), side(b_cluster));
    let c = match super::runtime().block_on(secnet::compare::clusters::run(&a, &b)) {
        Ok(c) => c,
        Err(e) => return could_not_run("compare", e),
    };
    let md = secnet::compare::clusters::markdown(&c);
    println!("{md}");
    if let Some(dir) = args.report {
        if let Err(e) = c.write(&dir) {
            return could_not_run("compare", e);
        }
        eprintln!("secnet compare: report in {}", dir.display());
    }
    exit_code(c.unexplained == 0)
}
