//! The model repository: `root/<name>/<version>/` folders, watched for new versions.
//!
//! A new version folder (published by atomic rename) is loaded, checked and made current
//! without a restart, on the watcher's thread, never on a serving thread. One that fails is
//! refused, logged with the reason, and the previous version keeps serving.
//!
//! A version folder is named in canonical decimal (`7`, not `007` or `+7`) and at most
//! [`MAX_VERSION`]; other names are never read. A folder without `manifest.json` is still
//! being published and is neither loaded nor refused. A folder that resolves outside the
//! repository (through a symbolic link), or holds a link to a file outside it, is refused.
//! When a folder disappears, its refusal is forgotten, and so is a model with no version
//! left (a loaded version keeps serving from memory).
//!
//! Routing is swapped through `ArcSwap`: a request holds the `Arc` of the version it
//! started with until it ends, and a version's memory is released once it is neither kept
//! for rollback nor held by a request.

use crate::error::PackageError;
use crate::model::LoadedModel;
use crate::package::load_package;
use crate::policy::{Arm, Canary, TrafficPolicy, in_canary};
use arc_swap::ArcSwapOption;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// The largest version number a folder may carry (2^31 - 1): versions stay clear of the
/// end of `u32`, so a newer version can always be published over the stable one.
pub const MAX_VERSION: u32 = i32::MAX as u32;

/// The version a folder name stands for: canonical decimal (no sign, no leading zero,
/// ASCII digits only) and at most [`MAX_VERSION`]. Anything else is not a version folder.
pub fn version_of_folder(name: &str) -> Option<u32> {
    let canonical = !name.is_empty()
        && name.len() <= 10
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    if !canonical {
        return None;
    }
    name.parse::<u32>().ok().filter(|v| *v <= MAX_VERSION)
}

/// Repository settings.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// The `models/` folder.
    pub root: PathBuf,
    /// Good versions kept loaded per model for rollback (besides those routed).
    pub keep_versions: usize,
    /// Period of the rescan that backs up the file watcher.
    pub rescan_interval: Duration,
}

impl RepositoryConfig {
    /// Defaults: keep 3 versions, rescan every 2 s.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RepositoryConfig { root: root.into(), keep_versions: 3, rescan_interval: Duration::from_secs(2) }
    }
}

/// What happened in the repository (also logged).
#[derive(Debug, Clone, PartialEq)]
pub enum RepoEvent {
    /// A version passed its checks and is loaded.
    Loaded {
        /// Model.
        model: String,
        /// Version.
        version: u32,
        /// Load, check and warm-up time.
        millis: f64,
    },
    /// A version was refused.
    Refused {
        /// Model.
        model: String,
        /// Version.
        version: u32,
        /// Why.
        reason: String,
    },
    /// The stable version changed.
    Promoted {
        /// Model.
        model: String,
        /// New stable version.
        version: u32,
    },
}

/// Why a request cannot be routed or a policy applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RouteError {
    /// No such model.
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    /// The version is not loaded (never published, refused, or no longer kept).
    #[error("model {model:?} has no loaded version {version}")]
    UnknownVersion {
        /// Model.
        model: String,
        /// Version.
        version: u32,
    },
    /// The model has no good version yet.
    #[error("model {0:?} has no version ready")]
    NotReady(String),
    /// A policy that cannot apply.
    #[error("invalid traffic policy: {0}")]
    InvalidPolicy(String),
    /// Nothing to roll back to.
    #[error("nothing to roll back to for {0}")]
    NoRollback(String),
    /// A version that an arm of the policy uses cannot be unloaded.
    #[error("model {model:?} version {version} is in use by its traffic policy")]
    InUse {
        /// Model.
        model: String,
        /// Version.
        version: u32,
    },
    /// No such version folder.
    #[error("no package folder {0}")]
    NoFolder(String),
    /// A version number over [`MAX_VERSION`].
    #[error("model {model:?}: version {version} is over the largest version {MAX_VERSION}")]
    VersionTooLarge {
        /// Model.
        model: String,
        /// Version asked.
        version: u32,
    },
    /// The version folder was refused.
    #[error("model {model:?} version {version} refused: {reason}")]
    Refused {
        /// Model.
        model: String,
        /// Version.
        version: u32,
        /// Why.
        reason: String,
    },
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Route {
    /// The version that answers.
    pub model: Arc<LoadedModel>,
    /// Its arm.
    pub arm: Arm,
    /// A version to score off the request path, for comparison.
    pub shadow: Option<Arc<LoadedModel>>,
    /// Every version the answer is compared with off the request path: the shadow, and
    /// the stable version when the canary answers.
    pub compare: Vec<Arc<LoadedModel>>,
}

