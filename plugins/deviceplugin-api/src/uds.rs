//! gRPC over Unix domain sockets, as the kubelet and device plugins talk.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;
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

/// The most connections a device plugin takes at once: the kubelet needs one or two,
/// the rest are closed at once so that they cannot pile up memory.
pub const MAX_CONNECTIONS: usize = 64;
/// The most concurrent streams (calls) on one connection: the kubelet keeps one
/// ListAndWatch open and makes short unary calls.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 16;
/// The most header bytes a request may carry.
pub const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// A gRPC server with bounds on what one peer may open: concurrent streams per
/// connection, header size, and streams reset before they are accepted (with
/// [`incoming`]'s connection cap, a peer cannot grow the server's memory without end).
pub fn server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .http2_max_pending_accept_reset_streams(Some(MAX_STREAMS_PER_CONNECTION as usize))
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
}

/// The stream of accepted connections tonic's `serve_with_incoming*` takes. Each is
/// wrapped in [`AuthorityFix`], so the server answers every real client whatever
/// `:authority` it sends over the socket (see [`crate::authority`]). No cap on
/// connections (a kubelet's registration socket takes one per resource).
pub fn incoming(
    listener: UnixListener,
) -> impl Stream<Item = std::io::Result<Limited<AuthorityFix<UnixStream>>>> + Send + 'static {
    incoming_limited(listener, Semaphore::MAX_PERMITS)
}

/// [`incoming`] serving at most `max` connections at once (a device plugin:
/// [`MAX_CONNECTIONS`]); one more is closed as soon as accepted.
pub fn incoming_limited(
    listener: UnixListener,
    max: usize,
) -> impl Stream<Item = std::io::Result<Limited<AuthorityFix<UnixStream>>>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS)));
    UnixListenerStream::new(listener).filter_map(move |conn| match conn {
        Ok(conn) => match slots.clone().try_acquire_owned() {
            Ok(slot) => Some(Ok(Limited {
                io: AuthorityFix::new(conn),
                _slot: slot,
            })),
            // Dropped here: the peer sees the connection closed.
            Err(_) => None,
        },
        Err(e) => Some(Err(e)),
    })
}

/// A connection holding one of the server's connection slots until it is dropped.
#[derive(Debug)]
pub struct Limited<IO> {
    io: IO,
    _slot: OwnedSemaphorePermit,
}

impl<IO> Limited<IO> {
    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Limited<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Limited<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
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
