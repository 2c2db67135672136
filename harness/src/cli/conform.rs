//! `secnet conform`: the scenarios against the implementation under test.

use std::path::PathBuf;
use std::process::ExitCode;

use secnet::cluster::kube::components::{Component, SECNET_IMAGE};
use secnet::cluster::kube::kind::KIND_NODE_IMAGE;
use secnet::cluster::provider::Provider;
use secnet::cluster::topology::{self, Topology};
use secnet::conform::ConformError;
use secnet::conform::implementation::{self, Choice};
use secnet::conform::inventory::{Inventory, InventoryError};
use secnet::conform::real::RealOptions;
use secnet::report::{Report, Status, Summary};

use super::{Selection, could_not_run};

pub(crate) const AFTER_HELP: &str = "Examples:\n  secnet conform\n  secnet conform --report reports/ --label mac\n  secnet conform --cni-bin-dir /opt/cni/bin --skip-label extension   # put another macvtap CNI under test\n  secnet conform --plugin macvtap=./macvtap --backends macvtap       # one patched binary, the rest bundled\n  secnet conform --cluster kind --dry-run                            # the plan: commands and manifests\n  secnet conform --cluster kind --report reports/                    # needs kind + docker\n  secnet conform --cluster existing --context my-lab --lower-device eth1\n  secnet conform --cluster existing --inventory clusters/inventory.example.yaml --dry-run\n\nOn kind and existing clusters the portable scenarios run (the seed's pods, capacity,\nreachability, macvlan); the others need the netns cluster and are reported as skipped.\n\nVerdicts: passed; failed (the implementation under test is wrong); error (the harness or\nthe cluster broke: the implementation was not judged); flaky (passed on a --retries\nretry); skipped (with why). Exit codes: 0 all that ran passed (flaky included), 1 a\nscenario failed, 2 could not run (bad flags, preflight, the cluster did not come up;\n--report still writes the reports, the set-up failure as an error), 3 no failure but\nan error, 4 nothing ran (every selected scenario skipped).";

#[derive(clap::Args)]
pub(crate) struct ConformArgs {
    /// Cluster provider: netns (built in, needs root), kind, existing, bare (a real
    /// Kubernetes from --k8s-bin-dir on this machine, needs root).
    #[arg(long, value_enum, default_value_t = Provider::Netns, hide_possible_values = true)]
    cluster: Provider,
    /// Directory with the plugins under test (CNIs, and macvtap-deviceplugin if there) [default: the bundled ones next to secnet].
    /// A CNI missing from it is missing: the scenarios that use it fail, the others run.
    #[arg(long)]
    cni_bin_dir: Option<PathBuf>,
    /// Put one binary under test and keep the rest (repeatable): macvtap=PATH,
    /// ovs=PATH, macvtap-deviceplugin=PATH.
    #[arg(long = "plugin", value_name = "NAME=PATH", value_parser = implementation::parse_plugin)]
    plugins: Vec<(String, PathBuf)>,
    /// Write report.html (the page to keep open), report.md, junit.xml and report.json here.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    select: Selection,
    /// List the selected scenarios and run nothing: NAME, WORKLOAD, NEEDS (the
    /// capabilities a cluster must offer), LABELS, then how many the --cluster
    /// provider can run (--output json: name, group, backend, workload, labels,
    /// needs, portable, runnable).
    #[arg(long)]
    list: bool,
    /// Format of --list.
    #[arg(long, value_enum, default_value = "table")]
    output: ListFormat,
    /// Print the plan (netns: nodes, implementation, scenarios; kind/existing:
    /// commands, rendered manifests, scenarios) and run nothing; needs no root.
    #[arg(long)]
    dry_run: bool,
    /// Stop after the first failed scenario: no new one starts (those already running
    /// finish) and the rest are reported as skipped.
    #[arg(long)]
    fail_fast: bool,
    /// Scenarios run at once, each in its own netns cluster [default: the number
    /// of cores]; --jobs 1 runs them one after the other. kind and existing
    /// clusters run one at a time (the scenarios share the nodes' capacity); bare
    /// runs the scenarios that share the nodes 8 at a time [default], the others
    /// alone.
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,
    /// Keep the namespaces of failed scenarios and print how to enter them.
    #[arg(long)]
    keep: bool,
    /// Run every selected scenario N times; any failed run fails it (to find flakes).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Run a failed scenario again, up to N times; a pass after a retry is reported
    /// as flaky (not passed), with every failed run's message.
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,
    /// Device plugin command the DaemonSet runs on every node [default: --cni-bin-dir's macvtap-deviceplugin if it has one, else the bundled one].
    #[arg(long)]
    device_plugin: Option<String>,
    /// Directory with Debian's reference CNI plugins (bridge, host-local, macvlan).
    #[arg(long, default_value = "/usr/lib/cni")]
    reference_bin_dir: PathBuf,
    /// netns cluster topology file [default: clusters/netns-2node.yaml, built in].
    #[arg(long)]
    topology: Option<PathBuf>,
    /// Fixture directory (the seed's YAML) [default: $SECNET_FIXTURES, else the
    /// fixtures built into secnet].
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Run a profile: multi-net-spec checks the Multi-Net spec (v1.0–v1.3) clause
    /// by clause through the multus under test and prints the clause table
    /// (written as spec-conformance.md/.json with --report).
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// netns: the rules secnet's multus follows: multus (as upstream multus
    /// behaves) or spec (as the Multi-Net spec says). Real clusters run their own.
    #[arg(long, value_enum, default_value_t = secnet::multus::Semantics::Multus)]
    multus_semantics: secnet::multus::Semantics,
    #[command(flatten)]
    real: Box<RealArgs>,
    #[command(flatten)]
    bare: BareArgs,
}

