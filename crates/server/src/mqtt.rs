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
//! the store cannot take a batch in (a full disk, a failed log write), the batch is
//! retried until it can; nothing is acknowledged meanwhile.
//!
//! A *poison* message, one that can never be taken in, is dead-lettered instead of
//! blocking every later message (acknowledgements keep the order of delivery): a payload
//! over [`MAX_MESSAGE_BYTES`] (`too_large`), one that is not events (`undecodable`), or
//! one the store refuses as a whole, alone, [`MAX_REFUSALS`] times (`refused`). It is
//! recorded in the data folder's [`DEAD_LETTER_DIR`] (topic, size, reason, time, the
//! first [`DEAD_LETTER_PAYLOAD_BYTES`] bytes; the newest [`MAX_DEAD_LETTERS`] records are
//! kept), counted in `liveprofile_mqtt_dead_letters{reason}`, then acknowledged with the
//! messages around it. The client reads packets up to the MQTT maximum
//! ([`MAX_PACKET_BYTES`]): rumqttc drops the connection on a packet over its limit, and
//! the broker would send that packet again on every reconnection, forever. An over-size
//! payload is cut to its record's prefix as soon as it is read, so waiting messages hold
//! at most [`MAX_MESSAGE_BYTES`] each.

use crate::config::MqttConfig;
use crate::ingest::ingest_batch;
use crate::proto::v1;
use crate::state::AppState;
use liveprofile_publish::Publication;
use liveprofile_store::{IncomingEvent, IngestReport};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

/// Most messages taken in by one log write.
const MAX_MESSAGES_PER_WRITE: usize = 1024;

/// Largest payload taken in, in bytes (16 MiB, the log's record limit; a message holds
/// many events, each at most about 2 KB). A larger message is dead-lettered (`too_large`).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Largest packet the client reads: the MQTT maximum (a remaining length of 268,435,455
/// bytes), so that no packet a broker can send drops the connection. A packet is held
/// whole only while it is read; see [`MAX_MESSAGE_BYTES`] for what is taken in.
pub const MAX_PACKET_BYTES: usize = 268_435_455;

/// Largest packet the client sends (subscriptions and acknowledgements).
const MAX_OUTGOING_PACKET_BYTES: usize = 1 << 20;

/// Folder of the dead-letter records, in the profile data folder.
pub const DEAD_LETTER_DIR: &str = "dead-letter";

/// Bytes of a dead-lettered payload kept in its record (fewer when the payload is shorter,
/// or to end a UTF-8 prefix on a character boundary).
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;

/// Records kept in [`DEAD_LETTER_DIR`]: writing one more removes the oldest. A record is
/// at most about 40 KiB (the payload prefix, the topic and the error cut to
/// [`DEAD_LETTER_TEXT_BYTES`], JSON-escaped), so the folder stays under about 40 MiB.
pub const MAX_DEAD_LETTERS: usize = 1000;

/// Bytes of a topic or an error message kept in a record (then `…(N bytes)`).
pub const DEAD_LETTER_TEXT_BYTES: usize = 1024;

/// Times the store refuses a message's events alone, as a whole, before the message is
/// dead-lettered (`refused`).
pub const MAX_REFUSALS: u32 = 3;

/// Pause before a batch the store did not take is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a message was dead-lettered: the `reason` label of `liveprofile_mqtt_dead_letters`
/// and the `reason` of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// The payload is over [`MAX_MESSAGE_BYTES`].
    TooLarge,
    /// The payload is empty, or neither JSON events nor a protobuf `EventBatch` (JSON
    /// with an unknown field, a missing `event_id`, `ts_ms` or `kind`, or a wrong type).
    Undecodable,
    /// The store refused the message's events as a whole ([`refused_as_a_whole`]), alone,
    /// [`MAX_REFUSALS`] times.
    Refused,
}

impl DeadLetterReason {
    /// Every reason: the whole label set.
    pub const ALL: [DeadLetterReason; 3] =
        [DeadLetterReason::TooLarge, DeadLetterReason::Undecodable, DeadLetterReason::Refused];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::Undecodable => "undecodable",
            DeadLetterReason::Refused => "refused",
        }
    }
}

/// A message as the worker gets it: the connection it came on, the packet (its payload cut
/// to [`DEAD_LETTER_PAYLOAD_BYTES`] when over [`MAX_MESSAGE_BYTES`]) and the payload's size.
#[derive(Debug)]
struct Received {
    connection: u64,
    publish: Publish,
    bytes: usize,
}

