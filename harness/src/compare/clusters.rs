//! `secnet compare --a-cluster netns --b-cluster bare`: the same scenarios on two
//! clusters (the netns cluster's kubelet double and multus emulation against the
//! real kubelet, multus and containerd), one scenario at a time, A then B, and
//! what each observed compared after normalising run-specific values
//! ([`super::normalise`]): pods' network-status and device IDs, nodes' capacity and
//! allocatable, every call the plugins under test received with its CNI_ARGS and
//! config (through recording wrappers, [`crate::observe::record::Recording`]). Every
//! difference is listed; those in [`super::explained`] are explained, any other
//! fails the comparison.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::diff::{Difference, differences};
use super::{Side, render};
use crate::conform::{self, ConformError, Options, Position};
use crate::observe::record::{self, Observed, Recording};
use crate::report::{Status, WriteError};
use crate::scenario;
use crate::scenario::provider::ClusterProvider;

/// One scenario on both clusters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRow {
    pub(crate) name: String,
    pub(crate) backend: String,
    pub(crate) a: Side,
    pub(crate) b: Side,
    /// What each side observed, as recorded (before normalising).
    pub(crate) a_observed: Observed,
    pub(crate) b_observed: Observed,
    pub(crate) differences: Vec<Difference>,
}

impl ClusterRow {
    pub fn unexplained(&self) -> usize {
        self.differences
            .iter()
            .filter(|d| d.explained.is_none())
            .count()
    }
}

/// `compare-clusters.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterComparison {
    pub(crate) run_id: String,
    pub(crate) a: String,
    pub(crate) b: String,
    /// What was under test on both (per plugin its file).
    pub(crate) implementation: serde_json::Value,
    pub(crate) scenarios: Vec<ClusterRow>,
    /// Selected but not runnable on both clusters: name and why.
    pub(crate) not_compared: Vec<(String, String)>,
    pub unexplained: usize,
    pub(crate) explained: usize,
    pub(crate) wall_s: f64,
}

impl ClusterComparison {
    pub fn new(
        run_id: &str,
        (a, b): (&str, &str),
        implementation: serde_json::Value,
        scenarios: Vec<ClusterRow>,
        not_compared: Vec<(String, String)>,
        wall_s: f64,
    ) -> ClusterComparison {
        let all: usize = scenarios.iter().map(|r| r.differences.len()).sum();
        let unexplained = scenarios.iter().map(ClusterRow::unexplained).sum();
        ClusterComparison {
            run_id: run_id.into(),
            a: a.into(),
            b: b.into(),
            implementation,
            scenarios,
            not_compared,
            unexplained,
            explained: all - unexplained,
            wall_s,
        }
    }

    /// `compare-clusters.json` and `compare-clusters.md` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), WriteError> {
        crate::report::write_files(
            dir,
            &[
                (
                    "compare-clusters.json",
                    serde_json::to_string_pretty(self).expect("comparison serializes"),
                ),
                ("compare-clusters.md", markdown(self)),
            ],
        )
    }
}

/// Runs what `a` selects on A's cluster and on B's (`a` and `b` differ in their
/// `cluster`), recording both, and compares.
pub async fn run(a: &Options, b: &Options) -> Result<ClusterComparison, ConformError> {
    let run_id = crate::lab::new_run_id();
    let implementation = a.implementation.describe();
    let scratch = crate::lab::ScratchDir::new(&format!("secnet-{run_id}-record"))
        .map_err(|e| ConformError::Provider(Box::new(e)))?;
    // Each side's plugins under test behind recording wrappers of its own.
    let (rec_a, a) = recorded(a, &scratch.path().join("a"))?;
    let (rec_b, b) = recorded(b, &scratch.path().join("b"))?;
    let (provider_a, provider_b): (Arc<dyn ClusterProvider>, Arc<dyn ClusterProvider>) =
        (Arc::from(a.provider()), Arc::from(b.provider()));
    let (offer_a, offer_b) = (provider_a.offer(), provider_b.offer());
    let selected = conform::select(&a, scenario::all())?;
    conform::preflight(&a)?;
    conform::preflight(&b)?;
    let mut not_compared = Vec::new();
    let mut both = Vec::new();
    for s in selected {
        match (s.unsupported_on(&offer_a), s.unsupported_on(&offer_b)) {
            (None, None) => both.push(s),
            (Some(why), _) => not_compared.push((s.name.clone(), format!("A: {why}"))),
            (_, Some(why)) => not_compared.push((s.name.clone(), format!("B: {why}"))),
        }
    }
    let total = both.len();
    eprintln!(
        "secnet compare: run {run_id}, {total} scenario(s) on both clusters, each on A ({offer_a}) then on B ({offer_b}); {} not runnable on both",
        not_compared.len()
    );
    let started = Instant::now();
    let mut ctx_a = conform::context_named(&a, &run_id, "a");
    let mut ctx_b = conform::context_named(&b, &run_id, "b");
    for (p, name) in [(&provider_a, "A"), (&provider_b, "B")] {
        if let Err(e) = p.start(&run_id).await {
            eprintln!("secnet compare: {name}'s cluster did not come up");
            stop(&provider_a, &provider_b, true, false).await;
            return Err(ConformError::Provider(e));
        }
    }
    let mut rows = Vec::new();
    let mut failed = false;
    for (i, s) in both.into_iter().enumerate() {
        let mut sides = Vec::new();
        for (side, ctx, provider, rec) in [
            ("A", &mut ctx_a, &provider_a, &rec_a),
            ("B", &mut ctx_b, &provider_b, &rec_b),
        ] {
            let at = Position {
                tag: format!("{:>2}/{total} {side}", i + 1),
                scope: format!("{}{}", side.to_lowercase(), i + 1),
            };
            rec.take();
            record::begin();
            let report = conform::run_scenario(&run_id, ctx, provider, s, &at).await;
            let mut observed = record::end();
            observed.cni_calls = rec.take();
            match report {
                Ok(r) => sides.push((r, observed)),
                Err(e) => {
                    // Interrupted: the side's own provider was stopped; the other too.
                    stop(&provider_a, &provider_b, true, false).await;
                    return Err(e);
                }
            }
        }
        let (b_report, b_observed) = sides.pop().expect("two sides");
        let (a_report, a_observed) = sides.pop().expect("two sides");
        failed |= a_report.status.is_bad() || b_report.status.is_bad();
        let mut diffs = verdict(&s.name, &a_report.status, &b_report.status);
        diffs.extend(differences(&s.name, &a_observed, &b_observed));
        rows.push(ClusterRow {
            name: s.name.clone(),
            backend: s.backend.to_string(),
            a: a_report.into(),
            b: b_report.into(),
            a_observed,
            b_observed,
            differences: diffs,
        });
    }
    stop(&provider_a, &provider_b, failed, a.keep).await;
    let _ = std::fs::remove_dir_all(&ctx_a.work_dir);
    let _ = std::fs::remove_dir_all(&ctx_b.work_dir);
    Ok(ClusterComparison::new(
        &run_id,
        (&a.cluster.to_string(), &b.cluster.to_string()),
        implementation,
        rows,
        not_compared,
        started.elapsed().as_secs_f64(),
    ))
}