#[derive(Debug)]
struct Routing {
    stable: Arc<LoadedModel>,
    canary: Option<(Arc<LoadedModel>, f64)>,
    shadow: Option<Arc<LoadedModel>>,
    pinned: bool,
}

impl Routing {
    fn policy(&self) -> TrafficPolicy {
        TrafficPolicy {
            stable: self.stable.version(),
            canary: self.canary.as_ref().map(|(m, p)| Canary { version: m.version(), percent: *p }),
            shadow: self.shadow.as_ref().map(|m| m.version()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<(String, u64, Option<SystemTime>)>);

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files: Vec<(String, u64, Option<SystemTime>)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.file_name().to_string_lossy().into_owned(), m.len(), m.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    Fingerprint(files)
}

#[derive(Debug, Default)]
struct Slot {
    routing: ArcSwapOption<Routing>,
    versions: Mutex<BTreeMap<u32, Arc<LoadedModel>>>,
    refused: Mutex<BTreeMap<u32, (String, Fingerprint)>>,
    unloaded: Mutex<BTreeSet<u32>>,
    history: Mutex<Vec<u32>>,
}

/// Status of one model, for listings.
#[derive(Debug, Clone)]
pub struct ModelStatus {
    /// Name.
    pub name: String,
    /// Current policy, if any version is ready.
    pub policy: Option<TrafficPolicy>,
    /// Loaded versions.
    pub versions: Vec<Arc<LoadedModel>>,
    /// Refused versions with the reason.
    pub refused: Vec<(u32, String)>,
}

/// The repository.
#[derive(Debug)]
pub struct ModelRepository {
    config: RepositoryConfig,
    /// The root with every symbolic link resolved: packages must resolve inside it.
    real_root: PathBuf,
    /// Folders under a model that are not version folders, already logged.
    ignored: Mutex<BTreeSet<PathBuf>>,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    events: Mutex<VecDeque<RepoEvent>>,
    event_totals: Mutex<BTreeMap<(String, &'static str), u64>>,
    bundles: Mutex<Vec<Vec<(String, TrafficPolicy)>>>,
    scan_lock: Mutex<()>,
    scans: std::sync::atomic::AtomicU64,
}

const EVENT_LOG: usize = 1_000;

/// The file whose presence makes a version folder a package to load (or refuse).
const MANIFEST: &str = "manifest.json";

impl ModelRepository {
    /// Opens the repository and loads every version found (a refused one is logged).
    pub fn open(config: RepositoryConfig) -> std::io::Result<Arc<Self>> {
        if !config.root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("model repository {} is not a folder", config.root.display()),
            ));
        }
        let real_root = config.root.canonicalize()?;
        let repo = Arc::new(ModelRepository {
            config,
            real_root,
            ignored: Mutex::new(BTreeSet::new()),
            slots: RwLock::new(BTreeMap::new()),
            events: Mutex::new(VecDeque::new()),
            event_totals: Mutex::new(BTreeMap::new()),
            bundles: Mutex::new(Vec::new()),
            scan_lock: Mutex::new(()),
            scans: std::sync::atomic::AtomicU64::new(0),
        });
        repo.scan();
        Ok(repo)
    }

