//! The clauses of the Network Plumbing WG's Multi-Net spec ("Kubernetes Network
//! Custom Resource Definition De-facto Standard", v1.0–v1.3) that the
//! `multi-net-spec` profile checks: number, the version that brought the clause,
//! its level, a short paraphrase (the spec's own text is not copied here), and
//! how upstream multus departs from it where it does. `spec.rs` has one scenario
//! per clause; [`table`] turns a run's report into the clause table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::report::{Report, Status};

/// The group of the clauses' scenarios (`spec.rs`).
pub const GROUP: &str = "multi-net-spec";

/// Every clause's scenario name starts with this.
pub fn scenario_prefix(id: &str) -> String {
    format!("{GROUP}/{id} [")
}

/// How binding a clause is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "SHOULD")]
    Should,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Clause {
    /// `§4.1.2.1.5`.
    pub(crate) id: &'static str,
    /// The spec version the clause first appeared in (`v1.0` … `v1.3`).
    pub(crate) since: &'static str,
    pub(crate) level: Level,
    /// What the clause asks, in our words.
    pub(crate) asks: &'static str,
    /// How upstream multus behaves instead, when it does not conform.
    pub(crate) multus_diverges: Option<&'static str>,
    /// Where a real multus on a real cluster was seen to do otherwise than
    /// `multus_diverges` says: written down, so that a real cluster's run holds it
    /// to what was seen (the emulation keeps the record; docs/scenarios.md).
    #[serde(skip)]
    pub(crate) real_multus: Option<RealMultus>,
}

/// What a real multus did on a clause, unlike the emulation's record of upstream.
#[derive(Debug, Clone, Copy)]
pub struct RealMultus {
    /// It conformed (else it diverged).
    pub(crate) conforms: bool,
    /// What it did, where, and why the difference stands.
    pub(crate) seen: &'static str,
}

const fn must(id: &'static str, since: &'static str, asks: &'static str) -> Clause {
    Clause {
        id,
        since,
        level: Level::Must,
        asks,
        multus_diverges: None,
        real_multus: None,
    }
}

const fn should(id: &'static str, since: &'static str, asks: &'static str) -> Clause {
    Clause {
        id,
        since,
        level: Level::Should,
        asks,
        multus_diverges: None,
        real_multus: None,
    }
}

const fn diverges(mut c: Clause, how: &'static str) -> Clause {
    c.multus_diverges = Some(how);
    c
}

const fn on_real_multus(mut c: Clause, conforms: bool, seen: &'static str) -> Clause {
    c.real_multus = Some(RealMultus { conforms, seen });
    c
}

