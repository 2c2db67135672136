//! Probes: what the kernel (and a guest) says about links, addresses and
//! reachability, read with `ip` and `ping`. Each output has exactly one parser, here;
//! scenarios, VMs, benches and the netns cluster all call these.
//!
//! - [`ip`]: parsers of `ip -j link`, `ip -j addr` and `ip -o link` (iproute2 and
//!   busybox), and the accessors of a parsed link
//! - [`ping`]: the ping command line and the verdict on what it printed
//! - [`nc`]: a TCP/UDP message's listener and sender and the verdict on what arrived
//! - [`pod`]: the probes run inside a pod through the `Cluster` contract's exec

pub mod ip;
pub mod nc;
pub mod ping;
pub mod pod;

pub use ip::{OnelineLink, ParseError, PodIface};
pub use pod::ProbeError;

/// The typed errors of the lower layers are carried across tokio tasks and boxed as
/// `dyn Error + Send + Sync`: checked at compile time.
#[cfg(test)]
const _: () = {
    const fn thread_safe<T: Send + Sync + 'static>() {}
    thread_safe::<ParseError>();
    thread_safe::<ProbeError>();
    thread_safe::<ping::PingError>();
    thread_safe::<nc::NcError>();
    thread_safe::<crate::cluster::netns::NetnsError>();
    thread_safe::<crate::cluster::netns::ovs::OvsError>();
    thread_safe::<crate::vm::VmError>();
    thread_safe::<crate::vm::binding::BindingError>();
    thread_safe::<crate::vm::qemu::QemuError>();
    thread_safe::<crate::vm::kubevirt::KubevirtError>();
    thread_safe::<crate::bench::BenchError>();
    thread_safe::<crate::cni::chain::ChainError>();
    thread_safe::<crate::multus::status::ResultProblem>();
    thread_safe::<crate::multus::selection::IfnameProblem>();
    thread_safe::<crate::bins::BinsError>();
    thread_safe::<crate::bins::embedded::UnpackError>();
    thread_safe::<crate::report::ReadError>();
};
