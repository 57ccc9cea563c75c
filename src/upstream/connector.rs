//! Connectors: dial a member's endpoint whatever URI the pooled client asks for.

use rustls_pki_types::ServerName;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

/// Where a member listens.
#[derive(Clone)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    Tls {
        host: String,
        port: u16,
        server_name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
    },
}

impl Endpoint {
    pub fn is_tls(&self) -> bool {
        matches!(self, Endpoint::Tls { .. })
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Tls { host, port, .. } => write!(f, "https://{host}:{port}"),
        }
    }
}

/// Dial an endpoint (the caller applies the connect timeout).
pub(crate) async fn dial(endpoint: Endpoint) -> io::Result<Stream> {
    let stream = match endpoint {
        Endpoint::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
        Endpoint::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), port)).await?;
            // Small proxied responses must not wait for Nagle's delayed-ACK dance.
            s.set_nodelay(true)?;
            Stream::Tcp(s)
        }
        Endpoint::Tls {
            host,
            port,
            server_name,
            config,
        } => {
            let s = TcpStream::connect((host.as_str(), port)).await?;
            s.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, s)
                .await?;
            Stream::Tls(Box::new(tls))
        }
    };
    Ok(stream)
}

/// A connection to a member: TCP, a Unix socket (local workers) or TLS over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// What an idle connection's socket holds, asked of the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// Nothing to read and still open: reusable.
    Quiet,
    /// Bytes the member sent with no request outstanding.
    Unread,
    /// The member closed it (or it failed).
    Closed,
}

impl Stream {
    /// Has the reactor seen the socket readable (or closed) since it was last read to
    /// empty? Costs no system call; a `false` may be stale by one reactor turn, so it
    /// only decides whether [`Stream::peek`] is worth asking.
    pub(crate) fn read_ready_hint(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let ready = match self {
            Stream::Tcp(s) => s.poll_read_ready(&mut cx),
            Stream::Unix(s) => s.poll_read_ready(&mut cx),
            Stream::Tls(s) => s.get_ref().0.poll_read_ready(&mut cx),
        };
        !matches!(ready, Poll::Pending)
    }

    /// Ask the kernel, now, whether anything arrived on the socket (`recv` with
    /// `MSG_PEEK | MSG_DONTWAIT`). tokio's readiness is not enough here: it learns of
    /// new bytes only when the reactor next polls epoll, which under load comes after
    /// the connection has already been taken for the next request. For TLS any byte on
    /// the wire counts: a record after a complete response is not a response to the
    /// next request either.
    pub(crate) fn peek(&self) -> Peek {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.get_ref().0.as_raw_fd(),
        };
        let mut byte = 0u8;
        // SAFETY: `fd` is an open socket owned by `self` for the duration of the call,
        // and the buffer is one valid, writable byte.
        let n = unsafe {
            libc::recv(
                fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            1.. => Peek::Unread,
            0 => Peek::Closed,
            _ => match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => Peek::Quiet,
                _ => Peek::Closed,
            },
        }
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Unix($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl tokio::io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
