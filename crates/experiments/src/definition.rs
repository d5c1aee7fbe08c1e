//! Experiment definitions: one TOML file per experiment, checked on its own
//! ([`Experiment::parse`]) and against what the server runs ([`check_models`],
//! [`check_conflicts`]). Every refusal names the field it is about.
//!
//! ```toml
//! name = "conversion-v2-apparel"
//! salt = "conversion-v2-apparel-2026-11"
//! primary = "orders_per_visit"
//! guardrails = ["watch_minutes_per_visit"]
//! start = "2026-11-16T00:00:00+08:00"
//! end = "2026-11-30T00:00:00+08:00"
//!
//! [target]
//! categories = ["apparel"]
//! platforms = ["taobao", "douyin", "kuaishou"]
//!
//! [[arms]]
//! name = "control"
//! share = 50
//!
//! [[arms]]
//! name = "treatment"
//! share = 50
//! models = { conversion = 2 }
//! ```
//!
//! The first arm is the control every other arm is compared with. An arm's `models` lists
//! the version it answers with for each model it changes; a model an arm does not list is
//! answered by its stable version (never a canary), so arms differ only where the
//! definition says. A target list left out or empty means every category or platform.

use crate::metric::Metric;
use liveprofile_events::{DAY_MS, Platform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest experiment name (it is a file name, a label and a log key).
pub const MAX_NAME_LEN: usize = 64;
/// Most arms in one experiment.
pub const MAX_ARMS: usize = 16;
/// Share resolution: shares are percent with at most two decimals (the 10,000 buckets).
pub const SHARE_RESOLUTION: f64 = 100.0;
/// Pre-exposure window for the covariate (CUPED) when the file does not set one.
pub const DEFAULT_COVARIATE_DAYS: u32 = 7;
/// Longest covariate window.
pub const MAX_COVARIATE_DAYS: u32 = 90;

/// A checked experiment definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Unique name: letters, digits, `-`, `_`, `.`; at most [`MAX_NAME_LEN`].
    pub name: String,
    /// Hash salt of the assignment; a new salt per experiment keeps experiments independent.
    pub salt: String,
    /// The metric that decides.
    pub primary: Metric,
    /// Metrics that must not get significantly worse.
    pub guardrails: Vec<Metric>,
    /// Who is in the experiment.
    pub target: Target,
    /// Start (UTC ms, inclusive).
    pub start_ms: i64,
    /// End (UTC ms, exclusive).
    pub end_ms: i64,
    /// Days before the start over which the pre-exposure covariate is counted.
    pub covariate_days: u32,
    /// Arms, control first.
    pub arms: Vec<ArmSpec>,
}

/// Who an experiment applies to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Categories (empty: all).
    pub categories: Vec<String>,
    /// Platforms (empty: all).
    pub platforms: Vec<Platform>,
}

impl Target {
    /// Whether an answer or event on `platform` in `category` is in the target.
    pub fn contains(&self, platform: Platform, category: &str) -> bool {
        (self.platforms.is_empty() || self.platforms.contains(&platform))
            && (self.categories.is_empty() || self.categories.iter().any(|c| c == category))
    }

    /// Whether some (platform, category) is in both targets.
    pub fn overlaps(&self, other: &Target) -> bool {
        let platforms = self.platforms.is_empty()
            || other.platforms.is_empty()
            || self.platforms.iter().any(|p| other.platforms.contains(p));
        let categories = self.categories.is_empty()
            || other.categories.is_empty()
            || self.categories.iter().any(|c| other.categories.contains(c));
        platforms && categories
    }
}

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSpec {
    /// Name, unique within the experiment.
    pub name: String,
    /// Percent of assigned users (two decimals at most).
    pub share: f64,
    /// Model name -> version this arm answers with.
    pub models: BTreeMap<String, u32>,
}

