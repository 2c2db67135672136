//! `secnet conform`: select scenarios by label, run them against the implementation
//! under test, show progress, and write the report. On kind/existing clusters
//! (`real`) the portable scenarios run and the others are reported as skipped.

pub mod bare;
pub mod implementation;
pub mod inventory;
pub mod kube;
pub mod netns;
pub mod plan;
pub mod provider;
pub mod real;
pub mod schedule;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::cluster::provider::Provider;
use crate::cluster::topology::Topology;
use crate::report::{Report, ScenarioReport, Status};
use crate::scenario::provider::{ClusterProvider, ProviderError};
use crate::scenario::{self, Ctx, Outcome};

#[derive(Debug, Clone)]
pub struct Options {
    pub cluster: Provider,
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
    /// Scenarios run at once (each in its own cluster on netns); 0: one per core.
    /// kind and existing run one at a time (the scenarios share its nodes'
    /// capacity); bare runs those that share the nodes at once, the others alone.
    pub jobs: usize,
    pub keep: bool,
    /// `--repeat`: each scenario runs this many times (at least 1); any failed run
    /// fails it.
    pub repeat: u32,
    /// `--retries`: a failed run is run again up to this many times; a pass after a
    /// retry is `flaky`.
    pub retries: u32,
    /// What `--cluster kind|existing` needs.
    pub real: real::RealOptions,
    /// `--multus-semantics`: the rules secnet's multus follows on netns (real
    /// clusters run their own multus).
    pub multus_semantics: crate::multus::Semantics,
    /// What `--cluster bare` needs.
    pub bare: bare::BareRunOptions,
}

#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    /// The run could not set up (preflight, the cluster did not come up): `report`
    /// has the set-up failure as an `error` entry and every selected scenario as
    /// skipped, so that a run always leaves its reports.
    #[error("{error}")]
    SetUp {
        error: Box<ConformError>,
        report: Box<Report>,
    },
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
    #[error(transparent)]
    Provider(ProviderError),
    #[error(transparent)]
    Real(#[from] real::RealError),
    #[error(transparent)]
    Plan(#[from] plan::PlanError),
    #[error(
        "interrupted by {signal} while bringing the cluster up; run `secnet clean --cluster {cluster} --run {run_id}`"
    )]
    InterruptedUp {
        signal: &'static str,
        cluster: Provider,
        run_id: String,
    },
    #[error("a scenario's task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error(
        "secnet compare runs on the netns cluster (two implementations side by side on this machine)"
    )]
    CompareNeedsNetns,
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
    /// The provider `--cluster` names, set up with these options.
    pub fn provider(&self) -> Box<dyn ClusterProvider> {
        provider::for_run(self)
    }

    /// What the run's cluster will offer: the provider's capabilities plus what the
    /// run deploys or the inventory declares.
    pub fn offer(&self) -> scenario::Offer {
        self.provider().offer()
    }

    /// How many scenarios run at once.
    pub fn effective_jobs(&self) -> usize {
        self.provider().jobs(self.jobs)
    }

    /// The bundled implementations on the built-in default topology: what
    /// `secnet conform` runs with no arguments.
    pub fn bundled() -> Options {
        Options {
            cluster: Provider::Netns,
            implementation: implementation::Resolved::bundled(),
            reference_bin_dir: "/usr/lib/cni".into(),
            topology: Topology::parse(crate::cluster::topology::DEFAULT, "built-in default")
                .expect("the built-in topology is valid"),
            fixtures_dir: crate::bins::fixtures_dir(),
            backends: Vec::new(),
            labels: Vec::new(),
            skip_labels: Vec::new(),
            label_filter: None,
            focus: None,
            fail_fast: false,
            jobs: 0,
            keep: false,
            repeat: 1,
            retries: 0,
            real: real::RealOptions::default(),
            multus_semantics: crate::multus::Semantics::default(),
            bare: bare::BareRunOptions::default(),
        }
    }
}

