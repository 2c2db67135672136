//! `secnet conform`: select scenarios by label, run them against the implementation
//! under test, show progress, and write the report. On kind/existing clusters
//! (`real`) the portable scenarios run and the others are reported as skipped.

pub mod implementation;
pub mod inventory;
pub mod plan;
pub mod real;

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use crate::cluster::netns::topology::Topology;
use crate::report::{Report, ScenarioReport, Status};
use crate::scenario::{self, Ctx, Outcome};

#[derive(Debug, Clone)]
pub struct Options {
    pub cluster: String,
    /// The plugins under test (CNIs and the device plugin command).
    pub implementation: implementation::Resolved,
    pub reference_bin_dir: PathBuf,
    pub topology: Topology,
    pub fixtures_dir: PathBuf,
    /// Only scenarios of these backends (empty: all).
    pub backends: Vec<String>,
    pub labels: Vec<String>,
    pub skip_labels: Vec<String>,
    /// `--label-filter`: a Ginkgo-style expression over labels, backends and groups.
    pub label_filter: Option<scenario::filter::LabelFilter>,
    /// `--focus`: only scenarios whose name this regex matches.
    pub focus: Option<regex::Regex>,
    /// Stop after the first failed scenario; the rest are reported skipped.
    pub fail_fast: bool,
    pub keep: bool,
    /// What `--cluster kind|existing` needs.
    pub real: real::RealOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
    #[error("unknown cluster provider \"{0}\"; use --cluster netns, kind or existing")]
    UnknownCluster(String),
    #[error("{0}")]
    Real(String),
    #[error(
        "secnet conform on the netns cluster needs root (network namespaces); run it as root, e.g. sudo -E secnet conform"
    )]
    NotRoot,
    #[error(
        "{0} holds none of the CNI plugins under test (macvtap, ovs); build the bundled ones with `cargo build --release --bins` or point --cni-bin-dir at yours"
    )]
    MissingPlugin(PathBuf),
    #[error(
        "fixtures directory {0} has no seed/ folder; point --fixtures at the repository's fixtures/"
    )]
    MissingFixtures(PathBuf),
    #[error("unknown backend {0:?} in --backends; the backends of this build are: {1}")]
    UnknownBackend(String, String),
    #[error(
        "no scenario matches --label {labels:?} / --skip-label {skip:?}; labels in this build: {known}"
    )]
    NothingSelected {
        labels: Vec<String>,
        skip: Vec<String>,
        known: String,
    },
}

impl Options {
    /// The bundled implementations on the built-in default topology: what
    /// `secnet conform` runs with no arguments.
    pub fn bundled() -> Options {
        Options {
            cluster: "netns".into(),
            implementation: implementation::Resolved::bundled(),
            reference_bin_dir: "/usr/lib/cni".into(),
            topology: Topology::parse(crate::cluster::netns::topology::DEFAULT, "built-in default")
                .expect("the built-in topology is valid"),
            fixtures_dir: crate::bins::fixtures_dir(),
            backends: Vec::new(),
            labels: Vec::new(),
            skip_labels: Vec::new(),
            label_filter: None,
            focus: None,
            fail_fast: false,
            keep: false,
            real: real::RealOptions::default(),
        }
    }
}

/// Runs the one scenario called `name` (what a nextest suite test does).
pub async fn run_one(opts: &Options, name: &str) -> Result<(), String> {
    preflight(opts).map_err(|e| e.to_string())?;
    let all = scenario::all();
    let s = all
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no scenario named {name:?}"))?;
    let mut ctx = context(opts, &crate::lab::new_run_id());
    ctx.scope = "s1".into();
    let outcome = match tokio::spawn((s.body)(ctx.clone())).await {
        Ok(outcome) => outcome,
        Err(e) => Err(format!("scenario panicked: {e}")),
    };
    let outcome = check_leaks(&ctx, outcome);
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
    outcome
}

pub(crate) fn context(opts: &Options, run_id: &str) -> Ctx {
    context_named(opts, run_id, "implementation")
}

