//! `compression_bytes_total{algorithm,direction}` and `compression_responses_total
//! {algorithm}`: process-wide (like the upstream counters), so they survive reloads.

use crate::config::compression::Algorithm;
use crate::metrics_text::{labels as l, Family, Value};
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Counters {
    pub responses: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Counters = Counters {
    responses: AtomicU64::new(0),
    bytes_in: AtomicU64::new(0),
    bytes_out: AtomicU64::new(0),
};

/// By [`Algorithm::index`].
pub static COUNTERS: [Counters; 3] = [ZERO; 3];

pub fn encode_metrics(encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let mut bytes = Family::new(
        "compression_bytes",
        "Bytes through the front's compression by algorithm: in (as the member or the cache gave them) and out (compressed, to clients).",
        MetricType::Counter,
    );
    let mut responses = Family::new(
        "compression_responses",
        "Responses the front compressed, by algorithm.",
        MetricType::Counter,
    );
    for a in Algorithm::ALL {
        let c = &COUNTERS[a.index()];
        let n = |x: &AtomicU64| Value::Counter(x.load(Ordering::Relaxed));
        let alg = a.token();
        bytes.push(
            l(&[("algorithm", alg), ("direction", "in")]),
            n(&c.bytes_in),
        );
        bytes.push(
            l(&[("algorithm", alg), ("direction", "out")]),
            n(&c.bytes_out),
        );
        responses.push(l(&[("algorithm", alg)]), n(&c.responses));
    }
    bytes.encode(encoder)?;
    responses.encode(encoder)
}