// What a bare cluster needs (`secnet conform --cluster bare`).
#[derive(clap::Args)]
#[command(next_help_heading = "Bare clusters (--cluster bare)")]
pub(super) struct BareArgs {
    /// bare: the directory with kube-apiserver, kube-controller-manager,
    /// kube-scheduler and kubelet (kubernetes-server-linux-amd64.tar.gz); etcd,
    /// containerd and runc come from the distribution (secnet doctor checks them).
    /// [default: $SECNET_K8S_BIN_DIR]
    #[arg(long, value_name = "DIR")]
    k8s_bin_dir: Option<PathBuf>,
    /// bare: a component's binaries, packed by secnet into an image of its own
    /// (repeatable): multus=DIR with multus and thin_entrypoint installs thin multus;
    /// whereabouts=DIR with whereabouts and ip-control-loop installs whereabouts.
    #[arg(long = "component-bin", value_name = "NAME=DIR", value_parser = parse_component_bin)]
    component_bins: Vec<(Component, PathBuf)>,
}

impl BareArgs {
    /// The bare options: these flags, `$SECNET_K8S_BIN_DIR` for a missing bin dir.
    pub(super) fn options(self) -> secnet::conform::bare::BareRunOptions {
        secnet::conform::bare::BareRunOptions {
            k8s_bin_dir: self
                .k8s_bin_dir
                .or_else(|| std::env::var_os("SECNET_K8S_BIN_DIR").map(PathBuf::from)),
            component_bins: self.component_bins,
        }
    }
}

/// `NAME=DIR` of `--component-bin`.
fn parse_component_bin(arg: &str) -> Result<(Component, PathBuf), String> {
    let (name, dir) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=DIR, e.g. multus=/opt/multus/bin, got {arg:?}"))?;
    let component: Component = name.parse().map_err(|e| format!("{e}"))?;
    if dir.is_empty() {
        return Err(format!("{name}=: the directory is empty"));
    }
    Ok((component, PathBuf::from(dir)))
}

/// What `--profile` selects.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Profile {
    /// The Multi-Net spec's clauses (the `multi-net-spec` scenarios).
    MultiNetSpec,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

