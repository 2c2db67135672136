//! gRPC over Unix domain sockets, as the kubelet and device plugins talk.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};

use crate::authority::AuthorityFix;

#[derive(Debug, thiserror::Error)]
pub enum UdsError {
    #[error("failed to bind socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to connect to socket {path}: {source}")]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("failed to connect to socket {path}: no answer within {timeout:?}")]
    ConnectTimeout { path: PathBuf, timeout: Duration },
}

/// Binds a listening socket at `path`, replacing a stale socket file left there
/// (a socket file outlives the process that bound it). The socket is the kubelet's
/// and the plugins' (root) only: mode 0600 whatever the umask.
pub fn bind(path: &Path) -> Result<UnixListener, UdsError> {
    let bind_err = |source| UdsError::Bind {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}

/// The stream of accepted connections tonic's `serve_with_incoming*` takes. Each is
/// wrapped in [`AuthorityFix`], so the server answers every real client whatever
/// `:authority` it sends over the socket (see [`crate::authority`]).
pub fn incoming(
    listener: UnixListener,
) -> impl Stream<Item = std::io::Result<AuthorityFix<UnixStream>>> + Send + 'static {
    UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityFix::new))
}

/// Connects a gRPC channel to the socket at `path`, giving up after `timeout`.
pub async fn connect(path: &Path, timeout: Duration) -> Result<Channel, UdsError> {
    let endpoint = Endpoint::from_shared(format!("unix:{}", path.display()))
        .map_err(|source| UdsError::Connect {
            path: path.to_path_buf(),
            source,
        })?
        .connect_timeout(timeout);
    match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(source)) => Err(UdsError::Connect {
            path: path.to_path_buf(),
            source,
        }),
        Err(_) => Err(UdsError::ConnectTimeout {
            path: path.to_path_buf(),
            timeout,
        }),
    }
}
