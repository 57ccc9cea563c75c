//! `compression:` (under a pool or an application): compressing responses at the front
//! by the client's `Accept-Encoding`, as the validated [`CompressionSettings`]. Its raw
//! keys are in `raw/compression.rs`, their checks in `validate/compression.rs`.

/// A content coding roost can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Zstd,
    Br,
    Gzip,
}

impl Algorithm {
    pub const ALL: [Algorithm; 3] = [Algorithm::Zstd, Algorithm::Br, Algorithm::Gzip];

    /// The content-coding token (`Content-Encoding`, `Accept-Encoding`, config).
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Br => "br",
            Algorithm::Gzip => "gzip",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// How hard to compress; each algorithm maps it to its own scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Fastest,
    /// Chosen for on-the-fly compression: gzip 6 and zstd 3 (their libraries'
    /// defaults), brotli 4 (its default 11 costs ~30× the CPU for a few % of size).
    Default,
    Best,
}

/// One pool's or application's compression settings (present only when enabled).
#[derive(Debug, Clone, PartialEq)]
pub struct CompressionSettings {
    /// In the server's order of preference (ties between equal client q-values).
    pub algorithms: Vec<Algorithm>,
    /// Media types, lower-case: exact (`application/json`) or a whole top-level type
    /// (`text/*`).
    pub types: Vec<String>,
    /// A response announcing fewer bytes (`Content-Length`) is sent as it is.
    pub min_bytes: u64,
    pub level: Level,
}

/// Types compressed when `types` is not given: text formats that shrink well. Images,
/// video, archives and fonts (woff2) are already compressed.
pub const DEFAULT_TYPES: [&str; 10] = [
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/manifest+json",
    "application/wasm",
    "image/svg+xml",
];
