//! From input columns to dense rows in the model's feature order, with every bad value
//! found and named (row, column, reason) rather than dropped or clipped.

use crate::error::BatchError;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Schema};
use liveprofile_runtime::{InputError, LoadedModel};
use std::path::Path;

/// Where the model's features and the kept columns are in the batches.
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    /// Batch column of each model feature, in schema order.
    pub features: Vec<usize>,
    /// Batch column of each kept column, in the order asked.
    pub keep: Vec<usize>,
}

impl ColumnPlan {
    /// Finds every feature and kept column by name; lists all that are missing.
    pub fn new(path: &Path, schema: &Schema, model: &LoadedModel, keep: &[String]) -> Result<Self, BatchError> {
        let mut missing = Vec::new();
        let mut find = |name: &str| match schema.index_of(name) {
            Ok(i) => Some(i),
            Err(_) => {
                missing.push(name.to_owned());
                None
            }
        };
        let features: Vec<Option<usize>> = model.schema().features.iter().map(|f| find(&f.name)).collect();
        let kept: Vec<Option<usize>> = keep.iter().map(|k| find(k)).collect();
        if !missing.is_empty() {
            return Err(BatchError::MissingColumns { path: path.to_path_buf(), missing });
        }
        let plan = ColumnPlan {
            features: features.into_iter().flatten().collect(),
            keep: kept.into_iter().flatten().collect(),
        };
        for &i in &plan.features {
            let field = schema.field(i);
            if !numeric_or_text(field.data_type()) {
                return Err(BatchError::ColumnType {
                    path: path.to_path_buf(),
                    column: field.name().clone(),
                    data_type: field.data_type().to_string(),
                });
            }
        }
        Ok(plan)
    }
}

fn numeric_or_text(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// A row that cannot be scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Row within the batch given to [`convert`].
    pub row: usize,
    /// Column at fault.
    pub column: String,
    /// What is wrong.
    pub reason: String,
}

/// Rows of a batch ready to score.
#[derive(Debug, Default)]
pub struct Converted {
    /// Good rows, row-major in feature order.
    pub values: Vec<f32>,
    /// Whether each batch row is good (all true when there are no rejects).
    pub good: Vec<bool>,
    /// One entry per bad row (its first fault), in row order.
    pub rejects: Vec<Reject>,
}

/// Converts a batch: nulls are missing values, text must parse as a number. (Finite
/// values and category indices are the model's check, see [`Converted::reject_invalid`].)
pub fn convert(batch: &RecordBatch, plan: &ColumnPlan, model: &LoadedModel) -> Result<Converted, String> {
    let n = batch.num_rows();
    let w = model.width();
    let mut values = vec![0f32; n * w];
    let mut fault: Vec<Option<(usize, String)>> = vec![None; n];
    // Numeric columns without nulls (the usual case) are copied below row by row, writing
    // each row once in order; the rest are handled here value by value.
    let mut plain: Vec<(usize, ArrayRef)> = Vec::with_capacity(plan.features.len());
    for (j, &c) in plan.features.iter().enumerate() {
        let column: &ArrayRef = batch.column(c);
        match column.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let strings = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
                let strings = strings.as_string::<i32>();
                for r in 0..n {
                    if strings.is_null(r) || strings.value(r).trim().is_empty() {
                        fault[r].get_or_insert((j, "missing value".to_owned()));
                        continue;
                    }
                    let text = strings.value(r).trim();
                    match text.parse::<f32>() {
                        Ok(v) => values[r * w + j] = v,
                        Err(_) => {
                            fault[r].get_or_insert((j, format!("not a number: {text:?}")));
                        }
                    }
                }
            }
            _ => {
                let cast = arrow::compute::cast(column, &DataType::Float32).map_err(|e| e.to_string())?;
                if cast.null_count() == 0 {
                    plain.push((j, cast));
                    continue;
                }
                let floats = cast.as_primitive::<Float32Type>();
                let raw = floats.values();
                {
                    for (r, v) in raw.iter().enumerate() {
                        if floats.is_null(r) {
                            fault[r].get_or_insert((j, "missing value".to_owned()));
                        } else {
                            values[r * w + j] = *v;
                        }
                    }
                }
            }
        }
    }
    let columns: Vec<(usize, &[f32])> =
        plain.iter().map(|(j, a)| (*j, &a.as_primitive::<Float32Type>().values()[..n])).collect();
    for (r, row) in values.chunks_exact_mut(w.max(1)).enumerate() {
        for &(j, src) in &columns {
            row[j] = src[r];
        }
    }
    let names = &model.schema().features;
    let mut rejects = Vec::new();
    let mut good = vec![true; n];
    for (r, f) in fault.iter().enumerate() {
        if let Some((j, reason)) = f {
            good[r] = false;
            rejects.push(Reject { row: r, column: names[*j].name.clone(), reason: reason.clone() });
        }
    }
    let mut converted = Converted { values, good, rejects };
    if !converted.rejects.is_empty() {
        converted.compact(w, None);
    }
    Ok(converted)
}

impl Converted {
    /// Rows still good.
    pub fn good_rows(&self) -> usize {
        self.good.iter().filter(|g| **g).count()
    }

    /// Keeps the values of good rows only. `values` holds either every row (`None`) or
    /// the rows that were good before `newly_bad` were found.
    fn compact(&mut self, w: usize, newly_bad: Option<&[bool]>) {
        let mut kept = Vec::with_capacity(self.values.len());
        match newly_bad {
            None => {
                for (r, g) in self.good.iter().enumerate() {
                    if *g {
                        kept.extend_from_slice(&self.values[r * w..(r + 1) * w]);
                    }
                }
            }
            Some(bad) => {
                for (k, b) in bad.iter().enumerate() {
                    if !b {
                        kept.extend_from_slice(&self.values[k * w..(k + 1) * w]);
                    }
                }
            }
        }
        self.values = kept;
    }

    /// After the model's check refused the batch: finds each refused row (non-finite
    /// value, category outside its vocabulary), rejects it with its column and reason, and
    /// drops its values.
    pub fn reject_invalid(&mut self, model: &LoadedModel) {
        let w = model.width();
        let good_rows: Vec<usize> = (0..self.good.len()).filter(|&r| self.good[r]).collect();
        let mut bad = vec![false; good_rows.len()];
        for (k, &r) in good_rows.iter().enumerate() {
            if let Err(e) = model.validate(&self.values[k * w..(k + 1) * w], 1) {
                bad[k] = true;
                self.good[r] = false;
                let (column, reason) = describe(&e);
                self.rejects.push(Reject { row: r, column, reason });
            }
        }
        self.rejects.sort_by_key(|x| x.row);
        self.compact(w, Some(&bad));
    }
}

fn describe(e: &InputError) -> (String, String) {
    match e {
        InputError::NotFinite { feature, value, .. } => (feature.clone(), format!("not finite ({value})")),
        InputError::BadCategory { feature, value, size, .. } => {
            (feature.clone(), format!("a category with {size} values; {value} is not one of their indices"))
        }
        other => (String::new(), other.to_string()),
    }
}
