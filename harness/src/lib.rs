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
