//! After every scenario, on every provider: no two live attachments share a MAC
//! or an IP address within a network (duplicates are what users find only at
//! scale: ovs-cni 206, whereabouts 176 and 207). Cluster-wide: the attachments are
//! the network-status entries of every live pod the cluster lists
//! (`Cluster::live_pods`), not only the scenario's; what was read and found goes
//! into the report (`Observations::uniqueness`).

use std::collections::BTreeMap;

use super::{Ctx, Failure, Outcome, fail};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, PodView};
use crate::multus::NETWORK_STATUS_ANNOTATION;
use crate::observe::{Duplicate, Uniqueness};

/// The runner's hook after a scenario's assessment: records the cluster's
/// picture, checks uniqueness and records what it found. Duplicates fail a passed
/// scenario and are added to a failed one's message.
pub async fn after_scenario(ctx: &Ctx, cluster: &AnyCluster, outcome: Outcome) -> Outcome {
    ctx.observed.topology(cluster.snapshot().await);
    let verdict = match cluster.live_pods().await {
        Ok(pods) => {
            let found = of_pods(&pods);
            let verdict = check(&found);
            ctx.observed.uniqueness(found);
            verdict
        }
        Err(e) => {
            Err(Failure::from(e).with_line("uniqueness: the cluster's pods could not be listed"))
        }
    };
    match (outcome, verdict) {
        (Ok(()), verdict) => verdict,
        (Err(f), Err(dup)) if !dup.is_error() => Err(f.with_line(dup.message())),
        (Err(f), _) => Err(f),
    }
}

/// Every live attachment of `pods` (one per network-status entry) and the MACs
/// and addresses two of one network share.
pub fn of_pods(pods: &[PodView]) -> Uniqueness {
    // (network, "mac"/"ip", value) → the attachments that have it.
    let mut seen: BTreeMap<(String, &str, String), Vec<String>> = BTreeMap::new();
    let mut attachments = 0;
    for pod in pods {
        // A pod without (readable) network-status has no attachment multus made.
        let Some(statuses) = pod
            .annotations
            .get(NETWORK_STATUS_ANNOTATION)
            .and_then(|text| crate::multus::status::parse_annotation(text).ok())
        else {
            continue;
        };
        for s in statuses.iter().filter(|s| !s.name.is_empty()) {
            attachments += 1;
            let who = format!(
                "{}/{} {}",
                pod.namespace,
                pod.name,
                s.interface.as_deref().unwrap_or("?")
            );
            if let Some(mac) = s.mac.as_ref().filter(|m| !m.is_empty()) {
                seen.entry((s.name.clone(), "mac", mac.to_ascii_lowercase()))
                    .or_default()
                    .push(who.clone());
            }
            for ip in &s.ips {
                let addr = ip.split('/').next().unwrap_or(ip);
                // Link-local addresses are per link by design.
                if addr.starts_with("fe80:") || addr.starts_with("169.254.") {
                    continue;
                }
                seen.entry((s.name.clone(), "ip", addr.to_string()))
                    .or_default()
                    .push(who.clone());
            }
        }
    }
    let duplicates = seen
        .into_iter()
        .filter(|(_, who)| who.len() > 1)
        .map(|((network, kind, value), holders)| Duplicate {
            network,
            kind: kind.to_string(),
            value,
            holders,
        })
        .collect();
    Uniqueness {
        attachments,
        duplicates,
    }
}

/// Fails when two live attachments of a network share a MAC or an IP.
pub fn check(found: &Uniqueness) -> Outcome {
    if found.duplicates.is_empty() {
        return Ok(());
    }
    let each: Vec<String> = found.duplicates.iter().map(ToString::to_string).collect();
    fail(format!(
        "uniqueness: {}; every attachment of a network needs its own MAC and addresses (check the IPAM ranges and requested MACs)",
        each.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod whose network-status lists `entries`: (interface, network, MAC, IPs).
    fn pod(name: &str, entries: &[(&str, &str, &str, &[&str])]) -> PodView {
        let status: Vec<serde_json::Value> = entries
            .iter()
            .map(|(ifname, network, mac, ips)| {
                serde_json::json!({"name": network, "interface": ifname, "mac": mac, "ips": ips})
            })
            .collect();
        PodView {
            namespace: "ns".into(),
            name: name.into(),
            uid: String::new(),
            node: "node1".into(),
            annotations: [(
                NETWORK_STATUS_ANNOTATION.to_string(),
                serde_json::to_string(&status).unwrap(),
            )]
            .into(),
            devices: Default::default(),
        }
    }

    #[test]
    fn duplicates_within_a_network_only_naming_both_pods() {
        let mut pods = vec![
            pod(
                "a",
                &[(
                    "net1",
                    "default/n",
                    "02:00:00:00:00:01",
                    &["10.1.1.5", "fe80::1"],
                )],
            ),
            pod(
                "b",
                &[(
                    "net1",
                    "default/n",
                    "02:00:00:00:00:02",
                    &["10.1.1.6", "fe80::1"],
                )],
            ),
            // The same address on another network is fine.
            pod(
                "c",
                &[("net1", "default/m", "02:00:00:00:00:03", &["10.1.1.5"])],
            ),
        ];
        let found = of_pods(&pods);
        assert_eq!(found.attachments, 3);
        assert!(check(&found).is_ok());

        pods.push(pod(
            "d",
            &[("net2", "default/n", "02:00:00:00:00:01", &["10.1.1.6"])],
        ));
        // A pod without network-status has no attachment to count.
        let mut bare = pod("e", &[]);
        bare.annotations.clear();
        pods.push(bare);
        let found = of_pods(&pods);
        assert_eq!(found.attachments, 4);
        let dup: Vec<String> = found.duplicates.iter().map(ToString::to_string).collect();
        assert_eq!(
            dup,
            [
                "IP 10.1.1.6 on network default/n is used by ns/b net1 and ns/d net2",
                "MAC 02:00:00:00:00:01 on network default/n is used by ns/a net1 and ns/d net2",
            ],
        );
        let failure = check(&found).unwrap_err();
        assert!(!failure.is_error());
        assert!(
            failure
                .message()
                .starts_with("uniqueness: IP 10.1.1.6 on network default/n"),
            "{failure}"
        );
    }
}
