//! `secnet`: the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "secnet",
    version,
    about = "End-to-end test and conformance harness for Kubernetes secondary networking (macvtap, OVS-VLAN, macvlan)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only failures and the summary (no line per passing or skipped scenario).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
}

/// What kind and existing clusters need (`secnet conform --cluster kind|existing`).
#[derive(clap::Args)]
#[command(next_help_heading = "Real clusters (--cluster kind|existing)")]
struct RealArgs {
    /// existing: the kubeconfig [default: $KUBECONFIG, ~/.kube/config, in-cluster].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// existing: the kubeconfig context [default: its current context].
    #[arg(long)]
    context: Option<String>,
    /// existing: an inventory (kubeconfig, context, lowerDevice, nodes, preinstalled,
    /// kvm; see clusters/inventory.example.yaml); flags given here win.
    #[arg(long)]
    inventory: Option<PathBuf>,
    /// kind: the cluster config [default: clusters/kind-2node.yaml].
    #[arg(long)]
    kind_config: Option<PathBuf>,
    /// kind: run on this existing kind cluster (not created, never deleted) instead of a new one.
    #[arg(long, value_name = "NAME")]
    kind_reuse: Option<String>,
    /// kind: the container engine (docker or podman).
    #[arg(long, default_value = "docker")]
    engine: String,
    /// The bundled plugins' image (built from the Containerfile).
    #[arg(long, default_value = secnet::cluster::kube::components::SECNET_IMAGE)]
    image: String,
    /// Put kubevirt/macvtap-cni's image under test instead of the bundled plugins.
    #[arg(long)]
    upstream_macvtap: bool,
    /// The nodes' macvtap/macvlan lower device (kind: made by secnet on eth0) [default: ens33].
    #[arg(long)]
    lower_device: Option<String>,
    /// Component sets to install (comma list of multus, macvtap, ovs-cni, kubevirt, cnao).
    #[arg(long, value_delimiter = ',', default_value = "multus,macvtap")]
    components: Vec<String>,
    /// Where fetched upstream manifests are kept (warm: runs offline) [default: ~/.cache/secnet/manifests].
    #[arg(long)]
    manifest_cache: Option<PathBuf>,
    /// Seconds to wait for a pod or for the device plugin on every node.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
}

