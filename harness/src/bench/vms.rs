//! Guests booted in parallel: each QEMU guest (the harness's VM image, `vm::qemu`)
//! in its own network namespace with a tap NIC; timed from QEMU's start to the
//! agent's ready line and to the first ping reply from the guest to the tap's host
//! address. Every guest runs on one vCPU; with TCG on 2 host cores the boots share
//! the cores once more than two run.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::stats::Stats;
use super::{BenchError, Row};
use crate::lab::{Lab, ScratchDir};
use crate::probe::{ip, ping};
use crate::vm::image;
use crate::vm::qemu::{self, Backend, LaunchSpec, Nic, Qemu};

/// Medians over the guests of one parallel boot.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct BootPoint {
    pub(crate) guests: usize,
    pub(crate) ready_ms: f64,
    pub(crate) ping_ms: f64,
    pub(crate) ready_max_ms: f64,
}

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn run(quick: bool) -> Result<(Vec<Row>, Vec<BootPoint>, &'static str), BenchError> {
    let cache = std::env::var_os("SECNET_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| image::DEFAULT_CACHE.into());
    let img = image::ensure(&cache)?;
    let accel = qemu::accel(&img);
    let counts: &[usize] = if quick { &[1, 2] } else { &[1, 2, 4] };
    let (mut rows, mut points) = (Vec::new(), Vec::new());
    for &n in counts {
        let mut lab = Lab::new();
        // mkdtemp (0700, unguessable), removed on drop.
        let work =
            ScratchDir::new(&format!("{}-bench-vms", lab.run_id)).map_err(BenchError::Scratch)?;
        let measured = boot(&mut lab, &img, work.path(), n).await;
        lab.teardown();
        drop(work);
        let (ready, ping) = measured?;
        let (r, p) = (Stats::of(&ready), Stats::of(&ping));
        points.push(BootPoint {
            guests: n,
            ready_ms: r.median_ms,
            ping_ms: p.median_ms,
            ready_max_ms: ready
                .iter()
                .max()
                .map(|d| d.as_secs_f64() * 1e3)
                .unwrap_or(0.0),
        });
        for (what, stats) in [("agent ready", r), ("first ping", p)] {
            rows.push(Row {
                name: format!("{n} guest(s) booted in parallel ({accel}): QEMU start -> {what}"),
                operation: "vm boot".into(),
                stats,
                ratio_to_reference: None,
                reference: None,
            });
        }
    }
    // How much slower each guest boots with more of them, against one alone.
    if let Some(first) = points.first().map(|p| p.ready_ms) {
        for r in rows.iter_mut().filter(|r| r.name.contains("agent ready")) {
            r.ratio_to_reference = Some(r.stats.median_ms / first);
            r.reference = Some("1 guest".into());
        }
    }
    Ok((rows, points, accel))
}

/// Boots `n` guests at once; per guest the time to agent ready and to first ping.
async fn boot(
    lab: &mut Lab,
    img: &image::GuestImage,
    work: &std::path::Path,
    n: usize,
) -> Result<(Vec<Duration>, Vec<Duration>), BenchError> {
    let mut guests = Vec::new();
    for i in 0..n {
        let ns = lab.netns(&format!("vm{i}"))?;
        for args in [
            &["tuntap", "add", "dev", "tap0", "mode", "tap"][..],
            &["addr", "add", "10.77.0.1/24", "dev", "tap0"],
            &["link", "set", "tap0", "up"],
        ] {
            lab.ip(&ns, args)?;
        }
        let mac = format!("02:5e:c0:00:00:{:02x}", i + 1);
        let (q, agent) = Qemu::spawn(LaunchSpec {
            name: format!("bench-vm{i}"),
            image: img.clone(),
            netns: Some(ns.path()),
            nics: vec![Nic {
                backend: Backend::TapName("tap0".into()),
                mac: mac.clone(),
            }],
            console_log: work.join(format!("vm{i}.log")),
            memory_mb: 128,
            cmdline: qemu::CMDLINE.into(),
            qmp: None,
            incoming: None,
        })?;
        guests.push((q, agent, mac));
    }
    let results = futures::future::join_all(guests.iter_mut().map(|(q, agent, mac)| async move {
        let started: Instant = q.started;
        agent
            .wait_ready(BOOT_TIMEOUT)
            .await
            .map_err(|source| BenchError::Boot {
                guest: q.name.clone(),
                source,
                console: q.console(),
            })?;
        let ready = started.elapsed();
        let t = Duration::from_secs(30);
        let agent_err = |source| BenchError::Agent {
            guest: q.name.clone(),
            source,
        };
        let links = agent.exec("ip -o link", t).await.map_err(agent_err)?;
        let dev = ip::ether_links(&links.output)
            .into_iter()
            .find(|(_, m)| m.eq_ignore_ascii_case(mac))
            .map(|(d, _)| d)
            .ok_or_else(|| BenchError::NoNic {
                guest: q.name.clone(),
                mac: mac.clone(),
            })?;
        let up = agent
            .exec(
                &format!("ip link set dev {dev} up && ip addr add 10.77.0.2/24 dev {dev}"),
                t,
            )
            .await
            .map_err(agent_err)?;
        if !up.success() {
            return Err(BenchError::Configure {
                guest: q.name.clone(),
                dev,
                output: up.output,
            });
        }
        let deadline = Instant::now() + t;
        let target = "10.77.0.1";
        loop {
            let r = agent
                .exec(&ping::command(target, 1), t)
                .await
                .map_err(agent_err)?;
            if r.success() {
                return Ok((ready, started.elapsed()));
            }
            if Instant::now() > deadline {
                return Err(BenchError::NoReply {
                    guest: q.name.clone(),
                    target: target.into(),
                });
            }
        }
    }))
    .await;
    let (mut ready, mut ping) = (Vec::new(), Vec::new());
    for r in results {
        let (a, b) = r?;
        ready.push(a);
        ping.push(b);
    }
    for (q, _, _) in guests.iter_mut() {
        q.kill();
    }
    Ok((ready, ping))
}