/// The context of a run whose CNIs picked one by one are linked in `work_dir/links`
/// (`secnet compare` runs two implementations in one run).
pub(crate) fn context_named(opts: &Options, run_id: &str, links: &str) -> Ctx {
    let work_dir = scratch_dir(run_id);
    // Links to CNIs picked one by one; a failure here shows as "not found" later.
    let cni_bin_dir = opts
        .implementation
        .cni_dir(&work_dir.join(links))
        .unwrap_or_else(|e| {
            eprintln!("secnet conform: {e}");
            opts.implementation.cni_bin_dir.clone()
        });
    Ctx {
        cni_bin_dir,
        keep: opts.keep,
        run_id: run_id.to_string(),
        scope: String::new(),
        reference_bin_dir: opts.reference_bin_dir.clone(),
        device_plugin: opts.implementation.device_plugin.clone(),
        topology: opts.topology.clone(),
        fixtures_dir: opts.fixtures_dir.clone(),
        work_dir,
        observed: Default::default(),
        target: Default::default(),
    }
}

/// The run's scratch dir: a fresh `$TMPDIR/secnet-<run id>-XXXXXX` (mkdtemp, 0700;
/// never an existing, predictable path), removed at the end of the run or by
/// `secnet clean --run <run id>` after a killed one.
fn scratch_dir(run_id: &str) -> PathBuf {
    crate::lab::ScratchDir::new(&format!("secnet-{run_id}"))
        .map(crate::lab::ScratchDir::into_path)
        .unwrap_or_else(|e| {
            panic!(
                "failed to create a scratch dir under {} ({e}); point TMPDIR at a writable directory",
                std::env::temp_dir().display()
            )
        })
}

/// After a scenario (passed or failed, unless kept): anything of it still there once
/// the kernel has had its time to release what was deleted (bounded) is a leak,
/// which fails the scenario and is swept so that later scenarios start clean.
fn check_leaks(ctx: &Ctx, outcome: Outcome) -> Outcome {
    if ctx.keep && outcome.is_err() {
        return outcome;
    }
    let prefix = format!("{}-{}", ctx.run_id, ctx.scope);
    let dash = format!("{prefix}-");
    let ours = |n: &str| n == prefix || n.starts_with(&dash);
    let found = match crate::clean::wait_gone(ours, crate::lab::RELEASE_TIMEOUT) {
        Ok(()) => return outcome,
        Err(f) => f,
    };
    let leaked = format!("leaked after the scenario: {}", found.describe());
    let swept = match crate::clean::clean_found(found) {
        Ok(_) => match crate::clean::wait_gone(ours, crate::lab::RELEASE_TIMEOUT) {
            Ok(()) => String::new(),
            Err(left) => format!("; still there after the sweep: {}", left.describe()),
        },
        Err(e) => format!("; the sweep failed: {e}"),
    };
    match outcome {
        Ok(()) => Err(format!("{leaked}{swept}")),
        Err(m) => Err(format!("{m}\n{leaked}{swept}")),
    }
}

pub(crate) fn preflight(opts: &Options) -> Result<(), ConformError> {
    if !opts.fixtures_dir.join("seed").is_dir() {
        return Err(ConformError::MissingFixtures(opts.fixtures_dir.clone()));
    }
    match opts.cluster.as_str() {
        "netns" => {}
        // The cluster runs the plugins: nothing local to check beyond the fixtures.
        "kind" | "existing" => return Ok(()),
        other => return Err(ConformError::UnknownCluster(other.to_string())),
    }
    if !crate::prereq::is_root() {
        return Err(ConformError::NotRoot);
    }
    // At least one CNI under test: a wrong directory fails here, not 30 times.
    if implementation::CNIS
        .iter()
        .all(|name| opts.implementation.cni(name).0.is_none())
    {
        return Err(ConformError::MissingPlugin(
            opts.implementation.cni_bin_dir.clone(),
        ));
    }
    Ok(())
}