    /// The configuration.
    pub fn config(&self) -> &RepositoryConfig {
        &self.config
    }

    fn record(&self, event: RepoEvent) {
        match &event {
            RepoEvent::Loaded { model, version, millis } => {
                tracing::info!(model, version, millis, "model version loaded")
            }
            RepoEvent::Refused { model, version, reason } => {
                tracing::warn!(model, version, reason, "model version refused")
            }
            RepoEvent::Promoted { model, version } => tracing::info!(model, version, "stable version changed"),
        }
        let (model, kind) = match &event {
            RepoEvent::Loaded { model, .. } => (model, "loaded"),
            RepoEvent::Refused { model, .. } => (model, "refused"),
            RepoEvent::Promoted { model, .. } => (model, "promoted"),
        };
        *self.event_totals.lock().expect("event totals lock").entry((model.clone(), kind)).or_default() += 1;
        let mut log = self.events.lock().expect("event log lock");
        if log.len() == EVENT_LOG {
            log.pop_front();
        }
        log.push_back(event);
    }

    /// Recent events, oldest first.
    pub fn events(&self) -> Vec<RepoEvent> {
        self.events.lock().expect("event log lock").iter().cloned().collect()
    }

    /// Events since the repository opened, counted per model and kind (`loaded`,
    /// `refused`, `promoted`).
    pub fn event_totals(&self) -> BTreeMap<(String, &'static str), u64> {
        self.event_totals.lock().expect("event totals lock").clone()
    }

    fn slot(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots.read().expect("slots lock").get(name).cloned()
    }

    /// Looks for new version folders and loads them; forgets the refusals of folders that
    /// are gone and the models left with no version. Returns the events it caused.
    pub fn scan(&self) -> Vec<RepoEvent> {
        let _one_scan_at_a_time = self.scan_lock.lock().expect("scan lock");
        self.scans.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let before = self.events.lock().expect("event log lock").len();
        let Ok(models) = std::fs::read_dir(&self.config.root) else { return vec![] };
        let mut found: Vec<(String, u32, PathBuf)> = Vec::new();
        let mut ignored = BTreeSet::new();
        for m in models.flatten() {
            let name = m.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !m.path().is_dir() {
                continue;
            }
            let Ok(versions) = std::fs::read_dir(m.path()) else { continue };
            for v in versions.flatten() {
                let vname = v.file_name().to_string_lossy().into_owned();
                let path = v.path();
                // Hidden folders (".3.tmp-...") are publications under way: never read.
                if vname.starts_with('.') || !path.is_dir() {
                    continue;
                }
                let Some(version) = version_of_folder(&vname) else {
                    ignored.insert(path);
                    continue;
                };
                // No manifest yet: a folder being filled, not a package to refuse.
                if path.join(MANIFEST).exists() {
                    found.push((name.clone(), version, path));
                }
            }
        }
        self.log_ignored(ignored);
        found.sort();
        self.forget_missing(&found);
        for (name, version, path) in found {
            let slot = {
                let mut slots = self.slots.write().expect("slots lock");
                slots.entry(name.clone()).or_default().clone()
            };
            if slot.versions.lock().expect("versions lock").contains_key(&version)
                || slot.unloaded.lock().expect("unloaded lock").contains(&version)
            {
                continue;
            }
            let fp = fingerprint(&path);
            if let Some((_, old)) = slot.refused.lock().expect("refused lock").get(&version)
                && *old == fp
            {
                continue; // refused before and unchanged since
            }
            let _ = self.load_into(&name, &slot, version, &path, fp);
        }
        let log = self.events.lock().expect("event log lock");
        let new = log.len().saturating_sub(before);
        log.iter().skip(log.len() - new).cloned().collect()
    }

