//! Which provider `--cluster` names. The one place a provider is chosen from it is
//! the factory (`conform::provider::for_run`); everything after works through the
//! provider's traits (`scenario::provider::ClusterProvider`, `any::ProviderCluster`)
//! and the abilities its clusters have.

use std::fmt;

/// Where the scenarios run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Provider {
    /// A fresh cluster of Linux network namespaces per scenario, made by secnet.
    #[default]
    Netns,
    /// A kind cluster made (or reused) for the run.
    Kind,
    /// The cluster a kubeconfig points at (never created or deleted by secnet).
    Existing,
    /// A real Kubernetes secnet brings up from release binaries (`--k8s-bin-dir`) on
    /// the netns topology, every node with its own containerd and kubelet.
    Bare,
}

impl fmt::Display for Provider {
    /// The `--cluster` value (`netns`, `kind`, `existing`, `bare`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use clap::ValueEnum as _;
        match self.to_possible_value() {
            Some(v) => f.write_str(v.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_named_by_their_cluster_value() {
        use clap::ValueEnum as _;
        let names: Vec<String> = Provider::value_variants()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(names, ["netns", "kind", "existing", "bare"]);
    }
}
