//! Live migration per binding: the migration scenarios run `repeats` times on the
//! bundled implementations; per binding the median of the total time (`migrate` to
//! completed), the downtime the peer's stream saw (its longest gap) and QEMU's own
//! downtime figure, with the bytes moved in the row's name.

use std::collections::BTreeMap;
use std::time::Duration;

use super::stats::Stats;
use super::{BenchError, Row};
use crate::conform::{self, Options};

/// Samples of one migration scenario.
#[derive(Default)]
struct Samples {
    total: Vec<Duration>,
    stream: Vec<Duration>,
    qemu: Vec<Duration>,
    bytes: Vec<u64>,
}

pub async fn run(quick: bool) -> Result<Vec<Row>, BenchError> {
    let repeats = if quick { 1 } else { 3 };
    let mut by_case: BTreeMap<String, Samples> = BTreeMap::new();
    for _ in 0..repeats {
        let mut opts = Options::bundled();
        opts.labels = vec!["migration".into()];
        // The hot-plug scenarios that migrate record no stream: nothing to rank.
        opts.skip_labels = vec!["fault".into(), "hotplug".into()];
        let report = conform::run(&opts).await?;
        if report.summary.failed > 0 {
            return Err(BenchError::ScenariosFailed(report.summary.failed));
        }
        for s in &report.scenarios {
            for m in s
                .observed
                .migrations
                .iter()
                .filter(|m| m.status == "completed")
            {
                let backend = s.backend.clone();
                let case = by_case
                    .entry(format!("{} on {backend}", m.binding))
                    .or_default();
                case.total.push(Duration::from_secs_f64(m.total_s));
                case.stream
                    .push(Duration::from_secs_f64(m.stream_downtime_s));
                if let Some(ms) = m.qemu_downtime_ms {
                    case.qemu.push(Duration::from_millis(ms));
                }
                case.bytes.push(m.bytes);
            }
        }
    }
    let mut rows = Vec::new();
    for (case, s) in by_case {
        let mut bytes = s.bytes.clone();
        bytes.sort_unstable();
        let mb = bytes.get(bytes.len() / 2).copied().unwrap_or(0) as f64 / 1e6;
        for (what, samples) in [
            ("total (migrate to completed)", &s.total),
            ("downtime seen by the peer's stream", &s.stream),
            ("downtime QEMU reports", &s.qemu),
        ] {
            if samples.is_empty() {
                continue;
            }
            rows.push(Row {
                name: format!("live migration, {case} ({mb:.1} MB moved): {what}"),
                operation: "migration".into(),
                stats: Stats::of(samples),
                ratio_to_reference: None,
                reference: None,
            });
        }
    }
    Ok(rows)
}