impl Received {
    fn new(connection: u64, mut publish: Publish) -> Received {
        let bytes = publish.payload.len();
        if bytes > MAX_MESSAGE_BYTES {
            // A copy, so that the packet's buffer is freed now (a slice would keep it).
            publish.payload = publish.payload[..DEAD_LETTER_PAYLOAD_BYTES].to_vec().into();
        }
        Received { connection, publish, bytes }
    }
}

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
        options.set_max_packet_size(MAX_PACKET_BYTES, MAX_OUTGOING_PACKET_BYTES);
        for reason in DeadLetterReason::ALL {
            // Every label value from the start, at 0.
            state.metrics.mqtt_dead_letters.with_label_values(&[reason.as_str()]);
        }
        let (client, mut eventloop) = AsyncClient::new(options, MAX_MESSAGES_PER_WRITE);
        // Unbounded so that the event loop never waits on the worker (the worker's
        // acknowledgements go through the event loop); the broker's in-flight window for
        // QoS 1 (unacknowledged messages) bounds what can be waiting here.
        let (tx, rx) = mpsc::unbounded_channel::<Received>();
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
                            if tx.send(Received::new(connection.load(Ordering::SeqCst), p)).is_err() {
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
        let dead_letters = DeadLetters::new(state.config.profiles.data_dir.join(DEAD_LETTER_DIR), MAX_DEAD_LETTERS);
        let worker = tokio::spawn(take_in(state, client.clone(), rx, connection, dead_letters));
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

/// A message that will never be taken in: its index in the batch, why, and the error.
type Poison = (usize, DeadLetterReason, String);

/// Takes in messages in batches and acknowledges each once its events are durable or it
/// is dead-lettered.
async fn take_in(
    state: Arc<AppState>,
    client: AsyncClient,
    mut rx: mpsc::UnboundedReceiver<Received>,
    connection: Arc<AtomicU64>,
    dead_letters: DeadLetters,
) {
    let dead_letters = Arc::new(Mutex::new(dead_letters));
    let mut messages: Vec<Received> = Vec::with_capacity(MAX_MESSAGES_PER_WRITE);
    while let Some(first) = rx.recv().await {
        messages.clear();
        messages.push(first);
        while messages.len() < MAX_MESSAGES_PER_WRITE {
            match rx.try_recv() {
                Ok(p) => messages.push(p),
                Err(_) => break,
            }
        }
        // The events of each message (none for a poison message).
        let mut events: Vec<Arc<[IncomingEvent]>> = Vec::with_capacity(messages.len());
        let mut poison: Vec<Poison> = Vec::new();
        let mut refused = 0u64;
        for (i, m) in messages.iter().enumerate() {
            let decoded = if m.bytes > MAX_MESSAGE_BYTES {
                Err((
                    DeadLetterReason::TooLarge,
                    format!("payload is {} bytes, over the limit of {MAX_MESSAGE_BYTES} bytes", m.bytes),
                ))
            } else {
                decode(&m.publish.topic, &m.publish.payload).map_err(|e| (DeadLetterReason::Undecodable, e))
            };
            match decoded {
                Ok(decoded) => {
                    let mut ok = Vec::with_capacity(decoded.len());
                    for d in decoded {
                        match d {
                            Ok(e) => ok.push(e),
                            Err(reason) => {
                                refused += 1;
                                tracing::warn!(topic = %m.publish.topic, %reason, "MQTT event refused");
                            }
                        }
                    }
                    events.push(ok.into());
                }
                Err((reason, detail)) => {
                    poison.push((i, reason, detail));
                    events.push(Arc::new([]));
                }
            }
        }
        if refused > 0 {
            state.metrics.ingest_events.with_label_values(&["mqtt", "rejected"]).inc_by(refused);
        }
        dead_letter(&state, &dead_letters, &messages, poison, connection.load(Ordering::SeqCst)).await;
        let store: &AppState = &state;
        let taken =
            take_in_events(&events, |batch| ingest_batch(store, "mqtt", batch), RETRY_AFTER, || store.is_stopping())
                .await;
        let Some(refused) = taken else {
            tracing::info!(messages = messages.len(), "stopping: MQTT messages left for the broker to deliver again");
            return;
        };
        let refused = refused.into_iter().map(|(i, e)| (i, DeadLetterReason::Refused, e)).collect();
        let current = connection.load(Ordering::SeqCst);
        dead_letter(&state, &dead_letters, &messages, refused, current).await;
        for m in &messages {
            if m.connection != current {
                continue; // the broker delivers it again on this connection
            }
            if let Err(e) = client.ack(&m.publish).await {
                tracing::warn!(error = %e, "MQTT acknowledgement could not be queued");
            }
        }
    }
}

/// Counts, logs and records poison messages (they are acknowledged with the rest). A
/// message received on an earlier connection is left alone: the broker delivers it again
/// and it is recorded then. A record that cannot be written is logged; the message is
/// acknowledged all the same (ingest must not wait on the dead-letter folder).
async fn dead_letter(
    state: &AppState,
    letters: &Arc<Mutex<DeadLetters>>,
    messages: &[Received],
    poison: Vec<Poison>,
    current: u64,
) {
    for (i, reason, detail) in poison {
        let m = &messages[i];
        if m.connection != current {
            continue;
        }
        state.metrics.mqtt_dead_letters.with_label_values(&[reason.as_str()]).inc();
        state.metrics.ingest_events.with_label_values(&["mqtt", "rejected"]).inc();
        let record = DeadLetter::new(
            liveprofile_store::now_ms(),
            &m.publish.topic,
            m.bytes,
            reason,
            &detail,
            &m.publish.payload,
        );
        let letters = letters.clone();
        let written = tokio::task::spawn_blocking(move || {
            let path = letters.lock().unwrap_or_else(|p| p.into_inner()).write(&record);
            (record, path)
        })
        .await;
        match written {
            Ok((r, Ok(path))) => tracing::warn!(
                topic = %r.topic, bytes = r.bytes, reason = %r.reason, detail = %r.detail, record = %path.display(),
                "MQTT message dead-lettered"
            ),
            Ok((r, Err(e))) => tracing::error!(
                topic = %r.topic, bytes = r.bytes, reason = %r.reason, detail = %r.detail, error = %e,
                "MQTT message dead-lettered; its record could not be written"
            ),
            Err(e) => tracing::error!(error = %e, "MQTT dead-letter task failed"),
        }
    }
}

/// Whether a failed ingest call may be the batch's own fault, bound to repeat: INVALID_ARGUMENT
/// (the store judged the content, such as a record over the log's limit) and INTERNAL (the
/// ingest task failed, such as a panic). Other failures (a full disk, a failed log write,
/// a store that stopped taking events) are the store's: retried until they pass.
pub fn refused_as_a_whole(status: &Status) -> bool {
    matches!(status.code(), Code::InvalidArgument | Code::Internal)
}

fn log_refused_events(report: &IngestReport) {
    for e in &report.errors {
        tracing::warn!(event_id = %e.event_id, late = e.late, reason = %e.reason, "MQTT event refused");
    }
}

/// Takes in the events of a batch of messages (`events[i]`: message `i`'s, empty for a
/// message with none): one ingest call for all; when the store refuses that call as a
/// whole ([`refused_as_a_whole`]), message by message, so that a message the store cannot
/// take does not hold back the others. Other failures are retried after `retry_after` until
/// they pass, with nothing acknowledged meanwhile. Returns the messages refused alone
/// [`MAX_REFUSALS`] times, with the last error; `None` when a retry finds the server
/// stopping (nothing more is acknowledged: the broker delivers the messages again).
async fn take_in_events<F, Fut>(
    events: &[Arc<[IncomingEvent]>],
    mut ingest: F,
    retry_after: Duration,
    stopping: impl Fn() -> bool,
) -> Option<Vec<(usize, String)>>
where
    F: FnMut(Arc<[IncomingEvent]>) -> Fut,
    Fut: Future<Output = Result<IngestReport, Status>>,
{
    let all: Arc<[IncomingEvent]> = events.iter().flat_map(|e| e.iter().cloned()).collect();
    if all.is_empty() {
        return Some(Vec::new());
    }
    loop {
        match ingest(all.clone()).await {
            Ok(report) => {
                log_refused_events(&report);
                return Some(Vec::new());
            }
            Err(status) if refused_as_a_whole(&status) => {
                tracing::warn!(%status, messages = events.len(), "MQTT batch refused as a whole; message by message");
                break;
            }
            Err(status) => {
                // Acknowledging later messages first would break the order of acknowledgements.
                tracing::error!(%status, messages = events.len(), "MQTT events not taken in; retrying");
            }
        }
        if stopping() {
            return None;
        }
        tokio::time::sleep(retry_after).await;
    }
    let mut refused = Vec::new();
    for (i, one) in events.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
        let mut refusals = 0;
        loop {
            match ingest(one.clone()).await {
                Ok(report) => {
                    log_refused_events(&report);
                    break;
                }
                Err(status) if refused_as_a_whole(&status) => {
                    refusals += 1;
                    if refusals >= MAX_REFUSALS {
                        refused.push((i, status.message().to_owned()));
                        break;
                    }
                    tracing::warn!(%status, refusals, "MQTT message refused as a whole; trying again");
                }
                Err(status) => tracing::error!(%status, "MQTT events not taken in; retrying"),
            }
            if stopping() {
                return None;
            }
            tokio::time::sleep(retry_after).await;
        }
    }
    Some(refused)
}