/// Every clause the profile checks, in the spec's order.
pub const CLAUSES: &[Clause] = &[
    must(
        "§3.4.1",
        "v1.0",
        "a NAD's spec.config is the plugin chain run for the attachment; a network with no config to run fails",
    ),
    should(
        "§3.4.2",
        "v1.0",
        "a spec.config without \"name\" is run with the NAD's name injected",
    ),
    must(
        "§4.1",
        "v1.0",
        "both annotation formats (comma list and JSON list) select networks",
    ),
    diverges(
        must(
            "§4.1.2.1",
            "v1.0",
            "a selection with an invalid value is invalid and ignored (the pod keeps its default network)",
        ),
        "refuses the pod: its sandbox is never set up",
    ),
    must(
        "§4.1.2.1.2",
        "v1.0",
        "\"namespace\" selects a NAD of another namespace",
    ),
    diverges(
        must(
            "§4.1.2.1.3",
            "v1.0",
            "the requested \"ips\" are assigned to the interface, else the attachment fails",
        ),
        "does not compare the result with the request: the pod runs without the addresses",
    ),
    diverges(
        must(
            "§4.1.2.1.3.2",
            "v1.1",
            "\"ips\" that no plugin of the chain declares as a capability fail the attachment",
        ),
        "never checks capabilities: passes IP= in CNI_ARGS and runs the chain",
    ),
    diverges(
        must(
            "§4.1.2.1.4",
            "v1.0",
            "the requested \"mac\" is the interface's MAC, else the attachment fails",
        ),
        "does not compare the result with the request: the pod runs with another MAC",
    ),
    diverges(
        must(
            "§4.1.2.1.4.2",
            "v1.1",
            "a \"mac\" that no plugin of the chain declares as a capability fails the attachment",
        ),
        "never checks capabilities: passes MAC= in CNI_ARGS, which plugins honour anyway",
    ),
    must(
        "§4.1.2.1.5",
        "v1.0",
        "\"interface\" is the pod's interface name (CNI_IFNAME); a name already used fails the attachment",
    ),
    must(
        "§4.1.2.1.6",
        "v1.1",
        "\"cni-args\" reach the plugins as args.cni, over the NAD's own args",
    ),
    diverges(
        must(
            "§4.1.2.1.7.2",
            "v1.1",
            "\"portMappings\" that no plugin declares as a capability fail the attachment",
        ),
        "never checks capabilities: the chain runs and the port mappings are dropped",
    ),
    diverges(
        must(
            "§4.1.2.1.8.2",
            "v1.1",
            "\"bandwidth\" that no plugin declares as a capability fails the attachment",
        ),
        "never checks capabilities: the chain runs unshaped",
    ),
    diverges(
        must(
            "§4.1.2.1.9",
            "v1.1",
            "\"default-route\" on more than one network makes the selection invalid and ignored",
        ),
        "accepts one gateway per IP family on different networks (refuses two of one family)",
    ),
    diverges(
        must(
            "§4.1.2.1.11",
            "v1.3",
            "\"ips\" together with \"ipam-claim-reference\" in one selection is an error",
        ),
        "does not read ipam-claim-reference: the pod runs with the static addresses",
    ),
    must(
        "§4.2",
        "v1.0",
        "the same network selected twice gives two attachments, unique interface names, two status entries",
    ),
    must(
        "§5.2",
        "v1.0",
        "network-status has an entry for the cluster default network, marked default (only one)",
    ),
    should(
        "§5.3.1",
        "v1.0",
        "a status entry's name is the network's namespace/name",
    ),
    should(
        "§5.3.3",
        "v1.0",
        "a status entry's ips are the addresses on the pod's interface (not a host-side one)",
    ),
    must(
        "§5.3.4",
        "v1.0",
        "a status entry's mac is the MAC of its interface, and a mac comes with an interface",
    ),
    should(
        "§5.3.7",
        "v1.2",
        "device-info, when written, carries the Device Information Specification's keys",
    ),
    should(
        "§6.1",
        "v1.0",
        "the implementation signals readiness only once the cluster default network is ready",
    ),
    must(
        "§6.2",
        "v1.0",
        "the cluster default network is attached before any selected network",
    ),
    must(
        "§7.1",
        "v1.0",
        "every plugin of a conflist gets the list's name and cniVersion, and the previous result",
    ),
    must(
        "§7.2",
        "v1.0",
        "a failed attachment fails the pod and later attachments are not attempted",
    ),
    on_real_multus(
        must(
            "§7.2 teardown",
            "v1.0",
            "teardown runs every attachment's DEL past a failed one, then reports the failure",
        ),
        false,
        "multus-cni 96534b6c4 (thin, Kubernetes v1.36.2, containerd 1.6.20) runs the later DELs but reports no error for the failed one (seen in every bare run of 2026-12-07); the emulation reports it",
    ),
    must(
        "§7.3",
        "v1.0",
        "a pod's attachment operations are not run in parallel",
    ),
    diverges(
        must(
            "§7.4",
            "v1.0",
            "a NAD the pod may not use fails the pod (here: namespace isolation, NADs of the pod's namespace or default)",
        ),
        "applies no restriction unless namespaceIsolation is configured: the pod uses the other namespace's NAD",
    ),
    on_real_multus(
        diverges(
            must(
                "§7.5",
                "v1.1",
                "the pod's runtimeConfig (port mappings, bandwidth) is applied to the cluster default network only",
            ),
            "hands the pod's portMappings and bandwidth to every secondary network that declares the capability",
        ),
        true,
        "no shaping reached the secondary network on bare (Kubernetes v1.36.2, containerd 1.6.20, multus-cni 96534b6c4 thin); there the pod network's conflist, hence multus', declares no bandwidth capability, so containerd hands multus no bandwidth to pass on: what multus would do with it is not tested there",
    ),
];

/// The clause `id`. Panics on an unknown id (a typo in `spec.rs`, caught by a test).
pub fn clause(id: &str) -> &'static Clause {
    CLAUSES
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no clause {id} in spec_clauses::CLAUSES"))
}

/// How a scenario writes its clause's verdict among its notes.
pub const NOTE_PREFIX: &str = "clause ";

/// What a clause check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    Conforms(String),
    Diverges(String),
    NotApplicable(String),
}

impl Seen {
    fn verdict(&self) -> &'static str {
        match self {
            Seen::Conforms(_) => "pass",
            Seen::Diverges(_) => "fail",
            Seen::NotApplicable(_) => "n/a",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Seen::Conforms(d) | Seen::Diverges(d) | Seen::NotApplicable(d) => d,
        }
    }

    /// The note the report keeps: `clause §7.5: fail: <what was seen>`.
    pub fn note(&self, id: &str) -> String {
        format!("{NOTE_PREFIX}{id}: {}: {}", self.verdict(), self.detail())
    }
}