// What kind and existing clusters need (`secnet conform --cluster kind|existing`).
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
    /// kind: the container engine (docker or podman; podman runs kind with
    /// KIND_EXPERIMENTAL_PROVIDER=podman and loads images through an archive).
    #[arg(long, default_value = "docker")]
    engine: String,
    /// kind: the node image (Kubernetes version); the default is kind v0.32.0's,
    /// pinned by digest. Another kind release needs its own (see its release notes).
    #[arg(long, default_value = KIND_NODE_IMAGE)]
    node_image: String,
    /// The bundled plugins' image (built from the Containerfile).
    #[arg(long, default_value = SECNET_IMAGE)]
    image: String,
    /// Put kubevirt/macvtap-cni's image under test instead of the bundled plugins.
    #[arg(long)]
    upstream_macvtap: bool,
    /// The nodes' macvtap/macvlan lower device (kind: made by secnet on eth0) [default: ens33].
    #[arg(long)]
    lower_device: Option<String>,
    /// Component sets to install (comma list of multus, macvtap, openvswitch, ovs-cni,
    /// kubevirt, cnao) [default: kind: multus,macvtap,openvswitch,ovs-cni,kubevirt;
    /// existing: multus,macvtap].
    #[arg(long, value_enum, value_delimiter = ',', hide_possible_values = true)]
    components: Option<Vec<Component>>,
    /// Where fetched upstream manifests are kept (warm: runs offline) [default: ~/.cache/secnet/manifests].
    #[arg(long)]
    manifest_cache: Option<PathBuf>,
    /// The image of the scenarios' pods and the node probe pods (needs sleep, ip,
    /// ping, nc: busybox) [default: busybox pinned by digest; bare: one secnet writes].
    /// For air-gapped clusters: a mirror of it in your registry.
    #[arg(long, value_name = "IMAGE")]
    pod_image: Option<String>,
    /// Seconds to wait for a pod or for the device plugin on every node.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    /// Component objects that exist already without this run's label (your own device
    /// plugin, a CRD) are used as found: not applied, not labelled, never deleted.
    /// Without it such an object stops the run before anything is applied.
    #[arg(long)]
    adopt_existing: bool,
}

#[cfg(test)]
impl ConformArgs {
    /// The component sets the run installs, defaults filled in for `--cluster`.
    pub(crate) fn components(&self) -> Vec<Component> {
        self.real
            .components
            .clone()
            .unwrap_or_else(|| secnet::conform::real::default_components(self.cluster))
    }
}

impl RealArgs {
    /// The real-cluster options: these flags, then what an `--inventory` fills in.
    fn options(self, cluster: Provider, dry_run: bool) -> Result<RealOptions, InventoryError> {
        let d = RealOptions::default();
        let mut real = RealOptions {
            kubeconfig: self.kubeconfig,
            context: self.context,
            kind_config: self.kind_config.unwrap_or(d.kind_config),
            kind_reuse: self.kind_reuse,
            node_image: self.node_image,
            engine: self.engine,
            image: self.image,
            upstream_macvtap: self.upstream_macvtap,
            lower_device_given: self.lower_device.is_some(),
            lower_device: self.lower_device.unwrap_or(d.lower_device),
            components: self
                .components
                .unwrap_or_else(|| secnet::conform::real::default_components(cluster)),
            manifest_cache: self.manifest_cache.unwrap_or(d.manifest_cache),
            timeout: std::time::Duration::from_secs(self.timeout),
            adopt_existing: self.adopt_existing,
            pod_image: self.pod_image,
            dry_run,
            ..d
        };
        if let Some(path) = &self.inventory {
            Inventory::load(path)?.apply_to(&mut real);
        }
        Ok(real)
    }
}

/// `--topology FILE`, or the built-in two-node topology.
fn topology(path: Option<&PathBuf>) -> Result<Topology, topology::TopologyError> {
    match path {
        Some(path) => Topology::load(path),
        None => Topology::parse(topology::DEFAULT, "clusters/netns-2node.yaml (built in)"),
    }
}

