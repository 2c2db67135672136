//! Reachability as data: a scenario states its truth table (from, to, protocol,
//! expected), the kit probes every cell — positive ones retried, since bridges learn
//! and ovs-vswitchd picks ports up asynchronously — records every cell for the
//! report, and fails once, listing every wrong cell.
//!
//! No vacuous cell: a probe that did not run (no `ping`, no `nc`, no NET_RAW) is an
//! error, never "not reachable"; and every negative cell needs a positive control
//! from the same source over the same protocol, so that "isolated" cannot mean "this
//! pod reaches nothing at all".

use futures::StreamExt;

use super::{Ctx, Failure, Outcome};
use crate::cluster::{Cluster, PodView};
use crate::contract::probe::{ping, transfer};
use crate::observe::Recorder;
use crate::probe::nc::Transport;

/// How a cell is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Icmp,
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Icmp => "icmp",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One cell of the truth table.
#[derive(Debug, Clone)]
pub struct Cell<'a> {
    pub(crate) from: &'a PodView,
    /// The target as the report names it.
    pub(crate) target: String,
    pub(crate) ip: String,
    /// The pod that listens for TCP/UDP; ICMP needs none (a node's uplink answers).
    pub(crate) listener: Option<&'a PodView>,
    pub(crate) protocol: Protocol,
    pub(crate) expected: bool,
}

impl Cell<'_> {
    fn label(&self) -> String {
        format!(
            "{} -> {} ({}) over {}",
            self.from.name,
            self.target,
            self.ip,
            self.protocol.as_str()
        )
    }
}

/// A scenario's expected reachability.
#[derive(Debug, Clone)]
pub struct Table<'a> {
    cells: Vec<Cell<'a>>,
    /// Attempts for a cell expected to reach.
    tries: usize,
}

/// The first port the TCP/UDP cells use (one port per cell, so that a late message
/// of one cell never counts for another).
const FIRST_PORT: u16 = 7400;
/// How long a listener waits for its message.
const LISTEN_S: u32 = 3;
/// Cells probed at once (each probe is an exec or two into a pod).
const PROBES_AT_ONCE: usize = 8;

