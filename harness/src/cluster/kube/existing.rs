//! The `existing` provider: whatever cluster a kubeconfig points at. It never
//! creates or deletes the cluster, and teardown only removes objects labelled with
//! this run's id.

use std::path::PathBuf;

use kube::config::{InferConfigError, KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

use super::{KubeCluster, KubeOptions};
use crate::cluster::ClusterError;

#[derive(Debug, Clone, Default)]
pub struct ExistingOptions {
    /// `--kubeconfig`; default: `$KUBECONFIG`, `~/.kube/config`, in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`; default: the kubeconfig's current context.
    pub context: Option<String>,
}

/// Why the cluster a kubeconfig points at cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExistingError {
    #[error("failed to read kubeconfig {}: {source}", path.display())]
    ReadKubeconfig {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        source: KubeconfigError,
    },
    #[error("kubeconfig: {0}")]
    Context(#[source] KubeconfigError),
    #[error("no cluster configured ({0}); pass --kubeconfig PATH [--context NAME]")]
    NotConfigured(#[source] InferConfigError),
    #[error("failed to build a client: {0}")]
    Client(#[source] kube::Error),
    #[error("failed to reach the API server: {0}")]
    Unreachable(#[source] kube::Error),
    #[error(transparent)]
    Connect(#[from] ClusterError),
}

/// The client configuration the flags select.
pub async fn config(opts: &ExistingOptions) -> Result<Config, ExistingError> {
    let kco = KubeConfigOptions {
        context: opts.context.clone(),
        ..KubeConfigOptions::default()
    };
    match &opts.kubeconfig {
        Some(path) => {
            let kc =
                Kubeconfig::read_from(path).map_err(|source| ExistingError::ReadKubeconfig {
                    path: path.clone(),
                    source,
                })?;
            Config::from_custom_kubeconfig(kc, &kco)
                .await
                .map_err(|source| ExistingError::Kubeconfig {
                    path: path.clone(),
                    source,
                })
        }
        None if opts.context.is_some() => Config::from_kubeconfig(&kco)
            .await
            .map_err(ExistingError::Context),
        None => Config::infer().await.map_err(ExistingError::NotConfigured),
    }
}

pub async fn connect(
    opts: &ExistingOptions,
    run: &str,
    kopts: KubeOptions,
) -> Result<KubeCluster, ExistingError> {
    let cfg = config(opts).await?;
    let client = Client::try_from(cfg).map_err(ExistingError::Client)?;
    Ok(KubeCluster::connect(client, "existing", run, kopts).await?)
}
