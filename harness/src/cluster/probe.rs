//! Probes inside a pod through the `Cluster` contract's exec: run a command and
//! require success, read an interface, add an address. One set for every scenario
//! and binding, on any provider.

use serde_json::Value;

use super::{Cluster, PodView};

/// Runs `argv` in the pod; its stdout, or an error naming the command and its stderr.
pub async fn pod_run<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    argv: &[&str],
) -> Result<String, String> {
    let out = cluster
        .exec(&pod.namespace, &pod.name, argv)
        .await
        .map_err(|e| e.to_string())?;
    if !out.success {
        return Err(format!(
            "{} in pod {}: {}",
            argv.join(" "),
            pod.name,
            out.stderr.trim()
        ));
    }
    Ok(out.stdout)
}

/// `ip -j -d link show <ifname>` in the pod (iproute2: the netns cluster's host tools).
pub async fn pod_link<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    ifname: &str,
) -> Result<Value, String> {
    let out = pod_run(cluster, pod, &["ip", "-j", "-d", "link", "show", ifname]).await?;
    let v: Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    v.get(0)
        .cloned()
        .ok_or_else(|| format!("no {ifname} in pod {}", pod.name))
}

/// `ip -o link show dev <ifname>` in the pod, parsed (busybox has it too).
pub async fn pod_iface<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    ifname: &str,
) -> Result<PodIface, String> {
    let out = pod_run(cluster, pod, &["ip", "-o", "link", "show", "dev", ifname]).await?;
    parse_ip_link_oneline(&out).ok_or_else(|| {
        format!(
            "cannot read `ip -o link` of {ifname} in {}: {out}",
            pod.name
        )
    })
}

/// `ip addr add <cidr> dev <ifname>` in the pod.
pub async fn add_addr<C: Cluster>(
    cluster: &C,
    pod: &PodView,
    cidr: &str,
    ifname: &str,
) -> Result<(), String> {
    pod_run(cluster, pod, &["ip", "addr", "add", cidr, "dev", ifname])
        .await
        .map(|_| ())
}

/// An interface as `ip -o link show dev X` prints it, in iproute2 and in busybox
/// (pod images on real clusters have only the latter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIface {
    pub mac: String,
    pub mtu: u32,
    pub up: bool,
}

pub fn parse_ip_link_oneline(text: &str) -> Option<PodIface> {
    let line = text.lines().find(|l| l.contains("mtu "))?;
    let flags = line.split_once('<')?.1.split_once('>')?.0;
    let mut words = line.split_whitespace();
    let mut mtu = None;
    let mut mac = None;
    while let Some(w) = words.next() {
        match w {
            "mtu" => mtu = words.next().and_then(|m| m.parse().ok()),
            "link/ether" => mac = words.next().map(str::to_string),
            _ => {}
        }
    }
    Some(PodIface {
        mac: mac?,
        mtu: mtu?,
        up: flags.split(',').any(|f| f == "UP"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_link_oneline_reads_iproute2_and_busybox() {
        let iproute2 = "7: net1@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 500\\    link/ether 02:23:45:67:89:01 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n";
        let busybox = "7: net1@if3: <BROADCAST,MULTICAST,M-DOWN> mtu 9000 qdisc noop qlen 500\\    link/ether 0a:58:0a:f4:00:05 brd ff:ff:ff:ff:ff:ff\n";
        assert_eq!(
            parse_ip_link_oneline(iproute2),
            Some(PodIface {
                mac: "02:23:45:67:89:01".into(),
                mtu: 1500,
                up: true
            })
        );
        assert_eq!(
            parse_ip_link_oneline(busybox),
            Some(PodIface {
                mac: "0a:58:0a:f4:00:05".into(),
                mtu: 9000,
                up: false
            })
        );
        assert_eq!(
            parse_ip_link_oneline("Device \"net1\" does not exist."),
            None
        );
    }
}