/// One dead-letter record, written as a JSON file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// When the message was dead-lettered, UTC milliseconds.
    pub dead_lettered_ms: i64,
    /// The message's topic (cut to [`DEAD_LETTER_TEXT_BYTES`]).
    pub topic: String,
    /// The payload's size in bytes.
    pub bytes: usize,
    /// [`DeadLetterReason::as_str`].
    pub reason: String,
    /// The error (cut to [`DEAD_LETTER_TEXT_BYTES`]).
    pub detail: String,
    /// Bytes of the payload in `payload_prefix`.
    pub payload_prefix_bytes: usize,
    /// `utf8` (the prefix as text) or `base64` (standard alphabet, padded).
    pub payload_prefix_encoding: String,
    /// The payload's first bytes, at most [`DEAD_LETTER_PAYLOAD_BYTES`].
    pub payload_prefix: String,
}

impl DeadLetter {
    /// The record of a message; only the first [`DEAD_LETTER_PAYLOAD_BYTES`] bytes of
    /// `payload` are looked at.
    pub fn new(
        dead_lettered_ms: i64,
        topic: &str,
        bytes: usize,
        reason: DeadLetterReason,
        detail: &str,
        payload: &[u8],
    ) -> DeadLetter {
        let prefix = &payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)];
        let (text, encoding) = match std::str::from_utf8(prefix) {
            Ok(text) => (text.to_owned(), "utf8"),
            // Cut inside the last character: the text before it.
            Err(e) if e.error_len().is_none() => {
                (std::str::from_utf8(&prefix[..e.valid_up_to()]).expect("valid up to here").to_owned(), "utf8")
            }
            Err(_) => (base64(prefix), "base64"),
        };
        DeadLetter {
            dead_lettered_ms,
            topic: cut(topic, DEAD_LETTER_TEXT_BYTES),
            bytes,
            reason: reason.as_str().to_owned(),
            detail: cut(detail, DEAD_LETTER_TEXT_BYTES),
            payload_prefix_bytes: if encoding == "utf8" { text.len() } else { prefix.len() },
            payload_prefix_encoding: encoding.to_owned(),
            payload_prefix: text,
        }
    }
}