impl<'a> Table<'a> {
    /// An empty table whose positive cells get up to `tries` attempts.
    pub fn new(tries: usize) -> Table<'a> {
        Table {
            cells: Vec::new(),
            tries: tries.max(1),
        }
    }

    /// An ICMP cell to an address nobody listens on with `nc` (a node's uplink).
    pub fn icmp(mut self, from: &'a PodView, target: &str, ip: &str, expected: bool) -> Self {
        self.cells.push(Cell {
            from,
            target: target.to_string(),
            ip: ip.to_string(),
            listener: None,
            protocol: Protocol::Icmp,
            expected,
        });
        self
    }

    /// ICMP, TCP and UDP cells from `from` to pod `to` at `ip` (named `target`).
    pub fn pod(
        mut self,
        from: &'a PodView,
        to: &'a PodView,
        target: &str,
        ip: &str,
        expected: bool,
    ) -> Self {
        for protocol in [Protocol::Icmp, Protocol::Tcp, Protocol::Udp] {
            self.cells.push(Cell {
                from,
                target: target.to_string(),
                ip: ip.to_string(),
                listener: Some(to),
                protocol,
                expected,
            });
        }
        self
    }

    pub fn cells(&self) -> &[Cell<'a>] {
        &self.cells
    }

    /// The negative cells without a positive control: same source, same protocol.
    pub fn uncontrolled(&self) -> Vec<String> {
        self.cells
            .iter()
            .filter(|n| !n.expected)
            .filter(|n| {
                !self
                    .cells
                    .iter()
                    .any(|p| p.expected && p.from.name == n.from.name && p.protocol == n.protocol)
            })
            .map(Cell::label)
            .collect()
    }

    /// Probes every cell (positive ones first, retried), records each for the report
    /// and fails once with every wrong cell. A probe that did not run is an error at
    /// once; a table with an uncontrolled negative cell is refused before probing.
    pub async fn check<C: Cluster>(self, ctx: &Ctx, cluster: &C) -> Outcome {
        self.check_into(&ctx.observed, cluster).await
    }

    /// [`Table::check`], recording into `observed`.
    pub async fn check_into<C: Cluster>(self, observed: &Recorder, cluster: &C) -> Outcome {
        let uncontrolled = self.uncontrolled();
        if !uncontrolled.is_empty() {
            return Err(Failure::msg(format!(
                "the scenario's reachability table has negative cells without a positive control from the same source over the same protocol (a pod that reaches nothing would pass them): {}",
                uncontrolled.join("; ")
            )));
        }
        let observed_cells = observed;
        let cells = without_udp_where_nc_cannot(self.cells, observed, cluster).await;
        // Positive cells first, all at once, each retried: once they pass the paths
        // are up, so a negative cell probed after them cannot pass because a bridge
        // had not learnt yet. Then every negative cell at once: each waits out its
        // probe's timeout, and one after the other they made the isolation
        // scenarios wait a timeout per cell.
        let mut seen: Vec<Option<bool>> = vec![None; cells.len()];
        for wave in [true, false] {
            let tries = if wave { self.tries } else { 1 };
            let mut probes = Vec::new();
            for (index, cell) in cells.iter().enumerate() {
                if cell.expected == wave {
                    probes.push(probe_cell(cluster, cell, index, tries));
                }
            }
            let results: Vec<Result<(usize, bool), Failure>> = futures::stream::iter(probes)
                .buffered(PROBES_AT_ONCE)
                .collect()
                .await;
            for result in results {
                let (index, observed) = result?;
                seen[index] = Some(observed);
            }
        }
        let mut wrong = Vec::new();
        for (cell, observed) in cells.iter().zip(seen) {
            let observed = observed.unwrap_or(false);
            observed_cells.probe_over(
                &cell.from.name,
                &format!("{} ({})", cell.target, cell.ip),
                cell.protocol.as_str(),
                cell.expected,
                observed,
            );
            if observed != cell.expected {
                wrong.push(format!(
                    "{}: {}",
                    cell.label(),
                    if cell.expected {
                        "no reply, expected to reach"
                    } else {
                        "reached, expected isolation"
                    }
                ));
            }
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(Failure::msg(format!(
                "{} of {} reachability cells wrong: {}",
                wrong.len(),
                cells.len(),
                wrong.join("; ")
            )))
        }
    }
}

/// The cells to probe: the UDP ones of a source whose `nc` has no `-u` are left out
/// (both polarities, so every remaining negative cell keeps its control) and the
/// report says so. Debian's busybox-static applet, the pod image secnet writes for
/// real clusters, speaks TCP only; ICMP and TCP cells are still judged there.
async fn without_udp_where_nc_cannot<'a, C: Cluster>(
    cells: Vec<Cell<'a>>,
    observed: &Recorder,
    cluster: &C,
) -> Vec<Cell<'a>> {
    // Source pods (namespace, name) asked, and whether their nc speaks UDP.
    let mut speaks: Vec<((&str, &str), bool)> = Vec::new();
    for cell in cells.iter().filter(|c| c.protocol == Protocol::Udp) {
        let key = (cell.from.namespace.as_str(), cell.from.name.as_str());
        if speaks.iter().any(|(k, _)| *k == key) {
            continue;
        }
        let usage = ["sh", "-c", "nc -h 2>&1; nc --help 2>&1; true"];
        let speaks_udp = match cluster
            .exec(&cell.from.namespace, &cell.from.name, &usage)
            .await
        {
            Ok(out) => format!("{}{}", out.stdout, out.stderr).contains("-u"),
            // Let the probe itself say what is wrong with the pod.
            Err(_) => true,
        };
        if !speaks_udp {
            observed.note(&format!(
                "UDP not probed from pod {}: its image's nc has no -u (busybox-static's applet); its ICMP and TCP cells are judged",
                cell.from.name
            ));
        }
        speaks.push((key, speaks_udp));
    }
    let dropped: Vec<(&str, &str)> = speaks
        .into_iter()
        .filter_map(|(k, udp)| (!udp).then_some(k))
        .collect();
    cells
        .iter()
        .filter(|c| {
            c.protocol != Protocol::Udp
                || !dropped.contains(&(c.from.namespace.as_str(), c.from.name.as_str()))
        })
        .cloned()
        .collect()
}