/// The conform options the flags describe.
pub(super) fn options(
    args: ConformArgs,
) -> Result<secnet::conform::Options, Box<dyn std::error::Error>> {
    let topology = topology(args.topology.as_ref())?;
    let implementation = Choice {
        // Absolute: the node daemons start from inside the node namespaces, whose
        // working directory is not the user's.
        cni_bin_dir: args.cni_bin_dir.map(std::path::absolute).transpose()?,
        device_plugin: args
            .device_plugin
            .map(|cmd| cmd.split_whitespace().map(str::to_string).collect()),
        plugins: args.plugins,
        ..Choice::default()
    }
    .resolve()?;
    let mut real = args.real.options(args.cluster, args.dry_run)?;
    // kind's logs are exported next to the report.
    real.report_dir = args.report;
    let mut select = args.select;
    if args.profile == Some(Profile::MultiNetSpec) {
        select.labels.push(secnet::scenario::spec::GROUP.into());
    }
    let opts = select.apply(secnet::conform::Options {
        cluster: args.cluster,
        implementation,
        reference_bin_dir: args.reference_bin_dir,
        topology,
        fixtures_dir: args.fixtures.unwrap_or_else(secnet::bins::fixtures_dir),
        fail_fast: args.fail_fast,
        jobs: args.jobs.unwrap_or(0),
        keep: args.keep,
        repeat: args.repeat,
        retries: args.retries,
        real,
        multus_semantics: args.multus_semantics,
        bare: args.bare.options(),
        ..secnet::conform::Options::bundled()
    });
    // The semantics choose how secnet's own multus behaves: meaningless where the
    // cluster runs its own.
    if opts.multus_semantics == secnet::multus::Semantics::Spec
        && !opts.provider().runs_secnets_multus()
    {
        return Err(format!(
            "--multus-semantics spec needs --cluster netns (secnet's multus); a {} cluster runs its own multus",
            opts.cluster
        )
        .into());
    }
    Ok(opts)
}

pub fn run(args: ConformArgs) -> ExitCode {
    let (list, json, report, profile) = (
        args.list,
        matches!(args.output, ListFormat::Json),
        args.report.clone(),
        args.profile,
    );
    let opts = match options(args) {
        Ok(opts) => opts,
        Err(e) => return could_not_run("conform", e),
    };
    if list {
        return match secnet::conform::listing(&opts, json) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => could_not_run("conform", e),
        };
    }
    if opts.real.dry_run {
        return match secnet::conform::dry_run(&opts) {
            Ok(plan) => {
                print!("{plan}");
                ExitCode::SUCCESS
            }
            Err(e) => could_not_run("conform", e),
        };
    }
    let r = match super::runtime().block_on(secnet::conform::run(&opts)) {
        Ok(r) => r,
        Err(ConformError::SetUp { error, report: r }) => {
            // A failed set-up still leaves its reports: the failure as an error.
            if let Some(dir) = &report {
                match r.write(dir) {
                    Ok(()) => eprintln!("secnet conform: report in {}", dir.display()),
                    Err(e) => eprintln!("secnet conform: {e}"),
                }
            }
            return could_not_run("conform", error);
        }
        Err(e) => return could_not_run("conform", e),
    };
    let recap = recap(&r, &rerun_prefix(std::env::args().skip(1)));
    if !recap.is_empty() {
        eprint!("{recap}");
    }
    eprintln!("secnet conform: {} in {:.1} s", r.summary.line(), r.wall_s);
    if let Some(dir) = &report {
        if let Err(e) = r.write(dir) {
            return could_not_run("conform", e);
        }
        eprintln!("secnet conform: report in {}", dir.display());
    }
    if profile == Some(Profile::MultiNetSpec)
        && let Err(e) = spec_table(&r, &opts, report.as_deref())
    {
        return could_not_run("conform", e);
    }
    ExitCode::from(verdict_code(&r.summary))
}

/// The exit code of a run that ran: 1 a scenario failed, 3 none failed but one
/// errored (harness or cluster), 4 nothing ran, else 0 (flaky counts as passed).
pub(crate) fn verdict_code(s: &Summary) -> u8 {
    if s.failed > 0 {
        1
    } else if s.errors > 0 {
        3
    } else if s.ran() == 0 {
        4
    } else {
        0
    }
}

/// What the end of a run repeats: every scenario that failed, errored or was
/// flaky, its first line, and the command that runs it alone.
pub(crate) fn recap(r: &Report, rerun: &str) -> String {
    let bad: Vec<_> = r
        .scenarios
        .iter()
        .filter(|s| s.status.is_bad() || s.status == Status::Flaky)
        .collect();
    if bad.is_empty() {
        return String::new();
    }
    let mut out = format!("\nsecnet conform: {} to look at:\n", bad.len());
    for s in bad {
        let first = match s.status {
            Status::Flaky => s.attempts.earlier.last().map_or("", |a| a.message.as_str()),
            _ => s.message.as_str(),
        };
        out.push_str(&format!(
            "  {:5}  {}\n         {}\n",
            s.status.word().to_uppercase(),
            s.name,
            first.lines().next().unwrap_or("(no message)")
        ));
        if !s.id.is_empty() {
            out.push_str(&format!("         rerun: {rerun} --focus {}\n", s.id));
        }
    }
    out
}

