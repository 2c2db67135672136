//! The factory: the one place a `--cluster` value becomes a provider. Adding a
//! provider is its module (its `ClusterProvider` and the clusters it makes, with
//! their abilities) and one arm here.

use super::Options;
use crate::cluster::provider::Provider;
use crate::scenario::provider::ClusterProvider;

/// The provider `opts.cluster` names, set up with the run's options (nothing is
/// brought up yet: see `ClusterProvider::start`).
pub fn for_run(opts: &Options) -> Box<dyn ClusterProvider> {
    match opts.cluster {
        Provider::Netns => Box::new(super::netns::NetnsProvider::new(opts)),
        Provider::Kind | Provider::Existing => Box::new(super::kube::KubeProvider::new(opts)),
        Provider::Bare => Box::new(super::bare::BareProvider::new(opts)),
    }
}
