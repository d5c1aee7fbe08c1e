//! Ingest requests: protobuf `EventBatch` (gRPC `Ingest`), MQTT payloads (JSON or protobuf,
//! with the platform and room taken from the topic) and `UpsertIdentitiesRequest`, through
//! the server's conversion (`ingest::incoming`, `mqtt::decode`) into a fresh profile store:
//! every event checked against the contract, logged and applied; then every user's
//! features read, and the store reopened from its log with the same users.
//!
//! Input: a mode byte, then
//! - 0: an `EventBatch`;
//! - 1: an MQTT payload on `live/douyin/r1/events`;
//! - 2: an MQTT topic line, then the payload;
//! - 3: an `UpsertIdentitiesRequest` (u16-length chunk), then an `EventBatch`.
#![no_main]

use liveprofile_events::Platform;
use liveprofile_fuzz::{Input, fresh_dir, seeds};
use liveprofile_server::proto::v1;
use liveprofile_store::{IdentityLink, IncomingEvent, ProfileStore};
use prost::Message;

fn batch(bytes: &[u8]) -> Option<Vec<IncomingEvent>> {
    let b = v1::EventBatch::decode(bytes).ok()?;
    Some(b.events.into_iter().map(liveprofile_server::ingest::incoming).collect())
}

fn mqtt(topic: &str, payload: &[u8]) -> Option<Vec<IncomingEvent>> {
    let decoded = liveprofile_server::mqtt::decode(topic, payload).ok()?;
    Some(decoded.into_iter().filter_map(Result::ok).collect())
}

/// The conversion of `ProfileAdmin.UpsertIdentities` (platform parsed, fields checked).
fn links(bytes: &[u8]) -> Option<Vec<IdentityLink>> {
    let r = v1::UpsertIdentitiesRequest::decode(bytes).ok()?;
    let mut out = Vec::new();
    for l in r.links {
        let platform = Platform::parse(&l.platform).ok()?;
        let link = IdentityLink { platform, platform_user_id: l.platform_user_id, user_id: l.user_id };
        link.validate().ok()?;
        out.push(link);
    }
    Some(out)
}

libfuzzer_sys::fuzz_target!(init: liveprofile_fuzz::start("proto_ingest", seeds::proto_ingest), |data: &[u8]| {
    let mut input = Input::new(data);
    let mode = input.byte() % 4;
    let mut identities = None;
    let events = match mode {
        0 => batch(input.rest()),
        1 => mqtt("live/douyin/r1/events", input.rest()),
        2 => {
            let rest = input.rest();
            let cut = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let topic = String::from_utf8_lossy(&rest[..cut]).into_owned();
            mqtt(&topic, rest.get(cut + 1..).unwrap_or_default())
        }
        _ => {
            identities = links(input.chunk());
            batch(input.rest())
        }
    };
    let Some(events) = events else { return };
    if events.is_empty() && identities.is_none() {
        return;
    }
    // Each event's own checks, as the store runs them.
    let table = liveprofile_store::IdentityTable::default();
    let now = liveprofile_store::now_ms();
    for e in &events {
        let _ = e.check_sizes();
        let _ = e.to_event(&table, now);
    }
    let dir = fresh_dir("ingest");
    let options = seeds::store_options(&dir, 2);
    let users = {
        let store = ProfileStore::open(options.clone()).expect("a new store opens");
        if let Some(links) = identities {
            let _ = store.upsert_identities(links);
        }
        let Ok(report) = store.ingest(&events) else { return };
        assert_eq!(report.received as usize, events.len(), "every event is answered");
        for e in &events {
            let user = if e.user_id.is_empty() { store.unified_user(Platform::parse(&e.platform).ok(), &e.platform_user_id) } else { e.user_id.clone() };
            let _ = store.user_features(&user, None);
            let _ = store.user_features(&user, Some(e.ts_ms));
            let _ = store.conversion_features(&user, &e.room_id);
        }
        store.stats()
    };
    // What was acknowledged is recovered from the log.
    let reopened = ProfileStore::open(options).expect("a store reopens from its own log");
    let again = reopened.stats();
    assert_eq!((again.users, again.hosts, again.identities, again.last_seq), (users.users, users.hosts, users.identities, users.last_seq), "the reopened store differs");
});
