//! One nextest test per `secnet conform` scenario, generated from the scenario
//! list: the same code, run alone, on the bundled implementations and the built-in
//! netns topology. Filter by group: `cargo nextest run -E 'test(/^vm::/)'`.

use secnet::cluster::capability::{Capability, package_of};
use secnet::conform::{Options, run_one};

async fn run(name: &str) {
    if !secnet::prereq::require_root(name) {
        return;
    }
    // What every netns cluster uses, then what this scenario declares it needs.
    let s = secnet::scenario::all()
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario named {name:?}"));
    let mut programs = vec!["ip", "ping", "/usr/lib/cni/bridge"];
    for cap in &s.needs {
        match cap {
            Capability::Program(p) => programs.push(p),
            other => programs.extend(other.programs()),
        }
    }
    for program in programs {
        if !secnet::prereq::require_program(name, program, package_of(program)) {
            return;
        }
    }
    if let Err(failure) = run_one(&Options::bundled(), name).await {
        panic!("{name}: {failure}");
    }
}

/// The test's name: the scenario's group, `::`, and the rest of its name in
/// lowercase words joined by `_` (`seed::macvtap_pod_net1_is_a_macvtap_on_ens33`).
fn test_name(scenario: &str) -> String {
    let (group, rest) = scenario.split_once('/').unwrap_or(("other", scenario));
    let slug = |s: &str| {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect::<Vec<_>>()
            .join("_")
    };
    format!("{}::{}", slug(group), slug(rest))
}

/// Every scenario is a test, named after it: a new scenario needs nothing here. One
/// that needs what no netns cluster offers (whereabouts: a real API server) is an
/// ignored test, listed as such: it runs with `secnet conform --cluster bare`.
fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let netns = Options::bundled().provider().offer().capabilities();
    let mut seen = std::collections::BTreeSet::new();
    let trials = secnet::scenario::all()
        .iter()
        .map(|s| {
            let name = test_name(&s.name);
            assert!(seen.insert(name.clone()), "two scenarios are test {name}");
            let scenario = s.name.clone();
            let elsewhere = s
                .needs
                .iter()
                .any(|c| !matches!(c, Capability::Program(_)) && !netns.contains(c));
            libtest_mimic::Trial::test(name, move || {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .map_err(|e| format!("tokio runtime: {e}"))?
                    .block_on(run(&scenario));
                Ok(())
            })
            .with_ignored_flag(elsewhere)
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
