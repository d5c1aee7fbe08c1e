//! MQTT ingest: the server subscribes with QoS 1 to `live/{platform}/{room_id}/events`
//! (the topic filter is configurable) and takes in each message's events.
//!
//! Payloads are JSON (one event object, or an array of them, with the field names of
//! [`IncomingEvent`]; `platform` and `room_id` default to the topic's) or a protobuf
//! `liveprofile.v1.EventBatch` (any payload that does not start with `{` or `[`).
//!
//! A message is acknowledged (PUBACK) only after its events are durable in the profile
//! store, and the session is persistent, so a message is redelivered after a crash until
//! it is taken in; redelivered events are duplicates by `event_id` and are not applied
//! twice. Messages waiting in the client are taken in together, one log write for all.
//! A message received on an earlier connection is never acknowledged on a later one
//! (its packet id may by then name another message): the broker delivers it again. When
//! the store cannot take a batch in, the batch is retried until it can; nothing is
//! acknowledged meanwhile.

use crate::config::MqttConfig;
use crate::ingest::ingest_batch;
use crate::proto::v1;
use crate::state::AppState;
use liveprofile_store::IncomingEvent;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most messages taken in by one log write.
const MAX_MESSAGES_PER_WRITE: usize = 1024;

/// The running subscription.
#[derive(Debug)]
pub struct MqttIngest {
    client: AsyncClient,
    tasks: Vec<JoinHandle<()>>,
}

impl MqttIngest {
    /// Connects (in the background, retrying) and subscribes.
    pub fn start(state: Arc<AppState>, config: &MqttConfig) -> MqttIngest {
        let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
        options.set_manual_acks(true);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(16 << 20, 16 << 20);
        let (client, mut eventloop) = AsyncClient::new(options, MAX_MESSAGES_PER_WRITE);
        // Unbounded so that the event loop never waits on the worker (the worker's
        // acknowledgements go through the event loop); the broker's in-flight window for
        // QoS 1 (unacknowledged messages) bounds what can be waiting here.
        let (tx, rx) = mpsc::unbounded_channel::<(u64, Publish)>();
        let connection = Arc::new(AtomicU64::new(0));
        let topic = config.topic.clone();
        let broker = format!("{}:{}", config.host, config.port);
        let poller = {
            let client = client.clone();
            let connection = connection.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                            connection.fetch_add(1, Ordering::SeqCst);
                            tracing::info!(%broker, session_present = ack.session_present, "MQTT connected");
                            if !ack.session_present
                                && let Err(e) = client.subscribe(topic.clone(), QoS::AtLeastOnce).await
                            {
                                tracing::error!(error = %e, "MQTT subscribe could not be queued");
                            }
                        }
                        Ok(Event::Incoming(Packet::SubAck(ack))) => {
                            tracing::info!(topic = %topic, codes = ?ack.return_codes, "MQTT subscribed");
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            if tx.send((connection.load(Ordering::SeqCst), p)).is_err() {
                                return;
                            }
                        }
                        Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(%broker, error = %e, "MQTT connection lost; reconnecting");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    }
                }
            })
        };
        let worker = tokio::spawn(take_in(state, client.clone(), rx, connection));
        MqttIngest { client, tasks: vec![poller, worker] }
    }

    /// Disconnects and stops the tasks.
    pub async fn stop(self) {
        let _ = self.client.disconnect().await;
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
}

