//! Bounded reading of the files a configuration names: the configuration file itself and
//! the PEM certificates, keys and CA bundles it points at.
//!
//! A path in a configuration is operator input, so it may name something that is not a
//! file at all: `/dev/zero` never ends, a FIFO blocks the reader until a writer shows up,
//! a directory or socket cannot be read. Every such path is opened without blocking,
//! checked with `fstat` on the *opened* descriptor (a separate `stat` could race with a
//! rename), refused unless it is a regular file, and read with a size cap that also holds
//! if the file grows while it is read.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest configuration file read. 100,000 pools each with a site take ~22 MB of
/// block-style YAML; far beyond that is a mistake, not a configuration.
pub const CONFIG_CAP: u64 = 64 * 1024 * 1024;
/// The largest PEM file (certificate chain, private key, CA bundle) read. The Mozilla
/// root bundle is ~220 KiB; a chain or key is a few KiB.
pub const PEM_CAP: u64 = 1024 * 1024;

/// Why a file was not read. The message names the path; the caller names the key.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read {path}: it is {kind}, not a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("cannot read {path}: it is larger than the {cap}-byte limit{size}")]
    TooLarge {
        path: String,
        cap: u64,
        /// " (N bytes)" when the size was known before reading, else empty.
        size: String,
    },
}

/// Read `path` whole, if it is a regular file of at most `cap` bytes.
pub fn read_bounded(path: &Path, cap: u64) -> Result<Vec<u8>, FileError> {
    let shown = || path.display().to_string();
    let io = |source| FileError::Io {
        path: shown(),
        source,
    };
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. It has no
    // effect on regular files, the only kind read below.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| describe_unopenable(path, e))?;
    let meta = file.metadata().map_err(io)?;
    if let Some(kind) = not_regular(&meta) {
        return Err(FileError::NotRegular {
            path: shown(),
            kind,
        });
    }
    if meta.len() > cap {
        return Err(FileError::TooLarge {
            path: shown(),
            cap,
            size: format!(" ({} bytes)", meta.len()),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // cap + 1: a file that grew past the cap since fstat is still caught, and never read
    // further than one byte past it.
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(FileError::TooLarge {
            path: shown(),
            cap,
            size: String::new(),
        });
    }
    Ok(bytes)
}

/// [`read_bounded`] for text: the bytes must be UTF-8.
pub fn read_bounded_string(path: &Path, cap: u64) -> Result<String, FileError> {
    let bytes = read_bounded(path, cap)?;
    String::from_utf8(bytes).map_err(|e| FileError::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

/// What a non-regular file is, in words; `None` for a regular file.
fn not_regular(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a file")
    }
}

/// An open error, said better when the path exists but is no file (opening a Unix socket
/// fails with ENXIO, "No such device or address"). The `stat` here only words the
/// message; nothing is read on its say-so.
fn describe_unopenable(path: &Path, source: std::io::Error) -> FileError {
    match std::fs::metadata(path).ok().as_ref().and_then(not_regular) {
        Some(kind) => FileError::NotRegular {
            path: path.display().to_string(),
            kind,
        },
        None => FileError::Io {
            path: path.display().to_string(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_within_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.pem");
        std::fs::write(&f, b"hello").unwrap();
        assert_eq!(read_bounded(&f, 5).unwrap(), b"hello");
        let e = read_bounded(&f, 4).unwrap_err().to_string();
        assert!(e.contains("larger than the 4-byte limit (5 bytes)"), "{e}");
    }

    #[test]
    fn refuses_devices_fifos_directories_and_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let sock = dir.path().join("sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        for (p, kind) in [
            (Path::new("/dev/zero"), "a character device"),
            (fifo.as_path(), "a FIFO"),
            (dir.path(), "a directory"),
            (sock.as_path(), "a socket"),
        ] {
            let e = read_bounded(p, PEM_CAP).unwrap_err().to_string();
            assert!(e.contains(kind), "{}: {e}", p.display());
            assert!(e.contains(&p.display().to_string()), "{e}");
        }
    }

    #[test]
    fn a_missing_file_says_so() {
        let e = read_bounded(Path::new("/nonexistent/x.pem"), PEM_CAP)
            .unwrap_err()
            .to_string();
        assert!(e.contains("No such file"), "{e}");
    }
}
