//! The `multi-net-spec` profile: one scenario per clause of the Multi-Net spec
//! (`spec_clauses.rs`), run through the multus under test (secnet's emulation on
//! netns, with `--multus-semantics spec|multus`; the cluster's multus elsewhere).
//!
//! Each check observes what the multus under test did and says whether that
//! conforms ([`Seen`]); the verdict goes into the scenario's notes for the clause
//! table. The scenario fails when the observation is not what the multus under
//! test promises: the spec's behaviour under `spec` semantics, and upstream
//! multus' behaviour (its known divergences included) under `multus` semantics
//! and on real clusters.
//!
//! The vehicle is Debian's reference plugins (macvlan on the node's lower
//! device, bridge, ptp, tuning, bandwidth; host-local and static IPAM).

use std::future::Future;
use std::pin::Pin;

use serde_json::{Value, json};

pub use super::spec_clauses::{GROUP, scenario_prefix};
use super::spec_clauses::{Seen, clause};
use super::{Capability, Ctx, Failure, Scenario, fail, kit};
use crate::cluster::any::AnyCluster;
use crate::cluster::{Cluster, PodView};
use crate::lab::command::Cmd;
use crate::lab::enter::Enter;
use crate::multus::Semantics;
use crate::objects::{Meta, NadSpec, NetworkAttachmentDefinition, Object, Pod};

type Check<'a> = Pin<Box<dyn Future<Output = Result<Seen, Failure>> + Send + 'a>>;

fn check<F>(id: &'static str, title: &str, labels: &[&'static str], f: F) -> Scenario
where
    F: for<'a> Fn(&'a Ctx, &'a AnyCluster) -> Check<'a> + Send + Sync + 'static,
{
    let c = clause(id);
    let name = format!(
        "{}{} {}] {title}",
        scenario_prefix(id),
        c.since,
        c.level.as_str()
    );
    let mut all = vec!["network-status"];
    all.extend_from_slice(labels);
    // Each clause makes its own NADs, pods and subnet (named by the clause).
    Scenario::on_cluster(name, "macvlan", "pod", &all, move |ctx, cluster| {
        let seen = f(ctx, cluster);
        Box::pin(judge(ctx, id, seen))
    })
    .shares_nodes()
}

/// Records the clause's verdict and fails the scenario when it is not what the
/// multus under test promises.
async fn judge(ctx: &Ctx, id: &'static str, seen: Check<'_>) -> super::Outcome {
    let seen = seen.await?;
    ctx.observed.note(&seen.note(id));
    let known = clause(id).multus_diverges;
    let multus_like = ctx.multus == Semantics::Multus;
    // A real multus as it was seen before, where that differs from the record.
    let as_seen_before = clause(id)
        .real_multus
        .filter(|r| ctx.cluster_multus && r.conforms == matches!(seen, Seen::Conforms(_)));
    match (&seen, known) {
        (Seen::NotApplicable(_), _) => Ok(()),
        (_, _) if let Some(r) = as_seen_before => {
            ctx.observed.note(&format!(
                "{id}: as a real multus was seen to do, unlike the emulation's record: {}",
                r.seen
            ));
            Ok(())
        }
        (Seen::Conforms(_), Some(how)) if multus_like => fail(format!(
            "{id}: the multus under test conforms, but it was to behave as upstream multus does ({how}); the emulation or the known divergence is out of date"
        )),
        (Seen::Diverges(what), Some(_)) if multus_like => {
            ctx.observed.note(&format!(
                "{id}: diverges from the spec as upstream multus does"
            ));
            let _ = what;
            Ok(())
        }
        (Seen::Diverges(what), _) => fail(format!("{id} ({} semantics): {what}", ctx.multus)),
        (Seen::Conforms(_), _) => Ok(()),
    }
}

// ---- helpers -------------------------------------------------------------------

fn first_node(cluster: &AnyCluster) -> Result<String, Failure> {
    cluster
        .nodes()
        .into_iter()
        .next()
        .ok_or_else(|| Failure::msg("the cluster has no node"))
}

fn nad_object(namespace: &str, name: &str, config: Value) -> Object {
    Object::Nad(NetworkAttachmentDefinition {
        metadata: Meta {
            name: name.into(),
            namespace: namespace.into(),
            ..Default::default()
        },
        spec: NadSpec {
            config: config.to_string(),
        },
    })
}

async fn apply_nad(
    cluster: &AnyCluster,
    namespace: &str,
    name: &str,
    config: Value,
) -> super::Outcome {
    Ok(cluster
        .apply(vec![nad_object(namespace, name, config)])
        .await?)
}

/// host-local on `10.251.<n>.0/24` (leases under `data_dir` when given).
fn host_local(n: u8, data_dir: Option<&str>) -> Value {
    let mut ipam =
        json!({"type": "host-local", "ranges": [[{"subnet": format!("10.251.{n}.0/24")}]]});
    if let Some(dir) = data_dir {
        ipam["dataDir"] = json!(dir);
    }
    ipam
}