impl RealArgs {
    fn options(self) -> Result<secnet::conform::real::RealOptions, String> {
        let d = secnet::conform::real::RealOptions::default();
        let mut real = secnet::conform::real::RealOptions {
            kubeconfig: self.kubeconfig,
            context: self.context,
            kind_config: self.kind_config.unwrap_or(d.kind_config),
            kind_reuse: self.kind_reuse,
            engine: self.engine,
            image: self.image,
            upstream_macvtap: self.upstream_macvtap,
            lower_device_given: self.lower_device.is_some(),
            lower_device: self.lower_device.unwrap_or(d.lower_device),
            components: self.components,
            manifest_cache: self.manifest_cache.unwrap_or(d.manifest_cache),
            timeout: std::time::Duration::from_secs(self.timeout),
            dry_run: false,
            ..d
        };
        if let Some(path) = &self.inventory {
            secnet::conform::inventory::Inventory::load(path)?.apply_to(&mut real);
        }
        Ok(real)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every scenario against the implementation under test (netns: needs root).
    #[command(
        after_help = "Examples:\n  secnet conform\n  secnet conform --report reports/ --label mac\n  secnet conform --cni-bin-dir /opt/cni/bin --skip-label extension   # put another macvtap CNI under test\n  secnet conform --plugin macvtap=./macvtap --backends macvtap       # one patched binary, the rest bundled\n  secnet conform --cluster kind --dry-run                            # the plan: commands and manifests\n  secnet conform --cluster kind --report reports/                    # needs kind + docker\n  secnet conform --cluster existing --context my-lab --lower-device eth1\n  secnet conform --cluster existing --inventory clusters/inventory.example.yaml --dry-run\n\nOn kind and existing clusters the portable scenarios run (the seed's pods, capacity,\nreachability, macvlan); the others need the netns cluster and are reported as skipped."
    )]
    Conform {
        /// Cluster provider: netns (built in, needs root), kind, existing.
        #[arg(long, default_value = "netns")]
        cluster: String,
        /// Directory with the plugins under test (CNIs, and macvtap-deviceplugin if there) [default: the bundled ones next to secnet].
        /// A CNI missing from it is missing: the scenarios that use it fail, the others run.
        #[arg(long)]
        cni_bin_dir: Option<PathBuf>,
        /// Put one binary under test and keep the rest (repeatable): macvtap=PATH,
        /// ovs=PATH, macvtap-deviceplugin=PATH.
        #[arg(long = "plugin", value_name = "NAME=PATH", value_parser = secnet::conform::implementation::parse_plugin)]
        plugins: Vec<(String, PathBuf)>,
        /// Write report.json, junit.xml and report.md here.
        #[arg(long)]
        report: Option<PathBuf>,
        #[command(flatten)]
        select: Selection,
        /// List the selected scenarios (name, workload, portable, labels) and run nothing.
        #[arg(long)]
        list: bool,
        /// Format of --list.
        #[arg(long, value_enum, default_value = "table")]
        output: ListFormat,
        /// Print the plan (netns: nodes, implementation, scenarios; kind/existing:
        /// commands, rendered manifests, scenarios) and run nothing; needs no root.
        #[arg(long)]
        dry_run: bool,
        /// Stop after the first failed scenario; the rest are reported as skipped.
        #[arg(long)]
        fail_fast: bool,
        /// Scenarios run at once, each in its own netns cluster [default: the number
        /// of cores]; --jobs 1 runs them one after the other. Real clusters run one at
        /// a time (the scenarios share the nodes' capacity).
        #[arg(long, short = 'j', value_name = "N")]
        jobs: Option<usize>,
        /// Keep the namespaces of failed scenarios and print how to enter them.
        #[arg(long)]
        keep: bool,
        /// Device plugin command the DaemonSet runs on every node [default: --cni-bin-dir's macvtap-deviceplugin if it has one, else the bundled one].
        #[arg(long)]
        device_plugin: Option<String>,
        /// Directory with Debian's reference CNI plugins (bridge, host-local, macvlan).
        #[arg(long, default_value = "/usr/lib/cni")]
        reference_bin_dir: PathBuf,
        /// netns cluster topology file [default: clusters/netns-2node.yaml, built in].
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Fixture directory (the seed's YAML) [default: the repository's fixtures/].
        #[arg(long)]
        fixtures: Option<PathBuf>,
        #[command(flatten)]
        real: Box<RealArgs>,
    },
    /// A patch against its baseline: the selected scenarios on A, then on B, one scenario
    /// at a time in one run; exits 1 when a scenario passes on A and fails on B.
    #[command(
        after_help = "A and B are each a bin dir and/or --plugin overrides; A defaults to the bundled plugins.\n\nExamples:\n  secnet compare --b-plugin macvtap=./macvtap --backends macvtap --report cmp/\n  secnet compare --b-bin-dir /opt/upstream/bin --b-plugin macvtap-deviceplugin=/opt/upstream/bin/macvtap-deviceplugin\n  secnet compare --a-bin-dir old/ --b-bin-dir new/ --label mac\n\nWrites compare.json, compare.md and compare.html (regressions first). Exit codes: 0 no\nregression, 1 a regression, 2 could not run."
    )]
    Compare {
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
    },
    /// Re-render report.html, report.md and junit.xml from DIR/report.json.
    #[command(after_help = "Example:\n  secnet report reports/")]
    Report {
        /// The directory a `secnet conform --report DIR` wrote.
        dir: PathBuf,
    },
    /// Check this machine: kernel features, root, system packages, QEMU/KVM, OVS, Docker/kind.
    #[command(
        after_help = "Examples:\n  secnet doctor\n  secnet doctor --fix   # apt-get install what is missing"
    )]
    Doctor {
        /// Install the missing Debian/Ubuntu packages.
        #[arg(long)]
        fix: bool,
    },
    #[command(
        after_help = "Examples:\n  secnet clean                 # every leftover of any secnet run\n  secnet clean --run sn1a2b3c  # only that run (the id conform prints first)\n  secnet clean --cluster existing --context lab   # objects labelled secnet.run on that cluster\n  secnet clean --cluster kind --run sn1a2b3c      # kind delete cluster --name secnet-sn1a2b3c"
    )]
    /// Remove what killed or --keep runs left (only secnet's: namespaces named sn<id>-…, objects labelled secnet.run, kind clusters secnet-sn<id>).
    Clean {
        /// Only this run id (sn + 6 hex digits).
        #[arg(long)]
        run: Option<String>,
        /// netns: this machine's namespaces; existing: objects labelled secnet.run on the kubeconfig's cluster (deleted by UID); kind: secnet's kind clusters.
        #[arg(long, default_value = "netns", value_parser = ["netns", "kind", "existing"])]
        cluster: String,
        /// Kubeconfig for --cluster existing [default: $KUBECONFIG, ~/.kube/config, in-cluster].
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Kubeconfig context for --cluster existing [default: the current one].
        #[arg(long)]
        context: Option<String>,
    },
    /// Measure CNI ADD+DEL latency side by side with the reference plugins (needs root).
    #[command(
        after_help = "Examples:\n  secnet bench --quick --report reports/\n  secnet bench --quick --b-bin-dir /opt/upstream/bin --b-plugin macvtap-deviceplugin=/opt/upstream/bin/macvtap-deviceplugin\n\nWith any --a-…/--b-… flag every CNI and device plugin row is measured for A (baseline,\ndefault: bundled) and B (candidate, default: bundled), interleaved, with the ratio B/A."
    )]
    Bench {
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
    },
}

