//! The kind and existing providers of a run (`ClusterProvider`): the real cluster
//! `real` brings up (or connects to) once, each scenario in its own label scope on
//! it, `plan` for `--dry-run`.

use futures::future::BoxFuture;

use super::Options;
use super::real::{RealCluster, RealError, offer};
use crate::cluster::any::AnyCluster;
use crate::cluster::kube::KubeCluster;
use crate::cluster::kube::components;
use crate::scenario::provider::{ClusterProvider, ProviderError};
use crate::scenario::{Ctx, Deploy, Failure, Offer, Outcome, Scenario};

/// The kind and existing providers of a run: one real cluster for the whole run,
/// brought up (or connected to) with its components by `start`; each scenario works
/// on it in its own label scope, one at a time.
pub struct KubeProvider {
    opts: Options,
    running: std::sync::Mutex<Option<RealCluster>>,
}

impl KubeProvider {
    pub fn new(opts: &Options) -> KubeProvider {
        KubeProvider {
            opts: opts.clone(),
            running: Default::default(),
        }
    }

    /// The provider of a run on `cluster`, which is up already.
    pub fn on(opts: &Options, cluster: KubeCluster) -> KubeProvider {
        KubeProvider {
            opts: opts.clone(),
            running: std::sync::Mutex::new(Some(RealCluster::on(cluster))),
        }
    }

    pub fn running(&self) -> std::sync::MutexGuard<'_, Option<RealCluster>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClusterProvider for KubeProvider {
    /// The run's offer; once the cluster is up, its own (which may withdraw what
    /// its nodes cannot do, such as migrating on fewer than two).
    fn offer(&self) -> Offer {
        match self.running().as_ref() {
            Some(rc) => rc.cluster.offer(),
            None => offer(&self.opts),
        }
    }

    /// The scenarios share the nodes' capacity: one at a time.
    fn jobs(&self, _asked: usize) -> usize {
        1
    }

    /// The cluster runs the plugins: nothing local to check.
    fn preflight(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    fn plan(&self, run_id: &str, selected: &[&Scenario]) -> Result<String, ProviderError> {
        Ok(super::plan::plan(&self.opts, run_id, selected)?)
    }

    fn start<'a>(&'a self, run_id: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move {
            let rc = RealCluster::up(&self.opts, run_id).await?;
            *self.running() = Some(rc);
            Ok(())
        })
    }

    /// The run's cluster seen through the scenario's scope.
    fn up<'a>(
        &'a self,
        _s: &'a Scenario,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, Result<AnyCluster, Failure>> {
        let scoped = self
            .running()
            .as_ref()
            .map(|rc| rc.cluster.scoped(&ctx.scope));
        Box::pin(async move {
            let cluster = scoped.ok_or_else(|| {
                Failure::caused("no cluster", RealError::NotStarted(self.opts.cluster))
            })?;
            // The cluster's own offer: the run's (RealCluster::up gives it the
            // provider's), or what a test's cluster withholds.
            let offer = cluster.offer();
            Ok(AnyCluster::offering(&offer, Box::new(cluster)))
        })
    }

    /// The device plugin came with the run's components.
    fn deploy_files(&self, deploy: &Deploy) -> Vec<&'static str> {
        deploy.files(true)
    }

    fn kept_hint(&self, ctx: &Ctx) -> String {
        format!(
            "  kept: kubectl get pods,network-attachment-definitions -A -l secnet.run={},secnet.scope={}; remove with: secnet clean --cluster existing --run {}",
            ctx.run_id, ctx.scope, ctx.run_id
        )
    }

    /// A real cluster's leftovers are its scope's objects: the teardown checks those.
    fn leaks(&self, _ctx: &Ctx, outcome: Outcome) -> Outcome {
        outcome
    }

    fn stop(&self, failed: bool, keep: bool) -> BoxFuture<'_, Vec<String>> {
        let running = self.running().take();
        Box::pin(async move {
            match running {
                Some(rc) => rc.down(failed, keep).await,
                None => Vec::new(),
            }
        })
    }

    fn implementation(&self, run_id: &str) -> serde_json::Value {
        let real = &self.opts.real;
        serde_json::json!({
            "run_id": run_id,
            "image": real.image,
            "macvtap": if real.upstream_macvtap { components::UPSTREAM_MACVTAP_IMAGE } else { real.image.as_str() },
            "components": real.components,
        })
    }

    fn under_test(&self) -> Option<String> {
        None
    }
}
