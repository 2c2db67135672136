//! `secnet clean --cluster existing|kind`: sweeps what killed or `--keep` runs left
//! on real clusters, and nothing else.
//!
//! - `existing`: every object of a kind `apply` knows (`apply::known_placements`)
//!   that carries the run label `secnet.run` (any value, or the given run's id) is
//!   deleted with its UID as precondition. The label is checked again on what the
//!   server returned, so an unlabelled object is never deleted even if the server
//!   ignored the selector. Kinds the server does not serve (no KubeVirt CRDs, …) are
//!   nothing to sweep. Kinds applied through discovery (not in the known list) are
//!   not listed, but a run's namespace (`secnet-<run>`, labelled) takes whatever is
//!   in it along; a sweep waits until the namespaces it deleted are gone.
//! - `kind`: the kind clusters named `secnet-sn<6 hex>` (optionally only
//!   `secnet-<run>`) are deleted with `kind delete cluster`; other kind clusters are
//!   never touched.
//!
//! `secnet clean` spares runs that are still going (their process holds its
//! liveness marker, `crate::clean`): their objects or kind cluster stay and the
//! sweep names them in `skipped`, unless `--force`. A run's own teardown spares
//! nothing of itself.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;

use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Preconditions};

use super::apply::{self, Placement};
use super::cluster::{api_err, is_not_found};
use super::command::{Cmd, HostRunner, Runner};
use super::existing::{self, ExistingError, ExistingOptions};
use super::{RUN_LABEL, Teardown};
use crate::lab::liveness::LiveRun;
use crate::lab::wait::{Pace, Seen, poll_until};

