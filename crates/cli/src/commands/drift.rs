//! `liveprofile drift`: the drift report of a model version's logged traffic against the
//! training reference in its package (`drift.json`, `drift.html`), and `liveprofile drift
//! reference`, which computes a package's reference from a training table.

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, UInt32Type};
use clap::{Args, Subcommand};
use liveprofile_drift::{ColumnReference, DriftReport, LiveHistograms, Reference};
use liveprofile_runtime::load_package;
use liveprofile_runtime::manifest::{MAX_JSON_BYTES, read_package_file};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};

/// File name of the reference inside a package.
pub const REFERENCE_FILE: &str = "drift_reference.json";

/// `liveprofile drift [--log ... | reference ...]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DriftArgs {
    #[command(subcommand)]
    command: Option<DriftCommand>,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, Subcommand)]
enum DriftCommand {
    /// Compute a package's drift reference from its training rows (a Parquet table with a
    /// column per feature, complete as the model scores them: a null, NaN or infinite
    /// value is an error naming the column; impute as for training): histograms of every
    /// feature and of every output the model gives on those rows; writes
    /// drift_reference.json into the package and names it, with its sha256, in the
    /// manifest, after checking both; a package that would not load keeps its files.
    Reference(ReferenceArgs),
}

/// The report's arguments.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Prediction log folder (written by `serve --prediction-log`).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Model name.
    #[arg(long)]
    model: Option<String>,
    /// Version [default: the highest version of the model in the log].
    #[arg(long)]
    version: Option<u32>,
    /// Model repository folder.
    #[arg(long, default_value = "models")]
    models: PathBuf,
    /// Output folder: drift.json and drift.html.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `liveprofile drift reference`.
#[derive(Debug, Args)]
pub struct ReferenceArgs {
    /// Package folder: models/<name>/<version>.
    #[arg(long)]
    model: PathBuf,
    /// Training rows: Parquet with one numeric column per feature of the model.
    #[arg(long)]
    table: PathBuf,
    /// What the rows are (table, split), kept in the reference.
    #[arg(long)]
    description: Option<String>,
    /// Quantile bins per column.
    #[arg(long, default_value_t = liveprofile_drift::DEFAULT_BINS)]
    bins: usize,
}

/// Runs the command.
pub fn run(args: DriftArgs) -> anyhow::Result<()> {
    match args.command {
        Some(DriftCommand::Reference(r)) => write_reference(&r),
        None => report(args.report),
    }
}

/// The prediction log's columns the report reads (the others are never decoded).
const LOG_COLUMNS: [&str; 5] = ["model", "model_version", "schema_hash", "features", "outputs"];

/// The column `name` of a log batch as text, or an error naming the type it has.
fn text_column<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a arrow::array::StringArray> {
    let col = b.column_by_name(name).with_context(|| format!("{} has no column {name:?}", path.display()))?;
    col.as_string_opt::<i32>().with_context(|| {
        format!("{}: column {name:?} is {}, a prediction log's is Utf8", path.display(), col.data_type())
    })
}

/// The `model_version` column of a log batch, or an error naming the type it has.
fn version_column<'a>(path: &Path, b: &'a RecordBatch) -> anyhow::Result<&'a arrow::array::UInt32Array> {
    let col = b
        .column_by_name("model_version")
        .with_context(|| format!("{} has no column \"model_version\"", path.display()))?;
    col.as_primitive_opt::<UInt32Type>().with_context(|| {
        format!("{}: column \"model_version\" is {}, a prediction log's is UInt32", path.display(), col.data_type())
    })
}

/// The value list column `name` of a log batch, or an error naming the type it has.
fn list_column<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> anyhow::Result<&'a arrow::array::ListArray> {
    let col = b.column_by_name(name).with_context(|| format!("{} has no column {name:?}", path.display()))?;
    let list = col.as_list_opt::<i32>();
    match list {
        Some(l) if l.value_type() == DataType::Float32 => Ok(l),
        _ => {
            bail!("{}: column {name:?} is {}, a prediction log's is a list of Float32", path.display(), col.data_type())
        }
    }
}

/// One row's values of a Float32 list column into `into` (a null value as NaN: missing);
/// an error for a null list.
fn row_values(
    path: &Path,
    list: &arrow::array::ListArray,
    name: &str,
    r: usize,
    into: &mut Vec<f32>,
) -> anyhow::Result<()> {
    if list.is_null(r) {
        bail!("{}: a row of the model has a null {name} list", path.display());
    }
    let v = list.value(r);
    let v = v.as_primitive::<Float32Type>();
    into.clear();
    if v.null_count() == 0 {
        into.extend_from_slice(v.values());
    } else {
        into.extend((0..v.len()).map(|i| if v.is_null(i) { f32::NAN } else { v.value(i) }));
    }
    Ok(())
}

