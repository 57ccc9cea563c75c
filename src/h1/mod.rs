//! roost's HTTP/1.1 codec, one for both sides of the proxy: the request heads a client
//! sends (`request`) and the one roost forwards to a member (`forward`), the response
//! heads a member sends (`response`) and the one roost writes to a client (`reply`), the
//! chunked coding (`chunked`) and the body-reading loop (`body`) both sides share, and
//! the header-field rules both parsers apply (`fields`).
//!
//! No I/O lives here beyond [`body::Source`]: the connection loops are
//! `front::h1` (clients) and `upstream::client` (members). The codec's `unsafe` blocks
//! are all in this module, each with its `SAFETY:` argument.

pub mod body;
pub mod chunked;
pub mod fields;
pub mod forward;
pub mod reply;
pub mod request;
pub mod response;

pub use chunked::{Chunked, Step};
pub use fields::ParseScratch;
pub use forward::{encode_request_head, Forwarded, ReqFraming, X_FORWARDED_FOR};
pub use response::{parse_response, RespFraming, ResponseHead, MAX_HEAD};