/// The scenarios the backend and label filters select, or an error listing the
/// known backends or labels.
pub(crate) fn select<'a>(
    opts: &Options,
    all: &'a [scenario::Scenario],
) -> Result<Vec<&'a scenario::Scenario>, ConformError> {
    let mut backends: Vec<&str> = all.iter().map(|s| s.backend).collect();
    backends.sort_unstable();
    backends.dedup();
    if let Some(unknown) = opts
        .backends
        .iter()
        .find(|b| !backends.contains(&b.as_str()))
    {
        return Err(ConformError::UnknownBackend(
            unknown.clone(),
            backends.join(", "),
        ));
    }
    let mut known: Vec<&str> = all.iter().flat_map(|s| s.selection_labels()).collect();
    known.sort_unstable();
    known.dedup();
    let selected: Vec<_> = all
        .iter()
        .filter(|s| opts.backends.is_empty() || opts.backends.iter().any(|b| b == s.backend))
        .filter(|s| s.selected(&opts.labels, &opts.skip_labels))
        .filter(|s| {
            opts.label_filter
                .as_ref()
                .is_none_or(|f| f.matches(&s.selection_labels()))
        })
        .filter(|s| opts.focus.as_ref().is_none_or(|re| re.is_match(&s.name)))
        .collect();
    if selected.is_empty() {
        return Err(ConformError::NothingSelected {
            labels: opts.labels.clone(),
            skip: opts.skip_labels.clone(),
            known: known.join(", "),
        });
    }
    Ok(selected)
}

/// `--dry-run`: the plan of a kind/existing run (commands, manifests, scenarios).
pub fn dry_run(opts: &Options) -> Result<String, ConformError> {
    if opts.cluster == "netns" {
        let all = scenario::all();
        return Ok(netns_plan(opts, &select(opts, &all)?));
    }
    preflight(opts)?;
    let all = scenario::all();
    let selected = select(opts, &all)?;
    plan::plan(opts, &crate::lab::new_run_id(), &selected)
        .map_err(|e| ConformError::Real(e.to_string()))
}

/// The plan of a netns run: what it would build and run, without root.
fn netns_plan(opts: &Options, selected: &[&scenario::Scenario]) -> String {
    let mut plan = String::from("# secnet conform --cluster netns: the plan (nothing was run)\n\n");
    plan.push_str(
        "Each scenario gets its own cluster of network namespaces named sn<run id>-s<n>-<node>, torn down after it:\n  fabric bridge with the gateway and DHCP of the topology; nodes:",
    );
    for node in &opts.topology.nodes {
        plan.push_str(&format!(" {} (uplink {})", node.name, node.uplink));
    }
    plan.push_str(&format!(
        "\n\nUnder test: {}\nReference plugins: {}\nFixtures: {}\n\nScenarios ({}):\n",
        opts.implementation.summary(),
        opts.reference_bin_dir.display(),
        opts.fixtures_dir.display(),
        selected.len()
    ));
    for s in selected {
        plan.push_str(&format!(
            "  {}  [{}]\n",
            s.name,
            s.selection_labels().join(", ")
        ));
    }
    plan
}

/// `--list`: the selected scenarios with their labels (a table, or JSON).
pub fn listing(opts: &Options, json: bool) -> Result<String, ConformError> {
    let all = scenario::all();
    let selected = select(opts, &all)?;
    if json {
        let rows: Vec<_> = selected
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "group": s.group(),
                    "backend": s.backend,
                    "workload": s.workload,
                    "labels": s.labels,
                    "portable": s.portable,
                })
            })
            .collect();
        return Ok(format!("{}\n", serde_json::Value::Array(rows)));
    }
    let width = selected.iter().map(|s| s.name.len()).max().unwrap_or(4);
    let mut out = format!(
        "{:width$}  {:8}  {:9}  LABELS\n",
        "NAME", "WORKLOAD", "PORTABLE"
    );
    for s in &selected {
        out.push_str(&format!(
            "{:width$}  {:8}  {:9}  {}\n",
            s.name,
            s.workload,
            if s.portable { "yes" } else { "netns" },
            s.selection_labels().join(", ")
        ));
    }
    out.push_str(&format!("{} scenario(s)\n", selected.len()));
    Ok(out)
}

