//! Running a simulation to files: events streamed to Parquet in bounded memory (users are
//! generated in parallel chunks and written in order by one writer thread), the
//! ground-truth file beside them, the exposures of a planted experiment, and the
//! calibration figures measured on the output.

use crate::calibration::{CalibrationReport, CalibrationStats};
use crate::experiment::PlantedExperiment;
use crate::truth::tag_probabilities;
use crate::visits::{NONE_U32, SimEvent};
use crate::world::World;
use crate::{SimError, SimUser, Simulator};
use arrow::array::{ArrayRef, Float64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use liveprofile_events::{EventIoError, EventKind, EventParts, EventWriter, LIVE_CATEGORIES, Platform};
use liveprofile_experiments::{Exposure, assign, write_exposures};
use liveprofile_features::tags::{NIGHT_HOURS, Tag};
use liveprofile_publish::Publication;
use parquet::arrow::ArrowWriter;
use rayon::prelude::*;
use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

/// Users generated per parallel chunk.
const CHUNK_USERS: u32 = 4_096;

/// What a run wrote.
#[derive(Debug, Clone)]
pub struct SimulationSummary {
    /// Users simulated.
    pub users: u32,
    /// Events written.
    pub events: u64,
    /// Ground-truth file.
    pub truth_path: PathBuf,
    /// The seed's figures measured on the written events.
    pub calibration: CalibrationReport,
    /// Exposure file of the planted experiment, if there is one.
    pub exposures_path: Option<PathBuf>,
    /// Exposed users per arm of the planted experiment, in definition order.
    pub exposed_per_arm: Vec<(String, u64)>,
}

/// The ground-truth file written beside `events`: `x.parquet` -> `x.truth.parquet`.
pub fn truth_path_for(events: &Path) -> PathBuf {
    let stem = events.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    events.with_file_name(format!("{stem}.truth.parquet"))
}

/// The exposures file written beside `events` when an experiment is planted:
/// `x.parquet` -> `x.exposures.parquet`.
pub fn exposures_path_for(events: &Path) -> PathBuf {
    let stem = events.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    events.with_file_name(format!("{stem}.exposures.parquet"))
}

/// The exposure the server would have logged for `user`: their first room `enter` that the
/// experiment covers (target and window), if any.
fn first_exposure(world: &World, x: &PlantedExperiment, user: &SimUser) -> Option<Exposure> {
    let e = user
        .events
        .iter()
        .find(|e| e.kind == EventKind::Enter && x.covers(usize::from(e.platform), usize::from(e.category), e.ts_ms))?;
    let experiment = x.experiment();
    let user_id = Simulator::user_id(user.index);
    let arm = assign(experiment, &user_id);
    Some(Exposure {
        user_id,
        experiment: experiment.name.clone(),
        arm: experiment.arms[arm].name.clone(),
        ts_ms: e.ts_ms,
        platform: Platform::ALL[usize::from(e.platform)],
        category: LIVE_CATEGORIES[usize::from(e.category)].to_owned(),
        room_id: Some(format!("{}-d{}", world.hosts[usize::from(e.host)].id, e.room_day)),
    })
}

fn platform_account(seed: u64, index: u32, p: usize) -> u64 {
    let mut x = seed.rotate_left(17) ^ (u64::from(index) << 8 | p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

impl Simulator {
    /// Simulates every user and writes events to `out` and the ground truth beside it,
    /// with the exposures of a planted experiment (see [`exposures_path_for`]; without one,
    /// a stale exposures file there is removed). `progress` is called with the number of
    /// users done after each chunk.
    pub fn write(&self, out: &Path, progress: &(dyn Fn(u32) + Sync)) -> Result<SimulationSummary, SimError> {
        let truth_path = truth_path_for(out);
        let mut events = EventWriter::create(out)?;
        let mut truth = TruthWriter::create(&truth_path)?;
        let (tx, rx) = sync_channel::<Vec<SimUser>>(2);
        let world = &self.world;
        let seed = self.config.seed;
        let users = self.config.users;
        let planted = self.planted.as_ref();
        let exposures_path = exposures_path_for(out);
        let written = std::thread::scope(|scope| {
            let writer = scope.spawn(|| -> Result<Written, SimError> {
                let mut stats = CalibrationStats::default();
                let mut ids = IdBuffers::default();
                let mut exposures = Vec::new();
                for chunk in rx {
                    for user in &chunk {
                        write_user(&mut events, &mut stats, &mut ids, world, seed, user)?;
                        truth.append(world, user)?;
                        if let Some(x) = planted.and_then(|x| first_exposure(world, x, user)) {
                            exposures.push(x);
                        }
                    }
                    progress(chunk.last().map_or(0, |u| u.index + 1));
                }
                // Exposures first: when they cannot be written, no events are published.
                let mut per_arm = Vec::new();
                if let Some(x) = planted {
                    write_exposures(&exposures_path, &exposures)?;
                    per_arm = x.experiment().arms.iter().map(|a| (a.name.clone(), 0)).collect();
                    for e in &exposures {
                        if let Some(i) = x.experiment().arm_index(&e.arm) {
                            per_arm[i].1 += 1;
                        }
                    }
                }
                let n = events.finish()?;
                truth.finish()?;
                Ok((n, stats, per_arm))
            });
            let mut start = 0;
            while start < users {
                let end = (start + CHUNK_USERS).min(users);
                let chunk: Vec<SimUser> = (start..end).into_par_iter().map(|i| self.user(i)).collect();
                if tx.send(chunk).is_err() {
                    break; // the writer stopped on an error; it reports it below
                }
                start = end;
            }
            drop(tx);
            writer.join().expect("writer thread does not panic")
        });
        let (n, stats, exposed_per_arm) = written?;
        if planted.is_none() {
            match std::fs::remove_file(&exposures_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EventIoError::Io { path: exposures_path.display().to_string(), source: e }.into());
                }
                _ => {}
            }
        }
        Ok(SimulationSummary {
            users,
            events: n,
            truth_path,
            calibration: stats.report(),
            exposures_path: planted.is_some().then_some(exposures_path),
            exposed_per_arm,
        })
    }
}

/// What the writer thread wrote: events, their figures, exposed users per arm.
type Written = (u64, CalibrationStats, Vec<(String, u64)>);

#[derive(Default)]
struct IdBuffers {
    user: String,
    accounts: [String; 5],
    event: String,
    room: String,
    item: String,
}

fn write_user(
    w: &mut EventWriter,
    stats: &mut CalibrationStats,
    ids: &mut IdBuffers,
    world: &World,
    seed: u64,
    user: &SimUser,
) -> Result<(), EventIoError> {
    ids.user.clear();
    write!(ids.user, "u{:08}", user.index).expect("string write");
    for (p, account) in ids.accounts.iter_mut().enumerate() {
        account.clear();
        let prefix = world.platforms[p].account_prefix;
        write!(account, "{prefix}_{:012x}", platform_account(seed, user.index, p) & 0xffff_ffff_ffff)
            .expect("string write");
    }
    for (seq, e) in user.events.iter().enumerate() {
        let SimEvent { ts_ms, kind, platform, category, host, room_day, item, value, coupon } = *e;
        let host = &world.hosts[host as usize];
        let cat = LIVE_CATEGORIES[category as usize];
        ids.event.clear();
        write!(ids.event, "{}-{seq}", ids.user).expect("string write");
        ids.room.clear();
        write!(ids.room, "{}-d{room_day}", host.id).expect("string write");
        ids.item.clear();
        if item != NONE_U32 {
            write!(ids.item, "it-{cat}-{item:04}").expect("string write");
        }
        let platform = Platform::ALL[platform as usize];
        stats.observe(&ids.user, platform, kind, cat, value);
        w.append_parts(EventParts {
            event_id: &ids.event,
            ts_ms,
            platform,
            user_id: &ids.user,
            platform_user_id: &ids.accounts[platform.index()],
            room_id: Some(&ids.room),
            host_id: Some(&host.id),
            category: cat,
            kind,
            item_id: (item != NONE_U32).then_some(ids.item.as_str()),
            value,
            coupon,
        })?;
    }
    Ok(())
}

/// Writes the ground truth: one row per user with traits and true tag probabilities.
struct TruthWriter {
    // Declared before the publication: an unfinished writer is closed before its
    // temporary file is removed.
    writer: ArrowWriter<File>,
    publication: Publication,
    schema: Arc<Schema>,
    user_id: StringBuilder,
    platforms: StringBuilder,
    numbers: Vec<Float64Builder>,
    rows: usize,
}

fn truth_number_columns() -> Vec<String> {
    let mut cols: Vec<String> = [
        "visits_per_day",
        "price_sensitivity",
        "impulsiveness",
        "loyalty",
        "gift_propensity",
        "spend_level",
        "sociability",
        "conversion_factor",
        "watch_factor",
        "peak_hour",
        "night_share",
    ]
    .map(String::from)
    .into();
    cols.extend(Platform::ALL.iter().map(|p| format!("platform_weight_{p}")));
    cols.extend(LIVE_CATEGORIES.iter().map(|c| format!("affinity_{c}")));
    cols.extend(Tag::ALL.iter().map(|t| format!("p_{}", t.name())));
    cols
}

impl TruthWriter {
    fn create(path: &Path) -> Result<Self, EventIoError> {
        let mut fields =
            vec![Field::new("user_id", DataType::Utf8, false), Field::new("platforms", DataType::Utf8, false)];
        let numbers = truth_number_columns();
        fields.extend(numbers.iter().map(|n| Field::new(n, DataType::Float64, false)));
        let schema = Arc::new(Schema::new(fields));
        let mut publication = Publication::create(path)?;
        let writer = ArrowWriter::try_new(publication.take_file(), schema.clone(), None)
            .map_err(|source| EventIoError::Parquet { path: temporary(&publication), source })?;
        Ok(TruthWriter {
            writer,
            publication,
            schema,
            user_id: StringBuilder::new(),
            platforms: StringBuilder::new(),
            numbers: numbers.iter().map(|_| Float64Builder::new()).collect(),
            rows: 0,
        })
    }

    fn append(&mut self, world: &World, user: &SimUser) -> Result<(), EventIoError> {
        let t = &user.traits;
        self.user_id.append_value(Simulator::user_id(user.index));
        let used: Vec<&str> =
            Platform::ALL.iter().filter(|p| t.platform_weights[p.index()] > 0.0).map(|p| p.as_str()).collect();
        self.platforms.append_value(used.join(","));
        let night: f64 = NIGHT_HOURS.iter().map(|h| t.hour_weights[*h as usize]).sum();
        let mut values = vec![
            t.visits_per_day,
            t.price_sensitivity,
            t.impulsiveness,
            t.loyalty,
            t.gift_propensity,
            t.spend_level,
            t.sociability,
            t.conversion_factor,
            t.watch_factor,
            t.peak_hour,
            night,
        ];
        values.extend(t.platform_weights);
        values.extend(t.category_affinity);
        values.extend(tag_probabilities(world, t));
        for (b, v) in self.numbers.iter_mut().zip(values) {
            b.append_value(v);
        }
        self.rows += 1;
        if self.rows >= 65_536 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), EventIoError> {
        if self.rows == 0 {
            return Ok(());
        }
        let mut cols: Vec<ArrayRef> = vec![Arc::new(self.user_id.finish()), Arc::new(self.platforms.finish())];
        cols.extend(self.numbers.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        let batch = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|source| EventIoError::Arrow { path: temporary(&self.publication), source })?;
        self.rows = 0;
        self.writer.write(&batch).map_err(|source| EventIoError::Parquet { path: temporary(&self.publication), source })
    }

    fn finish(mut self) -> Result<(), EventIoError> {
        self.flush()?;
        let file = self
            .writer
            .into_inner()
            .map_err(|source| EventIoError::Parquet { path: temporary(&self.publication), source })?;
        Ok(self.publication.publish_file(file)?)
    }
}

/// The temporary path of a publication, for error messages.
fn temporary(publication: &Publication) -> String {
    publication.temporary_path().display().to_string()
}