/// A definition refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("experiment {experiment}: {field}: {reason}")]
pub struct DefinitionError {
    /// Experiment name (or the file when the name is unknown).
    pub experiment: String,
    /// The field at fault (`arms[1].share`, `primary`, ...).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExperiment {
    name: String,
    salt: String,
    primary: String,
    #[serde(default)]
    guardrails: Vec<String>,
    #[serde(default)]
    target: RawTarget,
    start: toml::Value,
    end: toml::Value,
    covariate_days: Option<u32>,
    arms: Vec<RawArm>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    #[serde(default)]
    categories: Vec<String>,
    #[serde(default)]
    platforms: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArm {
    name: String,
    share: toml::Value,
    #[serde(default)]
    models: BTreeMap<String, i64>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !s.starts_with('.')
}

/// A time as RFC 3339 text, a TOML date-time with offset, or UTC milliseconds.
fn parse_time(v: &toml::Value) -> Result<i64, String> {
    let text = match v {
        toml::Value::Integer(ms) => return Ok(*ms),
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) => d.to_string(),
        other => return Err(format!("{other} is not a time (RFC 3339 with offset, or UTC ms)")),
    };
    chrono::DateTime::parse_from_rfc3339(&text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{text:?} is not an RFC 3339 time with offset: {e}"))
}

impl Experiment {
    /// Parses and checks a definition on its own (models and other experiments are checked
    /// by [`check_models`] and [`check_conflicts`]).
    pub fn parse(text: &str) -> Result<Experiment, DefinitionError> {
        let raw: RawExperiment = toml::from_str(text).map_err(|e| DefinitionError {
            experiment: "(unparsed)".to_owned(),
            field: e.span().map_or_else(|| "file".to_owned(), |s| format!("bytes {}..{}", s.start, s.end)),
            reason: e.message().to_owned(),
        })?;
        let name = raw.name.clone();
        let err = |field: &str, reason: String| DefinitionError {
            experiment: if valid_name(&name) { name.clone() } else { format!("{name:?}") },
            field: field.to_owned(),
            reason,
        };
        if !valid_name(&raw.name) {
            return Err(err(
                "name",
                format!("must be 1-{MAX_NAME_LEN} letters, digits, '-', '_' or '.', not starting with '.'"),
            ));
        }
        if raw.salt.trim().is_empty() {
            return Err(err("salt", "is empty".to_owned()));
        }
        let primary = Metric::parse(&raw.primary).map_err(|e| err("primary", e))?;
        let mut guardrails = Vec::new();
        for (i, g) in raw.guardrails.iter().enumerate() {
            let m = Metric::parse(g).map_err(|e| err(&format!("guardrails[{i}]"), e))?;
            if m == primary || guardrails.contains(&m) {
                return Err(err(&format!("guardrails[{i}]"), format!("{m} is listed twice (or is the primary)")));
            }
            guardrails.push(m);
        }
        let mut platforms = Vec::new();
        for (i, p) in raw.target.platforms.iter().enumerate() {
            let p = Platform::parse(p).map_err(|e| err(&format!("target.platforms[{i}]"), e.to_string()))?;
            if !platforms.contains(&p) {
                platforms.push(p);
            }
        }
        for (i, c) in raw.target.categories.iter().enumerate() {
            if c.is_empty() {
                return Err(err(&format!("target.categories[{i}]"), "is empty".to_owned()));
            }
        }
        let start_ms = parse_time(&raw.start).map_err(|e| err("start", e))?;
        let end_ms = parse_time(&raw.end).map_err(|e| err("end", e))?;
        if end_ms <= start_ms {
            return Err(err("end", format!("{end_ms} is not after start {start_ms}")));
        }
        let covariate_days = raw.covariate_days.unwrap_or(DEFAULT_COVARIATE_DAYS);
        if covariate_days > MAX_COVARIATE_DAYS {
            return Err(err("covariate_days", format!("{covariate_days} is over the limit of {MAX_COVARIATE_DAYS}")));
        }
        if raw.arms.len() < 2 {
            return Err(err(
                "arms",
                format!("{} arm(s); an experiment needs a control and a treatment", raw.arms.len()),
            ));
        }
        if raw.arms.len() > MAX_ARMS {
            return Err(err("arms", format!("{} arms is over the limit of {MAX_ARMS}", raw.arms.len())));
        }
        let mut arms: Vec<ArmSpec> = Vec::with_capacity(raw.arms.len());
        let mut total_units = 0i64;
        for (i, a) in raw.arms.iter().enumerate() {
            let field = |f: &str| format!("arms[{i}].{f}");
            if !valid_name(&a.name) {
                return Err(err(&field("name"), format!("{:?} is not a valid arm name", a.name)));
            }
            if arms.iter().any(|b| b.name == a.name) {
                return Err(err(&field("name"), format!("{:?} is used by two arms", a.name)));
            }
            let share = match &a.share {
                toml::Value::Integer(n) => *n as f64,
                toml::Value::Float(x) => *x,
                other => return Err(err(&field("share"), format!("{other} is not a number"))),
            };
            let units = share * SHARE_RESOLUTION;
            if !share.is_finite() || share <= 0.0 || (units - units.round()).abs() > 1e-6 {
                return Err(err(
                    &field("share"),
                    format!("{share} is not a positive percent with at most two decimals"),
                ));
            }
            total_units += units.round() as i64;
            let mut models = BTreeMap::new();
            for (model, &version) in &a.models {
                if !(1..=i64::from(u32::MAX - 1)).contains(&version) {
                    return Err(err(&field(&format!("models.{model}")), format!("version {version} is out of range")));
                }
                models.insert(model.clone(), version as u32);
            }
            arms.push(ArmSpec { name: a.name.clone(), share, models });
        }
        if total_units != 100 * SHARE_RESOLUTION as i64 {
            return Err(err(
                "arms[].share",
                format!("shares sum to {}, not 100", total_units as f64 / SHARE_RESOLUTION),
            ));
        }
        // Arms that change no model are allowed: an A/A experiment checks the set-up itself.
        Ok(Experiment {
            name: raw.name,
            salt: raw.salt,
            primary,
            guardrails,
            target: Target { categories: raw.target.categories, platforms },
            start_ms,
            end_ms,
            covariate_days,
            arms,
        })
    }