/// Runs the selected scenarios one after the other, printing a line per scenario.
pub async fn run(opts: &Options) -> Result<Report, ConformError> {
    let all = scenario::all();
    let selected = select(opts, &all)?;
    preflight(opts)?;
    let run_id = crate::lab::new_run_id();
    let portable = selected.iter().filter(|s| s.portable).count();
    let count = if opts.cluster == "netns" {
        format!("{} scenario(s)", selected.len())
    } else {
        format!(
            "{} scenario(s), {portable} portable (the others need the netns cluster and are skipped)",
            selected.len()
        )
    };
    eprintln!(
        "secnet conform: run {run_id} on the {} cluster, {count}",
        opts.cluster
    );
    if opts.cluster == "netns" {
        eprintln!(
            "secnet conform: under test: {}",
            opts.implementation.summary()
        );
    }
    let ctx = context(opts, &run_id);
    let started = Instant::now();
    let real = if opts.cluster == "netns" {
        None
    } else {
        let up = tokio::select! {
            up = real::RealCluster::up(opts, &run_id) => up.map_err(|e| e.to_string()),
            signal = interrupted() => Err(format!("interrupted by {signal} while bringing the cluster up; run `secnet clean --cluster {} --run {run_id}`", opts.cluster)),
        };
        match up {
            Ok(rc) => Some(rc),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&ctx.work_dir);
                return Err(ConformError::Real(e));
            }
        }
    };
    run_selected(opts, &run_id, ctx, selected, real, started).await
}

/// Runs `selected` one after the other (on the run's real cluster when `real`),
/// printing a line per scenario, and takes the real cluster down at the end.
async fn run_selected(
    opts: &Options,
    run_id: &str,
    mut ctx: Ctx,
    selected: Vec<&scenario::Scenario>,
    mut real: Option<real::RealCluster>,
    started: Instant,
) -> Result<Report, ConformError> {
    if let Some(rc) = &real {
        ctx.target = rc.target();
    }
    let total = selected.len();
    let mut reports = Vec::new();
    for (i, s) in selected.into_iter().enumerate() {
        let at = Position {
            tag: format!("{:>2}/{total}", i + 1),
            scope: format!("s{}", i + 1),
        };
        if opts.fail_fast
            && reports
                .iter()
                .any(|r: &ScenarioReport| r.status == Status::Failed)
        {
            skip_line(&at.tag, &s.name, "--fail-fast: an earlier scenario failed");
            reports.push(skipped(
                s,
                "not run: --fail-fast and an earlier scenario failed",
            ));
            continue;
        }
        reports.push(run_scenario(run_id, &mut ctx, s, &at, &mut real).await?);
    }
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
    if let Some(rc) = real {
        let failed = reports.iter().any(|r| r.status == Status::Failed);
        for note in rc.down(failed, opts.keep).await {
            eprintln!("secnet conform: {note}");
        }
    }
    let implementation = if opts.cluster == "netns" {
        let mut described = opts.implementation.describe();
        described["run_id"] = json!(run_id);
        described["reference_bin_dir"] = json!(opts.reference_bin_dir.display().to_string());
        described["macvtap"] = described["plugins"]["macvtap"]["path"].clone();
        described
    } else {
        json!({
            "run_id": run_id,
            "image": opts.real.image,
            "macvtap": if opts.real.upstream_macvtap { crate::cluster::kube::components::UPSTREAM_MACVTAP_IMAGE } else { opts.real.image.as_str() },
            "components": opts.real.components,
        })
    };
    Ok(Report::new(
        &opts.cluster,
        implementation,
        reports,
        started.elapsed().as_secs_f64(),
    ))
}

fn skip_line(tag: &str, name: &str, why: &str) {
    if !crate::term::output().quiet {
        eprintln!("[{tag}] {} {name} ({why})", crate::term::paint("SKIP"));
    }
}

/// The report of a scenario that was not run, and why.
fn skipped(s: &scenario::Scenario, why: &str) -> ScenarioReport {
    ScenarioReport {
        name: s.name.clone(),
        backend: s.backend.to_string(),
        workload: s.workload.to_string(),
        labels: s.labels.iter().map(|l| l.to_string()).collect(),
        status: Status::Skipped,
        duration_s: 0.0,
        message: why.to_string(),
        observed: Default::default(),
    }
}

