//! The pod probes under their historical path; they live in
//! [`crate::contract::probe`] (the parsers in [`crate::probe`]).

pub use crate::contract::probe::{
    ProbeError, add_addr, ping, pod_addresses, pod_iface, pod_link, pod_run,
};
pub use crate::probe::ip::{PodIface, parse_ip_link_oneline};