/// Whether `id` looks like a secnet run id: `sn` + 6 hex digits.
pub fn is_run_id(id: &str) -> bool {
    id.len() == 8 && id.starts_with("sn") && id[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// The label selector of a sweep: the label exists, or equals the run id.
pub fn selector(run: Option<&str>) -> String {
    match run {
        Some(id) => format!("{RUN_LABEL}={id}"),
        None => RUN_LABEL.to_string(),
    }
}

/// The order kinds are swept in: pods first, then the other known kinds in reverse
/// of the known list (what was applied last goes first), CRDs and namespaces last
/// (deleting one of those deletes what is inside it).
pub fn order() -> Vec<Placement> {
    let rank = |p: &Placement| match p.resource.kind.as_str() {
        "Pod" => 0,
        "CustomResourceDefinition" => 2,
        "Namespace" => 3,
        _ => 1,
    };
    let mut kinds: Vec<Placement> = apply::known_placements().collect();
    kinds.reverse();
    kinds.sort_by_key(rank); // stable: keeps the reverse order within a rank
    kinds
}

/// What a sweep did, with the deletions counted per run id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub report: Teardown,
    pub per_run: BTreeMap<String, usize>,
    /// Runs left untouched because they are still alive.
    pub skipped: Vec<LiveRun>,
}

/// Says whether a run (by id) is alive and to be spared: `crate::lab::liveness::spare`
/// for `secnet clean`, never for a run's own teardown.
pub type Spare<'a> = &'a (dyn Fn(&str) -> Option<LiveRun> + Sync);

/// Spares nothing: a run's own teardown.
pub fn spare_none(_: &str) -> Option<LiveRun> {
    None
}

/// Notes `live` as skipped, once per run.
fn note_skipped(skipped: &mut Vec<LiveRun>, live: LiveRun) {
    if !skipped.iter().any(|l| l.run_id == live.run_id) {
        skipped.push(live);
    }
}

/// Deletes every labelled object of the known kinds (of run `run`, or of any run).
pub async fn sweep(client: &Client, run: Option<&str>) -> Teardown {
    sweep_runs(client, run).await.report
}

/// How long a sweep waits for the namespaces it deleted to be gone.
pub const NAMESPACE_WAIT: Duration = Duration::from_secs(120);

/// `sweep`, with the deletions counted per run id.
pub async fn sweep_runs(client: &Client, run: Option<&str>) -> Swept {
    sweep_runs_waiting(client, run, NAMESPACE_WAIT).await
}

/// `sweep_runs`, waiting up to `wait` for deleted namespaces to go.
pub async fn sweep_runs_waiting(client: &Client, run: Option<&str>, wait: Duration) -> Swept {
    sweep_runs_sparing(client, run, wait, &spare_none).await
}

/// `sweep_runs_waiting`, leaving the objects of runs `spare` names untouched.
pub async fn sweep_runs_sparing(
    client: &Client,
    run: Option<&str>,
    wait: Duration,
    spare: Spare<'_>,
) -> Swept {
    let lp = ListParams::default().labels(&selector(run));
    let mut out = Swept::default();
    let mut namespaces = Vec::new();
    for placement in order() {
        let kind = placement.resource.kind.clone();
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &placement.resource);
        let list = match all.list(&lp).await {
            Ok(l) => l,
            Err(e) if is_not_found(&e) => continue, // the server does not serve this kind
            Err(e) => {
                out.report.errors.push(format!(
                    "failed to list {}: {}",
                    placement.resource.plural,
                    api_err(e)
                ));
                continue;
            }
        };
        for obj in list.items {
            let label = obj.metadata.labels.as_ref().and_then(|l| l.get(RUN_LABEL));
            let Some(owner) = label.filter(|v| run.is_none_or(|r| r == v.as_str())) else {
                continue; // the server ignored the selector: never guess
            };
            let owner = owner.clone();
            if let Some(live) = spare(&owner) {
                note_skipped(&mut out.skipped, live);
                continue;
            }
            let name = obj.metadata.name.clone().unwrap_or_default();
            let namespace = obj.metadata.namespace.clone().filter(|n| !n.is_empty());
            let what = match &namespace {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            };
            let api: Api<DynamicObject> = match (&namespace, placement.namespaced) {
                (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &placement.resource),
                (None, false) => all.clone(),
                _ => {
                    out.report.errors.push(format!(
                        "not deleting {what}: its namespace does not match the kind's scope"
                    ));
                    continue;
                }
            };
            let Some(uid) = obj.metadata.uid.clone().filter(|u| !u.is_empty()) else {
                out.report
                    .errors
                    .push(format!("not deleting {what}: the server gave no uid"));
                continue;
            };
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: Some(uid),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(&name, &dp).await {
                Ok(_) => {
                    if kind == "Namespace" {
                        namespaces.push(name.clone());
                    }
                    out.report
                        .deleted
                        .push(format!("{what} ({RUN_LABEL}={owner})"));
                    *out.per_run.entry(owner).or_default() += 1;
                }
                Err(e) if is_not_found(&e) => {} // gone already
                Err(e) => out
                    .report
                    .errors
                    .push(format!("failed to delete {what}: {}", api_err(e))),
            }
        }
    }
    out.report
        .errors
        .extend(wait_namespaces_gone(client, &namespaces, wait).await);
    out
}

/// Polls until every namespace of `names` is gone; what is still there at the
/// deadline (still Terminating) is an error each.
async fn wait_namespaces_gone(client: &Client, names: &[String], wait: Duration) -> Vec<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    // What the last poll still saw: the next one looks only at those.
    let left = std::sync::Mutex::new(names.to_vec());
    let pace = Pace::every(Duration::from_millis(200));
    let waited = poll_until(wait, pace, || {
        let looked_at = std::mem::take(&mut *left.lock().unwrap());
        let (api, left) = (&api, &left);
        async move {
            let mut still = Vec::new();
            for name in looked_at {
                match api.get_opt(&name).await {
                    Ok(None) => {}
                    Ok(Some(_)) => still.push(name),
                    Err(e) => {
                        return Err(format!(
                            "failed to look up namespace {name}: {}",
                            api_err(e)
                        ));
                    }
                }
            }
            Ok(if still.is_empty() {
                Seen::Ready(())
            } else {
                left.lock().unwrap().clone_from(&still);
                Seen::NotYet(still)
            })
        }
    })
    .await;
    match waited {
        Ok(Ok(())) => Vec::new(),
        Ok(Err(still)) => still
            .iter()
            .map(|n| {
                format!(
                    "namespace {n} is still terminating after {} s: kubectl get all -n {n}",
                    wait.as_secs()
                )
            })
            .collect(),
        Err(e) => vec![e],
    }
}

