//! Where a worker listens: `unix:PATH` or `tcp:ADDR`, from `--listen` or the handshake
//! environment (`ROOST_LISTEN`, or `PORT` meaning `tcp:127.0.0.1:PORT`).
//!
//! A Unix socket file left by a dead worker is removed before bind (only if nothing answers
//! on it, so a live worker is never stolen from), and the file is removed again when the
//! [`Listener`] is dropped.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A listen address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let addr = s.strip_prefix("tcp:").unwrap_or(s);
        addr.parse::<SocketAddr>()
            .map(Listen::Tcp)
            .map_err(|e| format!("{s:?} is not unix:PATH or tcp:IP:PORT ({e})"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl Listen {
    /// The handshake: `ROOST_LISTEN` wins; otherwise `PORT` means `tcp:127.0.0.1:PORT`.
    pub fn from_env() -> Result<Option<Listen>, String> {
        Self::from_vars(
            std::env::var("ROOST_LISTEN").ok(),
            std::env::var("PORT").ok(),
        )
    }

    fn from_vars(listen: Option<String>, port: Option<String>) -> Result<Option<Listen>, String> {
        if let Some(l) = listen.filter(|l| !l.is_empty()) {
            return l
                .parse()
                .map(Some)
                .map_err(|e| format!("ROOST_LISTEN={l:?} is not valid: {e}"));
        }
        if let Some(p) = port.filter(|p| !p.is_empty()) {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("PORT={p:?} is not valid: {e}"))?;
            return Ok(Some(Listen::Tcp(SocketAddr::from(([127, 0, 0, 1], port)))));
        }
        Ok(None)
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    Unix(UnixListener, UnixSocketFile),
    Tcp(TcpListener),
}

/// Removes the socket file when the listener goes away.
#[derive(Debug)]
pub struct UnixSocketFile(PathBuf);

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// An accepted connection.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Listener {
    /// Bind `listen`, removing a stale Unix socket file first.
    pub async fn bind(listen: &Listen) -> io::Result<Listener> {
        match listen {
            Listen::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(addr).await?)),
            Listen::Unix(path) => {
                remove_stale_socket(path).await?;
                let l = UnixListener::bind(path)?;
                Ok(Listener::Unix(l, UnixSocketFile(path.clone())))
            }
        }
    }

    /// The address actually bound (the real port for `tcp:…:0`).
    pub fn local(&self) -> io::Result<Listen> {
        match self {
            Listener::Tcp(l) => Ok(Listen::Tcp(l.local_addr()?)),
            Listener::Unix(_, f) => Ok(Listen::Unix(f.0.clone())),
        }
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Small responses must not wait for Nagle.
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
        }
    }
}

async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is in use by a live server", path.display()),
        ));
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_the_env_handshake() {
        assert_eq!(
            "unix:/tmp/a.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            "tcp:127.0.0.1:80".parse::<Listen>().unwrap(),
            Listen::Tcp("127.0.0.1:80".parse().unwrap())
        );
        assert!("unix:".parse::<Listen>().is_err());
        assert!("nonsense".parse::<Listen>().is_err());
        assert_eq!(
            Listen::from_vars(None, Some("8080".into())).unwrap(),
            Some(Listen::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            Listen::from_vars(Some("unix:/x".into()), Some("8080".into())).unwrap(),
            Some(Listen::Unix("/x".into()))
        );
        assert!(Listen::from_vars(None, Some("http".into())).is_err());
        assert_eq!(Listen::from_vars(None, None).unwrap(), None);
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        // A socket file nobody listens on: what a killed worker leaves behind.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let l = Listener::bind(&Listen::Unix(path.clone())).await.unwrap();
        // A second bind must not steal a live socket.
        assert!(Listener::bind(&Listen::Unix(path.clone())).await.is_err());
        drop(l);
        assert!(!path.exists());
    }
}