/// A macvlan on the cluster's lower device with `ipam`.
fn macvlan(cluster: &AnyCluster, ipam: Value) -> Value {
    json!({"cniVersion": "1.0.0", "type": "macvlan", "master": cluster.lower_device(),
           "mode": "bridge", "ipam": ipam})
}

fn pod_in(namespace: &str, name: &str, node: &str, networks: &str) -> Pod {
    let mut pod = Pod::plain(name, node, networks);
    pod.metadata.namespace = namespace.into();
    pod
}

/// Starts the pod: `Ok(view)`, or `Err(why it was refused)`.
async fn start(cluster: &AnyCluster, pod: Pod) -> Result<PodView, String> {
    cluster.create_pod(pod).await.map_err(|e| e.to_string())
}

fn secondaries(pod: &PodView) -> Result<Vec<crate::multus::NetworkStatus>, Failure> {
    Ok(kit::network_status(pod)?
        .into_iter()
        .filter(|s| !s.default)
        .collect())
}

/// A scratch directory for host-local leases that this process can read: only
/// where the plugins run on this machine.
fn lease_dir(ctx: &Ctx, cluster: &AnyCluster, what: &str) -> Option<String> {
    cluster.local_topology()?;
    let dir = ctx.work_dir.join(format!("ipam-{}-{what}", ctx.scope));
    Some(dir.display().to_string())
}

