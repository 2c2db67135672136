//! The pod probes under their historical path; they live in [`crate::probe`].

pub use crate::probe::ip::{PodIface, parse_ip_link_oneline};
pub use crate::probe::pod::{ProbeError, add_addr, ping, pod_addresses, pod_iface, pod_run};

/// [`crate::probe::pod::pod_link`] with its error as text: a scenario returns this
/// result as its own text-error result (scenario/faults.rs). Goes when the
/// scenarios call `crate::probe` with typed errors.
pub async fn pod_link<C: super::Cluster>(
    cluster: &C,
    pod: &super::PodView,
    ifname: &str,
) -> Result<serde_json::Value, String> {
    Ok(crate::probe::pod::pod_link(cluster, pod, ifname).await?)
}