/// Runs the one scenario called `name` (what a nextest suite test does).
pub async fn run_one(opts: &Options, name: &str) -> Outcome {
    preflight(opts).map_err(|e| scenario::Failure::caused("preflight", e))?;
    let s = scenario::all()
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| scenario::Failure::msg(format!("no scenario named {name:?}")))?;
    let provider: Arc<dyn ClusterProvider> = Arc::from(opts.provider());
    if let Some(why) = s.unsupported_on(&provider.offer()) {
        return scenario::fail(format!("{name}: {why}"));
    }
    let run_id = crate::lab::new_run_id();
    provider
        .start(&run_id)
        .await
        .map_err(|e| scenario::Failure::msg(format!("the cluster did not come up: {e}")))?;
    let mut ctx = context(opts, &run_id);
    ctx.scope = "s1".into();
    let work_dir = ctx.work_dir.clone();
    let (outcome, _) = run_guarded(s, ctx, provider.clone()).await;
    let failed = outcome.is_err();
    for note in provider.stop(failed, opts.keep).await {
        eprintln!("secnet conform: {note}");
    }
    let _ = std::fs::remove_dir_all(&work_dir);
    outcome
}

/// Runs `s` through the runner in `ctx`, a panic failing it alone, then the
/// provider's leak check. Returns the outcome and what was observed.
async fn run_guarded(
    s: &'static scenario::Scenario,
    ctx: Ctx,
    provider: Arc<dyn ClusterProvider>,
) -> (Outcome, crate::observe::Observations) {
    use futures::FutureExt;
    let outcome = std::panic::AssertUnwindSafe(scenario::runner::run(s, &ctx, &*provider))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            // A panic is a bug of the harness, whatever the plugin did.
            Err(scenario::Failure::error(format!(
                "scenario panicked: {what}"
            )))
        });
    let c = ctx.clone();
    let outcome = tokio::task::spawn_blocking(move || provider.leaks(&c, outcome))
        .await
        .unwrap_or_else(|e| {
            Err(scenario::Failure::error(format!(
                "the leak check panicked: {e}"
            )))
        });
    (outcome, ctx.observed.take())
}

pub fn context(opts: &Options, run_id: &str) -> Ctx {
    context_named(opts, run_id, "implementation")
}

