//! The netns provider of a run: a fresh cluster of network namespaces per scenario,
//! made on this machine with the plugins under test, torn down after it; what a
//! scenario leaves behind is found by its name and swept.

use futures::future::BoxFuture;
use serde_json::json;

use super::{ConformError, Options, implementation};
use crate::cluster::any::AnyCluster;
use crate::cluster::capability::{Capability, Offer};
use crate::scenario::provider::{ClusterProvider, ProviderError};
use crate::scenario::{self, Ctx, Deploy, Failure, Outcome, Scenario};

pub struct NetnsProvider {
    opts: Options,
}

impl NetnsProvider {
    pub fn new(opts: &Options) -> NetnsProvider {
        NetnsProvider { opts: opts.clone() }
    }
}

impl ClusterProvider for NetnsProvider {
    fn offer(&self) -> Offer {
        crate::cluster::netns::offer()
    }

    fn jobs(&self, asked: usize) -> usize {
        match asked {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    fn runs_secnets_multus(&self) -> bool {
        true
    }

    fn preflight(&self) -> Result<(), ProviderError> {
        if !crate::prereq::is_root() {
            return Err(Box::new(ConformError::NotRoot));
        }
        // At least one CNI under test: a wrong directory fails here, not 30 times.
        let implementation = &self.opts.implementation;
        if implementation::CNIS
            .iter()
            .all(|name| implementation.cni(name).0.is_none())
        {
            return Err(Box::new(ConformError::MissingPlugin(
                implementation.cni_bin_dir.clone(),
            )));
        }
        Ok(())
    }

    fn plan(&self, _run_id: &str, selected: &[&Scenario]) -> Result<String, ProviderError> {
        Ok(plan(&self.opts, selected))
    }

    fn start<'a>(&'a self, _run_id: &'a str) -> BoxFuture<'a, Result<(), ProviderError>> {
        // Every scenario makes its own cluster.
        Box::pin(async { Ok(()) })
    }

    fn up<'a>(
        &'a self,
        s: &'a Scenario,
        ctx: &'a Ctx,
    ) -> BoxFuture<'a, Result<AnyCluster, Failure>> {
        Box::pin(scenario::runner::timed(ctx, "cluster up", async move {
            let dhcp = s.needs.contains(&Capability::Dhcp);
            let ovs = s.needs.contains(&Capability::Ovs);
            let cluster = ctx.netns_cluster(dhcp, ovs).await?;
            Ok(AnyCluster::offering(&self.offer(), Box::new(cluster)))
        }))
    }

    fn deploy_files(&self, deploy: &Deploy) -> Vec<&'static str> {
        deploy.files(false)
    }

    fn kept_hint(&self, ctx: &Ctx) -> String {
        format!(
            "  kept: nodes are `ip netns exec {}-{}-<node> …`; remove with: secnet clean --run {}",
            ctx.run_id, ctx.scope, ctx.run_id
        )
    }

    fn leaks(&self, ctx: &Ctx, outcome: Outcome) -> Outcome {
        check_leaks(ctx, outcome)
    }

    fn stop(&self, _failed: bool, _keep: bool) -> BoxFuture<'_, Vec<String>> {
        Box::pin(async { Vec::new() })
    }

    fn implementation(&self, run_id: &str) -> serde_json::Value {
        let mut described = self.opts.implementation.describe();
        described["run_id"] = json!(run_id);
        described["reference_bin_dir"] = json!(self.opts.reference_bin_dir.display().to_string());
        described["macvtap"] = described["plugins"]["macvtap"]["path"].clone();
        described
    }

    fn under_test(&self) -> Option<String> {
        Some(self.opts.implementation.summary())
    }

    fn warnings(&self) -> Vec<String> {
        self.opts.implementation.warnings()
    }
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
        Ok(()) => scenario::fail(format!("{leaked}{swept}")),
        Err(f) => Err(f.with_line(format!("{leaked}{swept}"))),
    }
}

/// The plan of a netns run: what it would build and run, without root.
fn plan(opts: &Options, selected: &[&Scenario]) -> String {
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