/// Takes in messages in batches and acknowledges each once its events are durable.
async fn take_in(
    state: Arc<AppState>,
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<(u64, Publish)>,
    connection: Arc<AtomicU64>,
) {
    let mut messages: Vec<(u64, Publish)> = Vec::with_capacity(MAX_MESSAGES_PER_WRITE);
    while let Some(first) = rx.recv().await {
        messages.clear();
        messages.push(first);
        while messages.len() < MAX_MESSAGES_PER_WRITE {
            match rx.try_recv() {
                Ok(p) => messages.push(p),
                Err(_) => break,
            }
        }
        let mut events = Vec::new();
        let mut refused = 0u64;
        for (_, m) in &messages {
            match decode(&m.topic, &m.payload) {
                Ok(decoded) => {
                    for d in decoded {
                        match d {
                            Ok(e) => events.push(e),
                            Err(reason) => {
                                refused += 1;
                                tracing::warn!(topic = %m.topic, %reason, "MQTT event refused");
                            }
                        }
                    }
                }
                Err(reason) => {
                    refused += 1;
                    tracing::warn!(topic = %m.topic, %reason, "MQTT message refused");
                }
            }
        }
        if refused > 0 {
            state.metrics.ingest_events.with_label_values(&["mqtt", "rejected"]).inc_by(refused);
        }
        let events: Arc<[IncomingEvent]> = events.into();
        while !events.is_empty() {
            match ingest_batch(&state, "mqtt", events.clone()).await {
                Ok(report) => {
                    for e in &report.errors {
                        tracing::warn!(event_id = %e.event_id, late = e.late, reason = %e.reason, "MQTT event refused");
                    }
                    break;
                }
                Err(status) => {
                    // Nothing is acknowledged until the batch is in; acknowledging later
                    // messages first would break the order of acknowledgements.
                    tracing::error!(%status, messages = messages.len(), "MQTT events not taken in; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        let current = connection.load(Ordering::SeqCst);
        for (received_on, m) in &messages {
            if *received_on != current {
                continue; // the broker delivers it again on this connection
            }
            if let Err(e) = client.ack(m).await {
                tracing::warn!(error = %e, "MQTT acknowledgement could not be queued");
            }
        }
    }
}

/// `live/{platform}/{room_id}/events` -> (platform, room).
fn topic_parts(topic: &str) -> Option<(&str, &str)> {
    let mut parts = topic.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("live"), Some(platform), Some(room), Some("events"), None) => Some((platform, room)),
        _ => None,
    }
}

/// The events of one message; the outer error refuses the whole message.
pub fn decode(topic: &str, payload: &[u8]) -> Result<Vec<Result<IncomingEvent, String>>, String> {
    let first = payload.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let events: Vec<IncomingEvent> = match first {
        None => return Err("empty payload".to_owned()),
        Some(b'{') => vec![serde_json::from_slice(payload).map_err(|e| format!("JSON event: {e}"))?],
        Some(b'[') => serde_json::from_slice(payload).map_err(|e| format!("JSON array of events: {e}"))?,
        Some(_) => {
            let batch: v1::EventBatch =
                prost::Message::decode(payload).map_err(|e| format!("neither JSON nor a protobuf EventBatch: {e}"))?;
            batch.events.into_iter().map(crate::ingest::incoming).collect()
        }
    };
    let from_topic = topic_parts(topic);
    Ok(events
        .into_iter()
        .map(|mut e| {
            if let Some((platform, room)) = from_topic {
                if e.platform.is_empty() {
                    e.platform = platform.to_owned();
                } else if e.platform != platform {
                    return Err(format!("event {:?} says platform {:?} on topic {topic:?}", e.event_id, e.platform));
                }
                if e.room_id.is_empty() {
                    e.room_id = room.to_owned();
                } else if e.room_id != room {
                    return Err(format!("event {:?} says room {:?} on topic {topic:?}", e.event_id, e.room_id));
                }
            }
            Ok(e)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_protobuf_payloads_take_platform_and_room_from_the_topic() {
        let one = br#"{"event_id":"e1","ts_ms":1793548800000,"user_id":"u1","kind":"like"}"#;
        let got = decode("live/douyin/r9/events", one).unwrap();
        let e = got[0].as_ref().unwrap();
        assert_eq!((e.platform.as_str(), e.room_id.as_str()), ("douyin", "r9"));

        let many = br#"[{"event_id":"e1","ts_ms":1,"user_id":"u","kind":"like","platform":"taobao"},
                        {"event_id":"e2","ts_ms":1,"user_id":"u","kind":"like"}]"#;
        let got = decode("live/douyin/r9/events", many).unwrap();
        assert_eq!(
            got[0].as_ref().unwrap_err(),
            "event \"e1\" says platform \"taobao\" on topic \"live/douyin/r9/events\""
        );
        assert!(got[1].is_ok());

        let batch = v1::EventBatch {
            events: vec![v1::LiveEvent { event_id: "p1".into(), kind: "like".into(), ..Default::default() }],
        };
        let got = decode("live/kuaishou/r1/events", &prost::Message::encode_to_vec(&batch)).unwrap();
        assert_eq!(got[0].as_ref().unwrap().platform, "kuaishou");

        let err = decode("live/douyin/r9/events", br#"{"event_id":"e1","colour":"red"}"#).unwrap_err();
        assert!(err.starts_with("JSON event: unknown field `colour`"), "{err}");
        assert_eq!(decode("t", b"  ").unwrap_err(), "empty payload");
    }
}
