//! The command line: the clap structs (`Cli`, one `Args` struct per subcommand in
//! its own file) and one `run` per subcommand. `main` parses and dispatches here.

mod bench;
mod clean;
mod compare;
mod conform;
mod doctor;
mod report;

#[cfg(test)]
mod baseline_tests;

use std::fmt::Display;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secnet::conform::implementation::{self, Choice, Flags, Resolved};

#[derive(Parser)]
#[command(
    name = "secnet",
    version,
    about = "End-to-end test and conformance harness for Kubernetes secondary networking (macvtap, OVS-VLAN, macvlan)"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// More log output on stderr: -v secnet's steps (phases, pods, CNI calls, probes),
    /// -vv their details, -vvv the libraries' too; RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Only failures and the summary (no line per passing or skipped scenario).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every scenario against the implementation under test (netns: needs root).
    #[command(after_help = conform::AFTER_HELP)]
    Conform(conform::ConformArgs),
    /// A patch against its baseline: the selected scenarios on A, then on B, one scenario
    /// at a time in one run; exits 1 when a scenario passes on A and fails on B.
    #[command(after_help = compare::AFTER_HELP)]
    Compare(compare::CompareArgs),
    /// Re-render report.html, report.md and junit.xml from DIR/report.json.
    #[command(after_help = report::AFTER_HELP)]
    Report(report::ReportArgs),
    /// Check this machine: kernel features, root, system packages, QEMU/KVM, OVS, Docker/kind.
    #[command(
        after_help = "Examples:\n  secnet doctor\n  secnet doctor --fix   # apt-get install what is missing"
    )]
    Doctor(doctor::DoctorArgs),
    /// Remove what killed or --keep runs left (only secnet's: namespaces named sn<id>-…, objects labelled secnet.run, kind clusters secnet-sn<id>).
    #[command(after_help = clean::AFTER_HELP)]
    Clean(clean::CleanArgs),
    /// Measure CNI ADD+DEL latency side by side with the reference plugins (needs root).
    #[command(after_help = bench::AFTER_HELP)]
    Bench(bench::BenchArgs),
}

impl Cli {
    /// Runs the subcommand; its exit code.
    pub fn run(self) -> ExitCode {
        match self.command {
            Cmd::Conform(args) => conform::run(args),
            Cmd::Compare(args) => compare::run(args),
            Cmd::Report(args) => report::run(args),
            Cmd::Doctor(args) => doctor::run(args),
            Cmd::Clean(args) => clean::run(args),
            Cmd::Bench(args) => bench::run(args),
        }
    }
}

/// Exit code 2 (could not run) after `secnet <command>: <error>` on stderr.
fn could_not_run(command: &str, error: impl Display) -> ExitCode {
    eprintln!("secnet {command}: {error}");
    ExitCode::from(2)
}

/// Exit code 0 when `ok`, else 1 (something failed).
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The runtime the async subcommands run on.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
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
    #[arg(long, value_name = "EXPR", value_parser = secnet::scenario::filter::LabelFilter::parse)]
    label_filter: Option<secnet::scenario::filter::LabelFilter>,
    /// Only scenarios whose name or short id (see --list) this regex matches, e.g.
    /// 'VLAN' or 's1a2b3c'.
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

/// `--focus` is not a regular expression.
#[derive(Debug, thiserror::Error)]
#[error("--focus {text:?} is not a regex: {source}")]
struct FocusError {
    text: String,
    source: regex::Error,
}

fn parse_focus(text: &str) -> Result<regex::Regex, FocusError> {
    regex::Regex::new(text).map_err(|source| FocusError {
        text: text.to_string(),
        source,
    })
}

/// The two implementations of an A/B run (`compare` and `bench`).
#[derive(clap::Args)]
struct Sides {
    /// A (baseline): directory with its plugins (CNIs and, if there, macvtap-deviceplugin) [default: the bundled ones].
    #[arg(long, value_name = "DIR")]
    a_bin_dir: Option<PathBuf>,
    /// A: one binary (repeatable): macvtap=PATH, ovs=PATH, macvtap-deviceplugin=PATH.
    #[arg(long, value_name = "NAME=PATH", value_parser = implementation::parse_plugin)]
    a_plugin: Vec<(String, PathBuf)>,
    /// B (candidate): directory with its plugins (CNIs and, if there, macvtap-deviceplugin) [default: the bundled ones].
    #[arg(long, value_name = "DIR")]
    b_bin_dir: Option<PathBuf>,
    /// B: one binary (repeatable): macvtap=PATH, ovs=PATH, macvtap-deviceplugin=PATH.
    #[arg(long, value_name = "NAME=PATH", value_parser = implementation::parse_plugin)]
    b_plugin: Vec<(String, PathBuf)>,
}

impl Sides {
    fn given(&self) -> bool {
        self.a_bin_dir.is_some()
            || self.b_bin_dir.is_some()
            || !self.a_plugin.is_empty()
            || !self.b_plugin.is_empty()
    }

    /// Both sides resolved (each its bin dir and plugins on top of the bundled ones),
    /// or the first side's error naming its flags.
    fn resolve(self) -> Result<(Resolved, Resolved), implementation::ImplementationError> {
        let side = |cni_bin_dir, plugins, flags| Choice {
            cni_bin_dir,
            device_plugin: None,
            plugins,
            flags,
        };
        Ok((
            side(self.a_bin_dir, self.a_plugin, Flags::A).resolve()?,
            side(self.b_bin_dir, self.b_plugin, Flags::B).resolve()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn components_keep_their_spellings_and_default() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["secnet", "conform"].iter().chain(args))?;
            let Cmd::Conform(c) = cli.command else {
                unreachable!("parsed as conform")
            };
            Ok::<_, clap::Error>(c.components())
        };
        use secnet::cluster::kube::components::Component::*;
        assert_eq!(parse(&[]).unwrap(), [Multus, Macvtap]);
        assert_eq!(
            parse(&["--cluster", "existing"]).unwrap(),
            [Multus, Macvtap]
        );
        assert_eq!(
            parse(&["--cluster", "kind"]).unwrap(),
            [Multus, Macvtap, Openvswitch, OvsCni, Kubevirt],
            "kind is throwaway: everything the portable scenarios use"
        );
        assert_eq!(
            parse(&["--components", "cnao,ovs-cni,kubevirt,macvtap,multus"]).unwrap(),
            [Cnao, OvsCni, Kubevirt, Macvtap, Multus]
        );
        let err = parse(&["--components", "multus,calico"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(err.to_string().contains("ovs-cni"), "{err}");
    }

    #[test]
    fn side_errors_name_the_side_flags() {
        let cli = Cli::try_parse_from(["secnet", "compare", "--b-bin-dir", "/nonexistent"]);
        let Cmd::Compare(c) = cli.unwrap().command else {
            unreachable!("parsed as compare")
        };
        let err = c.sides().resolve().unwrap_err().to_string();
        assert!(err.starts_with("--b-bin-dir /nonexistent: "), "{err}");
    }

    #[test]
    fn a_bad_focus_regex_is_named() {
        let err = Cli::try_parse_from(["secnet", "conform", "--focus", "("])
            .err()
            .expect("refused");
        assert!(
            err.to_string().contains("--focus \"(\" is not a regex"),
            "{err}"
        );
    }
}
