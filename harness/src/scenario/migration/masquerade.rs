//! Live migration of a VM on the masquerade binding. The launcher pods' pod-network
//! addresses differ, so what KubeVirt promises for masquerade is not "same address":
//! the guest keeps its inside address (10.0.2.2) and its MAC, the VM is reached
//! through whichever launcher pod runs it (the VMI's status and any Service follow
//! the new pod address), and connections through the old pod's NAT end with it.
//!
//! Measured: a pod on the source node streams to the source pod's address from
//! before the migration and to the target pod's address from the moment that pod
//! exists. The user-visible gap is the send time of the first packet the guest
//! answered through the target pod less that of the last it answered through the
//! source pod (a client that switched addresses at once; learning the new address,
//! a Service's endpoint update, is not in it). Asserted: under the bound, the
//! target pod answers for the guest only from the handover (before it QEMU waits
//! for the guest), the source address answers no more afterwards, the source pod
//! and everything of it on the source node (links, lease, nftables) gone.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use super::{
    INTERVAL, OnSource, Peer, boot_on_source, guest_addrs, ipv4, live_migration, ms_between,
    nothing_left, record, start_stream,
};
use crate::cluster::Cluster;
use crate::cluster::PodView;
use crate::cluster::any::AnyCluster;
use crate::objects::Pod;
use crate::scenario::kit::network_status;
use crate::scenario::vm::{then_stop, vm_fixture, vm_options};
use crate::scenario::{Ctx, Failure, Outcome, ensure, fail};
use crate::vm::RunningVm;
use crate::vm::migrate::{MigrationPlan, pod_ip};
use crate::vm::stream::{GUEST_SETUP, Losses, Stream, StreamReport};

/// The longest the VM may be unreachable through either pod address (TCG guests
/// on a busy machine, as the other bindings' bound).
const BOUND: Duration = Duration::from_secs(2);

fn address_of(pod: &PodView) -> Result<Ipv4Addr, Failure> {
    let ip = pod_ip(pod).ok_or_else(|| {
        Failure::msg(format!(
            "launcher pod {} has no pod-network address in its network-status: {:?}",
            pod.name,
            network_status(pod).ok()
        ))
    })?;
    ipv4(&ip)
}

/// One protocol's handover: when (since `t0`) the last answer through the old
/// address arrived and the first through the new one.
struct Handover {
    protocol: &'static str,
    last_old: Option<Duration>,
    first_new: Option<Duration>,
}

impl Handover {
    fn of(
        t0: Instant,
        old: &StreamReport,
        new: &StreamReport,
        pick: fn(&StreamReport) -> &Losses,
    ) -> Handover {
        let at =
            |r: &StreamReport, d: Option<Duration>| d.map(|d| (r.started + d).duration_since(t0));
        Handover {
            protocol: pick(old).protocol,
            last_old: at(old, pick(old).last_answer),
            first_new: at(new, pick(new).first_answer),
        }
    }

    fn gap(&self) -> Option<Duration> {
        Some(self.first_new?.saturating_sub(self.last_old?))
    }
}

impl std::fmt::Display for Handover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or("never".into(), |d| {
                format!("{:.0} ms", d.as_secs_f64() * 1000.0)
            })
        };
        write!(
            f,
            "{}: last answer through the source pod at {}, first through the target pod at {}",
            self.protocol,
            ms(self.last_old),
            ms(self.first_new)
        )
    }
}