/// The first `limit` bytes of `s` (cut on a character boundary), then `…(N bytes)` with the
/// full length when longer.
fn cut(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_owned();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &s[..end], s.len())
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The dead-letter folder: one file per record, named by a sequence number
/// (`00000000000000000042.json`, so that names sort by age), the newest `keep` kept. The
/// folder is created and listed at the first record; records are published by rename.
#[derive(Debug)]
struct DeadLetters {
    dir: PathBuf,
    keep: usize,
    /// Sequence numbers of the records on disk, oldest first; `None` until listed.
    held: Option<VecDeque<u64>>,
    next: u64,
}

impl DeadLetters {
    fn new(dir: PathBuf, keep: usize) -> DeadLetters {
        DeadLetters { dir, keep: keep.max(1), held: None, next: 1 }
    }

    fn file(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Creates and lists the folder; removes records a crash left unfinished.
    fn list(&mut self) -> Result<VecDeque<u64>, String> {
        let at = |e: std::io::Error| format!("{}: {e}", self.dir.display());
        std::fs::create_dir_all(&self.dir).map_err(at)?;
        let mut held = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(at)? {
            let name = entry.map_err(at)?.file_name();
            let name = name.to_string_lossy();
            match name.strip_suffix(".json") {
                Some(seq) if seq.len() == 20 && seq.bytes().all(|b| b.is_ascii_digit()) => {
                    held.push(seq.parse::<u64>().map_err(|e| format!("{name}: {e}"))?);
                }
                _ if name.starts_with('.') && name.ends_with(".partial") => {
                    let _ = std::fs::remove_file(self.dir.join(&*name));
                }
                _ => {}
            }
        }
        held.sort_unstable();
        self.next = held.last().map_or(1, |s| s + 1);
        Ok(held.into())
    }

    /// Writes a record, first removing the oldest ones to stay at `keep`; its path.
    fn write(&mut self, record: &DeadLetter) -> Result<PathBuf, String> {
        let mut held = match self.held.take() {
            Some(held) => held,
            None => self.list()?,
        };
        let result = self.write_into(&mut held, record);
        self.held = Some(held);
        result
    }

    fn write_into(&mut self, held: &mut VecDeque<u64>, record: &DeadLetter) -> Result<PathBuf, String> {
        while held.len() >= self.keep {
            let oldest = self.file(held[0]);
            match std::fs::remove_file(&oldest) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", oldest.display())),
            }
            held.pop_front();
        }
        let json = serde_json::to_vec_pretty(record).map_err(|e| e.to_string())?;
        let path = self.file(self.next);
        Publication::write_all(&path, &json).map_err(|e| e.to_string())?;
        held.push_back(self.next);
        self.next += 1;
        Ok(path)
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
    use std::sync::Mutex as StdMutex;

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

    #[test]
    fn an_over_size_payload_is_cut_to_its_record_prefix_on_arrival() {
        let big = Publish::new("live/douyin/r/events", QoS::AtLeastOnce, vec![b'['; MAX_MESSAGE_BYTES + 1]);
        let r = Received::new(3, big);
        assert_eq!((r.connection, r.bytes, r.publish.payload.len()), (3, MAX_MESSAGE_BYTES + 1, 4096));
        let at_limit = Publish::new("t", QoS::AtLeastOnce, vec![b' '; MAX_MESSAGE_BYTES]);
        let r = Received::new(1, at_limit);
        assert_eq!((r.bytes, r.publish.payload.len()), (MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES));
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, encoded) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("foobar", "Zm9vYmFy")]
        {
            assert_eq!(base64(raw.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0x00, 0x01, b'x']), "/wABeA==");
    }

    #[test]
    fn records_keep_a_bounded_prefix_as_text_or_base64() {
        let r = DeadLetter::new(7, "t", 3, DeadLetterReason::Undecodable, "bad", b"abc");
        assert_eq!(
            (r.payload_prefix.as_str(), r.payload_prefix_encoding.as_str(), r.payload_prefix_bytes),
            ("abc", "utf8", 3)
        );
        // A prefix that ends inside a character keeps the characters before it.
        let mut payload = vec![b'a'; DEAD_LETTER_PAYLOAD_BYTES - 1];
        payload.extend("é".as_bytes());
        let r = DeadLetter::new(7, "t", payload.len(), DeadLetterReason::TooLarge, "", &payload);
        assert_eq!((r.payload_prefix_bytes, r.payload_prefix.len()), (4095, 4095));
        let r = DeadLetter::new(7, "t", 4, DeadLetterReason::Undecodable, "", &[0xff, 0x00, 0x01, b'x']);
        assert_eq!(
            (r.payload_prefix.as_str(), r.payload_prefix_encoding.as_str(), r.payload_prefix_bytes),
            ("/wABeA==", "base64", 4)
        );
        let long = "x".repeat(5000);
        let r = DeadLetter::new(7, &long, 1, DeadLetterReason::Refused, &long, b"");
        assert_eq!(r.topic, format!("{}…(5000 bytes)", "x".repeat(1024)));
        assert_eq!(r.detail, r.topic);
    }

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_dead_letter_folder_keeps_the_newest_records_across_restarts() {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(DEAD_LETTER_DIR);
        let record = |n: i64| DeadLetter::new(n, "t", 1, DeadLetterReason::Undecodable, "bad", b"x");
        let mut letters = DeadLetters::new(dir.clone(), 3);
        for n in 1..=5 {
            letters.write(&record(n)).unwrap();
        }
        assert_eq!(
            names(&dir),
            ["00000000000000000003.json", "00000000000000000004.json", "00000000000000000005.json"]
        );
        let newest: DeadLetter =
            serde_json::from_slice(&std::fs::read(dir.join("00000000000000000005.json")).unwrap()).unwrap();
        assert_eq!(newest, record(5));

        // A later process goes on numbering, keeps the bound, and clears an unfinished record.
        std::fs::write(dir.join(".00000000000000000006.json.1.partial"), b"{").unwrap();
        std::fs::write(dir.join("notes.txt"), b"the operator's").unwrap();
        let mut letters = DeadLetters::new(dir.clone(), 3);
        letters.write(&record(6)).unwrap();
        assert_eq!(
            names(&dir),
            ["00000000000000000004.json", "00000000000000000005.json", "00000000000000000006.json", "notes.txt"]
        );
    }

    fn events(ids: &[&str]) -> Arc<[IncomingEvent]> {
        ids.iter().map(|id| IncomingEvent { event_id: (*id).to_owned(), ..Default::default() }).collect()
    }

    #[tokio::test]
    async fn a_message_the_store_refuses_as_a_whole_is_found_and_the_others_taken_in() {
        let calls = StdMutex::new(Vec::<Vec<String>>::new());
        let transient_once = StdMutex::new(true);
        let ingest = |batch: Arc<[IncomingEvent]>| {
            let ids: Vec<String> = batch.iter().map(|e| e.event_id.clone()).collect();
            calls.lock().unwrap().push(ids.clone());
            let result = if ids.iter().any(|id| id == "poison") {
                Err(Status::internal("ingest task failed: panic"))
            } else if ids == ["d"] && std::mem::take(&mut *transient_once.lock().unwrap()) {
                Err(Status::unavailable("log write failed"))
            } else {
                Ok(IngestReport { received: ids.len() as u64, accepted: ids.len() as u64, ..Default::default() })
            };
            std::future::ready(result)
        };
        let batch = [events(&["a", "b"]), events(&["poison", "c"]), events(&[]), events(&["d"])];
        let refused = take_in_events(&batch, ingest, Duration::ZERO, || false).await;
        assert_eq!(refused, Some(vec![(1, "ingest task failed: panic".to_owned())]));
        let calls = calls.into_inner().unwrap();
        let expected: Vec<Vec<&str>> = vec![
            vec!["a", "b", "poison", "c", "d"],
            vec!["a", "b"],
            vec!["poison", "c"],
            vec!["poison", "c"],
            vec!["poison", "c"],
            vec!["d"],
            vec!["d"],
        ];
        assert_eq!(calls, expected);
    }

    #[tokio::test]
    async fn a_failing_store_is_retried_until_the_server_stops_and_nothing_is_refused() {
        let calls = StdMutex::new(0);
        let ingest = |_batch: Arc<[IncomingEvent]>| {
            *calls.lock().unwrap() += 1;
            std::future::ready(Err::<IngestReport, _>(Status::resource_exhausted("disk full")))
        };
        let stops = StdMutex::new(0);
        let stopping = || {
            let mut n = stops.lock().unwrap();
            *n += 1;
            *n > 4
        };
        let taken = take_in_events(&[events(&["a"])], ingest, Duration::ZERO, stopping).await;
        assert_eq!(taken, None);
        assert_eq!(*calls.lock().unwrap(), 5);
        // Nothing to take in: nothing is called.
        let never = |_: Arc<[IncomingEvent]>| -> std::future::Ready<Result<IngestReport, Status>> {
            unreachable!("nothing to take in")
        };
        let taken = take_in_events(&[events(&[]), events(&[])], never, Duration::ZERO, || false).await;
        assert_eq!(taken, Some(Vec::new()));
    }

    #[test]
    fn the_reason_label_set_is_closed() {
        let labels: Vec<&str> = DeadLetterReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels, ["too_large", "undecodable", "refused"]);
        assert!(refused_as_a_whole(&Status::invalid_argument("record too large")));
        assert!(refused_as_a_whole(&Status::internal("panic")));
        assert!(!refused_as_a_whole(&Status::resource_exhausted("disk full")));
        assert!(!refused_as_a_whole(&Status::unavailable("log write failed")));
    }
}