/// The command line of this run without what selects scenarios or repeats them
/// (`--focus`, `--label`, `--skip-label`, `--label-filter`, `--backends`,
/// `--repeat`, `--retries`, `--fail-fast`, `--report`), quoted for a shell: a
/// failure's rerun adds `--focus <id>`.
pub(crate) fn rerun_prefix(args: impl Iterator<Item = String>) -> String {
    const DROP_WITH_VALUE: [&str; 8] = [
        "--focus",
        "--label",
        "--skip-label",
        "--label-filter",
        "--backends",
        "--repeat",
        "--retries",
        "--report",
    ];
    let mut out = vec!["secnet".to_string()];
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        if DROP_WITH_VALUE.contains(&flag) {
            if !a.contains('=') {
                args.next();
            }
            continue;
        }
        if a == "--fail-fast" {
            continue;
        }
        out.push(shell_quote(&a));
    }
    out.join(" ")
}

fn shell_quote(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c);
    if !a.is_empty() && a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The clause table of a `--profile multi-net-spec` run: printed, and written
/// next to the report.
fn spec_table(
    r: &secnet::report::Report,
    opts: &secnet::conform::Options,
    report: Option<&std::path::Path>,
) -> std::io::Result<()> {
    use secnet::scenario::spec_clauses;
    let under_test = if opts.provider().runs_secnets_multus() {
        format!(
            "secnet's multus emulation, {} semantics",
            opts.multus_semantics
        )
    } else {
        format!("the {} cluster's multus", opts.cluster)
    };
    let rows = spec_clauses::table(r);
    print!("{}", spec_clauses::text(&rows, &under_test));
    if let Some(dir) = report {
        spec_clauses::write(dir, &rows, &under_test)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::super::{Cli, Cmd};
    use super::*;

    fn conform(args: &[&str]) -> ConformArgs {
        let cli = Cli::try_parse_from(["secnet", "conform"].iter().chain(args)).unwrap();
        let Cmd::Conform(c) = cli.command else {
            unreachable!("parsed as conform")
        };
        c
    }

    #[test]
    fn profile_selects_the_spec_scenarios_and_spec_semantics_need_netns() {
        let opts = options(conform(&["--profile", "multi-net-spec"])).unwrap();
        assert_eq!(opts.labels, vec![secnet::scenario::spec::GROUP.to_string()]);
        assert_eq!(opts.multus_semantics, secnet::multus::Semantics::Multus);
        let opts = options(conform(&["--multus-semantics", "spec"])).unwrap();
        assert_eq!(opts.multus_semantics, secnet::multus::Semantics::Spec);
        let Err(e) = options(conform(&[
            "--cluster",
            "kind",
            "--multus-semantics",
            "spec",
        ])) else {
            panic!("spec semantics on kind must be refused");
        };
        let e = e.to_string();
        assert!(
            e.contains("--multus-semantics spec needs --cluster netns"),
            "{e}"
        );
    }

    #[test]
    fn node_image_and_report_reach_the_kind_options() {
        let real = conform(&[]).real.options(Provider::Existing, true).unwrap();
        assert_eq!(real.node_image, KIND_NODE_IMAGE);
        let args = conform(&[
            "--cluster",
            "kind",
            "--node-image",
            "kindest/node:v1.35.0",
            "--report",
            "/var/tmp/r",
            "--engine",
            "podman",
        ]);
        let opts = options(args).unwrap();
        assert_eq!(opts.real.node_image, "kindest/node:v1.35.0");
        assert_eq!(opts.real.report_dir, Some(PathBuf::from("/var/tmp/r")));
        let plan = secnet::conform::dry_run(&opts).unwrap();
        assert!(plan.contains("--image kindest/node:v1.35.0 "), "{plan}");
        assert!(
            plan.contains("kind export logs /var/tmp/r/kind-logs-sn"),
            "{plan}"
        );
        assert!(
            plan.contains("KIND_EXPERIMENTAL_PROVIDER=podman kind load image-archive"),
            "{plan}"
        );
    }
}