/// Where a scenario stands in its run: the progress tag printed (`3/12`) and its
/// part of namespace names (`s3`).
pub(crate) struct Position {
    pub tag: String,
    pub scope: String,
}

/// Runs one scenario in its own task (a panic fails it alone), with a spinner, the
/// leak check and a printed line; Ctrl-C or SIGTERM stops the whole run, sweeping
/// what it made.
pub(crate) async fn run_scenario(
    run_id: &str,
    ctx: &mut Ctx,
    s: &scenario::Scenario,
    at: &Position,
    real: &mut Option<real::RealCluster>,
) -> Result<ScenarioReport, ConformError> {
    let tag = &at.tag;
    if real.is_some() && !s.portable {
        skip_line(tag, &s.name, real::SKIP_REASON);
        return Ok(skipped(s, real::SKIP_REASON));
    }
    if let Some(why) = s.not_claimed(ctx) {
        skip_line(tag, &s.name, &why);
        return Ok(skipped(s, &why));
    }
    let t = Instant::now();
    ctx.scope = at.scope.clone();
    ctx.observed = Default::default();
    // A spinner with the elapsed time while the scenario runs (terminals only).
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_style(
        indicatif::ProgressStyle::with_template("[{prefix}] {spinner} {msg} ({elapsed})")
            .expect("progress template"),
    );
    progress.set_prefix(tag.clone());
    progress.set_message(s.name.clone());
    progress.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut task = tokio::spawn((s.body)(ctx.clone()));
    let outcome = tokio::select! {
        joined = &mut task => match joined {
            Ok(outcome) => outcome,
            Err(e) => Err(format!("scenario panicked: {e}")),
        },
        signal = interrupted() => {
            task.abort();
            // Let the scenario's drop guards run before sweeping after them.
            let _ = task.await;
            eprintln!("secnet conform: {signal}: stopping run {run_id} and removing what it created");
            if let Some(rc) = real.take() {
                for note in rc.down(true, false).await {
                    eprintln!("secnet conform: {note}");
                }
            }
            match crate::clean::clean(Some(run_id)) {
                Ok(c) => eprintln!("secnet conform: removed {} namespace(s), {} process(es)", c.namespaces.len(), c.processes.len()),
                Err(e) => eprintln!("secnet conform: cleanup failed: {e}; run `secnet clean --run {run_id}`"),
            }
            let _ = std::fs::remove_dir_all(&ctx.work_dir);
            return Err(ConformError::Interrupted(signal));
        }
    };
    progress.finish_and_clear();
    let outcome = if real.is_some() {
        outcome // a real cluster's leftovers are its scope's objects: finish_kube checks
    } else {
        check_leaks(ctx, outcome)
    };
    let duration_s = t.elapsed().as_secs_f64();
    let (status, message) = match (outcome, s.beyond_reference) {
        (Ok(()), _) => (Status::Passed, String::new()),
        (Err(m), None) => (Status::Failed, m),
        // The note is about the plugins' behaviour, which a scenario whose pods found
        // no device plugin did not get to see.
        (Err(m), Some(_)) if m.contains(crate::cluster::netns::NO_DEVICE_PLUGIN) => {
            (Status::Failed, m)
        }
        (Err(m), Some(note)) => (
            Status::Failed,
            format!("{m}\nreference implementation: {note}"),
        ),
    };
    let mark = if status == Status::Passed {
        "PASS"
    } else {
        "FAIL"
    };
    if status == Status::Failed || !crate::term::output().quiet {
        eprintln!(
            "[{tag}] {} {} ({duration_s:.2} s)",
            crate::term::paint(mark),
            s.name
        );
    }
    if status == Status::Failed && !message.is_empty() {
        eprintln!("        {}", message.replace('\n', "\n        "));
    }
    Ok(ScenarioReport {
        name: s.name.clone(),
        backend: s.backend.to_string(),
        workload: s.workload.to_string(),
        labels: s.labels.iter().map(|l| l.to_string()).collect(),
        status,
        duration_s,
        message,
        observed: ctx.observed.take(),
    })
}

/// Resolves on the first Ctrl-C or SIGTERM, naming it.
pub(crate) async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}