/// The report. The log is read twice, one file and one batch at a time: first only its
/// `model` and `model_version` columns (the versions of the model in it), then the five
/// columns the histograms need, rows of other models and versions skipped; memory is one
/// batch of those columns and the histograms, not the log.
fn report(args: ReportArgs) -> anyhow::Result<()> {
    let (Some(log), Some(model), Some(out)) = (args.log, args.model, args.out) else {
        bail!("liveprofile drift needs --log DIR --model NAME --out DIR (or the `reference` subcommand)");
    };
    let mut versions = std::collections::BTreeMap::<u32, usize>::new();
    let mut all_rows = 0usize;
    liveprofile_predlog::for_each_batch::<anyhow::Error>(&log, &LOG_COLUMNS[..2], |path, b| {
        let names = text_column(path, b, "model")?;
        let vs = version_column(path, b)?;
        all_rows += b.num_rows();
        for r in 0..b.num_rows() {
            if names.is_valid(r) && vs.is_valid(r) && names.value(r) == model {
                *versions.entry(vs.value(r)).or_default() += 1;
            }
        }
        Ok(())
    })?;
    let version = match args.version {
        Some(v) if versions.contains_key(&v) => v,
        Some(v) => bail!(
            "the prediction log {} has no rows of model {model:?} version {v} (versions in it: {:?})",
            log.display(),
            versions.keys().collect::<Vec<_>>()
        ),
        None => match versions.keys().next_back() {
            Some(&v) => v,
            None => {
                bail!("the prediction log {} has no rows of model {model:?} ({all_rows} rows in all)", log.display())
            }
        },
    };
    let dir = args.models.join(&model).join(version.to_string());
    let loaded = load_package(&dir).with_context(|| format!("model package {}", dir.display()))?;
    let Some(reference) = loaded.drift_reference() else {
        bail!(
            "model package {} has no drift reference ({REFERENCE_FILE}); make one with `liveprofile drift reference`",
            dir.display()
        );
    };
    let width = loaded.width();
    let hash = &loaded.schema().hash;
    let mut live = LiveHistograms::empty(reference);
    let mut features: Vec<f32> = Vec::new();
    let mut outputs: Vec<f32> = Vec::new();
    liveprofile_predlog::for_each_batch::<anyhow::Error>(&log, &LOG_COLUMNS, |path, b| {
        let names = text_column(path, b, "model")?;
        let vs = version_column(path, b)?;
        let hashes = text_column(path, b, "schema_hash")?;
        let feature_lists = list_column(path, b, "features")?;
        let output_lists = list_column(path, b, "outputs")?;
        for r in 0..b.num_rows() {
            if !names.is_valid(r) || !vs.is_valid(r) || names.value(r) != model || vs.value(r) != version {
                continue;
            }
            let row_hash = if hashes.is_valid(r) { hashes.value(r) } else { "(null)" };
            if row_hash != hash {
                bail!(
                    "prediction log row of {model} version {version} has feature schema hash {row_hash}, the package's \
                     is {hash}"
                );
            }
            row_values(path, feature_lists, "features", r, &mut features)?;
            if features.len() != width {
                bail!(
                    "prediction log row of {model} version {version} has {} features, the package {width}",
                    features.len()
                );
            }
            row_values(path, output_lists, "outputs", r, &mut outputs)?;
            live.add_row(reference, &features, &outputs)
                .with_context(|| format!("prediction log row of {model} version {version} ({})", path.display()))?;
        }
        Ok(())
    })?;
    let report = DriftReport::new(&model, version, &log.display().to_string(), reference, &live);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // The page first, the JSON last: a failure between them leaves an old or absent
    // drift.json beside the new page, never a new drift.json beside an old page.
    liveprofile_publish::Publication::write_all(out.join("drift.html"), report.to_html().as_bytes())?;
    liveprofile_publish::Publication::write_all(out.join("drift.json"), report.to_json().as_bytes())?;
    let top: Vec<String> = report.ranked().iter().take(5).map(|c| format!("{} {:.3}", c.name, c.psi)).collect();
    println!(
        "{model} version {version}: {} live rows against {} reference rows; flagged {} of {} features, {} of {} outputs; \
         highest PSI: {}; wrote {}",
        report.live_rows,
        report.reference_rows,
        report.flagged_features.len(),
        report.features.len(),
        report.flagged_outputs.len(),
        report.outputs.len(),
        top.join(", "),
        out.display()
    );
    Ok(())
}

