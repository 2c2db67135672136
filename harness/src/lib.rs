//! secnet: an end-to-end test and conformance harness for Kubernetes secondary
//! networking. See ARCHITECTURE.md at the repository root for the
//! layers, the data flow and where to add a scenario, provider or plugin.

pub mod bench;
pub mod bins;
pub mod clean;
pub mod cluster;
pub mod cni;
pub mod compare;
pub mod conform;
pub mod contract;
pub mod doctor;
pub mod kubelet;
pub mod lab;
pub mod multus;
pub mod objects;
pub mod observe;
pub mod prereq;
pub mod probe;
pub mod report;
pub mod scenario;
pub mod term;
pub mod vm;

/// The typed errors of every layer are carried across tokio tasks and boxed as
/// `dyn Error + Send + Sync`: checked at compile time.
#[cfg(test)]
const _: () = {
    const fn thread_safe<T: Send + Sync + 'static>() {}
    thread_safe::<crate::probe::ParseError>();
    thread_safe::<crate::contract::probe::ProbeError>();
    thread_safe::<crate::probe::ping::PingError>();
    thread_safe::<crate::probe::nc::NcError>();
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