/// One row of the clause table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub(crate) clause: &'static str,
    pub(crate) version: &'static str,
    pub(crate) level: Level,
    pub(crate) asks: &'static str,
    /// `pass`, `fail`, `n/a`, or `error` (the check could not run).
    pub(crate) verdict: String,
    pub(crate) detail: String,
    pub(crate) multus_diverges: Option<&'static str>,
    pub(crate) scenario: String,
}

/// The clause table of `report`: one row per clause, from its scenario's note
/// (or its status when the check did not get that far).
pub fn table(report: &Report) -> Vec<Row> {
    CLAUSES
        .iter()
        .map(|c| {
            let s = report
                .scenarios
                .iter()
                .find(|s| s.name.starts_with(&scenario_prefix(c.id)));
            let (verdict, detail, scenario) = match s {
                None => (
                    "not run".to_string(),
                    "not selected".to_string(),
                    String::new(),
                ),
                Some(s) => {
                    let prefix = format!("{NOTE_PREFIX}{}: ", c.id);
                    let noted = s
                        .observed
                        .notes
                        .iter()
                        .find_map(|n| n.strip_prefix(&prefix))
                        .and_then(|rest| rest.split_once(": "));
                    let first_line = s.message.lines().next().unwrap_or("").to_string();
                    let (v, d) = match (noted, s.status) {
                        (Some((v, d)), Status::Failed) => (
                            v.to_string(),
                            format!("{d} (scenario failed: {first_line})"),
                        ),
                        (Some((v, d)), _) => (v.to_string(), d.to_string()),
                        (None, Status::Skipped) => ("n/a".into(), first_line),
                        (None, _) => ("error".into(), first_line),
                    };
                    (v, d, s.name.clone())
                }
            };
            Row {
                clause: c.id,
                version: c.since,
                level: c.level,
                asks: c.asks,
                verdict,
                detail,
                multus_diverges: c.multus_diverges,
                scenario,
            }
        })
        .collect()
}

/// Counts of a table's verdicts: (pass, fail, n/a, other).
pub fn counts(rows: &[Row]) -> (usize, usize, usize, usize) {
    let n = |v: &str| rows.iter().filter(|r| r.verdict == v).count();
    let (p, f, na) = (n("pass"), n("fail"), n("n/a"));
    (p, f, na, rows.len() - p - f - na)
}

/// The table as Markdown, the "spec conformance" section of a report.
pub fn markdown(rows: &[Row], under_test: &str) -> String {
    let (p, f, na, other) = counts(rows);
    let mut out = format!(
        "## Spec conformance\n\nMulti-Net spec v1.0–v1.3, clause by clause, through {under_test}: {p} pass, {f} fail, {na} not applicable, {other} not checked.\n\n| clause | since | level | verdict | what was seen | upstream multus |\n|---|---|---|---|---|---|\n"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.clause,
            r.version,
            r.level.as_str(),
            r.verdict,
            r.detail.replace('|', "\\|").replace('\n', " "),
            r.multus_diverges.unwrap_or("conforms")
        );
    }
    out
}

/// The table as aligned text for the terminal.
pub fn text(rows: &[Row], under_test: &str) -> String {
    let (p, f, na, other) = counts(rows);
    let mut out = format!(
        "spec conformance ({under_test}): {p} pass, {f} fail, {na} n/a, {other} not checked\n"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "  {:<14} {:<5} {:<6} {:<7} {}",
            r.clause,
            r.version,
            r.level.as_str(),
            r.verdict,
            r.detail.lines().next().unwrap_or("")
        );
    }
    out
}

/// Writes `spec-conformance.md` and `spec-conformance.json` into `dir`.
pub fn write(dir: &std::path::Path, rows: &[Row], under_test: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("spec-conformance.md"), markdown(rows, under_test))?;
    let json = serde_json::json!({"under_test": under_test, "clauses": rows});
    std::fs::write(
        dir.join("spec-conformance.json"),
        serde_json::to_string_pretty(&json).expect("rows serialize"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clause_ids_are_unique_and_every_clause_has_a_check() {
        let mut ids: Vec<_> = CLAUSES.iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CLAUSES.len());
        let names: Vec<String> = super::super::spec::scenarios()
            .into_iter()
            .map(|s| s.name)
            .collect();
        for c in CLAUSES {
            let prefix = super::super::spec::scenario_prefix(c.id);
            assert_eq!(
                names.iter().filter(|n| n.starts_with(&prefix)).count(),
                1,
                "clause {} needs exactly one scenario",
                c.id
            );
        }
    }
}
