//! What the two Prometheus endpoints (the front's `/metrics` in [`crate::admin::metrics`]
//! and the worker's `/.roost/metrics` in [`crate::worker::metrics`]) share: a metric
//! [`Family`] of labelled rows written through prometheus-client's [`DescriptorEncoder`],
//! with label values escaped.

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabel, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
    LabelSetEncoder, LabelValueEncoder,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt::Write;

/// The content type of the exposition (OpenMetrics text, which Prometheus reads; the
/// plain 0.0.4 format would not know the `_total`-less counter family names).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encode `registry` to text (empty if the encoder fails, which a `String` sink never
/// makes it do).
pub(crate) fn render(registry: &Registry, capacity: usize) -> String {
    let mut out = String::with_capacity(capacity);
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// A row's labels, in order; values are escaped when encoded.
pub(crate) type Labels = Vec<(&'static str, String)>;

/// Labels from borrowed values.
pub(crate) fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

/// One sample (or histogram) of a family.
pub(crate) enum Value<'a> {
    Gauge(i64),
    GaugeF(f64),
    Counter(u64),
    /// `counts` is per bucket (not cumulative): one per upper bound in `bounds`, then
    /// one for +Inf.
    Histogram {
        bounds: &'static [f64],
        counts: &'a [u64],
        sum_seconds: f64,
        count: u64,
    },
}

/// One metric family: name (without the registry's prefix, and without `_total` for
/// counters: the encoder appends it), help, type, then its labelled samples.
pub(crate) struct Family<'a> {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    rows: Vec<(Labels, Value<'a>)>,
}

impl<'a> Family<'a> {
    pub(crate) fn new(name: &'static str, help: &'static str, kind: MetricType) -> Self {
        Family {
            name,
            help,
            kind,
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, labels: Labels, v: Value<'a>) {
        self.rows.push((labels, v));
    }

    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(self.name, self.help, None, self.kind)?;
        for (labels, v) in &self.rows {
            let labels = Escaped(labels);
            let mut fam = m.encode_family(&labels)?;
            match v {
                Value::Gauge(x) => ConstGauge::new(*x).encode(fam)?,
                Value::GaugeF(x) => ConstGauge::new(*x).encode(fam)?,
                Value::Counter(x) => ConstCounter::new(*x).encode(fam)?,
                Value::Histogram {
                    bounds,
                    counts,
                    sum_seconds,
                    count,
                } => {
                    // prometheus-client accumulates the counts itself; `f64::MAX` stands
                    // for +Inf.
                    let buckets: Vec<(f64, u64)> = counts
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (bounds.get(i).copied().unwrap_or(f64::MAX), *n))
                        .collect();
                    fam.encode_histogram::<()>(*sum_seconds, *count, &buckets, None)?
                }
            }
        }
        Ok(())
    }
}

/// A row's labels with their values escaped as the text formats require (backslash,
/// quote, newline): prometheus-client 0.22 writes label values verbatim (client_rust
/// issue #151), and pool, server and app names come from configuration or the
/// environment, which nothing restricts to safe characters.
struct Escaped<'a>(&'a Labels);

impl EncodeLabelSet for Escaped<'_> {
    fn encode(&self, mut encoder: LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (k, v) in self.0 {
            (*k, EscapedValue(v)).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

struct EscapedValue<'a>(&'a str);

impl EncodeLabelValue for EscapedValue<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::collector::Collector;

    /// A farm server label the way an operator might write it.
    #[derive(Debug)]
    struct OddServer;

    impl Collector for OddServer {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let mut f = Family::new("farm_server_healthy", "Healthy.", MetricType::Gauge);
            f.push(
                labels(&[("pool", "web"), ("server", "a\"b\\c\nd")]),
                Value::Gauge(1),
            );
            f.encode(&mut encoder)
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut r = Registry::with_prefix("roost");
        r.register_collector(Box::new(OddServer));
        let text = render(&r, 0);
        assert!(
            text.contains(r#"roost_farm_server_healthy{pool="web",server="a\"b\\c\nd"} 1"#),
            "{text}"
        );
    }
}