/// One column of the table as f32, with its number of nulls (read as NaN).
fn column_values(path: &Path, name: &str) -> anyhow::Result<(Vec<f32>, usize)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("reading {}", path.display()))?;
    if builder.schema().field_with_name(name).is_err() {
        bail!("{} has no column {name:?} (a feature of the model)", path.display());
    }
    let mask = ProjectionMask::columns(builder.parquet_schema(), [name]);
    let mut values = Vec::new();
    let mut nulls = 0;
    for batch in builder.with_projection(mask).build()? {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let col = arrow::compute::cast(batch.column(0), &DataType::Float32)
            .with_context(|| format!("{}: column {name:?} is not numeric", path.display()))?;
        let col = col.as_primitive::<Float32Type>();
        nulls += col.null_count();
        values.extend((0..col.len()).map(|i| if col.is_null(i) { f32::NAN } else { col.value(i) }));
    }
    Ok((values, nulls))
}

/// The manifest `text` (of `path`) with a `drift_reference` entry naming
/// [`REFERENCE_FILE`] with `sha`, the rest of its text kept as it is: the sha256 of an
/// entry that names [`REFERENCE_FILE`] replaced, a `null` entry replaced, or an entry added
/// at the end. Checked before anything is written: the result parses to the same JSON
/// with only that entry changed, and reads as a manifest.
fn manifest_with_reference(path: &Path, text: &str, sha: &str) -> anyhow::Result<String> {
    let manifest: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let Some(object) = manifest.as_object() else { bail!("{} is not a JSON object", path.display()) };
    let key = "\"drift_reference\"";
    let entry = format!("{{\n    \"file\": \"{REFERENCE_FILE}\",\n    \"sha256\": \"{sha}\"\n  }}");
    let edited = match object.get("drift_reference") {
        None => {
            let end = text.rfind('}').with_context(|| format!("{} is not a JSON object", path.display()))?;
            let head = text[..end].trim_end();
            let comma = if head.ends_with('{') { "" } else { "," };
            format!("{head}{comma}\n  {key}: {entry}\n}}\n")
        }
        Some(serde_json::Value::Null) => {
            // `"drift_reference": null` becomes the entry.
            let at = text.find(key).filter(|_| text.matches(key).count() == 1);
            let after = at.and_then(|at| {
                text[at + key.len()..].trim_start().strip_prefix(':').and_then(|r| r.trim_start().strip_prefix("null"))
            });
            match (at, after) {
                (Some(at), Some(after)) => format!("{}{key}: {entry}{after}", &text[..at]),
                _ => bail!("{}: cannot find its one `\"drift_reference\": null` to replace", path.display()),
            }
        }
        Some(named) => match named["sha256"].as_str() {
            Some(old) if named["file"] == REFERENCE_FILE && text.matches(old).count() == 1 => text.replace(old, sha),
            Some(old) if named["file"] == REFERENCE_FILE => bail!(
                "{}: the reference's sha256 {old} occurs more than once in the text; set \"drift_reference\" to null \
                 first",
                path.display()
            ),
            _ => bail!("{} names another drift reference; remove its drift_reference first", path.display()),
        },
    };
    let mut expected = manifest.clone();
    expected["drift_reference"] = serde_json::json!({ "file": REFERENCE_FILE, "sha256": sha });
    let parsed: serde_json::Value = serde_json::from_str(&edited)
        .with_context(|| format!("{}: the manifest with the reference is not valid JSON", path.display()))?;
    if parsed != expected {
        bail!("{}: the manifest with the reference would differ in more than its drift_reference", path.display());
    }
    serde_json::from_str::<liveprofile_runtime::Manifest>(&edited)
        .with_context(|| format!("{}: the manifest with the reference does not read as a manifest", path.display()))?;
    if edited.len() as u64 > MAX_JSON_BYTES {
        bail!("{}: the manifest would be {} bytes, over the limit of {MAX_JSON_BYTES}", path.display(), edited.len());
    }
    Ok(edited)
}

/// Writes `bytes` back as `path`, or removes `path` when it had none; a failure as text.
fn restore(path: &Path, bytes: Option<&[u8]>) -> Option<String> {
    let done = match bytes {
        Some(b) => liveprofile_publish::Publication::write_all(path, b).map_err(|e| e.to_string()),
        None => std::fs::remove_file(path).map_err(|e| e.to_string()),
    };
    done.err().map(|e| format!("{}: {e}", path.display()))
}

