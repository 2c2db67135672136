//! Probes inside a pod through the `Cluster` contract's exec: run a command and
//! require success, read an interface or its addresses, add an address, ping. One
//! set for every scenario and binding, on any provider. The parsers of what they
//! print are `crate::probe`'s.

use super::{Cluster, ClusterError, PodView};
use crate::probe::ip::{self, IfAddr, LinkFacts, OnelineAddr, ParseError, PodIface};
use crate::probe::nc::{self, NcError, Transport};
use crate::probe::ping::{self, PingError};

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Exec(#[from] ClusterError),
    #[error("{command} in pod {pod}: {stderr}")]
    Failed {
        command: String,
        pod: String,
        stderr: String,
    },
    #[error("{command} in pod {pod}: {source}")]
    Parse {
        command: String,
        pod: String,
        #[source]
        source: ParseError,
    },
    #[error("no {ifname} in pod {pod}")]
    NoLink { ifname: String, pod: String },
    #[error("cannot read `ip -o link` of {ifname} in {pod}: {output}")]
    Oneline {
        ifname: String,
        pod: String,
        output: String,
    },
    #[error("in pod {pod}: {source}")]
    Ping {
        pod: String,
        #[source]
        source: PingError,
    },
    #[error("from pod {from} to pod {to}: {source}")]
    Nc {
        from: String,
        to: String,
        #[source]
        source: NcError,
    },
}

/// Runs `argv` in the pod; its stdout, or an error naming the command and its stderr.
pub async fn pod_run<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    argv: &[&str],
) -> Result<String, ProbeError> {
    let out = cluster.exec(&pod.namespace, &pod.name, argv).await?;
    if !out.success {
        return Err(ProbeError::Failed {
            command: argv.join(" "),
            pod: pod.name.clone(),
            stderr: out.stderr.trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// Runs an `ip -j …` command in the pod and parses its array with `parse`.
async fn pod_json<C: Cluster, T>(
    cluster: &C,
    pod: &PodView,
    argv: &[&str],
    parse: fn(&str) -> Result<Vec<T>, ParseError>,
) -> Result<Vec<T>, ProbeError> {
    let out = pod_run(cluster, pod, argv).await?;
    parse(&out).map_err(|source| ProbeError::Parse {
        command: argv.join(" "),
        pod: pod.name.clone(),
        source,
    })
}

/// `ip -j -d link show <ifname>` in the pod (iproute2: the netns cluster's host tools).
pub async fn pod_link<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    ifname: &str,
) -> Result<LinkFacts, ProbeError> {
    let argv = ["ip", "-j", "-d", "link", "show", ifname];
    pod_json(cluster, pod, &argv, ip::links)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ProbeError::NoLink {
            ifname: ifname.to_string(),
            pod: pod.name.clone(),
        })
}

/// IPv4 addresses on an interface of the pod (`ip -j -4 addr show <ifname>`).
pub async fn pod_addresses<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    ifname: &str,
) -> Result<Vec<IfAddr>, ProbeError> {
    let argv = ["ip", "-j", "-4", "addr", "show", ifname];
    Ok(ip::if_addrs(
        &pod_json(cluster, pod, &argv, ip::addrs).await?,
    ))
}

/// The addresses on an interface of the pod, from `ip -o addr show dev <ifname>`
/// (busybox has it too).
pub async fn pod_oneline_addrs<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    ifname: &str,
) -> Result<Vec<OnelineAddr>, ProbeError> {
    let out = pod_run(cluster, pod, &["ip", "-o", "addr", "show", "dev", ifname]).await?;
    Ok(ip::oneline_addrs(&out))
}

/// `ip -o link show dev <ifname>` in the pod, parsed (busybox has it too).
pub async fn pod_iface<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    ifname: &str,
) -> Result<PodIface, ProbeError> {
    let out = pod_run(cluster, pod, &["ip", "-o", "link", "show", "dev", ifname]).await?;
    ip::parse_ip_link_oneline(&out).ok_or_else(|| ProbeError::Oneline {
        ifname: ifname.to_string(),
        pod: pod.name.clone(),
        output: out,
    })
}

/// `ip addr add <cidr> dev <ifname>` in the pod.
pub async fn add_addr<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    cidr: &str,
    ifname: &str,
) -> Result<(), ProbeError> {
    pod_run(cluster, pod, &["ip", "addr", "add", cidr, "dev", ifname])
        .await
        .map(|_| ())
}

/// One ping from the pod (1 s wait): whether `target` replied.
pub async fn ping<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    target: &str,
) -> Result<bool, ProbeError> {
    let argv = ping::argv(target, 1);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = cluster.exec(&pod.namespace, &pod.name, &argv).await?;
    let printed = format!("{}{}", out.stdout, out.stderr);
    ping::replied(out.success, target, &printed).map_err(|source| ProbeError::Ping {
        pod: pod.name.clone(),
        source,
    })
}

/// Waits until `pod`'s kernel lists a socket on `port` ready for the message, at
/// most `wait_s` seconds; whether it did (a listener that never binds is then
/// named by its own output).
async fn listener_bound<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    transport: Transport,
    port: u16,
    wait_s: u32,
) -> bool {
    let argv = nc::sockets_argv(transport);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let timeout = std::time::Duration::from_secs(wait_s.into());
    let seen = crate::lab::wait::poll_until(timeout, crate::lab::wait::Pace::QUICK, || async {
        let tables = cluster
            .exec(&pod.namespace, &pod.name, &argv)
            .await
            .map(|out| out.stdout)
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(if nc::bound(transport, port, &tables) {
            crate::lab::wait::Seen::Ready(())
        } else {
            crate::lab::wait::Seen::NotYet(())
        })
    })
    .await;
    matches!(seen, Ok(Ok(())))
}

/// One TCP or UDP message from `from` to `target:port`, with `to` listening: whether
/// it arrived. The listener starts first and waits `wait_s` seconds; the sender
/// follows once the listener is bound (or that did not show within `wait_s`).
pub async fn transfer<C: Cluster>(
    cluster: &C,
    from: &PodView,
    to: &PodView,
    target: &str,
    transport: Transport,
    port: u16,
    wait_s: u32,
) -> Result<bool, ProbeError> {
    let listen = nc::listener_argv_for(transport, target, port, wait_s);
    let listen: Vec<&str> = listen.iter().map(String::as_str).collect();
    let send = nc::sender_argv(transport, target, port, wait_s.saturating_sub(1).max(1));
    let send: Vec<&str> = send.iter().map(String::as_str).collect();
    let (listened, sent) = tokio::join!(cluster.exec(&to.namespace, &to.name, &listen), async {
        // Not a fixed pause: under load a real cluster's exec starts the listener
        // late, and a message sent before it binds is lost (TCP: refused).
        listener_bound(cluster, to, transport, port, wait_s).await;
        cluster.exec(&from.namespace, &from.name, &send).await
    });
    let (listened, sent) = (listened?, sent?);
    let err = |source| ProbeError::Nc {
        from: from.name.clone(),
        to: to.name.clone(),
        source,
    };
    nc::sent(
        transport,
        target,
        port,
        &format!("{}{}", sent.stdout, sent.stderr),
    )
    .map_err(err)?;
    nc::arrived(
        transport,
        port,
        &format!("{}{}", listened.stdout, listened.stderr),
    )
    .map_err(err)
}
