//! Streaming: a large download and upload pass through without being buffered. Alone in
//! its own test binary so the process's memory is not shared with other tests.

mod support;

use bytes::Bytes;
use http::Request;
use http_body_util::BodyExt;
use support::*;

#[tokio::test]
async fn large_bodies_stream_both_ways_without_buffering() {
    let be = Backend::start("a").await;
    let f = TestFront::start(&one_pool_yaml(&be.addr.to_string())).await;
    const SIZE: usize = 256 << 20;
    let before = rss_kib();
    // Download.
    let mut tx = h1(f.addr).await;
    let resp = tx
        .send_request(
            Request::get(format!("/big?n={SIZE}"))
                .header("host", "x")
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut got = 0usize;
    while let Some(fr) = body.frame().await {
        if let Ok(d) = fr.unwrap().into_data() {
            got += d.len();
        }
    }
    assert_eq!(got, SIZE);
    // Upload through /echo, streamed from a generator.
    let chunk = Bytes::from(vec![b'y'; 64 * 1024]);
    let stream = futures_util::stream::iter((0..SIZE / chunk.len()).map(move |_| {
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(hyper::body::Frame::data(chunk.clone()))
    }));
    let req = Request::post("/echo")
        .header("host", "x")
        .body(BodyExt::boxed(http_body_util::StreamBody::new(stream)))
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let mut body = resp.into_body();
    let mut echoed = 0usize;
    while let Some(fr) = body.frame().await {
        if let Ok(d) = fr.unwrap().into_data() {
            echoed += d.len();
        }
    }
    assert_eq!(echoed, SIZE);
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    // 512 MiB went through client, front and backend in this process.
    assert!(grown_mib < 64, "memory grew by {grown_mib} MiB");
}