    /// Logs once each folder under a model that is not a version folder.
    fn log_ignored(&self, now: BTreeSet<PathBuf>) {
        let mut ignored = self.ignored.lock().expect("ignored lock");
        for path in now.difference(&ignored) {
            tracing::warn!(
                folder = %path.display(),
                max = MAX_VERSION,
                "not a version folder (versions are canonical decimal numbers up to the maximum): ignored"
            );
        }
        *ignored = now;
    }

    /// Drops refusals and unloads of version folders that are gone, then models with
    /// nothing left: no version loaded and none refused.
    fn forget_missing(&self, found: &[(String, u32, PathBuf)]) {
        let present = |name: &str, version: u32| found.iter().any(|(n, v, _)| n == name && *v == version);
        let mut slots = self.slots.write().expect("slots lock");
        slots.retain(|name, slot| {
            slot.refused.lock().expect("refused lock").retain(|v, _| present(name, *v));
            slot.unloaded.lock().expect("unloaded lock").retain(|v| present(name, *v));
            let keep = slot.routing.load().is_some()
                || !slot.versions.lock().expect("versions lock").is_empty()
                || !slot.refused.lock().expect("refused lock").is_empty();
            if !keep {
                tracing::info!(model = name.as_str(), "model folder gone: model forgotten");
            }
            keep
        });
    }

