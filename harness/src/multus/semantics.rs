//! Two ways to play multus: as multus does (`Multus`, the default: what real
//! clusters run) or as the Network Plumbing WG's Multi-Net spec (v1.3) says
//! (`Spec`). The `netns` tier runs either (`secnet conform --multus-semantics`),
//! so the `multi-net-spec` profile can show each clause both ways.
//!
//! Where they part (clause numbers of the spec):
//! - §4.1.2.1 (and .9): a selection with an invalid value, or with more than one
//!   `default-route` entry, is invalid and ignored (the pod gets its default
//!   network only); multus refuses the pod (and accepts one gateway per family);
//! - §4.1.2.1.3.2, .4.2, .7.2, .8.2, .10.2: a request (`ips`, `mac`,
//!   `portMappings`, `bandwidth`, `infiniband-guid`) that no plugin of the chain
//!   declares as a capability fails the attachment; multus runs it anyway;
//! - §4.1.2.1.3, .4 (v1.0's check of the result): the requested addresses and
//!   MAC must be on the interface the result names; multus does not look;
//! - §4.1.2.1.11: `ips` with `ipam-claim-reference` is an error; multus ignores
//!   the claim;
//! - §7.4: pods may only select NADs of their own namespace or of `default`
//!   (multus' `namespaceIsolation`, off unless configured);
//! - §7.5: the pod's `runtimeConfig` (port mappings, bandwidth) is for the
//!   cluster default network only; multus hands it to every secondary network.

use serde_json::Value;

use super::delegate::{self, Delegate, DeviceIds, Nad, PodInfo, Runtime};
use super::selection::{NetworkSelection, parse_pod_networks};
use super::{MultusError, status};

/// Which rules secnet's multus follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Semantics {
    /// As upstream multus behaves (the default).
    #[default]
    Multus,
    /// As the Multi-Net spec v1.3 says.
    Spec,
}

impl Semantics {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Semantics::Multus => "multus",
            Semantics::Spec => "spec",
        }
    }
}

impl std::fmt::Display for Semantics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The namespace whose NADs every pod may use under namespace isolation
/// (multus' default `globalNamespaces`).
pub const GLOBAL_NAMESPACE: &str = "default";

/// The pod's selections. Under `Spec`, an annotation with an invalid value is
/// ignored (no secondary network; the reason is logged) instead of failing the
/// pod, and so is one with `default-route` on more than one entry.
pub fn selections(
    semantics: Semantics,
    annotation: &str,
    namespace: &str,
    name: &str,
) -> Result<Vec<NetworkSelection>, MultusError> {
    let parsed = parse_pod_networks(annotation, namespace, name);
    if semantics == Semantics::Multus {
        return parsed;
    }
    match parsed {
        Err(e @ MultusError::Selection { .. }) => {
            tracing::warn!(
                "pod {namespace}/{name}: network selection ignored (spec §4.1.2.1): {e}"
            );
            Ok(Vec::new())
        }
        Err(e) => Err(e),
        Ok(list) if list.iter().filter(|s| s.default_route.is_some()).count() > 1 => {
            tracing::warn!(
                "pod {namespace}/{name}: network selection ignored (spec §4.1.2.1.9): default-route on more than one network"
            );
            Ok(Vec::new())
        }
        Ok(list) => Ok(list),
    }
}

/// The delegates for `selections` (see [`delegate::plan_with`]), with the spec's
/// extra checks and its §7.5 under `Spec`.
pub fn plan(
    semantics: Semantics,
    pod: &PodInfo,
    runtime: &Runtime,
    selections: &[NetworkSelection],
    lookup: impl Fn(&str, &str) -> Option<Nad>,
    devices: &mut DeviceIds,
) -> Result<Vec<Delegate>, MultusError> {
    if semantics == Semantics::Multus {
        return delegate::plan_with(pod, runtime, selections, lookup, devices);
    }
    let pod_ref = format!("{}/{}", pod.namespace, pod.name);
    for sel in selections {
        if sel.namespace != pod.namespace && sel.namespace != GLOBAL_NAMESPACE {
            return Err(MultusError::NotAllowed {
                pod: pod_ref,
                network: sel.network(),
                allowed: format!("namespace {GLOBAL_NAMESPACE}"),
            });
        }
        if let (Some(_), Some(claim)) = (&sel.ips, &sel.ipam_claim_reference) {
            return Err(MultusError::IpsWithClaim {
                pod: pod_ref,
                network: sel.network(),
                claim: claim.clone(),
            });
        }
    }
    // §7.5: what the runtime says about the pod is for its default network.
    let secondary = Runtime {
        port_mappings: Vec::new(),
        bandwidth: None,
        ..runtime.clone()
    };
    let delegates = delegate::plan_with(pod, &secondary, selections, lookup, devices)?;
    for d in &delegates {
        for (key, capability) in requested_capabilities(&d.selection) {
            if !declares(&d.plugins, capability) {
                return Err(MultusError::MissingCapability {
                    pod: pod_ref,
                    network: d.network.clone(),
                    key: key.into(),
                    capability: capability.into(),
                });
            }
        }
    }
    Ok(delegates)
}

