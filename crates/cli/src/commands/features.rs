//! `liveprofile features schema|build|examples|label`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use liveprofile_events::{DAY_MS, HOUR_MS};
use liveprofile_features::{
    EventSet, ExampleOptions, UserTableOptions, build_examples, build_user_table, conversion_schema, user_schema,
};
use liveprofile_predlog::{TrainingOptions, write_training_set};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Feature commands.
#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {
    /// Write a feature schema (ordered features, labels, hash) as JSON.
    Schema(SchemaArgs),
    /// Build the user feature table as of a cut-off, with labels from the window after it.
    Build(BuildArgs),
    /// Build conversion examples: room visits at decision points, labelled by whether they end in an order.
    Examples(ExamplesArgs),
    /// Build a training set from the prediction log: the logged rows of one feature schema
    /// with the labels their users earned after the time their features describe.
    Label(LabelArgs),
}

/// Which schema.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaKind {
    /// User features (the user_tags model's inputs).
    User,
    /// Conversion features (the conversion model's inputs).
    Conversion,
}

/// Arguments of `features schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which schema.
    #[arg(long, value_enum, default_value = "user")]
    kind: SchemaKind,
    /// Output file (stdout when absent).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Arguments of `features build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Event Parquet file.
    #[arg(long)]
    events: PathBuf,
    /// As-of time: RFC 3339 (e.g. 2017-12-02T00:00:00+08:00) or UTC milliseconds.
    #[arg(long)]
    cutoff: String,
    /// Label window after the cut-off (e.g. 7d, 48h), or `none` for no labels.
    #[arg(long, default_value = "7d")]
    label_window: String,
    /// Output Parquet table; its schema is also written beside it as `<name>.schema.json`.
    #[arg(long)]
    out: PathBuf,
    /// Fail if any event row breaks the contract or arrives out of order.
    #[arg(long)]
    strict: bool,
}

/// Arguments of `features examples`.
#[derive(Debug, Args)]
pub struct ExamplesArgs {
    /// Event Parquet file.
    #[arg(long)]
    events: PathBuf,
    /// Output Parquet table; its schema is also written beside it as `<name>.schema.json`.
    #[arg(long)]
    out: PathBuf,
    /// Only visits entered at or after this time (RFC 3339 or UTC ms); earlier events are history.
    #[arg(long)]
    from: Option<String>,
    /// Only visits entered before this time (RFC 3339 or UTC ms).
    #[arg(long)]
    to: Option<String>,
    /// Fail if any event row breaks the contract or arrives out of order.
    #[arg(long)]
    strict: bool,
}

/// Arguments of `features label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// Prediction log folder (the server's `--prediction-log`).
    #[arg(long)]
    log: PathBuf,
    /// Event Parquet file holding the events after the logged answers.
    #[arg(long)]
    events: PathBuf,
    /// Label window after each row's as-of time (e.g. 7d, 48h).
    #[arg(long, default_value = "7d")]
    label_window: String,
    /// Only rows of this model (needed when the log holds several feature schemas).
    #[arg(long)]
    model: Option<String>,
    /// Only rows of this version of the model.
    #[arg(long, requires = "model")]
    version: Option<u32>,
    /// Output Parquet table; its feature schema is also written beside it as `<name>.schema.json`.
    #[arg(long)]
    out: PathBuf,
    /// Fail if any event row breaks the contract or arrives out of order.
    #[arg(long)]
    strict: bool,
}

/// Parses RFC 3339 or integer milliseconds.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = chrono::DateTime::parse_from_rfc3339(s)
        .with_context(|| format!("{s:?} is neither RFC 3339 (2017-12-02T00:00:00+08:00) nor UTC milliseconds"))?;
    Ok(t.timestamp_millis())
}

/// Parses `7d`, `48h`, `none`: a positive whole number of days or hours, at most
/// [`MAX_WINDOW_DAYS`] days.
pub fn parse_window(s: &str) -> anyhow::Result<Option<i64>> {
    if s == "none" {
        return Ok(None);
    }
    let (num, unit_ms) = match (s.strip_suffix('d'), s.strip_suffix('h')) {
        (Some(n), _) => (n, DAY_MS),
        (_, Some(n)) => (n, HOUR_MS),
        _ => bail!("window {s:?}: expected like 7d, 48h or none (unit d or h)"),
    };
    let n: i64 = num.parse().with_context(|| format!("window {s:?}: expected like 7d, 48h or none"))?;
    if n <= 0 {
        bail!("window {s:?} must be positive");
    }
    match n.checked_mul(unit_ms) {
        Some(ms) if ms <= MAX_WINDOW_DAYS * DAY_MS => Ok(Some(ms)),
        _ => bail!("window {s:?} is longer than {MAX_WINDOW_DAYS} days"),
    }
}

/// Longest window [`parse_window`] takes: ten years.
pub const MAX_WINDOW_DAYS: i64 = 3_650;

/// Publishes a table's schema file beside it (`<stem>.schema.json`, by rename). When that
/// fails the table just written is removed too, so that no table is left beside an older
/// schema file.
fn publish_schema(out: &Path, schema: &liveprofile_features::FeatureSchema) -> anyhow::Result<()> {
    let file = schema_path(out);
    if let Err(e) = liveprofile_publish::Publication::write_all(&file, schema.to_json().as_bytes()) {
        let _ = std::fs::remove_file(out);
        return Err(anyhow::Error::new(e).context(format!(
            "writing {} (and {} removed)",
            file.display(),
            out.display()
        )));
    }
    Ok(())
}

