//! `pools.<name>.ordering`: requests with the same key run one at a time, in arrival
//! order, on the member the key hashes to (issue 17, "ordered per key, for stateful
//! services"). The model type; the raw key is in `raw/ordering.rs`, its check in
//! `validate/ordering.rs`.

/// A pool's ordering settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Ordering {
    /// Where a request's ordering key comes from.
    pub key: OrderingKey,
}

/// The part of a request that names its key. A request without it is not ordered.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderingKey {
    /// `header:NAME`: the first value of the header (an empty value is no key).
    Header(http::HeaderName),
    /// `cookie:NAME`: the cookie's value.
    Cookie(String),
    /// `clientAddress`: the client's IP address (IPv4-mapped IPv6 as IPv4).
    ClientAddress,
}

/// As `ordering.key` spells it (`header:X-Key`, `cookie:SID`, `clientAddress`).
impl std::fmt::Display for OrderingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OrderingKey::Header(name) => write!(f, "header:{name}"),
            OrderingKey::Cookie(name) => write!(f, "cookie:{name}"),
            OrderingKey::ClientAddress => f.write_str("clientAddress"),
        }
    }
}