    /// Refuses a folder that resolves outside the repository, or that holds a symbolic
    /// link to a file outside it.
    fn check_confined(&self, path: &Path) -> Result<(), String> {
        let outside = |p: &Path| -> Result<(), String> {
            let real = p.canonicalize().map_err(|e| format!("{}: {e}", p.display()))?;
            if real.starts_with(&self.real_root) {
                Ok(())
            } else {
                Err(format!(
                    "{} resolves to {}, outside the model repository {}",
                    p.display(),
                    real.display(),
                    self.real_root.display()
                ))
            }
        };
        outside(path)?;
        let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                outside(&e.path())?;
            }
        }
        Ok(())
    }

    fn load_into(
        &self,
        name: &str,
        slot: &Slot,
        version: u32,
        path: &Path,
        fp: Fingerprint,
    ) -> Result<Arc<LoadedModel>, String> {
        let loaded = self.check_confined(path).and_then(|()| {
            load_package(path).and_then(|m| check_identity(m, name, version)).map_err(|e| e.to_string())
        });
        match loaded {
            Ok(model) => {
                slot.refused.lock().expect("refused lock").remove(&version);
                self.record(RepoEvent::Loaded { model: name.to_owned(), version, millis: model.load_ms() });
                let model = Arc::new(model);
                self.install(name, slot, model.clone());
                Ok(model)
            }
            Err(reason) => {
                slot.refused.lock().expect("refused lock").insert(version, (reason.clone(), fp));
                self.record(RepoEvent::Refused { model: name.to_owned(), version, reason: reason.clone() });
                Err(reason)
            }
        }
    }

    /// Loads one version folder now (checks, golden parity, warm-up), on the caller's
    /// thread. Clears an earlier [`ModelRepository::unload`]. A version already loaded is
    /// returned as it is.
    pub fn load_version(&self, model: &str, version: u32) -> Result<Arc<LoadedModel>, RouteError> {
        if version > MAX_VERSION {
            return Err(RouteError::VersionTooLarge { model: model.to_owned(), version });
        }
        let _one_scan_at_a_time = self.scan_lock.lock().expect("scan lock");
        let path = self.config.root.join(model).join(version.to_string());
        if model.is_empty() || model.starts_with('.') || model.contains(['/', '\\']) || !path.is_dir() {
            return Err(RouteError::NoFolder(path.display().to_string()));
        }
        let slot = self.slots.write().expect("slots lock").entry(model.to_owned()).or_default().clone();
        slot.unloaded.lock().expect("unloaded lock").remove(&version);
        if let Some(m) = slot.versions.lock().expect("versions lock").get(&version) {
            return Ok(m.clone());
        }
        let fp = fingerprint(&path);
        self.load_into(model, &slot, version, &path, fp).map_err(|reason| RouteError::Refused {
            model: model.to_owned(),
            version,
            reason,
        })
    }

    /// Unloads a version that neither the stable, canary nor shadow arm uses; it stays
    /// unloaded (the watcher skips it) until [`ModelRepository::load_version`].
    pub fn unload(&self, model: &str, version: u32) -> Result<(), RouteError> {
        let slot = self.slot(model).ok_or_else(|| RouteError::UnknownModel(model.to_owned()))?;
        let _one_scan_at_a_time = self.scan_lock.lock().expect("scan lock");
        if let Some(r) = slot.routing.load().as_ref()
            && [
                Some(r.stable.version()),
                r.canary.as_ref().map(|c| c.0.version()),
                r.shadow.as_ref().map(|s| s.version()),
            ]
            .contains(&Some(version))
        {
            return Err(RouteError::InUse { model: model.to_owned(), version });
        }
        if slot.versions.lock().expect("versions lock").remove(&version).is_none() {
            return Err(RouteError::UnknownVersion { model: model.to_owned(), version });
        }
        slot.unloaded.lock().expect("unloaded lock").insert(version);
        tracing::info!(model, version, "model version unloaded");
        Ok(())
    }

    fn install(&self, name: &str, slot: &Slot, model: Arc<LoadedModel>) {
        let version = model.version();
        slot.versions.lock().expect("versions lock").insert(version, model.clone());
        let current = slot.routing.load_full();
        let promote = match &current {
            None => true,
            Some(r) => !r.pinned && version > r.stable.version(),
        };
        if promote {
            let routing = Routing {
                stable: model,
                canary: current.as_ref().and_then(|r| r.canary.clone()),
                shadow: current.as_ref().and_then(|r| r.shadow.clone()),
                pinned: false,
            };
            self.set_routing(name, slot, routing);
        }
        self.evict(slot);
    }

    fn set_routing(&self, name: &str, slot: &Slot, routing: Routing) {
        let stable = routing.stable.version();
        let previous = slot.routing.load().as_ref().map(|r| r.stable.version());
        slot.routing.store(Some(Arc::new(routing)));
        if previous != Some(stable) {
            let mut history = slot.history.lock().expect("history lock");
            if let Some(p) = previous {
                history.push(p);
            }
            drop(history);
            self.record(RepoEvent::Promoted { model: name.to_owned(), version: stable });
        }
    }

    fn evict(&self, slot: &Slot) {
        let routing = slot.routing.load_full();
        let in_use: Vec<u32> = routing
            .iter()
            .flat_map(|r| {
                [
                    Some(r.stable.version()),
                    r.canary.as_ref().map(|c| c.0.version()),
                    r.shadow.as_ref().map(|s| s.version()),
                ]
            })
            .flatten()
            .collect();
        let mut versions = slot.versions.lock().expect("versions lock");
        let keep: Vec<u32> = versions.keys().rev().take(self.config.keep_versions).copied().collect();
        versions.retain(|v, _| keep.contains(v) || in_use.contains(v));
    }

    /// Routes a request for `model` from `user_id`.
    pub fn route(&self, model: &str, user_id: &str) -> Result<Route, RouteError> {
        let slot = self.slot(model).ok_or_else(|| RouteError::UnknownModel(model.to_owned()))?;
        let routing = slot.routing.load_full().ok_or_else(|| RouteError::NotReady(model.to_owned()))?;
        let (chosen, arm) = match &routing.canary {
            Some((canary, percent)) if in_canary(user_id, *percent) => (canary.clone(), Arm::Canary),
            _ => (routing.stable.clone(), Arm::Stable),
        };
        let mut compare: Vec<Arc<LoadedModel>> = routing.shadow.iter().cloned().collect();
        if arm == Arm::Canary {
            compare.push(routing.stable.clone());
        }
        Ok(Route { model: chosen, arm, shadow: routing.shadow.clone(), compare })
    }

    /// A specific loaded version, or the stable one.
    pub fn get(&self, model: &str, version: Option<u32>) -> Result<Arc<LoadedModel>, RouteError> {
        let slot = self.slot(model).ok_or_else(|| RouteError::UnknownModel(model.to_owned()))?;
        match version {
            None => slot
                .routing
                .load()
                .as_ref()
                .map(|r| r.stable.clone())
                .ok_or_else(|| RouteError::NotReady(model.to_owned())),
            Some(v) => slot
                .versions
                .lock()
                .expect("versions lock")
                .get(&v)
                .cloned()
                .ok_or(RouteError::UnknownVersion { model: model.to_owned(), version: v }),
        }
    }

    /// Current policy of a model.
    pub fn policy(&self, model: &str) -> Result<TrafficPolicy, RouteError> {
        let slot = self.slot(model).ok_or_else(|| RouteError::UnknownModel(model.to_owned()))?;
        slot.routing.load().as_ref().map(|r| r.policy()).ok_or_else(|| RouteError::NotReady(model.to_owned()))
    }

    /// Sets a model's policy (pins it: newer versions load but do not become stable).
    pub fn set_policy(&self, model: &str, policy: TrafficPolicy) -> Result<(), RouteError> {
        let slot = self.slot(model).ok_or_else(|| RouteError::UnknownModel(model.to_owned()))?;
        let get = |v: u32| self.get(model, Some(v));
        let canary = match policy.canary {
            Some(c) if !(0.0..=100.0).contains(&c.percent) || c.percent.is_nan() => {
                return Err(RouteError::InvalidPolicy(format!("canary percent {} is not within 0-100", c.percent)));
            }
            Some(c) => Some((get(c.version)?, c.percent)),
            None => None,
        };
        let routing =
            Routing { stable: get(policy.stable)?, canary, shadow: policy.shadow.map(get).transpose()?, pinned: true };
        self.set_routing(model, &slot, routing);
        self.evict(&slot);
        Ok(())
    }

    /// Rolls a model back to the stable version before the current one (still kept), and
    /// pins it. Canary and shadow are cleared. Returns the version now stable.
    pub fn rollback(&self, model: &str) -> Result<u32, RouteError> {
        let slot = self.slot(model).ok_or_else(|| RouteError::UnknownModel(model.to_owned()))?;
        let current = self.policy(model)?.stable;
        loop {
            let previous = slot.history.lock().expect("history lock").pop();
            let Some(v) = previous else { return Err(RouteError::NoRollback(model.to_owned())) };
            if v == current {
                continue;
            }
            if let Ok(m) = self.get(model, Some(v)) {
                slot.routing.store(Some(Arc::new(Routing { stable: m, canary: None, shadow: None, pinned: true })));
                self.record(RepoEvent::Promoted { model: model.to_owned(), version: v });
                return Ok(v);
            }
        }
    }

    /// Pins several models together (e.g. `user_tags` and `conversion`) as one bundle;
    /// [`ModelRepository::rollback_bundle`] restores all of them in one step.
    pub fn pin_bundle(&self, members: &[(String, u32)]) -> Result<(), RouteError> {
        let mut bundles = self.bundles.lock().expect("bundles lock");
        // Validate everything before changing anything.
        let mut before = Vec::with_capacity(members.len());
        for (model, version) in members {
            self.get(model, Some(*version))?;
            before.push((model.clone(), self.policy(model)?));
        }
        for (model, version) in members {
            self.set_policy(model, TrafficPolicy { stable: *version, canary: None, shadow: None })?;
        }
        bundles.push(before);
        Ok(())
    }

    /// Restores the policies in force before the last bundle was pinned.
    pub fn rollback_bundle(&self) -> Result<Vec<(String, TrafficPolicy)>, RouteError> {
        let mut bundles = self.bundles.lock().expect("bundles lock");
        let before = bundles.pop().ok_or_else(|| RouteError::NoRollback("the bundle".into()))?;
        for (model, policy) in &before {
            self.set_policy(model, *policy)?;
        }
        Ok(before)
    }

    /// Every model with its policy, loaded and refused versions.
    pub fn models(&self) -> Vec<ModelStatus> {
        let slots = self.slots.read().expect("slots lock");
        slots
            .iter()
            .map(|(name, slot)| ModelStatus {
                name: name.clone(),
                policy: slot.routing.load().as_ref().map(|r| r.policy()),
                versions: slot.versions.lock().expect("versions lock").values().cloned().collect(),
                refused: slot.refused.lock().expect("refused lock").iter().map(|(v, (r, _))| (*v, r.clone())).collect(),
            })
            .collect()
    }

    /// Whether the repository knows the model: it has a version loaded or refused.
    pub fn knows(&self, model: &str) -> bool {
        self.slots.read().expect("slots lock").contains_key(model)
    }

    /// Whether the version of the model is loaded.
    pub fn has_version(&self, model: &str, version: u32) -> bool {
        self.slot(model).is_some_and(|s| s.versions.lock().expect("versions lock").contains_key(&version))
    }

    /// Every known model and whether it has a version ready to answer.
    pub fn readiness(&self) -> BTreeMap<String, bool> {
        let slots = self.slots.read().expect("slots lock");
        slots.iter().map(|(name, s)| (name.clone(), s.routing.load().is_some())).collect()
    }

    /// Whether some model has a version ready to answer. A model whose versions were all
    /// refused does not take the others out of service; [`ModelRepository::readiness`]
    /// tells each model's state.
    pub fn any_ready(&self) -> bool {
        self.slots.read().expect("slots lock").values().any(|s| s.routing.load().is_some())
    }

    /// Starts watching the folder: file events trigger a scan, and a periodic rescan backs
    /// the watcher up. Stops when the handle is dropped.
    pub fn watch(self: &Arc<Self>) -> Result<WatchHandle, notify::Error> {
        use notify::Watcher;
        let (tx, rx) = channel::<Signal>();
        let events = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|e| changes_files(&e.kind)) {
                let _ = events.send(Signal::Changed);
            }
        })?;
        watcher.watch(&self.config.root, notify::RecursiveMode::Recursive)?;
        let repo = Arc::clone(self);
        let interval = self.config.rescan_interval;
        let thread = std::thread::Builder::new()
            .name("model-repository".into())
            .spawn(move || {
                let mut next_rescan = Instant::now() + interval;
                loop {
                    let wait = next_rescan.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                        Ok(Signal::Changed) => {
                            while let Ok(s) = rx.try_recv() {
                                if matches!(s, Signal::Stop) {
                                    return;
                                }
                            }
                            repo.scan();
                        }
                        Err(RecvTimeoutError::Timeout) => {
                            repo.scan();
                            next_rescan = Instant::now() + interval;
                        }
                    }
                }
            })
            .expect("spawn watcher thread");
        Ok(WatchHandle { _watcher: watcher, stop: tx, thread: Some(thread) })
    }
}

/// Whether a file event can change what the folder holds. Opening and reading files is
/// not: a scan reads every package, and a scan triggered by its own reads would run again
/// at once, forever (it kept a core half busy). A file closed after writing is.
fn changes_files(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

impl ModelRepository {
    /// Scans run since the repository was opened (start, file events, periodic rescans).
    pub fn scans(&self) -> u64 {
        self.scans.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn check_identity(model: LoadedModel, name: &str, version: u32) -> Result<LoadedModel, PackageError> {
    if model.name() != name || model.version() != version {
        return Err(PackageError::Mismatch {
            against: "its folder",
            reason: format!("manifest says {} version {}, folder is {name}/{version}", model.name(), model.version()),
        });
    }
    Ok(model)
}

enum Signal {
    Changed,
    Stop,
}

/// Keeps the watcher running; stops it when dropped.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    stop: Sender<Signal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(Signal::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
