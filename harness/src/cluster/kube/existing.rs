//! The `existing` provider: whatever cluster a kubeconfig points at. It never
//! creates or deletes the cluster, and teardown only removes objects labelled with
//! this run's id.

use std::path::PathBuf;

use kube::config::{KubeConfigOptions, Kubeconfig};
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

fn up(message: String) -> ClusterError {
    ClusterError::Up {
        provider: "existing".into(),
        message,
    }
}

/// The client configuration the flags select.
pub async fn config(opts: &ExistingOptions) -> Result<Config, ClusterError> {
    let kco = KubeConfigOptions {
        context: opts.context.clone(),
        ..KubeConfigOptions::default()
    };
    match &opts.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| up(format!("failed to read kubeconfig {}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &kco)
                .await
                .map_err(|e| up(format!("kubeconfig {}: {e}", path.display())))
        }
        None if opts.context.is_some() => Config::from_kubeconfig(&kco)
            .await
            .map_err(|e| up(format!("kubeconfig: {e}"))),
        None => Config::infer().await.map_err(|e| {
            up(format!(
                "no cluster configured ({e}); pass --kubeconfig PATH [--context NAME]"
            ))
        }),
    }
}

pub async fn connect(
    opts: &ExistingOptions,
    run: &str,
    kopts: KubeOptions,
) -> Result<KubeCluster, ClusterError> {
    let cfg = config(opts).await?;
    let client = Client::try_from(cfg).map_err(|e| up(format!("failed to build a client: {e}")))?;
    KubeCluster::connect(client, "existing", run, kopts).await
}