/// Which scenarios run (`conform` and `compare`).
#[derive(clap::Args)]
struct Selection {
    /// Only scenarios with this label, backend or group (repeatable).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Leave out scenarios with this label, backend or group (repeatable).
    #[arg(long = "skip-label")]
    skip_labels: Vec<String>,
    /// Only scenarios this Ginkgo-style expression selects, over labels, backends and
    /// groups: && || ! , ( ) and /regex/, e.g. 'seed && !vm'.
    #[arg(long, value_name = "EXPR", value_parser = parse_label_filter)]
    label_filter: Option<secnet::scenario::filter::LabelFilter>,
    /// Only scenarios whose name this regex matches, e.g. 'VLAN'.
    #[arg(long, value_name = "REGEX", value_parser = parse_focus)]
    focus: Option<regex::Regex>,
    /// Only scenarios of these backends (comma list: macvtap,macvlan,ovs).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<String>,
}

impl Selection {
    /// `opts` with this selection.
    fn apply(self, opts: secnet::conform::Options) -> secnet::conform::Options {
        secnet::conform::Options {
            labels: self.labels,
            skip_labels: self.skip_labels,
            label_filter: self.label_filter,
            focus: self.focus,
            backends: self.backends,
            ..opts
        }
    }
}

/// The two implementations of an A/B run (`compare` and `bench`).
#[derive(clap::Args)]
struct Sides {
    /// A (baseline): directory with its plugins (CNIs and, if there, macvtap-deviceplugin) [default: the bundled ones].
    #[arg(long, value_name = "DIR")]
    a_bin_dir: Option<PathBuf>,
    /// A: one binary (repeatable): macvtap=PATH, ovs=PATH, macvtap-deviceplugin=PATH.
    #[arg(long, value_name = "NAME=PATH", value_parser = secnet::conform::implementation::parse_plugin)]
    a_plugin: Vec<(String, PathBuf)>,
    /// B (candidate): directory with its plugins (CNIs and, if there, macvtap-deviceplugin) [default: the bundled ones].
    #[arg(long, value_name = "DIR")]
    b_bin_dir: Option<PathBuf>,
    /// B: one binary (repeatable): macvtap=PATH, ovs=PATH, macvtap-deviceplugin=PATH.
    #[arg(long, value_name = "NAME=PATH", value_parser = secnet::conform::implementation::parse_plugin)]
    b_plugin: Vec<(String, PathBuf)>,
}

impl Sides {
    fn given(&self) -> bool {
        self.a_bin_dir.is_some()
            || self.b_bin_dir.is_some()
            || !self.a_plugin.is_empty()
            || !self.b_plugin.is_empty()
    }

    /// Both sides resolved, or the first side's error naming its flags.
    fn resolve(
        self,
    ) -> Result<
        (
            secnet::conform::implementation::Resolved,
            secnet::conform::implementation::Resolved,
        ),
        String,
    > {
        Ok((
            resolve_side("a", self.a_bin_dir, self.a_plugin)?,
            resolve_side("b", self.b_bin_dir, self.b_plugin)?,
        ))
    }
}