/// Both providers' shared clusters down (their notes printed).
async fn stop(
    a: &Arc<dyn ClusterProvider>,
    b: &Arc<dyn ClusterProvider>,
    failed: bool,
    keep: bool,
) {
    for p in [a, b] {
        for note in p.stop(failed, keep).await {
            eprintln!("secnet compare: {note}");
        }
    }
}

/// The verdicts as a difference, when they differ.
fn verdict(scenario: &str, a: &Status, b: &Status) -> Vec<Difference> {
    let (a, b) = (
        format!("{a:?}").to_lowercase(),
        format!("{b:?}").to_lowercase(),
    );
    if a == b {
        return Vec::new();
    }
    let mut d = Difference {
        aspect: "verdict".into(),
        subject: scenario.into(),
        a,
        b,
        explained: None,
    };
    d.explained =
        super::explained::reason(scenario, &d.aspect, &d.subject, &d.a, &d.b).map(str::to_string);
    vec![d]
}

/// `opts` with its CNIs under test replaced by recording wrappers made in `dir`.
fn recorded(opts: &Options, dir: &Path) -> Result<(Recording, Options), ConformError> {
    let plugins: Vec<(String, std::path::PathBuf)> = crate::conform::implementation::CNIS
        .iter()
        .filter_map(|name| Some((name.to_string(), opts.implementation.cni(name).0?)))
        .collect();
    let rec = Recording::create(dir, &plugins).map_err(|e| ConformError::Provider(Box::new(e)))?;
    let mut opts = opts.clone();
    for (name, _) in &plugins {
        opts.implementation
            .plugins
            .insert(name.clone(), rec.bin_dir.join(name));
    }
    Ok((rec, opts))
}

/// `compare-clusters.md`: per scenario both verdicts and the number of
/// differences, then every difference (unexplained first) with both values and,
/// for an explained one, why.
pub fn markdown(c: &ClusterComparison) -> String {
    let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
    let mut m = format!(
        "# secnet compare: cluster A ({}) vs cluster B ({})\n\n**{} unexplained, {} explained difference(s) over {} scenario(s) in {:.1} s (run {})**\n\n",
        c.a,
        c.b,
        c.unexplained,
        c.explained,
        c.scenarios.len(),
        c.wall_s,
        c.run_id
    );
    m.push_str("| scenario | A | B | unexplained | explained |\n|---|---|---|---|---|\n");
    for r in &c.scenarios {
        let un = r.unexplained();
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} |",
            cell(&r.name),
            render::status(r.a.status),
            render::status(r.b.status),
            un,
            r.differences.len() - un
        );
    }
    for r in &c.scenarios {
        if r.differences.is_empty() {
            continue;
        }
        let _ = writeln!(m, "\n## {}\n", r.name);
        m.push_str("| | aspect | subject | A | B | why |\n|---|---|---|---|---|---|\n");
        let mut ds: Vec<&Difference> = r.differences.iter().collect();
        ds.sort_by_key(|d| d.explained.is_some());
        for d in ds {
            let _ = writeln!(
                m,
                "| {} | {} | {} | `{}` | `{}` | {} |",
                if d.explained.is_some() {
                    "explained"
                } else {
                    "**UNEXPLAINED**"
                },
                d.aspect,
                cell(&d.subject),
                cell(&d.a),
                cell(&d.b),
                cell(d.explained.as_deref().unwrap_or(""))
            );
        }
    }
    if !c.not_compared.is_empty() {
        m.push_str("\n## Not runnable on both\n\n");
        for (name, why) in &c.not_compared {
            let _ = writeln!(m, "- {name}: {why}");
        }
    }
    m
}
