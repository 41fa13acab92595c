//! Long polling: a held pull is answered when a message arrives, or with PULL_NOT_FOUND when
//! its suspend time ends.

mod send_support;

use std::time::{Duration, Instant};

use remoting::codes::response;
use send_support::*;

#[tokio::test]
async fn held_pull_wakes_on_arrival() {
    let b = TestBroker::start(false).await;
    // Create the topic (queue 0 gets one message, queue 1 stays empty).
    let resp = b.send(&send_request("LongPoll", 0, "", b"first")).await;
    assert_eq!(resp.code, response::SUCCESS);

    let ctx = b.ctx.clone();
    let started = Instant::now();
    let held = tokio::spawn(async move {
        let req = pull_request("g", "LongPoll", 1, 0, "*", Some(20_000));
        let resp = broker::processor::pull::process_pull(&ctx, &req).await;
        (resp, started.elapsed())
    });
    // Wait until the pull is parked (observable through the hold counter) before sending.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.ctx.pull_hold.held_count() == 0 {
        assert!(Instant::now() < deadline, "pull was never held");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let resp = b.send(&send_request("LongPoll", 1, "", b"wake")).await;
    assert_eq!(resp.code, response::SUCCESS);
    let (resp, elapsed) = tokio::time::timeout(Duration::from_secs(15), held)
        .await
        .expect("held pull answered before its suspend time")
        .expect("task");
    assert_eq!(resp.code, response::SUCCESS, "{resp:?}");
    let msgs = decode(&resp.body_contiguous());
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].body.as_ref(), b"wake");
    assert!(elapsed < Duration::from_secs(15), "took {elapsed:?}");
    assert_eq!(b.ctx.pull_hold.held_count(), 0);
    b.stop().await;
}

#[tokio::test]
async fn held_pull_times_out_with_not_found() {
    let b = TestBroker::start(false).await;
    let resp = b.send(&send_request("LongPollTimeout", 0, "", b"x")).await;
    assert_eq!(resp.code, response::SUCCESS);
    let started = Instant::now();
    let resp = b
        .pull(&pull_request("g", "LongPollTimeout", 1, 0, "*", Some(300)))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(resp.code, response::PULL_NOT_FOUND, "{resp:?}");
    assert!(
        elapsed >= Duration::from_millis(300),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "answered after {elapsed:?}"
    );
    assert_eq!(ext_i64(&resp, "nextBeginOffset"), 0);

    // Without the SUSPEND bit the answer is immediate.
    let started = Instant::now();
    let resp = b
        .pull(&pull_request("g", "LongPollTimeout", 1, 0, "*", None))
        .await;
    assert_eq!(resp.code, response::PULL_NOT_FOUND);
    assert!(started.elapsed() < Duration::from_secs(5));
    b.stop().await;
}

#[tokio::test]
async fn shutdown_releases_held_pulls() {
    let b = TestBroker::start(false).await;
    let resp = b.send(&send_request("LongPollStop", 0, "", b"x")).await;
    assert_eq!(resp.code, response::SUCCESS);
    let ctx = b.ctx.clone();
    let held = tokio::spawn(async move {
        let req = pull_request("g", "LongPollStop", 1, 0, "*", Some(20_000));
        broker::processor::pull::process_pull(&ctx, &req).await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.ctx.pull_hold.held_count() == 0 {
        assert!(Instant::now() < deadline, "pull was never held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b.ctx.shutdown.trigger();
    let resp = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("released by shutdown")
        .expect("task");
    assert_eq!(resp.code, response::PULL_NOT_FOUND);
    b.stop().await;
}