pub(super) async fn masquerade_migration(ctx: &Ctx, cluster: &AnyCluster) -> Outcome {
    let mig = live_migration(cluster)?;
    let opts = vm_options(ctx, cluster)?;
    let local = cluster.local_topology().ok_or_else(|| {
        Failure::msg("the masquerade migration's peer streams from a pod namespace of this machine")
    })?;
    let nodes = cluster.nodes();
    // The peer: a pod on the pod network of the source node, made before the
    // nodes' state is taken (it stays; the VM's pods go).
    let mut peer = Pod::plain("masq-peer", &nodes[0], "");
    peer.metadata.annotations.clear();
    let peer = cluster.create_pod(peer).await?;
    let peer_ns = local.pod_namespace(&peer).await?.path();
    let vm = vm_fixture(ctx, "seed/vmi-masquerade.yaml", "vm-mig-masq")?;
    let OnSource {
        source: _,
        target,
        before_source,
        before_target,
        mut vms,
    } = boot_on_source(ctx, cluster, &vm, &[], &opts).await?;
    let checked = then_stop(cluster, &mut vms, async |vms: &mut [RunningVm]| {
        let v = &mut vms[0];
        v.configure(&[]).await?;
        v.run(GUEST_SETUP).await?;
        let mac = v.nics[0].mac.clone();
        let addrs_before = guest_addrs(v).await?;
        let source_pod = v.pod.clone();
        let old_ip = address_of(&source_pod)?;
        let t0 = Instant::now();
        let sys0 = SystemTime::now();
        let old = start_stream(cluster, mig, &Peer::Pod(peer.clone()), old_ip).await?;
        let (tell, mut told) = tokio::sync::mpsc::unbounded_channel();
        let mut plan = MigrationPlan::to(&target);
        plan.on_target = Some(tell);
        // The stream to the target pod starts as soon as that pod exists.
        let (migrated, new) = tokio::join!(
            async {
                let r = mig.migrate(v, &[], &opts, &plan).await;
                // A moment of both streams after the handover.
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(plan);
                r
            },
            async {
                let pod = told.recv().await?;
                let ip = address_of(&pod).ok()?;
                Some((ip, Stream::start(peer_ns.clone(), ip, INTERVAL)))
            }
        );
        let old = old.stop();
        let new = match new {
            Some((ip, Ok(s))) => Some((ip, s.stop())),
            Some((ip, Err(e))) => Some((ip, Err(e))),
            None => None,
        };
        let report = migrated?;
        let old = old.map_err(|e| Failure::caused("the stream to the source pod".to_string(), e))?;
        let Some((new_ip, new)) = new else {
            return fail(format!(
                "the target pod {} had no pod-network address to stream to",
                report.target_pod.name
            ));
        };
        let new = new.map_err(|e| Failure::caused("the stream to the target pod".to_string(), e))?;
        let handovers = [
            Handover::of(t0, &old, &new, |r| &r.icmp),
            Handover::of(t0, &old, &new, |r| &r.udp),
        ];
        let stopped = report
            .source_stopped_at
            .map(|s| Duration::from_secs_f64(ms_between(sys0, s).max(0.0) / 1000.0));
        let text = format!(
            "pod address {old_ip} → {new_ip}; {}; {}; source paused the guest at {}",
            handovers[0],
            handovers[1],
            stopped.map_or("-".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
        );
        let gap = handovers.iter().filter_map(Handover::gap).max().unwrap_or(Duration::MAX);
        record(ctx, &v.vm.name, "masquerade", &report, &old, gap.min(Duration::from_secs(3600)), &text);
        ctx.observed.note(&format!("masquerade handover: {text}; to the source pod {old}; to the target pod {new}"));
        ensure(report.completed(), || format!("the migration ended {}; {text}", report.status))?;
        ensure(v.pod.node == target, || {
            format!("after the migration the guest's pod is on {}, not {target}", v.pod.node)
        })?;
        ensure(new_ip != old_ip, || {
            format!("the target pod has the source pod's address {old_ip}: the pod network gave one address twice")
        })?;
        // The guest keeps its MAC and its inside address.
        v.guest_ifname(&mac).await?;
        let addrs_after = guest_addrs(v).await?;
        ensure(addrs_after == addrs_before, || {
            format!("the guest had {addrs_before:?} before the migration and {addrs_after:?} after")
        })?;
        ensure(address_of(&v.pod)? == new_ip, || {
            format!("the running pod {}'s network-status does not give {new_ip}", v.pod.name)
        })?;
        for h in &handovers {
            let Some(first_new) = h.first_new else {
                return fail(format!(
                    "the VM was never reached through the target pod's address {new_ip} ({}): the masquerade binding's DNAT on the target does not lead to the guest; {text}",
                    h.protocol
                ));
            };
            // Before the handover the target's QEMU holds no running guest: an
            // answer through the target pod before the source paused the guest
            // came from something else.
            if let Some(stopped) = stopped
                && first_new < stopped
            {
                return fail(format!(
                    "the target pod answered for the guest ({}) at {:.0} ms, before the source paused the guest at {:.0} ms; {text}",
                    h.protocol,
                    first_new.as_secs_f64() * 1000.0,
                    stopped.as_secs_f64() * 1000.0
                ));
            }
            if let (Some(last_old), Some(stopped)) = (h.last_old, stopped) {
                ensure(last_old <= stopped + crate::vm::stream::LATE, || {
                    format!(
                        "the source pod's address still answered ({}) at {:.0} ms, after the handover at {:.0} ms; {text}",
                        h.protocol,
                        last_old.as_secs_f64() * 1000.0,
                        stopped.as_secs_f64() * 1000.0
                    )
                })?;
            }
        }
        ensure(gap <= BOUND, || {
            format!(
                "the VM was unreachable through either pod address for {:.0} ms, above the bound {:.0} ms: {text}",
                gap.as_secs_f64() * 1000.0,
                BOUND.as_secs_f64() * 1000.0
            )
        })?;
        // The source pod and everything of it on its node are gone.
        ensure(
            !cluster
                .node_access()?
                .pod_sandbox_exists(&source_pod.namespace, &source_pod.name)
                .await?,
            || format!("the source pod {} is still there after the handover", source_pod.name),
        )?;
        nothing_left(cluster, &before_source, "after the migration").await
    })
    .await;
    let deleted = cluster.delete_pod(&peer.namespace, &peer.name).await;
    checked?;
    deleted?;
    nothing_left(cluster, &before_target, "after stopping the migrated VM").await?;
    Ok(())
}