/// Side `side` (a or b) of an A/B run: its bin dir and --plugin overrides on top of
/// the bundled plugins; errors name the side's flags.
fn resolve_side(
    side: &str,
    cni_bin_dir: Option<PathBuf>,
    plugins: Vec<(String, PathBuf)>,
) -> Result<secnet::conform::implementation::Resolved, String> {
    secnet::conform::implementation::Choice {
        cni_bin_dir,
        device_plugin: None,
        plugins,
    }
    .resolve()
    .map_err(|e| {
        e.replace("--cni-bin-dir", &format!("--{side}-bin-dir"))
            .replace("--plugin", &format!("--{side}-plugin"))
    })
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

fn parse_label_filter(text: &str) -> Result<secnet::scenario::filter::LabelFilter, String> {
    secnet::scenario::filter::LabelFilter::parse(text).map_err(|e| e.to_string())
}

fn parse_focus(text: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(text).map_err(|e| format!("--focus {text:?} is not a regex: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    secnet::term::init(cli.verbose, cli.quiet);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match cli.command {
        Cmd::Conform {
            cluster,
            real,
            cni_bin_dir,
            plugins,
            report,
            select,
            list,
            output,
            dry_run,
            fail_fast,
            jobs,
            keep,
            device_plugin,
            reference_bin_dir,
            topology,
            fixtures,
        } => {
            use secnet::cluster::netns::topology::{DEFAULT, Topology};
            let topology = match topology {
                Some(path) => Topology::load(&path),
                None => Topology::parse(DEFAULT, "clusters/netns-2node.yaml (built in)"),
            };
            let topology = match topology {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("secnet conform: {e}");
                    return ExitCode::from(2);
                }
            };
            let choice = secnet::conform::implementation::Choice {
                cni_bin_dir,
                device_plugin: device_plugin
                    .map(|cmd| cmd.split_whitespace().map(str::to_string).collect()),
                plugins,
            };
            let implementation = match choice.resolve() {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("secnet conform: {e}");
                    return ExitCode::from(2);
                }
            };
            let opts = select.apply(secnet::conform::Options {
                cluster,
                implementation,
                reference_bin_dir,
                topology,
                fixtures_dir: fixtures.unwrap_or_else(secnet::bins::fixtures_dir),
                fail_fast,
                jobs: jobs.unwrap_or(0),
                keep,
                real: match real.options() {
                    Ok(r) => secnet::conform::real::RealOptions { dry_run, ..r },
                    Err(e) => {
                        eprintln!("secnet conform: {e}");
                        return ExitCode::from(2);
                    }
                },
                ..secnet::conform::Options::bundled()
            });
            if list {
                return match secnet::conform::listing(&opts, matches!(output, ListFormat::Json)) {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("secnet conform: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            if opts.real.dry_run {
                return match secnet::conform::dry_run(&opts) {
                    Ok(plan) => {
                        print!("{plan}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("secnet conform: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            match runtime.block_on(secnet::conform::run(&opts)) {
                Ok(r) => {
                    eprintln!(
                        "secnet conform: {} passed, {} failed, {} skipped in {:.1} s",
                        r.summary.passed, r.summary.failed, r.summary.skipped, r.wall_s
                    );
                    if let Some(dir) = report {
                        if let Err(e) = r.write(&dir) {
                            eprintln!("secnet: {e}");
                            return ExitCode::from(2);
                        }
                        eprintln!("secnet conform: report in {}", dir.display());
                    }
                    if r.summary.failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("secnet conform: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Compare {
            sides,
            report,
            select,
            keep,
            reference_bin_dir,
        } => {
            let (a, b) = match sides.resolve() {
                Ok(ab) => ab,
                Err(e) => {
                    eprintln!("secnet compare: {e}");
                    return ExitCode::from(2);
                }
            };
            let base = select.apply(secnet::conform::Options {
                reference_bin_dir,
                keep,
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
            match runtime.block_on(secnet::compare::run(&a, &b)) {
                Ok(c) => {
                    let md = secnet::compare::render::markdown(&c);
                    // The table (up to the messages) on stdout; the whole story in the files.
                    println!("{}", md.split("\n## Messages").next().unwrap_or(&md));
                    if let Some(dir) = report {
                        if let Err(e) = c.write(&dir) {
                            eprintln!("secnet compare: {e}");
                            return ExitCode::from(2);
                        }
                        eprintln!("secnet compare: report in {}", dir.display());
                    }
                    if c.regressions.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("secnet compare: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Report { dir } => match secnet::report::Report::read(&dir)
            .and_then(|r| r.write(&dir).map_err(|e| e.to_string()))
        {
            Ok(()) => {
                eprintln!("secnet report: wrote {}", dir.join("report.html").display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("secnet report: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Doctor { fix } => {
            let checks = secnet::doctor::checks();
            let (text, ok) = secnet::doctor::render(&checks);
            print!("{text}");
            if fix {
                match secnet::doctor::fix(&checks) {
                    Ok(p) if p.is_empty() => println!("nothing to install"),
                    Ok(p) => {
                        println!("installed {}; checking again", p.join(" "));
                        let (text, ok) = secnet::doctor::render(&secnet::doctor::checks());
                        print!("{text}");
                        return if ok {
                            ExitCode::SUCCESS
                        } else {
                            ExitCode::FAILURE
                        };
                    }
                    Err(e) => {
                        eprintln!("secnet doctor: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Clean {
            run,
            cluster,
            kubeconfig,
            context,
        } => {
            use secnet::cluster::kube::sweep;
            if cluster != "existing" && (kubeconfig.is_some() || context.is_some()) {
                eprintln!("secnet clean: --kubeconfig and --context go with --cluster existing");
                return ExitCode::from(2);
            }
            if cluster != "netns"
                && let Some(id) = run.as_deref().filter(|id| !sweep::is_run_id(id))
            {
                eprintln!("secnet clean: --run wants a run id (sn + 6 hex digits), got {id:?}");
                return ExitCode::from(2);
            }
            let (report, per_run) = match cluster.as_str() {
                "kind" => match sweep::clean_kind("kind", run.as_deref()) {
                    Ok(t) => (t, None),
                    Err(e) => {
                        eprintln!("secnet clean: {e}");
                        return ExitCode::from(2);
                    }
                },
                "existing" => {
                    let opts = secnet::cluster::kube::existing::ExistingOptions {
                        kubeconfig,
                        context,
                    };
                    match runtime.block_on(sweep::clean_existing(&opts, run.as_deref())) {
                        Ok(s) => (s.report, Some(s.per_run)),
                        Err(e) => {
                            eprintln!("secnet clean: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
                "netns" => {
                    return match secnet::clean::clean(run.as_deref()) {
                        Ok(c) => {
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
                        Err(e) => {
                            eprintln!("secnet clean: {e}");
                            ExitCode::from(2)
                        }
                    };
                }
                other => {
                    eprintln!(
                        "secnet clean: unknown cluster provider {other:?}; use --cluster netns, kind or existing"
                    );
                    return ExitCode::from(2);
                }
            };
            for d in &report.deleted {
                println!("deleted {d}");
            }
            for e in &report.errors {
                eprintln!("secnet clean: {e}");
            }
            let runs = per_run
                .filter(|r| !r.is_empty())
                .map(|r| {
                    let counts: Vec<String> = r.iter().map(|(id, n)| format!("{id} {n}")).collect();
                    format!(" (per run: {})", counts.join(", "))
                })
                .unwrap_or_default();
            eprintln!(
                "secnet clean: deleted {} {}{runs}, {} error(s)",
                report.deleted.len(),
                if cluster == "kind" {
                    "kind cluster(s)"
                } else {
                    "object(s)"
                },
                report.errors.len()
            );
            if report.errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Bench {
            quick,
            report,
            cni_bin_dir,
            reference_bin_dir,
            sides,
        } => {
            let ab = if sides.given() {
                match sides.resolve() {
                    Ok(ab) => Some(ab),
                    Err(e) => {
                        eprintln!("secnet bench: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                None
            };
            let opts = secnet::bench::Options {
                ab,
                quick,
                device_plugin: cni_bin_dir
                    .clone()
                    .unwrap_or_else(secnet::bins::bin_dir)
                    .join("macvtap-deviceplugin"),
                cni_bin_dir: cni_bin_dir.unwrap_or_else(secnet::bins::bin_dir),
                reference_bin_dir,
            };
            match runtime.block_on(secnet::bench::run(&opts)) {
                Ok(b) => {
                    println!("{}", b.markdown());
                    if let Some(dir) = report
                        && let Err(e) = b.write(&dir)
                    {
                        eprintln!("secnet: {e}");
                        return ExitCode::from(2);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("secnet bench: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