/// The context of a run whose CNIs picked one by one are linked in `work_dir/links`
/// (`secnet compare` runs two implementations in one run).
pub fn context_named(opts: &Options, run_id: &str, links: &str) -> Ctx {
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
        multus: opts.multus_semantics,
        cluster_multus: !opts.provider().runs_secnets_multus(),
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

pub fn preflight(opts: &Options) -> Result<(), ConformError> {
    if !opts.fixtures_dir.join("seed").is_dir() {
        return Err(ConformError::MissingFixtures(opts.fixtures_dir.clone()));
    }
    opts.provider().preflight().map_err(ConformError::Provider)
}

/// The scenarios the backend and label filters select, or an error listing the
/// known backends or labels.
pub fn select(
    opts: &Options,
    all: &'static [scenario::Scenario],
) -> Result<Vec<&'static scenario::Scenario>, ConformError> {
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
        .filter(|s| {
            opts.focus
                .as_ref()
                .is_none_or(|re| re.is_match(&s.name) || re.is_match(&s.id()))
        })
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

/// `--dry-run`: the plan of a run (netns: nodes, implementation, scenarios;
/// kind/existing: commands, manifests, scenarios).
pub fn dry_run(opts: &Options) -> Result<String, ConformError> {
    let selected = select(opts, scenario::all())?;
    opts.provider()
        .plan(&crate::lab::new_run_id(), &selected)
        .map_err(ConformError::Provider)
}

/// `--list`: the selected scenarios with their labels (a table, or JSON), and
/// whether the `--cluster` provider can host each (or which capability it lacks).
pub fn listing(opts: &Options, json: bool) -> Result<String, ConformError> {
    let all = scenario::all();
    let selected = select(opts, all)?;
    let offer = opts.offer();
    if json {
        let rows: Vec<_> = selected
            .iter()
            .map(|s| {
                json!({
                    "id": s.id(),
                    "name": s.name,
                    "group": s.group(),
                    "backend": s.backend,
                    "workload": s.workload,
                    "labels": s.labels,
                    "needs": s.needs.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                    "portable": s.portable_on(&crate::cluster::kube::base_offer("kind")),
                    "runnable": s.portable_on(&offer),
                })
            })
            .collect();
        return Ok(format!("{}\n", serde_json::Value::Array(rows)));
    }
    let width = selected.iter().map(|s| s.name.len()).max().unwrap_or(4);
    let mut out = format!(
        "{:7}  {:width$}  {:8}  {:24}  LABELS\n",
        "ID", "NAME", "WORKLOAD", "NEEDS"
    );
    for s in &selected {
        let needs: Vec<String> = s.needs.iter().map(|c| c.to_string()).collect();
        out.push_str(&format!(
            "{:7}  {:width$}  {:8}  {:24}  {}\n",
            s.id(),
            s.name,
            s.workload,
            if needs.is_empty() {
                "-".to_string()
            } else {
                needs.join(",")
            },
            s.selection_labels().join(", ")
        ));
    }
    let runnable = selected.iter().filter(|s| s.portable_on(&offer)).count();
    let quarantined =
        if scenario::filter::quarantine_wanted(&opts.labels, opts.label_filter.as_ref()) {
            0
        } else {
            selected.iter().filter(|s| s.is_quarantined()).count()
        };
    let quarantine_note = match quarantined {
        0 => String::new(),
        n => format!(
            ", {n} quarantined (skipped unless --label {})",
            scenario::filter::QUARANTINE
        ),
    };
    out.push_str(&format!(
        "{} scenario(s), {runnable} runnable on the {offer} cluster{quarantine_note}\n",
        selected.len()
    ));
    Ok(out)
}

/// Runs the selected scenarios (`--jobs` at once), printing a line per scenario.
pub async fn run(opts: &Options) -> Result<Report, ConformError> {
    let all = scenario::all();
    let selected = select(opts, all)?;
    let run_id = crate::lab::new_run_id();
    let started = Instant::now();
    if let Err(e) = preflight(opts) {
        return Err(set_up_failed(
            opts,
            &run_id,
            &selected,
            "preflight",
            e,
            started,
        ));
    }
    let provider: Arc<dyn ClusterProvider> = Arc::from(opts.provider());
    let offer = provider.offer();
    let runnable = selected.iter().filter(|s| s.portable_on(&offer)).count();
    let jobs = provider.jobs(opts.jobs);
    let count = if runnable == selected.len() {
        format!("{} scenario(s)", selected.len())
    } else {
        format!(
            "{} scenario(s), {runnable} runnable (the others need what this provider lacks and are skipped)",
            selected.len()
        )
    };
    let alone = selected
        .iter()
        .filter(|s| {
            s.portable_on(&offer) && provider.sharing(s) == scenario::provider::Sharing::Alone
        })
        .count();
    let at_once = if jobs > 1 && alone > 0 {
        format!(
            "{jobs} at a time, {alone} of them alone on the cluster (they need its nodes to themselves)"
        )
    } else {
        format!("{jobs} at a time")
    };
    eprintln!("secnet conform: run {run_id} on the {offer} cluster, {count}, {at_once}");
    if let Some(under_test) = provider.under_test() {
        eprintln!("secnet conform: under test: {under_test}");
    }
    for warning in provider.warnings() {
        eprintln!("secnet conform: warning: {warning}");
    }
    let ctx = context(opts, &run_id);
    let up = tokio::select! {
        up = provider.start(&run_id) => up.map_err(ConformError::Provider),
        signal = interrupted() => Err(ConformError::InterruptedUp {
            signal,
            cluster: opts.cluster,
            run_id: run_id.clone(),
        }),
    };
    if let Err(e) = up {
        let _ = std::fs::remove_dir_all(&ctx.work_dir);
        return Err(set_up_failed(
            opts,
            &run_id,
            &selected,
            "cluster up",
            e,
            started,
        ));
    }
    run_selected(opts, &run_id, ctx, selected, provider, started).await
}

/// The report of a run whose set-up (`step`) failed: the failure as an `error`
/// entry `setup/<step>`, every selected scenario skipped for it.
fn set_up_failed(
    opts: &Options,
    run_id: &str,
    selected: &[&'static scenario::Scenario],
    step: &str,
    error: ConformError,
    started: Instant,
) -> ConformError {
    let message = error.to_string();
    let mut scenarios = vec![ScenarioReport {
        name: format!("setup/{step}"),
        backend: "-".into(),
        workload: "node".into(),
        labels: vec!["setup".into()],
        status: Status::Error,
        duration_s: started.elapsed().as_secs_f64(),
        message: message.clone(),
        id: String::new(),
        attempts: Default::default(),
        observed: Default::default(),
    }];
    let why = format!("not run: the run's {step} failed");
    scenarios.extend(selected.iter().map(|s| skipped(s, &why)));
    let mut implementation = opts.implementation.describe();
    implementation["run_id"] = json!(run_id);
    let report = Report::new(
        &opts.cluster.to_string(),
        implementation,
        scenarios,
        started.elapsed().as_secs_f64(),
    );
    ConformError::SetUp {
        error: Box::new(error),
        report: Box::new(report),
    }
}

/// Runs `selected`, up to `--jobs` at once, each in its own scope (`s<n>`) and on
/// netns its own cluster; reports come back in the selection's order. Takes the
/// real cluster down at the end.
async fn run_selected(
    opts: &Options,
    run_id: &str,
    ctx: Ctx,
    selected: Vec<&'static scenario::Scenario>,
    provider: Arc<dyn ClusterProvider>,
    started: Instant,
) -> Result<Report, ConformError> {
    let offer = provider.offer();
    let total = selected.len();
    let jobs = provider.jobs(opts.jobs).max(1);
    let progress = Progress::new();
    let mut reports: Vec<Option<ScenarioReport>> = (0..total).map(|_| None).collect();
    // Those alone on the cluster first, then heaviest first (stable): the light ones
    // fill the gaps at the end. Reports stay in the selection's order.
    let mut order: Vec<(usize, &'static scenario::Scenario)> =
        selected.into_iter().enumerate().collect();
    if jobs > 1 {
        order.sort_by_key(|(_, s)| schedule::sort_key(provider.sharing(s), s.weight()));
    }
    let mut pending: Vec<(usize, &'static scenario::Scenario)> = order;
    // What runs on the shared cluster (bare): who may start beside it.
    let mut slots = schedule::Slots::default();
    let mut running = tokio::task::JoinSet::new();
    let mut any_failed = false;
    let quarantined = scenario::filter::quarantine_wanted(&opts.labels, opts.label_filter.as_ref());
    let tries = Tries {
        repeat: opts.repeat.max(1),
        retries: opts.retries,
        total,
    };
    // `[i/N]`: i counts the scenarios finished (run or skipped), N the selected.
    let mut done = 0;
    let tag = |done: &mut usize| {
        *done += 1;
        format!("{:>2}/{total}", *done)
    };
    loop {
        while running.len() < jobs {
            // The first pending one that is skipped or may start now; the others
            // wait for the cluster (`schedule`).
            let why_not = |s: &scenario::Scenario| {
                if opts.fail_fast && any_failed {
                    Some("not run: --fail-fast and an earlier scenario failed".to_string())
                } else if s.is_quarantined() && !quarantined {
                    Some(format!(
                        "quarantined: run it with --label {}",
                        scenario::filter::QUARANTINE
                    ))
                } else {
                    why_not_run(s, &ctx, &offer)
                }
            };
            let next = pending.iter().enumerate().find_map(|(k, (_, s))| {
                let why = why_not(s);
                let sharing = provider.sharing(s);
                (why.is_some() || slots.may_start(sharing)).then_some((k, why, sharing))
            });
            let Some((k, why, sharing)) = next else { break };
            let (i, s) = pending.remove(k);
            if let Some(why) = why {
                progress.line(&skip_line(&tag(&mut done), &s.name, &why));
                reports[i] = Some(skipped(s, &why));
                continue;
            }
            slots.started(sharing);
            let spinner = progress.start(&format!("{:>2}/{total}", "…"), &s.name);
            let (p, c) = (provider.clone(), ctx.clone());
            running.spawn(async move {
                let report = run_tries(s, c, p, i + 1, tries).await;
                spinner.finish_and_clear();
                (i, report, sharing)
            });
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next() => match joined {
                Some(Ok((i, report, sharing))) => {
                    slots.ended(sharing);
                    any_failed |= report.status.is_bad();
                    progress.line(&result_line(&tag(&mut done), &report));
                    reports[i] = Some(report);
                }
                Some(Err(e)) => return Err(ConformError::Task(e)),
                None => break,
            },
            signal = interrupted() => {
                // Dropping the tasks runs the scenarios' drop guards; then sweep.
                running.abort_all();
                while running.join_next().await.is_some() {}
                progress.clear();
                stop_run(run_id, signal, &*provider, &ctx).await;
                return Err(ConformError::Interrupted(signal));
            }
        }
    }
    let reports: Vec<ScenarioReport> = reports.into_iter().flatten().collect();
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
    let failed = reports.iter().any(|r| r.status.is_bad());
    for note in provider.stop(failed, opts.keep).await {
        eprintln!("secnet conform: {note}");
    }
    Ok(Report::new(
        &opts.cluster.to_string(),
        provider.implementation(run_id),
        reports,
        started.elapsed().as_secs_f64(),
    ))
}

/// Why `s` is not run in `ctx`: a capability the provider's `offer` lacks, or a
/// CNI version the implementation under test does not claim.
fn why_not_run(s: &scenario::Scenario, ctx: &Ctx, offer: &scenario::Offer) -> Option<String> {
    if let Some(missing) = offer.missing(&s.needs) {
        // Under CI a program missing on this machine (named, or implied by Ovs, Vm,
        // Dhcp) fails the scenario instead of skipping it.
        let program_missing =
            offer.nodes_here() && matches!(missing, scenario::Capability::Program(_));
        if !(program_missing && crate::prereq::in_ci()) {
            return s.unsupported_on(offer);
        }
    }
    s.not_claimed(ctx)
}

/// Stops an interrupted run: what the provider brought up down, everything of the
/// run swept.
async fn stop_run(run_id: &str, signal: &str, provider: &dyn ClusterProvider, ctx: &Ctx) {
    eprintln!("secnet conform: {signal}: stopping run {run_id} and removing what it created");
    for note in provider.stop(true, false).await {
        eprintln!("secnet conform: {note}");
    }
    match crate::clean::clean(Some(run_id)) {
        Ok(c) => eprintln!(
            "secnet conform: removed {} namespace(s), {} process(es)",
            c.namespaces.len(),
            c.processes.len()
        ),
        Err(e) => {
            eprintln!("secnet conform: cleanup failed: {e}; run `secnet clean --run {run_id}`")
        }
    }
    let _ = std::fs::remove_dir_all(&ctx.work_dir);
}

fn skip_line(tag: &str, name: &str, why: &str) -> Option<String> {
    (!crate::term::output().quiet)
        .then(|| format!("[{tag}] {} {name} ({why})", crate::term::paint("SKIP")))
}

/// The printed line of a finished scenario: PASS, FAIL (the implementation is
/// wrong), ERROR (the harness or cluster broke) or FLAKY (passed on a retry), and
/// a failure's message.
fn result_line(tag: &str, r: &ScenarioReport) -> Option<String> {
    let failed = r.status.is_bad();
    if r.status == Status::Passed && crate::term::output().quiet {
        return None;
    }
    let mark = match r.status {
        Status::Failed => "FAIL",
        Status::Error => "ERROR",
        Status::Flaky => "FLAKY",
        _ => "PASS",
    };
    let runs = if r.attempts.runs > 1 {
        format!(", {} runs", r.attempts.runs)
    } else {
        String::new()
    };
    let mut line = format!(
        "[{tag}] {} {} ({:.2} s{runs})",
        crate::term::paint(mark),
        r.name,
        r.duration_s
    );
    if failed && !r.message.is_empty() {
        line.push_str(&format!(
            "\n        {}",
            r.message.replace('\n', "\n        ")
        ));
    }
    Some(line)
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
        id: s.id(),
        attempts: Default::default(),
        observed: Default::default(),
    }
}

/// How often each scenario runs, and how many scopes (`s<n>`) a run has.
#[derive(Debug, Clone, Copy)]
struct Tries {
    repeat: u32,
    retries: u32,
    total: usize,
}

/// Runs scenario `index` (1-based) `--repeat` times, a failed run retried up to
/// `--retries` times. Every run has a scope of its own (`s<index + k·total>`), so a
/// kept failure never meets its retry. The report is the first run that stayed
/// bad, else the last; passing after a retry makes it `flaky`; the other runs are
/// its earlier attempts.
async fn run_tries(
    s: &'static scenario::Scenario,
    ctx: Ctx,
    provider: Arc<dyn ClusterProvider>,
    index: usize,
    tries: Tries,
) -> ScenarioReport {
    let mut runs: Vec<ScenarioReport> = Vec::new();
    let mut stayed_bad: Option<usize> = None;
    for _ in 0..tries.repeat {
        for attempt in 0..=tries.retries {
            let mut c = ctx.clone();
            c.scope = format!("s{}", index + runs.len() * tries.total);
            c.observed = Default::default();
            let t = Instant::now();
            let (outcome, observed) = run_guarded(s, c, provider.clone()).await;
            let r = scenario_report(s, outcome, observed, t.elapsed().as_secs_f64());
            let bad = r.status.is_bad();
            runs.push(r);
            if !bad {
                break;
            }
            if attempt == tries.retries {
                stayed_bad.get_or_insert(runs.len() - 1);
            }
        }
    }
    verdict(runs, stayed_bad)
}

/// One report from a scenario's runs (see `run_tries`).
fn verdict(mut runs: Vec<ScenarioReport>, stayed_bad: Option<usize>) -> ScenarioReport {
    let count = runs.len();
    let any_bad = runs.iter().any(|r| r.status.is_bad());
    let total_s: f64 = runs.iter().map(|r| r.duration_s).sum();
    let chosen = stayed_bad.unwrap_or(count - 1);
    let mut report = runs.remove(chosen);
    if count == 1 {
        return report;
    }
    if report.status == Status::Passed && any_bad {
        report.status = Status::Flaky;
    }
    report.duration_s = total_s;
    report.attempts = crate::report::Attempts {
        runs: count as u32,
        earlier: runs
            .into_iter()
            .map(|r| crate::report::Attempt {
                status: r.status,
                message: r.message,
            })
            .collect(),
    };
    report
}

/// The report of a scenario that ran; a failure carries the reference
/// implementation's note when the scenario checks beyond what it claims.
fn scenario_report(
    s: &scenario::Scenario,
    outcome: Outcome,
    observed: crate::observe::Observations,
    duration_s: f64,
) -> ScenarioReport {
    let (status, message) = match (outcome, s.beyond_reference) {
        (Ok(()), _) => (Status::Passed, String::new()),
        // The harness or cluster broke: nothing to say about the reference.
        (Err(f), _) if f.is_error() => (Status::Error, f.to_string()),
        (Err(f), None) => (Status::Failed, f.to_string()),
        // The note is about the plugins' behaviour, which a scenario whose pods found
        // no device plugin did not get to see.
        (Err(f), Some(_))
            if f.to_string()
                .contains(crate::cluster::netns::NO_DEVICE_PLUGIN) =>
        {
            (Status::Failed, f.to_string())
        }
        (Err(f), Some(note)) => (
            Status::Failed,
            f.with_line(format!("reference implementation: {note}"))
                .to_string(),
        ),
    };
    ScenarioReport {
        name: s.name.clone(),
        backend: s.backend.to_string(),
        workload: s.workload.to_string(),
        labels: s.labels.iter().map(|l| l.to_string()).collect(),
        status,
        duration_s,
        message,
        id: s.id(),
        attempts: Default::default(),
        observed,
    }
}

/// Where a scenario stands in its run: the progress tag printed (`3/12`) and its
/// part of namespace names (`s3`).
pub struct Position {
    pub(crate) tag: String,
    pub(crate) scope: String,
}

/// Runs one scenario now (`secnet compare`, one side after the other): skips what
/// cannot run, prints its line; Ctrl-C or SIGTERM stops the whole run.
pub async fn run_scenario(
    run_id: &str,
    ctx: &mut Ctx,
    provider: &Arc<dyn ClusterProvider>,
    s: &'static scenario::Scenario,
    at: &Position,
) -> Result<ScenarioReport, ConformError> {
    let progress = Progress::new();
    if let Some(why) = why_not_run(s, ctx, &provider.offer()) {
        progress.line(&skip_line(&at.tag, &s.name, &why));
        return Ok(skipped(s, &why));
    }
    ctx.scope = at.scope.clone();
    ctx.observed = Default::default();
    let spinner = progress.start(&at.tag, &s.name);
    let t = Instant::now();
    let task = tokio::spawn(run_guarded(s, ctx.clone(), provider.clone()));
    let abort = task.abort_handle();
    let (outcome, observed) = tokio::select! {
        joined = task => joined.map_err(ConformError::Task)?,
        signal = interrupted() => {
            abort.abort();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            spinner.finish_and_clear();
            stop_run(run_id, signal, &**provider, ctx).await;
            return Err(ConformError::Interrupted(signal));
        }
    };
    spinner.finish_and_clear();
    let report = scenario_report(s, outcome, observed, t.elapsed().as_secs_f64());
    progress.line(&result_line(&at.tag, &report));
    Ok(report)
}

/// The run's progress on a terminal: a spinner per running scenario, lines above.
struct Progress(indicatif::MultiProgress);

impl Progress {
    fn new() -> Progress {
        Progress(indicatif::MultiProgress::new())
    }

    fn start(&self, tag: &str, name: &str) -> indicatif::ProgressBar {
        let bar = self.0.add(indicatif::ProgressBar::new_spinner());
        bar.set_style(
            indicatif::ProgressStyle::with_template("[{prefix}] {spinner} {msg} ({elapsed})")
                .expect("progress template"),
        );
        bar.set_prefix(tag.to_string());
        bar.set_message(name.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    }

    /// Prints `line` above the spinners (to stderr, as the rest of the run).
    fn line(&self, line: &Option<String>) {
        if let Some(l) = line {
            self.0.suspend(|| eprintln!("{l}"));
        }
    }

    fn clear(&self) {
        let _ = self.0.clear();
    }
}

/// Resolves on the first Ctrl-C or SIGTERM, naming it.
pub async fn interrupted() -> &'static str {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: Status, message: &str) -> ScenarioReport {
        ScenarioReport {
            name: "seed/x".into(),
            backend: "macvtap".into(),
            workload: "pod".into(),
            labels: Vec::new(),
            status,
            duration_s: 1.0,
            message: message.into(),
            id: "s000000".into(),
            attempts: Default::default(),
            observed: Default::default(),
        }
    }

    #[test]
    fn a_pass_after_a_retry_is_flaky_and_keeps_the_failed_run() {
        let r = verdict(
            vec![run(Status::Failed, "no reply"), run(Status::Passed, "")],
            None,
        );
        assert_eq!(r.status, Status::Flaky);
        assert_eq!(r.attempts.runs, 2);
        assert_eq!(r.attempts.earlier[0].message, "no reply");
        assert_eq!(r.duration_s, 2.0);
    }

    #[test]
    fn a_run_that_stayed_bad_is_the_verdict_and_one_run_is_just_itself() {
        // --repeat 2 --retries 1: the first repetition failed twice, the second passed.
        let r = verdict(
            vec![
                run(Status::Error, "API down"),
                run(Status::Failed, "wrong MAC"),
                run(Status::Passed, ""),
            ],
            Some(1),
        );
        assert_eq!(
            (r.status, r.message.as_str()),
            (Status::Failed, "wrong MAC")
        );
        assert_eq!(r.attempts.runs, 3);
        assert_eq!(
            r.attempts
                .earlier
                .iter()
                .map(|a| a.status)
                .collect::<Vec<_>>(),
            [Status::Error, Status::Passed]
        );
        let one = verdict(vec![run(Status::Passed, "")], None);
        assert_eq!((one.status, one.attempts.runs), (Status::Passed, 0));
    }

    #[test]
    fn focus_takes_a_scenario_id_and_quarantine_is_named_in_the_listing() {
        let all = scenario::all();
        let target = &all[3];
        let opts = Options {
            focus: Some(regex::Regex::new(&format!("^{}$", target.id())).unwrap()),
            ..Options::bundled()
        };
        let picked = select(&opts, all).unwrap();
        assert_eq!(
            picked.iter().map(|s| &s.name).collect::<Vec<_>>(),
            [&target.name]
        );
        let listed = listing(&opts, false).unwrap();
        assert!(listed.starts_with("ID "), "{listed}");
        assert!(
            listed.contains(&format!("{}  {}", target.id(), target.name)),
            "{listed}"
        );
    }

    #[test]
    fn a_failure_blamed_on_the_harness_is_an_error_not_a_failure() {
        let s = &scenario::all()[0];
        let api_down: scenario::Failure = crate::cluster::ClusterError::Operation {
            provider: "kind".into(),
            what: "restarting the device plugin on n1".into(),
            message: "connection refused".into(),
        }
        .into();
        let r = scenario_report(s, Err(api_down), Default::default(), 0.1);
        assert_eq!(r.status, Status::Error);
        assert!(
            r.message.starts_with("on the kind cluster: restarting"),
            "{}",
            r.message
        );
        let wrong: scenario::Failure = crate::cluster::ClusterError::PodStart {
            pod: "a/b".into(),
            node: "n1".into(),
            message: "CNI plugin /bin/false ADD failed (exit status 1)".into(),
        }
        .into();
        let r = scenario_report(s, Err(wrong), Default::default(), 0.1);
        assert_eq!(r.status, Status::Failed);
        let broke = scenario::Failure::msg("lab up failed").harness();
        assert_eq!(
            scenario_report(s, Err(broke), Default::default(), 0.1).status,
            Status::Error
        );
    }
}
