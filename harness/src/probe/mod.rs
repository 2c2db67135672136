//! Probes: what the kernel (and a guest) says about links, addresses and
//! reachability, read with `ip` and `ping`. Each output has exactly one parser, here;
//! scenarios, VMs, benches and the netns cluster all call these. The probes run
//! inside a pod through the `Cluster` contract's exec are `crate::contract::probe`:
//! this module runs nothing, so `lab` can use its parsers.
//!
//! - [`ip`]: parsers of `ip -j link` and `ip -j addr` (typed: [`LinkFacts`],
//!   [`AddrFacts`]) and of `ip -o link` (iproute2 and busybox)
//! - [`bridge`]: the parser of `bridge -j fdb` (what a bridge has learnt)
//! - [`ping`]: the ping command line and the verdict on what it printed
//! - [`nc`]: a TCP/UDP message's listener and sender and the verdict on what arrived

pub mod bridge;
pub mod ip;
pub mod nc;
pub mod ping;

pub use ip::{AddrFacts, IfAddr, LinkFacts, OnelineLink, ParseError, PodIface};
