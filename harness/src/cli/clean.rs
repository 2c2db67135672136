//! `secnet clean`: what killed or `--keep` runs left, and only secnet's.

use std::path::PathBuf;
use std::process::ExitCode;

use secnet::clean::LiveRun;
use secnet::cluster::kube::existing::ExistingOptions;
use secnet::cluster::kube::sweep::{self, Swept};

use super::{could_not_run, exit_code};

pub(crate) const AFTER_HELP: &str = "A run that is still going (its marker /run/secnet/live/<run id>.lock is locked by\nits process) is left alone and named, unless --force: its namespaces, its kind\ncluster, its objects on an existing cluster.\n\nExamples:\n  secnet clean                 # every leftover of any finished or killed secnet run\n  secnet clean --run sn1a2b3c  # only that run (the id conform prints first)\n  secnet clean --force         # live runs too\n  secnet clean --cluster existing --context lab   # objects labelled secnet.run on that cluster\n  secnet clean --cluster kind --run sn1a2b3c      # kind delete cluster --name secnet-sn1a2b3c\n  secnet clean --cluster bare --run sn1a2b3c      # a bare cluster's processes, mounts, cgroups, namespaces, files";

#[derive(clap::Args)]
pub(crate) struct CleanArgs {
    /// Only this run id (sn + 6 hex digits).
    #[arg(long)]
    run: Option<String>,
    /// Also runs that are still alive (whose process holds their marker), on every provider.
    #[arg(long)]
    force: bool,
    /// netns: this machine's namespaces; existing: objects labelled secnet.run on the kubeconfig's cluster (deleted by UID; a run's namespace secnet-<run> with what is in it), never an unlabelled one; kind: secnet's kind clusters.
    /// bare: like netns (every leftover of this machine's runs, bare clusters
    /// included: processes by their cgroup, mount views, namespaces, files).
    #[arg(long, default_value = "netns", value_parser = ["netns", "kind", "existing", "bare"])]
    cluster: String,
    /// Kubeconfig for --cluster existing [default: $KUBECONFIG, ~/.kube/config, in-cluster].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context for --cluster existing [default: the current one].
    #[arg(long)]
    context: Option<String>,
}

pub fn run(args: CleanArgs) -> ExitCode {
    if args.cluster != "existing" && (args.kubeconfig.is_some() || args.context.is_some()) {
        return could_not_run(
            "clean",
            "--kubeconfig and --context go with --cluster existing",
        );
    }
    let run = args.run.as_deref();
    if args.cluster != "netns"
        && let Some(id) = run.filter(|id| !sweep::is_run_id(id))
    {
        return could_not_run(
            "clean",
            format!("--run wants a run id (sn + 6 hex digits), got {id:?}"),
        );
    }
    match args.cluster.as_str() {
        "netns" | "bare" => clean_netns(run, args.force),
        "kind" => match sweep::clean_kind("kind", run, args.force) {
            Ok(s) => print_sweep(&s, "kind cluster(s)"),
            Err(e) => could_not_run("clean", e),
        },
        "existing" => {
            let opts = ExistingOptions {
                kubeconfig: args.kubeconfig,
                context: args.context,
            };
            match super::runtime().block_on(sweep::clean_existing(&opts, run, args.force)) {
                Ok(s) => print_sweep(&s, "object(s)"),
                Err(e) => could_not_run("clean", e),
            }
        }
        other => could_not_run(
            "clean",
            format!("unknown cluster provider {other:?}; use --cluster netns, kind or existing"),
        ),
    }
}

/// This machine's namespaces, run dirs and processes of secnet runs that are gone
/// (all of them with `force`); the live ones are named.
fn clean_netns(run: Option<&str>, force: bool) -> ExitCode {
    match secnet::clean::clean_dead(run, force) {
        Ok(c) => {
            print_skipped(&c.skipped);
            eprintln!(
                "secnet clean: removed {} namespace(s), {} run dir(s), {} process(es){}",
                c.namespaces.len(),
                c.run_dirs.len(),
                c.processes.len(),
                if c.namespaces.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.namespaces.join(" "))
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => could_not_run("clean", e),
    }
}

/// The runs left alone because they are still alive, one line each.
fn print_skipped(skipped: &[LiveRun]) {
    for live in skipped {
        eprintln!(
            "secnet clean: skipped run {} (still alive: {}); --force removes it anyway",
            live.run_id,
            live.holder.trim()
        );
    }
}

/// What a sweep of a real cluster deleted (`what`: what was counted), with the
/// counts per run when known, and the live runs it skipped; exit 1 when something
/// could not be deleted.
fn print_sweep(swept: &Swept, what: &str) -> ExitCode {
    let Swept {
        report,
        per_run,
        skipped,
    } = swept;
    print_skipped(skipped);
    for d in &report.deleted {
        println!("deleted {d}");
    }
    for e in &report.errors {
        eprintln!("secnet clean: {e}");
    }
    let runs = Some(per_run)
        .filter(|r| !r.is_empty())
        .map(|r| {
            let counts: Vec<String> = r.iter().map(|(id, n)| format!("{id} {n}")).collect();
            format!(" (per run: {})", counts.join(", "))
        })
        .unwrap_or_default();
    eprintln!(
        "secnet clean: deleted {} {what}{runs}, {} error(s)",
        report.deleted.len(),
        report.errors.len()
    );
    exit_code(report.errors.is_empty())
}
