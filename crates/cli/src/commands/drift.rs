//! `liveprofile drift`: the drift report of a model version's logged traffic against the
//! training reference in its package (`drift.json`, `drift.html`), and `liveprofile drift
//! reference`, which computes a package's reference from a training table.

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, UInt32Type};
use clap::{Args, Subcommand};
use liveprofile_drift::{ColumnReference, DriftReport, LiveHistograms, Reference};
use liveprofile_runtime::{LoadedModel, load_package};
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
    /// column per feature): histograms of every feature and of every output the model
    /// gives on those rows; writes drift_reference.json into the package and names it,
    /// with its sha256, in the manifest.
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

fn report(args: ReportArgs) -> anyhow::Result<()> {
    let (Some(log), Some(model), Some(out)) = (args.log, args.model, args.out) else {
        bail!("liveprofile drift needs --log DIR --model NAME --out DIR (or the `reference` subcommand)");
    };
    let rows =
        liveprofile_predlog::read_log(&log).with_context(|| format!("reading the prediction log {}", log.display()))?;
    let mut versions = std::collections::BTreeMap::<u32, usize>::new();
    for b in &rows.batches {
        let names = b.column_by_name("model").context("log without a model column")?.as_string::<i32>();
        let vs = b
            .column_by_name("model_version")
            .context("log without a model_version column")?
            .as_primitive::<UInt32Type>();
        for r in 0..b.num_rows() {
            if names.value(r) == model {
                *versions.entry(vs.value(r)).or_default() += 1;
            }
        }
    }
    let version = match args.version {
        Some(v) if versions.contains_key(&v) => v,
        Some(v) => bail!(
            "the prediction log {} has no rows of model {model:?} version {v} (versions in it: {:?})",
            log.display(),
            versions.keys().collect::<Vec<_>>()
        ),
        None => match versions.keys().next_back() {
            Some(&v) => v,
            None => bail!(
                "the prediction log {} has no rows of model {model:?} ({} rows in all)",
                log.display(),
                rows.rows()
            ),
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
    let mut outputs: Vec<f32> = Vec::new();
    for b in &rows.batches {
        let names = b.column_by_name("model").context("model column")?.as_string::<i32>();
        let vs = b.column_by_name("model_version").context("model_version column")?.as_primitive::<UInt32Type>();
        let hashes = b.column_by_name("schema_hash").context("schema_hash column")?.as_string::<i32>();
        let features = b.column_by_name("features").context("features column")?.as_list::<i32>();
        let outs = b.column_by_name("outputs").context("outputs column")?.as_list::<i32>();
        for r in 0..b.num_rows() {
            if names.value(r) != model || vs.value(r) != version {
                continue;
            }
            if hashes.value(r) != hash {
                bail!(
                    "prediction log row of {model} version {version} has feature schema hash {}, the package's is {hash}",
                    hashes.value(r)
                );
            }
            let f = features.value(r);
            let f = f.as_primitive::<Float32Type>();
            if f.len() != width {
                bail!("prediction log row of {model} version {version} has {} features, the package {width}", f.len());
            }
            let o = outs.value(r);
            outputs.clear();
            outputs.extend(o.as_primitive::<Float32Type>().values().iter().copied());
            live.add_row(reference, f.values(), &outputs)?;
        }
    }
    let report = DriftReport::new(&model, version, &log.display().to_string(), reference, &live);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    liveprofile_publish::Publication::write_all(out.join("drift.json"), report.to_json().as_bytes())?;
    liveprofile_publish::Publication::write_all(out.join("drift.html"), report.to_html().as_bytes())?;
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

/// One column of the table as f32, nulls as NaN (counted as missing).
fn column_values(path: &Path, name: &str) -> anyhow::Result<Vec<f32>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).with_context(|| format!("reading {}", path.display()))?;
    if builder.schema().field_with_name(name).is_err() {
        bail!("{} has no column {name:?} (a feature of the model)", path.display());
    }
    let mask = ProjectionMask::columns(builder.parquet_schema(), [name]);
    let mut values = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch.with_context(|| format!("reading {}", path.display()))?;
        let col = arrow::compute::cast(batch.column(0), &DataType::Float32)
            .with_context(|| format!("{}: column {name:?} is not numeric", path.display()))?;
        let col = col.as_primitive::<Float32Type>();
        values.extend((0..col.len()).map(|i| if col.is_null(i) { f32::NAN } else { col.value(i) }));
    }
    Ok(values)
}