    /// Every metric the experiment reports: the primary, then the guardrails, then the rest
    /// of [`Metric::ALL`].
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = vec![self.primary];
        out.extend(self.guardrails.iter().copied());
        for m in Metric::ALL {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// Models any arm changes.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self.arms.iter().flat_map(|a| a.models.keys().map(String::as_str)).collect();
        names.sort_unstable();
        names.dedup();
        names.into_iter()
    }

    /// Whether the experiment changes `model`.
    pub fn changes(&self, model: &str) -> bool {
        self.arms.iter().any(|a| a.models.contains_key(model))
    }

    /// Whether `ts_ms` is inside the experiment's window.
    pub fn is_running_at(&self, ts_ms: i64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts_ms)
    }

    /// Start of the pre-exposure window (UTC ms).
    pub fn covariate_start_ms(&self) -> i64 {
        self.start_ms - i64::from(self.covariate_days) * DAY_MS
    }

    /// Index of an arm by name.
    pub fn arm_index(&self, name: &str) -> Option<usize> {
        self.arms.iter().position(|a| a.name == name)
    }

    /// The definition as TOML text that [`Experiment::parse`] reads back to the same value.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |items: Vec<String>| format!("[{}]", items.join(", "));
        out.push_str(&format!(
            "name = {}\nsalt = {}\nprimary = {}\n",
            q(&self.name),
            q(&self.salt),
            q(self.primary.name())
        ));
        out.push_str(&format!("guardrails = {}\n", list(self.guardrails.iter().map(|m| q(m.name())).collect())));
        out.push_str(&format!(
            "start = {}\nend = {}\ncovariate_days = {}\n",
            self.start_ms, self.end_ms, self.covariate_days
        ));
        out.push_str(&format!(
            "\n[target]\ncategories = {}\nplatforms = {}\n",
            list(self.target.categories.iter().map(|c| q(c)).collect()),
            list(self.target.platforms.iter().map(|p| q(p.as_str())).collect())
        ));
        for a in &self.arms {
            out.push_str(&format!("\n[[arms]]\nname = {}\nshare = {}\n", q(&a.name), a.share));
            let models: Vec<String> = a.models.iter().map(|(m, v)| format!("{} = {v}", q(m))).collect();
            out.push_str(&format!("models = {{ {} }}\n", models.join(", ")));
        }
        out
    }
}

/// Refuses an arm naming a model version that is not loaded; `loaded(model, version)` says
/// whether it is.
pub fn check_models(e: &Experiment, loaded: impl Fn(&str, u32) -> bool) -> Result<(), DefinitionError> {
    for (i, a) in e.arms.iter().enumerate() {
        for (model, &version) in &a.models {
            if !loaded(model, version) {
                return Err(DefinitionError {
                    experiment: e.name.clone(),
                    field: format!("arms[{i}].models.{model}"),
                    reason: format!("model {model} version {version} is not loaded"),
                });
            }
        }
    }
    Ok(())
}

/// Refuses a new experiment that changes a model another running experiment changes for an
/// overlapping target and time, or that reuses a running experiment's name.
pub fn check_conflicts<'a>(
    new: &Experiment,
    running: impl IntoIterator<Item = &'a Experiment>,
) -> Result<(), DefinitionError> {
    for other in running {
        if other.name == new.name {
            return Err(DefinitionError {
                experiment: new.name.clone(),
                field: "name".to_owned(),
                reason: "an experiment of this name exists".to_owned(),
            });
        }
        let overlap_in_time = new.start_ms < other.end_ms && other.start_ms < new.end_ms;
        if !overlap_in_time || !new.target.overlaps(&other.target) {
            continue;
        }
        if let Some(model) = new.models().find(|m| other.changes(m)) {
            return Err(DefinitionError {
                experiment: new.name.clone(),
                field: "target".to_owned(),
                reason: format!(
                    "experiment {} also changes model {model} for an overlapping target and time",
                    other.name
                ),
            });
        }
    }
    Ok(())
}