/// The addresses host-local has leased under `dir/<network>`.
fn leases(dir: &str, network: &str) -> Vec<String> {
    std::fs::read_dir(std::path::Path::new(dir).join(network))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The pod's secondary attachments in a few words: `net1 02:… [10.1.1.5]`.
fn brief(pod: &PodView) -> String {
    match secondaries(pod) {
        Ok(list) if list.is_empty() => "no secondary attachment".into(),
        Ok(list) => list
            .iter()
            .map(|s| {
                format!(
                    "{} {} {:?}",
                    s.interface.as_deref().unwrap_or("?"),
                    s.mac.as_deref().unwrap_or("?"),
                    s.ips
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        Err(e) => e.to_string(),
    }
}

/// Refused where the spec wants a refusal: conforms; running: diverges with `ran`.
fn must_refuse(outcome: Result<PodView, String>, ran: impl FnOnce(&PodView) -> String) -> Seen {
    match outcome {
        Err(why) => Seen::Conforms(format!(
            "the pod was refused: {}",
            why.lines().next().unwrap_or("")
        )),
        Ok(view) => Seen::Diverges(ran(&view)),
    }
}

/// A clause about two namespaces on a cluster that ran the pod in another one
/// (the kube providers put every pod, and the NADs of `default`, into the run's
/// namespace): not checkable there.
fn one_namespace(view: &PodView, asked: &str) -> Seen {
    Seen::NotApplicable(format!(
        "this cluster runs every pod in the run's namespace ({}, not {asked}): no second namespace to check the clause with",
        view.namespace
    ))
}

// ---- the checks -------------------------------------------------------------------

pub fn scenarios() -> Vec<Scenario> {
    vec![
        check(
            "§3.4.1",
            "a NAD's config is the chain run; a missing NAD fails the pod",
            &[],
            |_, c| Box::pin(nad_config_runs(c)),
        ),
        check(
            "§3.4.2",
            "a config without name runs under the NAD's name",
            &["ipam"],
            |x, c| Box::pin(name_injected(x, c)),
        ),
        check(
            "§4.1",
            "comma list and JSON list both select networks",
            &[],
            |_, c| Box::pin(both_formats(c)),
        ),
        check(
            "§4.1.2.1",
            "a selection with an invalid MAC is ignored, not fatal",
            &["mac", "bad-input"],
            |_, c| Box::pin(invalid_value_ignored(c)),
        ),
        check(
            "§4.1.2.1.2",
            "\"namespace\" selects a NAD of another namespace",
            &[],
            |_, c| Box::pin(other_namespace(c)),
        ),
        check(
            "§4.1.2.1.3",
            "requested ips a plugin ignores fail the attachment",
            &["ipam"],
            |_, c| Box::pin(ips_honoured(c)),
        ),
        check(
            "§4.1.2.1.3.2",
            "ips without an ips capability fail the attachment",
            &["ipam"],
            |_, c| Box::pin(capability_missing(c, 32, r#""ips": ["10.251.32.7/24"]"#)),
        ),
        check(
            "§4.1.2.1.4",
            "a requested MAC a plugin ignores fails the attachment",
            &["mac"],
            |_, c| Box::pin(mac_honoured(c)),
        ),
        check(
            "§4.1.2.1.4.2",
            "a MAC without a mac capability fails the attachment",
            &["mac"],
            |_, c| Box::pin(capability_missing(c, 42, r#""mac": "02:5e:c0:00:04:42""#)),
        ),
        check(
            "§4.1.2.1.5",
            "\"interface\" names the interface; a name used twice fails",
            &[],
            |x, c| Box::pin(interface_names(x, c)),
        ),
        check(
            "§4.1.2.1.6",
            "cni-args reach args.cni over the NAD's args",
            &["ipam"],
            |_, c| Box::pin(cni_args(c)),
        ),
        check(
            "§4.1.2.1.7.2",
            "portMappings without the capability fail the attachment",
            &[],
            |_, c| {
                Box::pin(capability_missing(
                    c,
                    72,
                    r#""portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]"#,
                ))
            },
        ),
        check(
            "§4.1.2.1.8.2",
            "bandwidth without the capability fails the attachment",
            &[],
            |_, c| {
                Box::pin(capability_missing(
                    c,
                    82,
                    r#""bandwidth": {"ingressRate": 1000000, "ingressBurst": 100000}"#,
                ))
            },
        ),
        check(
            "§4.1.2.1.9",
            "default-route on two networks makes the selection invalid",
            &[],
            |_, c| Box::pin(two_default_routes(c)),
        ),
        check(
            "§4.1.2.1.11",
            "ips with ipam-claim-reference is an error",
            &["ipam"],
            |_, c| Box::pin(ips_with_claim(c)),
        ),
        check(
            "§4.2",
            "the same network twice: two attachments and status entries",
            &["ipam", "mac"],
            |_, c| Box::pin(same_network_twice(c)),
        ),
        check(
            "§5.2",
            "one status entry for the default network, marked default",
            &[],
            |_, c| Box::pin(default_entry(c)),
        ),
        check("§5.3.1", "status names are namespace/name", &[], |_, c| {
            Box::pin(status_names(c))
        }),
        check(
            "§5.3.3",
            "status ips are the pod interface's, not the bridge's",
            &["ipam"],
            |_, c| Box::pin(status_ips(c)),
        ),
        check(
            "§5.3.4",
            "status mac is the interface's MAC and comes with interface",
            &["mac"],
            |_, c| Box::pin(status_mac(c)),
        ),
        check(
            "§5.3.7",
            "device-info carries type and version",
            &[],
            |_, c| Box::pin(device_info(c)),
        ),
        check(
            "§6.1",
            "readiness waits for the default network",
            &[],
            |_, c| Box::pin(readiness(c)),
        ),
        check(
            "§6.2",
            "the default network is attached first",
            &[],
            |_, c| Box::pin(default_first(c)),
        ),
        check(
            "§7.1",
            "a conflist's plugins get name, cniVersion and the previous result",
            &["mac"],
            |_, c| Box::pin(conflist_chain(c)),
        ),
        check(
            "§7.2",
            "a failed attachment fails the pod; later ones are not attempted",
            &["ipam"],
            |x, c| Box::pin(setup_stops(x, c)),
        ),
        check(
            "§7.2 teardown",
            "teardown continues past a failed DEL and reports it",
            &["ipam"],
            |x, c| Box::pin(teardown_continues(x, c)),
        )
        .needs(&[Capability::NodeAccess]),
        check(
            "§7.3",
            "attachments of one pod are not run in parallel",
            &[],
            |_, c| Box::pin(serialized(c)),
        ),
        check(
            "§7.4",
            "a NAD of another tenant's namespace fails the pod",
            &[],
            |_, c| Box::pin(restricted_nad(c)),
        ),
        check(
            "§7.5",
            "the pod's bandwidth stays off secondary networks",
            &[],
            |x, c| Box::pin(runtime_config_primary_only(x, c)),
        )
        // It looks for shaping among all of the node's qdiscs.
        .reads_node_wide(),
    ]
}

async fn nad_config_runs(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(c, "default", "spec-341", macvlan(c, host_local(41, None))).await?;
    let ok = start(c, Pod::plain("spec-341a", &node, "spec-341")).await;
    let missing = start(c, Pod::plain("spec-341b", &node, "spec-341-missing")).await;
    Ok(match (ok, missing) {
        (Err(why), _) => Seen::Diverges(format!(
            "a pod selecting a NAD with a valid config was refused: {why}"
        )),
        (Ok(_), Ok(_)) => Seen::Diverges("a pod selecting a NAD that does not exist runs".into()),
        (Ok(view), Err(_)) => match secondaries(&view)?.first() {
            Some(s) if s.interface.as_deref() == Some("net1") => Seen::Conforms(
                "the NAD's macvlan chain gave net1; a missing NAD refused the pod".into(),
            ),
            other => Seen::Diverges(format!(
                "the pod's network-status has no net1 from the NAD: {other:?}"
            )),
        },
    })
}

async fn name_injected(x: &Ctx, c: &AnyCluster) -> Result<Seen, Failure> {
    let Some(dir) = lease_dir(x, c, "342") else {
        return Ok(Seen::NotApplicable(
            "the plugins run on remote nodes: host-local's lease directory (named after the network) is not visible here".into(),
        ));
    };
    let node = first_node(c)?;
    // No "name" in the config: host-local keeps leases under dataDir/<name>.
    apply_nad(
        c,
        "default",
        "spec-342",
        macvlan(c, host_local(42, Some(&dir))),
    )
    .await?;
    let view = start(c, Pod::plain("spec-342", &node, "spec-342"))
        .await
        .map_err(|e| Failure::msg(format!("pod refused: {e}")))?;
    let ips = secondaries(&view)?
        .first()
        .map(|s| s.ips.clone())
        .unwrap_or_default();
    let leased = leases(&dir, "spec-342");
    Ok(
        if !leased.is_empty() && ips.iter().all(|ip| leased.contains(ip)) {
            Seen::Conforms(format!(
                "host-local leased {leased:?} under the NAD's name spec-342"
            ))
        } else {
            Seen::Diverges(format!(
                "no lease under {dir}/spec-342 (leases {leased:?}, pod ips {ips:?}): the plugin did not get the NAD's name"
            ))
        },
    )
}

async fn both_formats(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(c, "default", "spec-41", macvlan(c, host_local(141, None))).await?;
    let mut seen = Vec::new();
    for (pod, ann) in [
        ("spec-41-comma", "spec-41"),
        ("spec-41-json", r#"[{"name": "spec-41"}]"#),
    ] {
        match start(c, Pod::plain(pod, &node, ann)).await {
            Err(why) => return Ok(Seen::Diverges(format!("{ann:?} refused: {why}"))),
            Ok(view) => {
                let s = secondaries(&view)?;
                if s.len() != 1 || !s[0].name.ends_with("/spec-41") {
                    return Ok(Seen::Diverges(format!("{ann:?} gave network-status {s:?}")));
                }
                seen.push(format!(
                    "{ann} → {}",
                    s[0].interface.clone().unwrap_or_default()
                ));
            }
        }
    }
    Ok(Seen::Conforms(seen.join("; ")))
}

async fn invalid_value_ignored(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(c, "default", "spec-4121", macvlan(c, host_local(121, None))).await?;
    let ann = r#"[{"name": "spec-4121", "mac": "not-a-mac"}]"#;
    Ok(match start(c, Pod::plain("spec-4121", &node, ann)).await {
        Err(why) => Seen::Diverges(format!(
            "the pod was refused instead of the selection being ignored: {}",
            why.lines().next().unwrap_or("")
        )),
        Ok(view) => {
            let s = secondaries(&view)?;
            if s.is_empty() {
                Seen::Conforms(
                    "the pod runs on its default network only; the invalid selection was ignored"
                        .into(),
                )
            } else {
                Seen::Diverges(format!("the invalid selection was used: {s:?}"))
            }
        }
    })
}

async fn other_namespace(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(c, "default", "spec-4122", macvlan(c, host_local(122, None))).await?;
    let ann = r#"[{"name": "spec-4122", "namespace": "default"}]"#;
    Ok(
        match start(c, pod_in("spec-tenant", "spec-4122", &node, ann)).await {
            Err(why) => Seen::Diverges(format!("refused: {why}")),
            Ok(view) if view.namespace != "spec-tenant" => one_namespace(&view, "spec-tenant"),
            Ok(view) => match secondaries(&view)?.first() {
                Some(s) if s.name == "default/spec-4122" => {
                    Seen::Conforms("a pod in spec-tenant attached default/spec-4122".into())
                }
                other => Seen::Diverges(format!("network-status {other:?}")),
            },
        },
    )
}

async fn ips_honoured(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    // Declares "ips" but has no IPAM: nothing assigns the address.
    let mut ignoring = macvlan(c, json!({}));
    ignoring["capabilities"] = json!({"ips": true});
    apply_nad(c, "default", "spec-4123", ignoring).await?;
    let ann = r#"[{"name": "spec-4123", "ips": ["10.251.123.5/24"]}]"#;
    let outcome = start(c, Pod::plain("spec-4123", &node, ann)).await;
    Ok(must_refuse(outcome, |v| {
        format!(
            "the pod runs although net1 has none of the requested ips (network-status {:?})",
            secondaries(v)
                .ok()
                .and_then(|s| s.first().map(|s| s.ips.clone()))
        )
    }))
}

/// A macvlan + host-local NAD declaring no capability, and a selection asking
/// for one (`request`, JSON members).
async fn capability_missing(c: &AnyCluster, n: u8, request: &str) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    let name = format!("spec-cap{n}");
    apply_nad(c, "default", &name, macvlan(c, host_local(n, None))).await?;
    let ann = format!(r#"[{{"name": "{name}", {request}}}]"#);
    let outcome = start(c, Pod::plain(&name, &node, &ann)).await;
    Ok(must_refuse(outcome, |v| {
        format!(
            "the pod runs with {request} although no plugin declares the capability ({})",
            brief(v)
        )
    }))
}

async fn mac_honoured(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    // ptp declares "mac" but makes its own veth MAC.
    let config = json!({"cniVersion": "1.0.0", "type": "ptp", "capabilities": {"mac": true},
                        "ipam": host_local(124, None)});
    apply_nad(c, "default", "spec-4124", config).await?;
    let want = "02:5e:c0:00:01:24";
    let ann = format!(r#"[{{"name": "spec-4124", "mac": "{want}"}}]"#);
    let outcome = start(c, Pod::plain("spec-4124", &node, &ann)).await;
    if let Ok(view) = &outcome {
        let got = kit::pod_iface(c, view, "net1").await?.mac;
        if got.eq_ignore_ascii_case(want) {
            return Ok(Seen::NotApplicable(format!(
                "ptp honoured the MAC ({got}): no plugin here ignores a declared mac"
            )));
        }
    }
    Ok(must_refuse(outcome, |v| {
        format!(
            "the pod runs with another MAC than {want} (network-status {:?})",
            secondaries(v)
                .ok()
                .and_then(|s| s.first().and_then(|s| s.mac.clone()))
        )
    }))
}

async fn interface_names(_x: &Ctx, c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(c, "default", "spec-4125", macvlan(c, host_local(125, None))).await?;
    let ann = r#"[{"name": "spec-4125", "interface": "spec0"}]"#;
    let view = match start(c, Pod::plain("spec-4125", &node, ann)).await {
        Ok(v) => v,
        Err(why) => {
            return Ok(Seen::Diverges(format!(
                "\"interface\" spec0 refused: {why}"
            )));
        }
    };
    let iface = kit::pod_iface(c, &view, "spec0").await;
    let status = secondaries(&view)?;
    if iface.is_err() || status.first().and_then(|s| s.interface.as_deref()) != Some("spec0") {
        return Ok(Seen::Diverges(format!(
            "no spec0 in the pod ({iface:?}) or in network-status {status:?}"
        )));
    }
    let dup = start(
        c,
        Pod::plain("spec-4125b", &node, "spec-4125@dup0,spec-4125@dup0"),
    )
    .await;
    Ok(match dup {
        Ok(_) => Seen::Diverges("two networks asking for dup0 both ran".into()),
        Err(_) => {
            Seen::Conforms("spec0 is the pod's interface and status; dup0 twice was refused".into())
        }
    })
}

async fn cni_args(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    let mut config = macvlan(c, host_local(126, None));
    config["args"] = json!({"cni": {"ips": ["10.251.126.9"]}});
    apply_nad(c, "default", "spec-4126", config).await?;
    let ann = r#"[{"name": "spec-4126", "cni-args": {"ips": ["10.251.126.7"]}}]"#;
    let view = match start(c, Pod::plain("spec-4126", &node, ann)).await {
        Ok(v) => v,
        Err(why) => return Ok(Seen::Diverges(format!("refused: {why}"))),
    };
    let ips = secondaries(&view)?
        .first()
        .map(|s| s.ips.clone())
        .unwrap_or_default();
    Ok(if ips == ["10.251.126.7"] {
        Seen::Conforms(
            "host-local got args.cni.ips 10.251.126.7 from cni-args over the NAD's .9".into(),
        )
    } else {
        Seen::Diverges(format!("net1 has {ips:?}, not the cni-args' 10.251.126.7"))
    })
}

async fn two_default_routes(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(c, "default", "spec-4129", macvlan(c, host_local(129, None))).await?;
    let ann = r#"[{"name": "spec-4129", "default-route": ["10.251.129.1"]},
                  {"name": "spec-4129", "interface": "net2", "default-route": ["fd00:129::1"]}]"#;
    Ok(match start(c, Pod::plain("spec-4129", &node, ann)).await {
        Err(why) => Seen::Diverges(format!("refused instead of ignored: {why}")),
        Ok(view) => {
            let s = secondaries(&view)?;
            if s.is_empty() {
                Seen::Conforms("the selection was ignored: default network only".into())
            } else {
                Seen::Diverges(format!(
                    "default-route on two networks was used: {} attachments",
                    s.len()
                ))
            }
        }
    })
}

async fn ips_with_claim(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    let config = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": c.lower_device(),
                        "capabilities": {"ips": true}, "ipam": {"type": "static"}});
    apply_nad(c, "default", "spec-41211", config).await?;
    let ann = r#"[{"name": "spec-41211", "ips": ["10.251.211.5/24"], "ipam-claim-reference": "vm-a.spec-41211"}]"#;
    let outcome = start(c, Pod::plain("spec-41211", &node, ann)).await;
    Ok(must_refuse(outcome, |_| {
        "the pod runs with static ips, the ipam-claim-reference ignored".into()
    }))
}

async fn same_network_twice(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(c, "default", "spec-42", macvlan(c, host_local(142, None))).await?;
    let view = match start(c, Pod::plain("spec-42", &node, "spec-42,spec-42")).await {
        Ok(v) => v,
        Err(why) => return Ok(Seen::Diverges(format!("refused: {why}"))),
    };
    let s = secondaries(&view)?;
    let distinct = |f: &dyn Fn(&crate::multus::NetworkStatus) -> String| {
        s.len() == 2 && f(&s[0]) != f(&s[1]) && !f(&s[0]).is_empty()
    };
    Ok(
        if distinct(&|e| e.interface.clone().unwrap_or_default())
            && distinct(&|e| e.mac.clone().unwrap_or_default())
            && distinct(&|e| e.ips.join(","))
        {
            Seen::Conforms(format!(
                "two attachments: {}",
                s.iter()
                    .map(|e| format!("{} {:?}", e.interface.clone().unwrap_or_default(), e.ips))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else {
            Seen::Diverges(format!("network-status {s:?}"))
        },
    )
}

/// A pod with one macvlan network `n` (its subnet 10.251.n.0/24).
async fn one_network_pod(c: &AnyCluster, n: u8) -> Result<PodView, Failure> {
    let node = first_node(c)?;
    let name = format!("spec-net{n}");
    apply_nad(c, "default", &name, macvlan(c, host_local(n, None))).await?;
    start(c, Pod::plain(&name, &node, &name))
        .await
        .map_err(|e| Failure::msg(format!("pod {name} refused: {e}")))
}

async fn default_entry(c: &AnyCluster) -> Result<Seen, Failure> {
    let view = one_network_pod(c, 152).await?;
    let all = kit::network_status(&view)?;
    let defaults = all.iter().filter(|s| s.default).count();
    Ok(if defaults == 1 {
        Seen::Conforms(format!("{} entries, one default", all.len()))
    } else {
        Seen::Diverges(format!("{defaults} entries marked default in {all:?}"))
    })
}

async fn status_names(c: &AnyCluster) -> Result<Seen, Failure> {
    let view = one_network_pod(c, 153).await?;
    let s = secondaries(&view)?;
    Ok(match s.first() {
        Some(e) if e.name == format!("{}/spec-net153", view.namespace) => {
            Seen::Conforms(format!("named {}", e.name))
        }
        other => Seen::Diverges(format!("entry {other:?}")),
    })
}

/// Addresses of `ifname` in the pod, without prefix length.
async fn pod_addresses(
    c: &AnyCluster,
    view: &PodView,
    ifname: &str,
) -> Result<Vec<String>, Failure> {
    let addrs = crate::contract::probe::pod_oneline_addrs(c, view, ifname).await?;
    Ok(addrs
        .iter()
        .filter(|a| !a.is_link_local())
        .map(|a| a.local.to_string())
        .collect())
}

async fn status_ips(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    // bridge reports the bridge (with the gateway) and the host veth too.
    let config = json!({"cniVersion": "1.0.0", "type": "bridge", "bridge": "spb533",
                        "isGateway": true, "ipam": host_local(154, None)});
    apply_nad(c, "default", "spec-533", config).await?;
    let view = start(c, Pod::plain("spec-533", &node, "spec-533"))
        .await
        .map_err(|e| Failure::msg(format!("pod refused: {e}")))?;
    let status = secondaries(&view)?
        .first()
        .map(|s| s.ips.clone())
        .unwrap_or_default();
    let kernel = pod_addresses(c, &view, "net1").await?;
    Ok(if !status.is_empty() && status == kernel {
        Seen::Conforms(format!("status ips {status:?} are net1's"))
    } else {
        Seen::Diverges(format!("status ips {status:?}, net1 has {kernel:?}"))
    })
}

async fn status_mac(c: &AnyCluster) -> Result<Seen, Failure> {
    let view = one_network_pod(c, 155).await?;
    let all = kit::network_status(&view)?;
    if let Some(bad) = all
        .iter()
        .find(|s| s.mac.is_some() && s.interface.is_none())
    {
        return Ok(Seen::Diverges(format!("a mac without interface: {bad:?}")));
    }
    let s = secondaries(&view)?;
    let status = s.first().and_then(|e| e.mac.clone()).unwrap_or_default();
    let kernel = kit::pod_iface(c, &view, "net1").await?.mac;
    Ok(if status.eq_ignore_ascii_case(&kernel) {
        Seen::Conforms(format!("status mac {status} is net1's"))
    } else {
        Seen::Diverges(format!("status mac {status:?}, net1 has {kernel}"))
    })
}

async fn device_info(c: &AnyCluster) -> Result<Seen, Failure> {
    let view = one_network_pod(c, 157).await?;
    let with: Vec<_> = kit::network_status(&view)?
        .into_iter()
        .filter_map(|s| s.device_info)
        .collect();
    if with.is_empty() {
        return Ok(Seen::NotApplicable(
            "no plugin under test writes a device-info file (CNIDeviceInfoFile), so no entry carries device-info".into(),
        ));
    }
    Ok(
        match with
            .iter()
            .find(|d| d["type"].as_str().is_none() || d["version"].as_str().is_none())
        {
            Some(bad) => Seen::Diverges(format!("device-info without type/version: {bad}")),
            None => Seen::Conforms(format!(
                "{} device-info entries with type and version",
                with.len()
            )),
        },
    )
}

async fn readiness(_c: &AnyCluster) -> Result<Seen, Failure> {
    Ok(Seen::NotApplicable(
        "readiness is the multus daemon's CNI config file appearing after the default network's; secnet's multus takes the default network from the node's CNI config dir but writes no config file of its own to appear after it, and on real clusters the order of files is not observed by this check".into(),
    ))
}

async fn default_first(c: &AnyCluster) -> Result<Seen, Failure> {
    let view = one_network_pod(c, 162).await?;
    let all = kit::network_status(&view)?;
    Ok(match all.first() {
        Some(s) if s.default => Seen::Conforms(
            "network-status (written in attach order) lists the default network first".into(),
        ),
        other => Seen::Diverges(format!("first status entry {other:?}")),
    })
}

async fn conflist_chain(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    let want = "02:5e:c0:00:07:01";
    let config = json!({"cniVersion": "1.0.0", "name": "spec-71", "plugins": [
        {"type": "macvlan", "master": c.lower_device(), "mode": "bridge", "ipam": host_local(171, None)},
        {"type": "tuning", "mac": want}
    ]});
    apply_nad(c, "default", "spec-71", config).await?;
    let view = match start(c, Pod::plain("spec-71", &node, "spec-71")).await {
        Ok(v) => v,
        Err(why) => return Ok(Seen::Diverges(format!("the conflist failed: {why}"))),
    };
    let kernel = kit::pod_iface(c, &view, "net1").await?.mac;
    Ok(if kernel.eq_ignore_ascii_case(want) {
        Seen::Conforms(format!(
            "tuning ran after macvlan on its result: net1 has {want}"
        ))
    } else {
        Seen::Diverges(format!("net1 has {kernel}, not tuning's {want}"))
    })
}

async fn setup_stops(x: &Ctx, c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    let dir = lease_dir(x, c, "72");
    apply_nad(
        c,
        "default",
        "spec-72-good",
        macvlan(c, host_local(172, None)),
    )
    .await?;
    let broken = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": "spnolink72",
                        "ipam": host_local(173, None)});
    apply_nad(c, "default", "spec-72-bad", broken).await?;
    apply_nad(
        c,
        "default",
        "spec-72-later",
        macvlan(c, host_local(174, dir.as_deref())),
    )
    .await?;
    let outcome = start(
        c,
        Pod::plain("spec-72", &node, "spec-72-good,spec-72-bad,spec-72-later"),
    )
    .await;
    let Err(why) = outcome else {
        return Ok(Seen::Diverges(
            "a pod with a failing attachment runs".into(),
        ));
    };
    let Some(dir) = dir else {
        return Ok(Seen::Conforms(format!(
            "the pod failed ({}); that the later attachment was not attempted is not visible from here",
            why.lines().next().unwrap_or("")
        )));
    };
    // host-local's DEL (which the runtime's teardown of the failed sandbox may run
    // for every network) creates the directory and its lock too; only an ADD
    // leaves anything else (a lease, last_reserved_ip.0).
    let allocated: Vec<String> =
        std::fs::read_dir(std::path::Path::new(&dir).join("spec-72-later"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "lock")
                    .collect()
            })
            .unwrap_or_default();
    Ok(if !allocated.is_empty() {
        Seen::Diverges(format!(
            "the attachment after the failed one was attempted (host-local allocated: {})",
            allocated.join(", ")
        ))
    } else {
        Seen::Conforms(
            "the pod failed at spec-72-bad; spec-72-later was never attempted (host-local allocated nothing)"
                .into(),
        )
    })
}

async fn teardown_continues(x: &Ctx, c: &AnyCluster) -> Result<Seen, Failure> {
    let Some(dir) = lease_dir(x, c, "72t") else {
        return Ok(Seen::NotApplicable(
            "the plugins run on remote nodes: whether the DEL after the failed one released its lease is not visible here".into(),
        ));
    };
    let node = first_node(c)?;
    // A lower device of its own that goes away before the pod does: macvlan's
    // DEL then fails (it looks the master up).
    c.node_ip(
        &node,
        &[
            "link", "add", "spl72", "type", "veth", "peer", "name", "spl72p",
        ],
    )
    .await?;
    c.node_ip(&node, &["link", "set", "spl72", "up"]).await?;
    apply_nad(
        c,
        "default",
        "spec-72-kept",
        macvlan(c, host_local(175, Some(&dir))),
    )
    .await?;
    let doomed = json!({"cniVersion": "1.0.0", "type": "macvlan", "master": "spl72",
                        "ipam": host_local(176, None)});
    apply_nad(c, "default", "spec-72-doomed", doomed).await?;
    let view = start(
        c,
        Pod::plain("spec-72t", &node, "spec-72-kept,spec-72-doomed"),
    )
    .await
    .map_err(|e| Failure::msg(format!("pod refused: {e}")))?;
    let before = leases(&dir, "spec-72-kept");
    c.node_ip(&node, &["link", "del", "spl72"]).await?;
    let deleted = c.delete_pod(&view.namespace, &view.name).await;
    let after = leases(&dir, "spec-72-kept");
    Ok(match deleted {
        Ok(()) => {
            Seen::Diverges("the pod's teardown reported no error although one DEL failed".into())
        }
        Err(e) if before.is_empty() => {
            return fail(format!(
                "no lease of spec-72-kept before the teardown ({e})"
            ));
        }
        Err(e) if after.is_empty() => Seen::Conforms(format!(
            "teardown failed ({}) and still released spec-72-kept's lease {before:?}",
            e.to_string().lines().next().unwrap_or("")
        )),
        Err(e) => Seen::Diverges(format!(
            "teardown stopped at the failed DEL: spec-72-kept still leases {after:?} ({e})"
        )),
    })
}

async fn serialized(_c: &AnyCluster) -> Result<Seen, Failure> {
    Ok(Seen::NotApplicable(
        "overlap of a pod's plugin calls is not observable from outside without a recording plugin; secnet's multus runs a pod's delegates one after another".into(),
    ))
}

async fn restricted_nad(c: &AnyCluster) -> Result<Seen, Failure> {
    let node = first_node(c)?;
    apply_nad(
        c,
        "spec-tenant-b",
        "spec-74",
        macvlan(c, host_local(174, None)),
    )
    .await?;
    // A pod of no network first: a refusal is only isolation when the pod's
    // namespace is really another one than the NAD's.
    let probe = start(c, pod_in("spec-tenant-a", "spec-74-probe", &node, "[]")).await;
    if let Ok(view) = &probe
        && view.namespace != "spec-tenant-a"
    {
        return Ok(one_namespace(view, "spec-tenant-a"));
    }
    let outcome = start(
        c,
        pod_in("spec-tenant-a", "spec-74", &node, "spec-tenant-b/spec-74"),
    )
    .await;
    Ok(must_refuse(outcome, |_| {
        "a pod of spec-tenant-a runs on spec-tenant-b's NAD: no restriction applied".into()
    }))
}

async fn runtime_config_primary_only(x: &Ctx, c: &AnyCluster) -> Result<Seen, Failure> {
    let _ = x;
    let Some(local) = c.local_topology() else {
        return Ok(Seen::NotApplicable(
            "the shaping would be on the node (tc); the nodes are not on this machine".into(),
        ));
    };
    let node = first_node(c)?;
    let config = json!({"cniVersion": "1.0.0", "name": "spec-75", "plugins": [
        {"type": "bridge", "bridge": "spb75", "ipam": host_local(175, None)},
        {"type": "bandwidth", "capabilities": {"bandwidth": true}}
    ]});
    apply_nad(c, "default", "spec-75", config).await?;
    let mut pod = Pod::plain("spec-75", &node, "spec-75");
    pod.metadata.annotations.insert(
        crate::multus::delegate::INGRESS_BANDWIDTH.into(),
        "10M".into(),
    );
    let view = match start(c, pod).await {
        Ok(v) => v,
        Err(why) if why.contains("bandwidth") => {
            return Ok(Seen::Diverges(format!(
                "the pod's bandwidth reached the secondary's bandwidth plugin, which failed: {}",
                why.lines().next().unwrap_or("")
            )));
        }
        Err(why) => return fail(format!("pod refused: {why}")),
    };
    let ns = local.node_namespace(&view.node).await?;
    let out = Cmd::new("tc")
        .args(["qdisc", "show"])
        .enter(&Enter::net(ns.path())?)
        .timeout(std::time::Duration::from_secs(10))
        .output_async()
        .await?;
    let text = out.stdout_text();
    Ok(match text.lines().find(|l| l.contains("tbf")) {
        Some(line) => Seen::Diverges(format!(
            "the pod's ingress bandwidth shapes the secondary network on the node: {}",
            line.trim()
        )),
        None => Seen::Conforms("no shaping on the node for the secondary network".into()),
    })
}
