//! secnet: an end-to-end test and conformance harness for Kubernetes secondary
//! networking. See DESIGN.md in the repository for the architecture.

pub mod bins;
pub mod cni;
pub mod kubelet;
pub mod lab;
pub mod prereq;
