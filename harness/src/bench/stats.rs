//! Median, p95 and mean of a sample of durations.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Stats {
    pub(crate) n: usize,
    pub(crate) median_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) mean_ms: f64,
}

impl Stats {
    pub fn of(samples: &[Duration]) -> Stats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            if ms.is_empty() {
                0.0
            } else {
                ms[((ms.len() - 1) as f64 * q).round() as usize]
            }
        };
        Stats {
            n: ms.len(),
            median_ms: pick(0.5),
            p95_ms: pick(0.95),
            mean_ms: if ms.is_empty() {
                0.0
            } else {
                ms.iter().sum::<f64>() / ms.len() as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_known_sample() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Stats::of(&d);
        assert_eq!(s.n, 100);
        assert!((s.median_ms - 51.0).abs() < 1e-9 || (s.median_ms - 50.0).abs() < 1e-9);
        assert!((s.p95_ms - 95.0).abs() <= 1.0);
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn empty_sample_is_zero() {
        assert_eq!(Stats::of(&[]).n, 0);
    }
}