/// The selection keys that are capability requests, as (key, capability).
fn requested_capabilities(sel: &NetworkSelection) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if sel.ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
        out.push(("ips", "ips"));
    }
    if sel.mac.is_some() {
        out.push(("mac", "mac"));
    }
    if sel.port_mappings.as_ref().is_some_and(|p| !p.is_empty()) {
        out.push(("portMappings", "portMappings"));
    }
    if sel.bandwidth.is_some() {
        out.push(("bandwidth", "bandwidth"));
    }
    if sel.infiniband_guid.is_some() {
        out.push(("infiniband-guid", "infinibandGUID"));
    }
    out
}

/// Whether any plugin of the chain sets `capabilities.<capability>` to true.
fn declares(plugins: &[Value], capability: &str) -> bool {
    plugins
        .iter()
        .any(|p| p["capabilities"][capability].as_bool() == Some(true))
}

/// Under `Spec`, after ADD: the addresses and MAC the selection asked for are
/// on the sandbox interface of the result, else the attachment fails.
pub fn verify(
    semantics: Semantics,
    pod: &str,
    d: &Delegate,
    result: &Value,
) -> Result<(), MultusError> {
    if semantics == Semantics::Multus {
        return Ok(());
    }
    let entries = status::from_result(&d.network, result, false, None)?;
    let first = entries.first();
    let not_honoured = |key: &str, wanted: String, got: String| MultusError::NotHonoured {
        pod: pod.to_string(),
        network: d.network.clone(),
        key: key.into(),
        wanted,
        got,
    };
    if let Some(mac) = &d.selection.mac {
        let got = first.and_then(|s| s.mac.clone()).unwrap_or_default();
        if !got.eq_ignore_ascii_case(mac) {
            return Err(not_honoured("mac", mac.clone(), format!("MAC {got:?}")));
        }
    }
    let got_ips: Vec<String> = first.map(|s| s.ips.clone()).unwrap_or_default();
    for want in d.selection.ips.iter().flatten() {
        let addr = want.split('/').next().unwrap_or(want);
        if !got_ips.iter().any(|ip| ip.split('/').next() == Some(addr)) {
            return Err(not_honoured(
                "ips",
                want.clone(),
                format!("ips {got_ips:?}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> PodInfo {
        PodInfo {
            namespace: "tenant".into(),
            name: "p".into(),
            uid: "u".into(),
            sandbox_id: "c".into(),
        }
    }

    fn nad(ns: &str, name: &str, config: Value) -> Nad {
        Nad {
            namespace: ns.into(),
            name: name.into(),
            config: config.to_string(),
            resource_name: None,
        }
    }

    fn run(
        sem: Semantics,
        annotation: &str,
        runtime: &Runtime,
        config: Value,
    ) -> Result<Vec<Delegate>, MultusError> {
        let sels = selections(sem, annotation, "tenant", "p")?;
        let n = nad("tenant", "n", config.clone());
        let d = nad("default", "n", config);
        plan(
            sem,
            &pod(),
            runtime,
            &sels,
            |ns, _| {
                Some(if ns == "default" {
                    d.clone()
                } else {
                    n.clone()
                })
            },
            &mut DeviceIds::new(),
        )
    }

    #[test]
    fn capability_requests_fail_under_spec_only() {
        let plain = json!({"cniVersion": "1.0.0", "type": "macvlan"});
        for (ann, key) in [
            (r#"[{"name":"n","ips":["10.1.1.5/24"]}]"#, "ips"),
            (r#"[{"name":"n","mac":"02:00:00:00:00:01"}]"#, "mac"),
            (
                r#"[{"name":"n","portMappings":[{"hostPort":8080,"containerPort":80}]}]"#,
                "portMappings",
            ),
            (
                r#"[{"name":"n","bandwidth":{"ingressRate":1000,"ingressBurst":1000}}]"#,
                "bandwidth",
            ),
        ] {
            assert!(run(Semantics::Multus, ann, &Runtime::default(), plain.clone()).is_ok());
            let e = run(Semantics::Spec, ann, &Runtime::default(), plain.clone()).unwrap_err();
            assert!(
                matches!(&e, MultusError::MissingCapability { key: k, .. } if k == key),
                "{e}"
            );
            // Declared: fine.
            let declared =
                json!({"cniVersion": "1.0.0", "type": "macvlan", "capabilities": {key: true}});
            assert!(run(Semantics::Spec, ann, &Runtime::default(), declared).is_ok());
        }
    }

    #[test]
    fn runtime_config_stays_with_the_default_network_under_spec() {
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(INGRESS.to_string(), "1M".to_string());
        let runtime = Runtime::for_pod(&annotations);
        assert_eq!(runtime.bandwidth.as_ref().unwrap().ingress_rate, 1_000_000);
        let cfg = json!({"cniVersion": "1.0.0", "type": "bandwidth", "capabilities": {"bandwidth": true}});
        let m = run(Semantics::Multus, "n", &runtime, cfg.clone()).unwrap();
        assert_eq!(
            m[0].plugins[0]["runtimeConfig"]["bandwidth"]["ingressRate"],
            1_000_000
        );
        let s = run(Semantics::Spec, "n", &runtime, cfg).unwrap();
        assert!(s[0].plugins[0].get("runtimeConfig").is_none());
    }

    const INGRESS: &str = super::delegate::INGRESS_BANDWIDTH;

    #[test]
    fn invalid_selection_is_ignored_under_spec() {
        let cfg = json!({"cniVersion": "1.0.0", "type": "macvlan"});
        let bad = r#"[{"name":"n","mac":"zz"}]"#;
        assert!(run(Semantics::Multus, bad, &Runtime::default(), cfg.clone()).is_err());
        assert_eq!(
            run(Semantics::Spec, bad, &Runtime::default(), cfg.clone()).unwrap(),
            vec![]
        );
        let two = r#"[{"name":"n","default-route":["10.0.0.1"]},{"name":"n","interface":"net2","default-route":["fd00::1"]}]"#;
        assert_eq!(
            run(Semantics::Multus, two, &Runtime::default(), cfg.clone())
                .unwrap()
                .len(),
            2
        );
        assert!(
            run(Semantics::Spec, two, &Runtime::default(), cfg)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn isolation_and_claims_under_spec() {
        let cfg = json!({"cniVersion": "1.0.0", "type": "macvlan", "capabilities": {"ips": true}});
        let other = "other/n";
        let e = run(Semantics::Spec, other, &Runtime::default(), cfg.clone()).unwrap_err();
        assert!(matches!(e, MultusError::NotAllowed { .. }), "{e}");
        assert!(
            run(
                Semantics::Spec,
                "default/n",
                &Runtime::default(),
                cfg.clone()
            )
            .is_ok()
        );
        assert!(run(Semantics::Multus, other, &Runtime::default(), cfg.clone()).is_ok());
        let both = r#"[{"name":"n","ips":["10.1.1.5/24"],"ipam-claim-reference":"vm.n"}]"#;
        assert!(matches!(
            run(Semantics::Spec, both, &Runtime::default(), cfg.clone()).unwrap_err(),
            MultusError::IpsWithClaim { .. }
        ));
        assert!(run(Semantics::Multus, both, &Runtime::default(), cfg).is_ok());
    }

    #[test]
    fn verify_compares_the_result_under_spec() {
        let cfg = json!({"cniVersion": "1.0.0", "type": "ipvlan", "capabilities": {"mac": true, "ips": true}});
        let d = run(
            Semantics::Spec,
            r#"[{"name":"n","mac":"02:00:00:00:00:01","ips":["10.1.1.5/24"]}]"#,
            &Runtime::default(),
            cfg,
        )
        .unwrap()
        .remove(0);
        let result = |mac: &str, ip: &str| {
            json!({"cniVersion": "1.0.0",
                   "interfaces": [{"name": "net1", "mac": mac, "sandbox": "/run/netns/x"}],
                   "ips": [{"address": ip, "interface": 0}]})
        };
        let good = result("02:00:00:00:00:01", "10.1.1.5/24");
        assert!(verify(Semantics::Spec, "t/p", &d, &good).is_ok());
        let bad_mac = result("0a:00:00:00:00:09", "10.1.1.5/24");
        assert!(matches!(
            verify(Semantics::Spec, "t/p", &d, &bad_mac),
            Err(MultusError::NotHonoured { .. })
        ));
        assert!(verify(Semantics::Multus, "t/p", &d, &bad_mac).is_ok());
        let bad_ip = result("02:00:00:00:00:01", "10.1.1.6/24");
        assert!(verify(Semantics::Spec, "t/p", &d, &bad_ip).is_err());
    }
}