/// Probes `cell` up to `tries` times, until it shows what it is expected to:
/// its index and what the last probe saw.
async fn probe_cell<C: Cluster>(
    cluster: &C,
    cell: &Cell<'_>,
    index: usize,
    tries: usize,
) -> Result<(usize, bool), Failure> {
    let port = FIRST_PORT + index as u16;
    let mut observed = false;
    for _ in 0..tries {
        observed = probe(cluster, cell, port).await?;
        if observed == cell.expected {
            break;
        }
    }
    Ok((index, observed))
}

/// One probe of `cell`: whether the target answered (ICMP) or the message arrived.
async fn probe<C: Cluster>(cluster: &C, cell: &Cell<'_>, port: u16) -> Result<bool, Failure> {
    let transport = match cell.protocol {
        Protocol::Icmp => return Ok(ping(cluster, cell.from, &cell.ip).await?),
        Protocol::Tcp => Transport::Tcp,
        Protocol::Udp => Transport::Udp,
    };
    let to = cell.listener.ok_or_else(|| {
        Failure::msg(format!(
            "{}: a TCP/UDP cell needs a listening pod (the scenario's table is wrong)",
            cell.label()
        ))
    })?;
    Ok(transfer(cluster, cell.from, to, &cell.ip, transport, port, LISTEN_S).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterError, ExecOutput, NodeResources};
    use crate::objects::{Object, Pod};

    /// A cluster whose pods answer every probe command with `answer`.
    struct Pods {
        answer: fn(&[&str]) -> ExecOutput,
    }

    impl Cluster for Pods {
        fn provider(&self) -> &str {
            "test"
        }
        fn nodes(&self) -> Vec<String> {
            vec!["n1".into()]
        }
        async fn apply(&self, _: Vec<Object>) -> Result<(), ClusterError> {
            Ok(())
        }
        async fn create_pod(&self, _: Pod) -> Result<PodView, ClusterError> {
            unreachable!("the table only probes")
        }
        async fn delete_pod(&self, _: &str, _: &str) -> Result<(), ClusterError> {
            Ok(())
        }
        async fn exec(&self, _: &str, _: &str, argv: &[&str]) -> Result<ExecOutput, ClusterError> {
            Ok((self.answer)(argv))
        }
        async fn node_resources(&self, _: &str) -> Result<NodeResources, ClusterError> {
            Ok(NodeResources::default())
        }
        async fn diagnostics(&self) -> String {
            String::new()
        }
        async fn live_pods(&self) -> Result<Vec<PodView>, ClusterError> {
            Ok(Vec::new())
        }
    }

    fn pod(name: &str) -> PodView {
        PodView {
            namespace: "default".into(),
            name: name.into(),
            uid: String::new(),
            node: "n1".into(),
            annotations: Default::default(),
            devices: Default::default(),
        }
    }

    fn out(success: bool, stdout: &str, stderr: &str) -> ExecOutput {
        ExecOutput {
            success,
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    /// What `kubectl exec` gives for a program the image lacks.
    fn no_ping_no_nc(argv: &[&str]) -> ExecOutput {
        out(
            false,
            "",
            &format!(
                "OCI runtime exec failed: exec: \"{}\": executable file not found in $PATH",
                argv[0]
            ),
        )
    }

    /// The isolation table of `ovs/a VLAN 200 pod is isolated from VLAN 100`.
    fn isolation<'a>(x: &'a PodView, y: &'a PodView, a: &'a PodView) -> Table<'a> {
        Table::new(2)
            .pod(x, y, "y", "10.0.0.2", true)
            .pod(x, a, "a", "10.0.0.3", false)
    }

    #[tokio::test]
    async fn a_pod_without_ping_makes_isolation_an_error_not_a_pass() {
        let (x, y, a) = (pod("x"), pod("y"), pod("a"));
        let recorder = Recorder::default();
        let cluster = Pods {
            answer: no_ping_no_nc,
        };
        let e = isolation(&x, &y, &a)
            .check_into(&recorder, &cluster)
            .await
            .unwrap_err();
        assert!(e.message().contains("did not run"), "{}", e.message());
        assert!(
            recorder.take().reachability.iter().all(|p| p.observed),
            "no cell may be recorded as isolated"
        );
    }

    #[tokio::test]
    async fn a_pod_without_net_raw_makes_isolation_an_error() {
        let (x, y, a) = (pod("x"), pod("y"), pod("a"));
        // busybox ping without NET_RAW (and no ping_group_range).
        let cluster = Pods {
            answer: |_| out(false, "", "ping: permission denied (are you root?)\n"),
        };
        let e = isolation(&x, &y, &a)
            .check_into(&Recorder::default(), &cluster)
            .await
            .unwrap_err();
        assert!(e.message().contains("did not run"), "{}", e.message());
    }

    /// A pod whose pings get no reply and whose listeners time out while senders run;
    /// its `nc` prints `nc_usage`.
    fn reaches_nothing(argv: &[&str], nc_usage: &str) -> ExecOutput {
        match argv[0] {
            "ping" => out(false, "1 packets transmitted, 0 received\n", ""),
            _ if argv[2].starts_with("nc -h") => out(true, nc_usage, ""),
            _ if argv[2].contains(" -l ") => out(false, "secnet-exit=124\n", ""),
            _ => out(true, "secnet-exit=1\n", ""),
        }
    }

    #[tokio::test]
    async fn a_pod_that_reaches_nothing_fails_on_its_controls_listing_every_wrong_cell() {
        let (x, y, a) = (pod("x"), pod("y"), pod("a"));
        let cluster = Pods {
            answer: |argv| reaches_nothing(argv, "usage: nc [-l] [-p port]\n\t-u\t\tUDP mode\n"),
        };
        let recorder = Recorder::default();
        let e = isolation(&x, &y, &a)
            .check_into(&recorder, &cluster)
            .await
            .unwrap_err();
        assert!(
            e.message().starts_with("3 of 6 reachability cells wrong"),
            "{}",
            e.message()
        );
        for protocol in ["icmp", "tcp", "udp"] {
            assert!(
                e.message()
                    .contains(&format!("x -> y (10.0.0.2) over {protocol}"))
            );
        }
        let cells = recorder.take().reachability;
        assert_eq!(cells.len(), 6, "every cell is recorded: {cells:?}");
    }

    #[tokio::test]
    async fn udp_cells_of_a_pod_whose_nc_has_no_udp_are_left_out_and_said() {
        let (x, y, a) = (pod("x"), pod("y"), pod("a"));
        let cluster = Pods {
            // busybox-static's applet: no -u in its usage.
            answer: |argv| reaches_nothing(argv, "Usage: nc [-iN] [-wN] [-l] [-p PORT]\n"),
        };
        let recorder = Recorder::default();
        let e = isolation(&x, &y, &a)
            .check_into(&recorder, &cluster)
            .await
            .unwrap_err();
        assert!(
            e.message().starts_with("2 of 4 reachability cells wrong"),
            "{}",
            e.message()
        );
        let seen = recorder.take();
        assert!(
            seen.reachability.iter().all(|c| c.protocol != "udp"),
            "{:?}",
            seen.reachability
        );
        assert!(
            seen.notes
                .iter()
                .any(|n| n.contains("UDP not probed from pod x")),
            "{:?}",
            seen.notes
        );
    }

    #[tokio::test]
    async fn a_negative_cell_without_a_positive_control_is_refused() {
        let x = pod("x");
        let table = Table::new(1).icmp(&x, "a", "10.0.0.3", false);
        assert_eq!(table.uncontrolled(), ["x -> a (10.0.0.3) over icmp"]);
        let cluster = Pods {
            answer: |_| unreachable!("nothing is probed"),
        };
        let e = table
            .check_into(&Recorder::default(), &cluster)
            .await
            .unwrap_err();
        assert!(
            e.message().contains("without a positive control"),
            "{}",
            e.message()
        );
    }
}
