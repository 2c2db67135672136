//! The bare tier's speed: a real Kubernetes brought up from `--k8s-bin-dir` (API
//! server ready, then every node Ready with the device plugin registered) and a
//! whole `secnet conform --cluster bare` run. Measured only where the Kubernetes
//! binaries are (`SECNET_K8S_BIN_DIR`); the bench notes why not elsewhere.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::stats::Stats;
use super::{BenchError, Row};
use crate::cluster::kube::components::Component;
use crate::cluster::provider::Provider;
use crate::conform::bare::BareProvider;
use crate::conform::{self, Options};
use crate::scenario::provider::ClusterProvider;

/// The row names the targets look up.
pub const UP_ROW: &str = "bare cluster up: API ready -> every node Ready with the device plugin";
pub const RUN_ROW: &str = "secnet conform --cluster bare";
/// Bring-up as a whole: from the first process to the device plugin on every node.
pub const TOTAL_UP_ROW: &str =
    "bare cluster up: first process -> every node Ready with the device plugin";

fn single(name: String, operation: &str, took: Duration) -> Row {
    Row {
        name,
        operation: operation.into(),
        stats: Stats::of(&[took]),
        ratio_to_reference: None,
        reference: None,
    }
}

/// The bare options of a bench run: the binaries from `SECNET_K8S_BIN_DIR`, multus
/// from `SECNET_MULTUS_DIR` and whereabouts from `SECNET_WHEREABOUTS_DIR` when set.
pub fn options(k8s_bin_dir: PathBuf) -> Options {
    let mut opts = Options::bundled();
    opts.cluster = Provider::Bare;
    opts.bare.k8s_bin_dir = Some(k8s_bin_dir);
    for (var, component) in [
        ("SECNET_MULTUS_DIR", Component::Multus),
        ("SECNET_WHEREABOUTS_DIR", Component::Whereabouts),
    ] {
        if let Some(dir) = std::env::var_os(var) {
            opts.bare
                .component_bins
                .push((component, PathBuf::from(dir)));
        }
    }
    opts
}

/// Bring-up alone (then down), and a whole conform run on a fresh bare cluster
/// (every scenario, also with `--quick`: the whole run is the row the target is
/// about, and it takes minutes).
pub async fn rows(k8s_bin_dir: PathBuf) -> Result<Vec<Row>, BenchError> {
    let opts = options(k8s_bin_dir);
    let provider = BareProvider::new(&opts);
    let run_id = crate::lab::new_run_id();
    let up = provider.start(&run_id).await;
    let timings = provider
        .timings
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let notes = provider.stop(up.is_err(), false).await;
    if let Err(e) = up {
        return Err(BenchError::Bare(format!("{e} {}", notes.join("; "))));
    }
    let t = timings.ok_or_else(|| BenchError::Bare("bring-up measured nothing".into()))?;
    let mut rows = vec![
        single(
            "bare cluster: first process -> API server ready".into(),
            "up",
            t.cluster.api_ready,
        ),
        single(
            UP_ROW.into(),
            "up",
            t.ready.saturating_sub(t.cluster.api_ready),
        ),
        single(TOTAL_UP_ROW.into(), "up", t.ready),
    ];
    let started = Instant::now();
    let report = conform::run(&opts).await?;
    let wall = started.elapsed();
    if report.summary.failed > 0 {
        return Err(BenchError::ScenariosFailed(report.summary.failed));
    }
    rows.push(single(
        format!(
            "{RUN_ROW} ({} passed, {} skipped, bring-up and teardown included)",
            report.summary.passed, report.summary.skipped
        ),
        "wall",
        wall,
    ));
    Ok(rows)
}