/// `liveprofile drift reference`. Everything is computed and checked before anything is
/// written: the reference (from complete rows only: a null or non-finite feature value is
/// an error naming the column), its size and the edited manifest within
/// [`MAX_JSON_BYTES`]. Then the reference is published, the manifest last (each by rename);
/// when the package does not load with them, the previous files are put back. A crash
/// between the two renames leaves the new reference beside the previous manifest: a
/// package that had no reference still loads (the file is not named), one that had one
/// fails its checksum until the command is run again.
fn write_reference(args: &ReferenceArgs) -> anyhow::Result<()> {
    let model = load_package(&args.model).with_context(|| format!("model package {}", args.model.display()))?;
    if args.bins == 0 || args.bins > liveprofile_drift::MAX_BINS {
        bail!("--bins must be between 1 and {}", liveprofile_drift::MAX_BINS);
    }
    let names = model.schema().names();
    let mut columns = Vec::with_capacity(names.len());
    for name in &names {
        let (values, nulls) = column_values(&args.table, name)?;
        let other = values.iter().filter(|v| !v.is_finite()).count() - nulls;
        if nulls > 0 || other > 0 {
            bail!(
                "{}: column {name:?} has {nulls} nulls and {other} NaN or infinite values in {} rows; a drift reference \
                 is built on complete rows, as the model scores them: impute the table as for training, or drop \
                 those rows",
                args.table.display(),
                values.len()
            );
        }
        columns.push(values);
    }
    let scored = model.score_columns(&columns).map_err(|e| anyhow::anyhow!("{}: {e}", args.table.display()))?;
    let outputs: Vec<ColumnReference> = model
        .output_columns()
        .iter()
        .zip(scored)
        .map(|(name, values)| ColumnReference::from_values(name, &values, args.bins))
        .collect();
    let features: Vec<ColumnReference> = names
        .iter()
        .zip(&columns)
        .map(|(name, values)| ColumnReference::from_values(name, values, args.bins))
        .collect();
    drop(columns);
    let rows = features.first().map_or(0, ColumnReference::rows);
    let description = args.description.clone().unwrap_or_else(|| {
        format!(
            "{} rows of {}",
            rows,
            args.table.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        )
    });
    let reference = Reference::new(description, model.schema().hash.clone(), args.bins, features, outputs)?;
    reference.check_fits(&model.schema().hash, &names, &model.output_columns())?;
    let json = reference.to_json();
    if json.len() as u64 > MAX_JSON_BYTES {
        bail!(
            "the reference would be {} bytes, over the limit of {MAX_JSON_BYTES} a package's JSON file may have; use \
             fewer --bins",
            json.len()
        );
    }
    let sha = liveprofile_runtime::package::sha256_hex(json.as_bytes());
    let manifest_path = args.model.join("manifest.json");
    let old_manifest = read_package_file(&manifest_path, MAX_JSON_BYTES, "a JSON file")?;
    let text =
        std::str::from_utf8(&old_manifest).with_context(|| format!("{} is not UTF-8", manifest_path.display()))?;
    let edited = manifest_with_reference(&manifest_path, text, &sha)?;
    let reference_path = args.model.join(REFERENCE_FILE);
    let old_reference = match std::fs::read(&reference_path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", reference_path.display())),
    };
    // Reference first, manifest last: the manifest never names a file not yet written.
    liveprofile_publish::Publication::write_all(&reference_path, json.as_bytes())?;
    let published = liveprofile_publish::Publication::write_all(&manifest_path, edited.as_bytes())
        .map_err(anyhow::Error::from)
        .and_then(|()| load_package(&args.model).map(drop).map_err(anyhow::Error::from));
    if let Err(e) = published {
        let failed: Vec<String> =
            [restore(&reference_path, old_reference.as_deref()), restore(&manifest_path, Some(&old_manifest))]
                .into_iter()
                .flatten()
                .collect();
        let restored = if failed.is_empty() {
            "the previous manifest and reference were put back".to_owned()
        } else {
            format!("putting the previous files back failed: {}", failed.join("; "))
        };
        return Err(e.context(format!("the package {} with its new reference; {restored}", args.model.display())));
    }
    println!(
        "{}: drift reference of {} rows, {} features, {} outputs written ({REFERENCE_FILE}, sha256 {sha})",
        args.model.display(),
        reference.rows,
        reference.features.len(),
        reference.outputs.len()
    );
    Ok(())
}