/// `secnet clean --cluster existing`: connects as `existing.rs` does (flags or the
/// usual inference), checks the server answers, then sweeps what runs that are
/// gone left (every run's, with `force`).
pub async fn clean_existing(
    opts: &ExistingOptions,
    run: Option<&str>,
    force: bool,
) -> Result<Swept, ExistingError> {
    let cfg = existing::config(opts).await?;
    let client = Client::try_from(cfg).map_err(ExistingError::Client)?;
    client
        .apiserver_version()
        .await
        .map_err(ExistingError::Unreachable)?;
    let spare = move |id: &str| crate::lab::liveness::spare(id, force);
    Ok(sweep_runs_sparing(&client, run, NAMESPACE_WAIT, &spare).await)
}

/// The kind clusters secnet made (`secnet-<run id>`), optionally of one run, from
/// `kind get clusters` output; every other name is left out.
pub fn kind_clusters(listing: &str, run: Option<&str>) -> Vec<String> {
    listing
        .lines()
        .map(str::trim)
        .filter(|name| {
            name.strip_prefix("secnet-")
                .is_some_and(|id| is_run_id(id) && run.is_none_or(|r| r == id))
        })
        .map(str::to_string)
        .collect()
}

/// Deletes secnet's kind clusters (of run `run`, or of any run) with `kind delete
/// cluster --name secnet-<id>`; keeps going on errors.
pub fn sweep_kind<R: Runner + ?Sized>(runner: &R, kind_bin: &str, run: Option<&str>) -> Teardown {
    sweep_kind_sparing(runner, kind_bin, run, &spare_none).report
}

/// `sweep_kind`, leaving the clusters of runs `spare` names untouched.
pub fn sweep_kind_sparing<R: Runner + ?Sized>(
    runner: &R,
    kind_bin: &str,
    run: Option<&str>,
    spare: Spare<'_>,
) -> Swept {
    let mut out = Swept::default();
    let report = &mut out.report;
    let listing = match runner.run(&Cmd::new(kind_bin, &["get", "clusters"])) {
        Ok(l) => l,
        Err(e) => {
            report
                .errors
                .push(format!("failed to list kind clusters: {e}"));
            return out;
        }
    };
    for name in kind_clusters(&listing, run) {
        let id = name.strip_prefix("secnet-").unwrap_or(&name);
        if let Some(live) = spare(id) {
            note_skipped(&mut out.skipped, live);
            continue;
        }
        match runner.run(&Cmd::new(kind_bin, &["delete", "cluster", "--name", &name])) {
            Ok(_) => report.deleted.push(format!("kind cluster {name}")),
            Err(e) => report
                .errors
                .push(format!("failed to delete kind cluster {name}: {e}")),
        }
    }
    out
}

/// `kind` is not installed, so its clusters cannot be listed.
#[derive(Debug, thiserror::Error)]
#[error(
    "{kind_bin} not found on PATH; install kind or use --cluster existing --context kind-secnet-{}",
    run.as_deref().unwrap_or("<run>")
)]
pub struct NoKind {
    pub(crate) kind_bin: String,
    pub(crate) run: Option<String>,
}

/// `secnet clean --cluster kind`: `kind_bin` (`kind`) must be on PATH; the clusters
/// of runs still alive stay (all go with `force`).
pub fn clean_kind(kind_bin: &str, run: Option<&str>, force: bool) -> Result<Swept, NoKind> {
    if crate::prereq::find_program(kind_bin).is_none() {
        return Err(NoKind {
            kind_bin: kind_bin.to_string(),
            run: run.map(str::to_string),
        });
    }
    let spare = move |id: &str| crate::lab::liveness::spare(id, force);
    Ok(sweep_kind_sparing(&HostRunner, kind_bin, run, &spare))
}
