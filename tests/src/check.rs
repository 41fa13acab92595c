//! Assertions shared by the scenario tests: compare what a producer script sent with what a
//! consumer script received.

use std::collections::{BTreeMap, BTreeSet};

use crate::script::{Event, ScriptOutput};

/// `sent` events keyed by body (bodies are unique per scenario by construction).
pub fn sent_by_body(out: &ScriptOutput) -> BTreeMap<String, Event> {
    let mut m = BTreeMap::new();
    for e in out.of_kind("sent") {
        let body = e.str("body").unwrap_or_default().to_string();
        assert!(
            m.insert(body.clone(), e.clone()).is_none(),
            "producer reported body {body:?} twice"
        );
    }
    m
}

/// Deliveries (`received` events) grouped by body, in arrival order.
pub fn received_by_body(out: &ScriptOutput) -> BTreeMap<String, Vec<Event>> {
    let mut m: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for e in out.of_kind("received") {
        let body = e.str("body").unwrap_or_default().to_string();
        m.entry(body).or_default().push(e.clone());
    }
    m
}

/// Every sent message was delivered with the same body, tags, keys and user properties, and
/// nothing else was delivered. Returns the number of duplicate deliveries (allowed by
/// at-least-once semantics, reported by the caller).
pub fn assert_same_messages(
    sent: &BTreeMap<String, Event>,
    received: &BTreeMap<String, Vec<Event>>,
    context: &str,
) -> usize {
    let sent_bodies: BTreeSet<&String> = sent.keys().collect();
    let got_bodies: BTreeSet<&String> = received.keys().collect();
    let missing: Vec<_> = sent_bodies.difference(&got_bodies).take(10).collect();
    let extra: Vec<_> = got_bodies.difference(&sent_bodies).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: {} sent, {} distinct received; missing (first 10) {missing:?}; unexpected \
         (first 10, truncated to 80 chars) {:?}",
        sent.len(),
        received.len(),
        extra
            .iter()
            .map(|b| b.chars().take(80).collect::<String>())
            .collect::<Vec<_>>()
    );
    let mut duplicates = 0;
    for (body, s) in sent {
        let deliveries = &received[body];
        duplicates += deliveries.len() - 1;
        for r in deliveries {
            assert_eq!(r.str("tags"), s.str("tags"), "{context}: tags of {body:?}");
            assert_eq!(r.str("keys"), s.str("keys"), "{context}: keys of {body:?}");
            for p in ["test_prop", "mode"] {
                assert_eq!(
                    r.prop(p),
                    s.prop(p),
                    "{context}: property {p} of {body:?}: received {r:?}"
                );
            }
            // A client-assigned UNIQ_KEY (C++ sets one, ali-ons does not) survives the trip.
            if let Some(uniq) = s.prop("UNIQ_KEY") {
                assert_eq!(
                    r.prop("UNIQ_KEY"),
                    Some(uniq),
                    "{context}: UNIQ_KEY of {body:?}"
                );
            }
        }
    }
    duplicates
}

/// Bodies of the deliveries the consumer acknowledged (result "ok").
pub fn acked_bodies(out: &ScriptOutput) -> BTreeSet<String> {
    out.of_kind("received")
        .into_iter()
        .filter(|e| e.str("result") == Some("ok"))
        .filter_map(|e| e.str("body").map(str::to_string))
        .collect()
}

/// The consumer script delivered exactly the `sent` messages (see [`assert_same_messages`])
/// and exited cleanly. On a mismatch the panic shows both the difference and the script's
/// output, so a timed-out consumer reports what was missing.
pub fn assert_delivered(
    sent: &BTreeMap<String, Event>,
    out: &ScriptOutput,
    context: &str,
) -> usize {
    let received = received_by_body(out);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_same_messages(sent, &received, context)
    }));
    match result {
        Ok(dups) => {
            out.assert_success();
            dups
        }
        Err(e) => {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{msg}\n{}", out.describe());
        }
    }
}

/// Bodies acknowledged by any of several consumers.
pub fn acked_union(outs: &[&[Event]]) -> BTreeSet<String> {
    outs.iter()
        .flat_map(|evs| evs.iter())
        .filter(|e| e.kind() == "received" && e.str("result") == Some("ok"))
        .filter_map(|e| e.str("body").map(str::to_string))
        .collect()
}
