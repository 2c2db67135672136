//! `ClusterProvider`: what the runner and `conform` need from a provider, picked
//! once per run by the factory (`conform::provider::for_run`). A provider says what
//! its clusters offer, brings up what the run shares, gives each scenario its
//! cluster, deploys onto it, ends it (`--keep` or teardown) and checks what a
//! scenario left behind. Everything provider-specific is behind this trait and the
//! abilities of the clusters it makes (`cluster::ability`).

use futures::future::BoxFuture;

use super::{Ctx, Deploy, Failure, Outcome, Scenario};
use crate::cluster::any::AnyCluster;
use crate::cluster::capability::Offer;

/// How a scenario uses the cluster the run shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Not at all: a cluster (or node lab) of its own; runs beside anything.
    Own,
    /// Beside other scenarios: only objects of its own, nothing node-wide read.
    Beside,
    /// Beside other scenarios, but never beside one of the same group: the group's
    /// scenarios share names, addresses or something node-wide (a bridge's ports)
    /// that only they touch.
    BesideOthers(&'static str),
    /// Alone on it: no other scenario uses the cluster meanwhile (capacity,
    /// faults, node-wide checks, the LAN's DHCP).
    Alone,
}

/// A provider's error before any scenario runs (preflight, plan, bring-up).
pub type ProviderError = Box<dyn std::error::Error + Send + Sync + 'static>;

pub trait ClusterProvider: Send + Sync {
    /// What its clusters offer the scenarios (selection, `--list`, skips).
    fn offer(&self) -> Offer;

    /// How many scenarios run at once when `--jobs` asks for `asked` (0: one per
    /// core).
    fn jobs(&self, asked: usize) -> usize;

    /// How `s` uses what the run shares (a real cluster), for running several at
    /// once. Each scenario on a cluster of its own: `Own`.
    fn sharing(&self, _s: &Scenario) -> Sharing {
        Sharing::Own
    }

    /// What must hold on this machine before anything runs.
    fn preflight(&self) -> Result<(), ProviderError>;

    /// `--dry-run`: what the run would do with `selected`, without doing it.
    fn plan(&self, run_id: &str, selected: &[&Scenario]) -> Result<String, ProviderError>;

    /// Brings up what the whole run shares (a real cluster and its components);
    /// nothing where each scenario gets a cluster of its own.
    fn start<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), ProviderError>>;

    /// One scenario's cluster, up (each step recorded as a phase in `ctx`).
    fn up<'a>(
        &'a self,
        s: &'a Scenario,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, Result<AnyCluster, Failure>>;

    /// The fixture files (relative to the fixtures directory) that deploy `deploy`
    /// on this provider's clusters, in order.
    fn deploy_files(&self, deploy: &Deploy) -> Vec<&'static str>;

    /// The line a failed scenario's report gets when `--keep` kept its cluster:
    /// how to look inside and how to remove it.
    fn kept_hint(&self, ctx: &Ctx) -> String;

    /// After a scenario (and its teardown): anything of it still there fails it.
    /// Blocking; `conform` runs it off the async threads.
    fn leaks(&self, ctx: &Ctx, outcome: Outcome) -> Outcome;

    /// Takes down what `start` brought up (or keeps it: `keep` after a failure);
    /// notes for the user.
    fn stop(&self, failed: bool, keep: bool) -> BoxFuture<'_, Vec<String>>;

    /// The report's `implementation` section: what was under test.
    fn implementation(&self, run_id: &str) -> serde_json::Value;

    /// What the run puts under test, said once at its start (where the plugins run
    /// on this machine).
    fn under_test(&self) -> Option<String>;

    /// What to warn about before the run, about the implementation under test
    /// (a CNI that does not answer VERSION as the spec asks), where the provider
    /// can tell.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the run's pods go through secnet's own multus (whose semantics
    /// `--multus-semantics` chooses) rather than the cluster's.
    fn runs_secnets_multus(&self) -> bool {
        false
    }
}
