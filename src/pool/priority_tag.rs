//! What the queue needs to know of a request before it waits (issue 17 items 2 and 3):
//! its priority class (by path prefix or header) and its fairness key (application,
//! header or client address) with the key's weight. Built once per pool from its
//! `priorities` and `fairness`; a pool with neither has no tagger, and its requests
//! carry no tag (one flag read on the request path).

use super::counters::{Histogram, HistogramSnapshot};
use crate::config::model::{application_key, FairBy, Fairness, PriorityClass, QueuePolicy};
use http::HeaderMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A fairness key longer than this is cut (a header value may be kilobytes).
const MAX_KEY_BYTES: usize = 128;

/// A request's place in the queue's order.
#[derive(Clone)]
pub struct QueueTag {
    pub(super) class: u8,
    pub(super) flow: Option<Arc<str>>,
    pub(super) weight: u32,
    /// The class's queue-wait histogram (`None` without `priorities`).
    pub(super) wait: Option<Arc<Histogram>>,
}

impl std::fmt::Debug for QueueTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueTag")
            .field("class", &self.class)
            .field("flow", &self.flow)
            .field("weight", &self.weight)
            .finish()
    }
}

impl QueueTag {
    /// The fairness key (`None` without `fairness`).
    pub fn flow(&self) -> Option<&str> {
        self.flow.as_deref()
    }
}

/// The facts about a request the tagger may use.
pub struct RequestFacts<'a> {
    /// The site and application path the router resolved.
    pub site: &'a str,
    pub app_path: &'a str,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub peer: IpAddr,
}

struct Class {
    rule: PriorityClass,
    wait: Arc<Histogram>,
}

pub(super) struct Tagger {
    classes: Vec<Class>,
    default_class: u8,
    fairness: Option<Fairness>,
}

impl Tagger {
    /// The tagger for `policy`, keeping the wait histograms of classes `old` had under
    /// the same names (a reload does not reset them); `None` when there is nothing to tag.
    pub fn of(policy: &QueuePolicy, old: Option<&Tagger>) -> Option<Tagger> {
        if policy.priorities.is_empty() && policy.fairness.is_none() {
            return None;
        }
        let kept = |name: &str| {
            old.and_then(|o| o.classes.iter().find(|c| c.rule.name == name))
                .map(|c| c.wait.clone())
        };
        let classes = policy
            .priorities
            .iter()
            .map(|rule| Class {
                wait: kept(&rule.name).unwrap_or_default(),
                rule: rule.clone(),
            })
            .collect();
        Some(Tagger {
            classes,
            default_class: policy
                .priorities
                .iter()
                .position(|c| c.is_default())
                .unwrap_or(0) as u8,
            fairness: policy.fairness.clone(),
        })
    }

    pub fn tag(&self, r: &RequestFacts<'_>) -> QueueTag {
        let class = self
            .classes
            .iter()
            .position(|c| !c.rule.is_default() && matches(&c.rule, r))
            .map_or(self.default_class, |i| i as u8);
        let (flow, weight) = match &self.fairness {
            Some(f) => {
                let key = flow_key(&f.by, r);
                let w = f.weight_of(&key);
                (Some(Arc::from(key)), w)
            }
            None => (None, 1),
        };
        QueueTag {
            class,
            flow,
            weight,
            wait: self.classes.get(class as usize).map(|c| c.wait.clone()),
        }
    }

    /// Each class's name and queue-wait histogram, highest first.
    pub fn class_waits(&self) -> Vec<(String, HistogramSnapshot)> {
        self.classes
            .iter()
            .map(|c| (c.rule.name.clone(), c.wait.snapshot()))
            .collect()
    }

    pub fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.rule.name.clone()).collect()
    }
}

/// Whether a request matches a class's rules (every rule it has).
fn matches(rule: &PriorityClass, r: &RequestFacts<'_>) -> bool {
    let path_ok = rule
        .path
        .as_deref()
        .is_none_or(|prefix| prefix_matches(prefix, r.path));
    let header_ok = rule.header.as_ref().is_none_or(|(name, want)| {
        let mut values = r.headers.get_all(name).iter();
        match want {
            Some(v) => values.any(|got| got == v),
            None => values.next().is_some(),
        }
    });
    path_ok && header_ok
}

/// `/api` matches `/api` and `/api/x`, never `/apix` (as routing does).
fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

/// The request's fairness key, cut to [`MAX_KEY_BYTES`].
fn flow_key(by: &FairBy, r: &RequestFacts<'_>) -> String {
    let mut key = match by {
        FairBy::Application => application_key(r.site, r.app_path),
        FairBy::ClientAddress => r.peer.to_string(),
        FairBy::Header(name) => r
            .headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default(),
    };
    if key.len() > MAX_KEY_BYTES {
        let mut end = MAX_KEY_BYTES;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::QueuePolicy;

    fn facts<'a>(path: &'a str, headers: &'a HeaderMap) -> RequestFacts<'a> {
        RequestFacts {
            site: "shop",
            app_path: "/api",
            path,
            headers,
            peer: "10.0.0.7".parse().unwrap(),
        }
    }

    #[test]
    fn classes_match_in_order_and_the_rest_take_the_default() {
        let bulk = http::HeaderName::from_static("x-bulk");
        let policy = QueuePolicy {
            priorities: vec![
                PriorityClass {
                    name: "critical".into(),
                    path: Some("/api/pay".into()),
                    header: None,
                },
                PriorityClass {
                    name: "normal".into(),
                    path: None,
                    header: None,
                },
                PriorityClass {
                    name: "bulk".into(),
                    path: None,
                    header: Some((bulk, Some(http::HeaderValue::from_static("1")))),
                },
            ],
            fairness: Some(Fairness {
                by: FairBy::Application,
                weights: [("shop/api".to_string(), 3)].into(),
                default_weight: 1,
                max_keys: 8,
            }),
            ..QueuePolicy::default()
        };
        let t = Tagger::of(&policy, None).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(t.tag(&facts("/api/pay/1", &h)).class, 0);
        assert_eq!(t.tag(&facts("/api/payx", &h)).class, 1);
        h.insert("x-bulk", "1".parse().unwrap());
        assert_eq!(t.tag(&facts("/other", &h)).class, 2);
        // The first matching class wins: a bulk payment is critical.
        assert_eq!(t.tag(&facts("/api/pay", &h)).class, 0);
        h.insert("x-bulk", "0".parse().unwrap());
        let tag = t.tag(&facts("/x", &h));
        assert_eq!(
            (tag.class, tag.flow(), tag.weight),
            (1, Some("shop/api"), 3)
        );
    }

    #[test]
    fn header_keys_are_cut_and_missing_ones_share_the_empty_key() {
        let policy = QueuePolicy {
            fairness: Some(Fairness {
                by: FairBy::Header(http::HeaderName::from_static("x-tenant")),
                weights: Default::default(),
                default_weight: 2,
                max_keys: 8,
            }),
            ..QueuePolicy::default()
        };
        let t = Tagger::of(&policy, None).unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(t.tag(&facts("/", &h)).flow(), Some(""));
        let long = "é".repeat(100);
        h.insert(
            "x-tenant",
            http::HeaderValue::from_bytes(long.as_bytes()).unwrap(),
        );
        let tag = t.tag(&facts("/", &h));
        assert!(tag.flow().unwrap().len() <= MAX_KEY_BYTES);
        assert_eq!(tag.weight, 2);
        assert!(tag.wait.is_none(), "no classes, no per-class histogram");
    }
}