fn schema_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    out.with_file_name(format!("{stem}.schema.json"))
}

fn load(path: &Path, strict: bool) -> anyhow::Result<(EventSet, f64)> {
    let started = Instant::now();
    let set = EventSet::load(path).with_context(|| format!("reading {}", path.display()))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "read {} rows from {} in {:.2} s: {} accepted, {} rejected, {} out of order",
        set.rows,
        path.display(),
        secs,
        set.accepted(),
        set.rejected.len(),
        set.out_of_order.len()
    );
    for r in set.rejected.iter().take(10) {
        eprintln!(
            "  row {}{}: {}",
            r.row,
            r.event_id.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
            r.error
        );
    }
    for (user, ts) in set.out_of_order.iter().take(10) {
        eprintln!("  out of order: user {user} event at {ts}");
    }
    if strict && (!set.rejected.is_empty() || !set.out_of_order.is_empty()) {
        bail!("{} rejected and {} out-of-order events (--strict)", set.rejected.len(), set.out_of_order.len());
    }
    Ok((set, secs))
}

/// Runs a feature command.
pub fn run(cmd: FeaturesCommand) -> anyhow::Result<()> {
    match cmd {
        FeaturesCommand::Schema(args) => {
            let schema = match args.kind {
                SchemaKind::User => user_schema(),
                SchemaKind::Conversion => conversion_schema(),
            };
            match args.out {
                Some(p) => super::ensure_parent(&p)
                    .and_then(|()| Ok(liveprofile_publish::Publication::write_all(&p, schema.to_json().as_bytes())?))
                    .with_context(|| format!("writing {}", p.display()))?,
                None => outln!("{}", schema.to_json()),
            }
        }
        FeaturesCommand::Build(args) => {
            super::ensure_parent(&args.out)?;
            let cutoff_ms = parse_time(&args.cutoff)?;
            let label_window_ms = parse_window(&args.label_window)?;
            let started = Instant::now();
            let (set, _) = load(&args.events, args.strict)?;
            let n = build_user_table(&set, UserTableOptions { cutoff_ms, label_window_ms }, &args.out)?;
            publish_schema(&args.out, &user_schema())?;
            let secs = started.elapsed().as_secs_f64();
            outln!(
                "wrote {n} users as of {cutoff_ms} to {} ({:.2} s end to end, {:.0} events/s)",
                args.out.display(),
                secs,
                set.rows as f64 / secs
            );
        }
        FeaturesCommand::Examples(args) => {
            super::ensure_parent(&args.out)?;
            let opts = ExampleOptions {
                from_ms: args.from.as_deref().map(parse_time).transpose()?,
                to_ms: args.to.as_deref().map(parse_time).transpose()?,
            };
            let started = Instant::now();
            let (set, _) = load(&args.events, args.strict)?;
            let (n, positives) = build_examples(&set, opts, &args.out)?;
            publish_schema(&args.out, &conversion_schema())?;
            let secs = started.elapsed().as_secs_f64();
            outln!(
                "wrote {n} conversion examples ({positives} positive, {:.2}%) to {} ({:.2} s end to end, {:.0} events/s)",
                100.0 * positives as f64 / n.max(1) as f64,
                args.out.display(),
                secs,
                set.rows as f64 / secs
            );
        }
        FeaturesCommand::Label(args) => label(args)?,
    }
    Ok(())
}

fn label(args: LabelArgs) -> anyhow::Result<()> {
    let label_window_ms = parse_window(&args.label_window)?
        .with_context(|| "--label-window none: a training set needs a label window".to_owned())?;
    if !args.log.is_dir() {
        bail!("prediction log {}: not a folder", args.log.display());
    }
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if same(&args.out, &args.events) {
        bail!("--out {} is the events file: it would be replaced", args.out.display());
    }
    let out_dir = args.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if same(out_dir, &args.log) {
        bail!(
            "--out {} is inside the prediction log folder: the log would take it for one of its files",
            args.out.display()
        );
    }
    super::ensure_parent(&args.out)?;
    let started = Instant::now();
    let (set, _) = load(&args.events, args.strict)?;
    let opts = TrainingOptions {
        label_window_ms,
        model: args.model,
        version: args.version,
        events_name: args.events.display().to_string(),
    };
    let report = write_training_set(&args.log, &set, &opts, &args.out)?;
    let schema = if report.schema_hash == conversion_schema().hash { conversion_schema() } else { user_schema() };
    publish_schema(&args.out, &schema)?;
    eprintln!("{}", liveprofile_predlog::training::left_out(&report, label_window_ms));
    if report.rows_of_unknown_users > 0 {
        eprintln!("{} rows of users without any event in {}", report.rows_of_unknown_users, args.events.display());
    }
    let positives: Vec<String> = report.labels.iter().zip(&report.positives).map(|(l, n)| format!("{l} {n}")).collect();
    outln!(
        "wrote {} rows of {} (schema {}) labelled over {} to {} ({:.2} s); positives: {}",
        report.rows_written,
        report.models.join(", "),
        report.schema_hash,
        args.label_window,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        positives.join(", ")
    );
    Ok(())
}