/// The model's output columns on every row of the table, column by column.
fn output_values(path: &Path, model: &LoadedModel) -> anyhow::Result<Vec<Vec<f32>>> {
    let names = model.schema().names();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
    let columns = model.output_columns().len();
    let mut out = vec![Vec::new(); columns];
    let mut first_row = 0usize;
    for batch in builder.with_projection(mask).with_batch_size(4_096).build()? {
        let batch: RecordBatch = batch?;
        let rows = batch.num_rows();
        let mut dense = vec![0f32; rows * names.len()];
        for (k, name) in names.iter().enumerate() {
            let col =
                batch.column_by_name(name).with_context(|| format!("{} has no column {name:?}", path.display()))?;
            let col = arrow::compute::cast(col, &DataType::Float32)?;
            let col = col.as_primitive::<Float32Type>();
            for r in 0..rows {
                dense[r * names.len() + k] = if col.is_null(r) { f32::NAN } else { col.value(r) };
            }
        }
        let scores = model
            .score(&dense, rows)
            .map_err(|e| anyhow::anyhow!("{}: rows from {first_row} cannot be scored: {e}", path.display()))?;
        let mut c = 0;
        for o in &scores.outputs {
            for j in 0..o.width {
                out[c + j].extend((0..rows).map(|r| o.values[r * o.width + j]));
            }
            c += o.width;
        }
        first_row += rows;
    }
    Ok(out)
}

fn write_reference(args: &ReferenceArgs) -> anyhow::Result<()> {
    let model = load_package(&args.model).with_context(|| format!("model package {}", args.model.display()))?;
    if args.bins == 0 || args.bins > liveprofile_drift::MAX_BINS {
        bail!("--bins must be between 1 and {}", liveprofile_drift::MAX_BINS);
    }
    let names = model.schema().names();
    let mut features = Vec::with_capacity(names.len());
    for name in &names {
        features.push(ColumnReference::from_values(name, &column_values(&args.table, name)?, args.bins));
    }
    let outputs: Vec<ColumnReference> = model
        .output_columns()
        .iter()
        .zip(output_values(&args.table, &model)?)
        .map(|(name, values)| ColumnReference::from_values(name, &values, args.bins))
        .collect();
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
    let sha = liveprofile_runtime::package::sha256_hex(json.as_bytes());
    liveprofile_publish::Publication::write_all(args.model.join(REFERENCE_FILE), json.as_bytes())?;
    // The manifest names the file with its checksum; the rest of its text is kept as it is.
    let manifest_path = args.model.join("manifest.json");
    let text =
        std::fs::read_to_string(&manifest_path).with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&text)?;
    let named = &manifest["drift_reference"];
    let text = match named["sha256"].as_str() {
        Some(old) if named["file"] == REFERENCE_FILE && text.matches(old).count() == 1 => text.replace(old, &sha),
        Some(_) => bail!("{} names another drift reference; remove its drift_reference first", manifest_path.display()),
        None => {
            let end = text.rfind('}').with_context(|| format!("{} is not a JSON object", manifest_path.display()))?;
            format!(
                "{},\n  \"drift_reference\": {{\n    \"file\": \"{REFERENCE_FILE}\",\n    \"sha256\": \"{sha}\"\n  }}\n}}\n",
                text[..end].trim_end()
            )
        }
    };
    liveprofile_publish::Publication::write_all(&manifest_path, text.as_bytes())?;
    load_package(&args.model).with_context(|| format!("the package {} with its reference", args.model.display()))?;
    println!(
        "{}: drift reference of {} rows, {} features, {} outputs written ({REFERENCE_FILE}, sha256 {sha})",
        args.model.display(),
        reference.rows,
        reference.features.len(),
        reference.outputs.len()
    );
    Ok(())
}
