//! Unit tests of the RFC rules, each named after its section.

use super::*;
use std::time::UNIX_EPOCH;

fn settings() -> CacheSettings {
    crate::config::cache::tests_support::settings()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn exchange<'a>(status: u16, h: &'a HeaderMap, auth: bool) -> Exchange<'a> {
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    Exchange {
        method: &Method::GET,
        request_has_auth: auth,
        status: StatusCode::from_u16(status).unwrap(),
        headers: h,
        request_time: t,
        response_time: t,
    }
}

#[test]
fn s3_no_store_private_and_no_lifetime_are_not_stored() {
    let s = settings();
    let h = headers(&[("cache-control", "no-store, max-age=60")]);
    assert_eq!(
        storable(&exchange(200, &h, false), &s),
        Err(NotStored::NoStore)
    );
    let h = headers(&[("cache-control", "private, max-age=60")]);
    assert_eq!(
        storable(&exchange(200, &h, false), &s),
        Err(NotStored::Private)
    );
    let h = headers(&[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")]);
    assert_eq!(
        storable(&exchange(200, &h, false), &s),
        Err(NotStored::NoExplicitLifetime),
        "no heuristic freshness unless configured"
    );
    let h = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        storable(&exchange(500, &h, false), &s),
        Err(NotStored::Status)
    );
    assert!(storable(&exchange(200, &h, false), &s).is_ok());
}

#[test]
fn s3_5_authorization_needs_public_s_maxage_or_must_revalidate() {
    let s = settings();
    let h = headers(&[("cache-control", "max-age=60")]);
    assert_eq!(
        storable(&exchange(200, &h, true), &s),
        Err(NotStored::Authorization)
    );
    for cc in [
        "public, max-age=60",
        "s-maxage=60",
        "max-age=60, must-revalidate",
    ] {
        let h = headers(&[("cache-control", cc)]);
        assert!(storable(&exchange(200, &h, true), &s).is_ok(), "{cc}");
    }
}

#[test]
fn set_cookie_needs_public_or_the_setting() {
    let mut s = settings();
    let h = headers(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]);
    assert_eq!(
        storable(&exchange(200, &h, false), &s),
        Err(NotStored::SetCookie)
    );
    s.allow_set_cookie = true;
    assert!(storable(&exchange(200, &h, false), &s).is_ok());
}

#[test]
fn s4_2_1_s_maxage_beats_max_age_beats_expires() {
    let s = settings();
    let h = headers(&[
        ("cache-control", "max-age=10, s-maxage=20"),
        ("expires", "Thu, 01 Jan 2099 00:00:00 GMT"),
    ]);
    let m = storable(&exchange(200, &h, false), &s).unwrap();
    assert_eq!(m.lifetime, Duration::from_secs(20));
    assert!(m.no_stale, "s-maxage implies proxy-revalidate");
    let h = headers(&[
        ("date", "Tue, 14 Nov 2023 22:13:20 GMT"),
        ("expires", "Tue, 14 Nov 2023 22:14:20 GMT"),
    ]);
    let m = storable(&exchange(200, &h, false), &s).unwrap();
    assert_eq!(m.lifetime, Duration::from_secs(60));
    let h = headers(&[("expires", "0")]);
    let m = storable(&exchange(200, &h, false), &s).unwrap();
    assert_eq!(
        m.lifetime,
        Duration::ZERO,
        "an invalid Expires is already expired"
    );
}

#[test]
fn s4_2_3_age_takes_the_larger_of_apparent_and_corrected() {
    let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let h = headers(&[("age", "30"), ("date", "Tue, 14 Nov 2023 22:13:10 GMT")]);
    // Date is 10 s before the response arrived; Age says 30, the request took 2.
    assert_eq!(initial_age(&h, t - Duration::from_secs(2), t), 32);
    let h = headers(&[("date", "Tue, 14 Nov 2023 22:12:20 GMT")]);
    assert_eq!(initial_age(&h, t, t), 60);
}

#[test]
fn s4_1_vary_matches_normalised_values_and_absence() {
    let resp = headers(&[("vary", "Accept-Language, accept")]);
    let req = headers(&[("accept-language", "en, fr")]);
    let key = secondary_key(&resp, &req);
    assert!(vary_matches(
        &key,
        &headers(&[("accept-language", "en,fr")])
    ));
    assert!(!vary_matches(&key, &headers(&[("accept-language", "de")])));
    assert!(!vary_matches(
        &key,
        &headers(&[("accept-language", "en,fr"), ("accept", "x")])
    ));
    let s = settings();
    let h = headers(&[("cache-control", "max-age=60"), ("vary", "*")]);
    assert_eq!(
        storable(&exchange(200, &h, false), &s),
        Err(NotStored::VaryStar)
    );
}

#[test]
fn s3_2_a_304_replaces_fields_but_not_content_length() {
    let stored = headers(&[("content-length", "5"), ("etag", "\"a\""), ("x-v", "1")]);
    let nm = headers(&[
        ("content-length", "0"),
        ("x-v", "2"),
        ("cache-control", "max-age=9"),
    ]);
    let m = merge_304(&stored, &nm);
    assert_eq!(m["content-length"], "5");
    assert_eq!(m["x-v"], "2");
    assert_eq!(m["cache-control"], "max-age=9");
    assert_eq!(m["etag"], "\"a\"");
}

#[test]
fn s4_2_4_stale_is_never_served_with_must_revalidate() {
    let s = settings();
    let h = headers(&[("cache-control", "max-age=1, stale-if-error=60")]);
    let m = storable(&exchange(200, &h, false), &s).unwrap();
    assert!(stale_allowed(&m, Duration::from_secs(5), m.stale_if_error));
    let h = headers(&[(
        "cache-control",
        "max-age=1, must-revalidate, stale-if-error=60",
    )]);
    let m = storable(&exchange(200, &h, false), &s).unwrap();
    assert!(!stale_allowed(&m, Duration::from_secs(5), m.stale_if_error));
}

#[test]
fn duplicate_and_invalid_max_age() {
    let d = Directives::parse(&headers(&[("cache-control", "max-age=5, max-age=50")]));
    assert_eq!(d.max_age, Some(5));
    let d = Directives::parse(&headers(&[("cache-control", "max-age=abc")]));
    assert!(d.invalid_age);
}

#[test]
fn weak_etag_comparison() {
    let tag = HeaderValue::from_static("W/\"x\"");
    assert!(etag_matches(
        &HeaderValue::from_static("\"y\", \"x\""),
        &tag
    ));
    assert!(etag_matches(&HeaderValue::from_static("*"), &tag));
    assert!(!etag_matches(&HeaderValue::from_static("\"y\""), &tag));
}
