//! Loading an event file for the offline driver: every row checked, users grouped with
//! their events in arrival order, ids interned, and every rejected row counted.

use crate::aggregates::FeatureEvent;
use crate::offline::accept_in_arrival_order;
use arrow::array::RecordBatch;
use liveprofile_events::{Event, EventIoError, EventParts, EventReader, RawBatch, RejectedRow, decode_with};
use std::collections::HashMap;
use std::path::Path;

/// Marker of "no room / no host".
pub const NONE: u32 = u32::MAX;

/// One user's accepted events, sorted by time, with interned room and host ids.
#[derive(Debug, Clone, Default)]
pub struct UserEvents {
    /// The unified user id.
    pub user_id: String,
    /// Accepted events, sorted by time (ties in arrival order).
    pub events: Vec<FeatureEvent>,
    /// Room of each event (index into [`EventSet::rooms`]) or [`NONE`].
    pub rooms: Vec<u32>,
    /// Host of each event (index into [`EventSet::hosts`]) or [`NONE`].
    pub hosts: Vec<u32>,
}

/// Every user's events from one file, with the bad rows.
#[derive(Debug, Default)]
pub struct EventSet {
    /// Users in order of first appearance.
    pub users: Vec<UserEvents>,
    /// Interned room ids.
    pub rooms: Vec<String>,
    /// Interned host ids.
    pub hosts: Vec<String>,
    /// Rows that broke the contract (row number and reason).
    pub rejected: Vec<RejectedRow>,
    /// Events rejected as out of order: (user id, timestamp).
    pub out_of_order: Vec<(String, i64)>,
    /// Rows read.
    pub rows: u64,
    /// Newest accepted event time.
    pub max_ts_ms: Option<i64>,
}

fn intern(map: &mut HashMap<String, u32>, list: &mut Vec<String>, id: Option<&str>) -> u32 {
    let Some(id) = id else { return NONE };
    if let Some(i) = map.get(id) {
        return *i;
    }
    let i = list.len() as u32;
    list.push(id.to_owned());
    map.insert(id.to_owned(), i);
    i
}

/// Builds an [`EventSet`] from events in arrival order.
#[derive(Debug, Default)]
pub struct EventSetBuilder {
    set: EventSet,
    user_index: HashMap<String, u32>,
    room_index: HashMap<String, u32>,
    host_index: HashMap<String, u32>,
    raw: Vec<(Vec<FeatureEvent>, Vec<u32>, Vec<u32>)>,
}

impl EventSetBuilder {
    /// Takes in one valid event.
    pub fn push(&mut self, e: &Event) {
        self.push_parts(e.parts());
    }

    /// Takes in one valid event given as borrowed parts.
    pub fn push_parts(&mut self, e: EventParts<'_>) {
        self.set.rows += 1;
        let u = match self.user_index.get(e.user_id) {
            Some(u) => *u as usize,
            None => {
                self.user_index.insert(e.user_id.to_owned(), self.raw.len() as u32);
                self.set.users.push(UserEvents { user_id: e.user_id.to_owned(), ..Default::default() });
                self.raw.push(Default::default());
                self.raw.len() - 1
            }
        };
        let room = intern(&mut self.room_index, &mut self.set.rooms, e.room_id);
        let host = intern(&mut self.host_index, &mut self.set.hosts, e.host_id);
        let r = &mut self.raw[u];
        r.0.push(FeatureEvent::from_parts(&e));
        r.1.push(room);
        r.2.push(host);
    }

    /// Records a row that broke the contract.
    pub fn reject(&mut self, row: RejectedRow) {
        self.set.rows += 1;
        self.set.rejected.push(row);
    }

    /// Takes in every row of a raw batch: valid events and rejected rows.
    pub fn push_raw(&mut self, raw: &RawBatch) {
        let mut rejected = Vec::new();
        decode_with(raw, |_, e| self.push_parts(e), |r| rejected.push(r));
        for r in rejected {
            self.reject(r);
        }
    }

    /// Applies the arrival-order rule per user and sorts each user's events by time.
    pub fn finish(self) -> EventSet {
        let mut set = self.set;
        for (user, (events, rooms, hosts)) in set.users.iter_mut().zip(self.raw) {
            let (_, rejected) = accept_in_arrival_order(&events);
            let mut keep = vec![true; events.len()];
            for i in &rejected {
                keep[*i] = false;
                set.out_of_order.push((user.user_id.clone(), events[*i].ts_ms));
            }
            let mut rows: Vec<(FeatureEvent, u32, u32)> = events
                .into_iter()
                .zip(rooms)
                .zip(hosts)
                .zip(keep)
                .filter(|(_, k)| *k)
                .map(|(((e, r), h), _)| (e, r, h))
                .collect();
            rows.sort_by_key(|(e, _, _)| e.ts_ms);
            for (e, r, h) in rows {
                set.max_ts_ms = Some(set.max_ts_ms.map_or(e.ts_ms, |m| m.max(e.ts_ms)));
                user.events.push(e);
                user.rooms.push(r);
                user.hosts.push(h);
            }
        }
        set
    }
}

impl EventSet {
    /// Reads and checks an event file. Row groups are decoded on several threads while
    /// the decoded events are grouped by user in file order; channels are bounded, so
    /// memory holds a few batches beyond the grouped events.
    pub fn load(path: &Path) -> Result<Self, EventIoError> {
        let groups = EventReader::row_group_sizes(path)?.len();
        let decoders = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4).min(groups.max(1));
        std::thread::scope(|scope| {
            let mut receivers = Vec::with_capacity(decoders);
            let mut handles = Vec::with_capacity(decoders);
            for d in 0..decoders {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Option<RawBatch>>(4);
                receivers.push(rx);
                handles.push(scope.spawn(move || -> Result<(), EventIoError> {
                    for g in (d..groups).step_by(decoders) {
                        let mut reader = EventReader::open_row_groups(path, Some(g))?;
                        while let Some(batch) = reader.next_raw()? {
                            if tx.send(Some(batch)).is_err() {
                                return Ok(());
                            }
                        }
                        if tx.send(None).is_err() {
                            return Ok(());
                        }
                    }
                    Ok(())
                }));
            }
            let mut builder = EventSetBuilder::default();
            // Take row groups in file order: group g comes from decoder g % decoders.
            'groups: for g in 0..groups {
                loop {
                    match receivers[g % decoders].recv() {
                        Ok(Some(batch)) => builder.push_raw(&batch),
                        Ok(None) => break,       // row group complete
                        Err(_) => break 'groups, // the decoder failed; reported below
                    }
                }
            }
            drop(receivers);
            for h in handles {
                h.join().expect("decoder thread does not panic")?;
            }
            Ok(builder.finish())
        })
    }

    /// Builds a set from record batches held in memory (an Arrow table from Python, say),
    /// rows in arrival order, each row checked as an event file's rows are; `source` names
    /// the data in errors.
    pub fn from_batches<'a>(
        source: &str,
        batches: impl IntoIterator<Item = &'a RecordBatch>,
    ) -> Result<Self, EventIoError> {
        let mut builder = EventSetBuilder::default();
        let mut first_row = 0;
        for batch in batches {
            builder.push_raw(&RawBatch::from_batch(source, first_row, batch)?);
            first_row += batch.num_rows() as u64;
        }
        Ok(builder.finish())
    }

    /// Builds a set from events in arrival order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut builder = EventSetBuilder::default();
        for e in events {
            builder.push(e);
        }
        builder.finish()
    }

    /// Accepted events.
    pub fn accepted(&self) -> u64 {
        self.users.iter().map(|u| u.events.len() as u64).sum()
    }
}
