//! From input columns to the model's features (kept column by column), with every bad value
//! found and named (row, column, reason) rather than dropped or clipped.

use crate::error::BatchError;
use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Schema};
use liveprofile_runtime::{InputError, LoadedModel};
use std::collections::HashMap;
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
    /// Finds every feature and kept column by name; lists all that are missing, and
    /// refuses a name the file has more than once.
    pub fn new(path: &Path, schema: &Schema, model: &LoadedModel, keep: &[String]) -> Result<Self, BatchError> {
        // Each name's first column and how many columns have it.
        let mut columns: HashMap<&str, (usize, usize)> = HashMap::with_capacity(schema.fields().len());
        for (i, f) in schema.fields().iter().enumerate() {
            columns.entry(f.name().as_str()).or_insert((i, 0)).1 += 1;
        }
        let mut missing = Vec::new();
        let mut duplicate = None;
        let mut find = |name: &str| match columns.get(name) {
            Some(&(i, 1)) => Some(i),
            Some(&(_, count)) => {
                duplicate.get_or_insert((name.to_owned(), count));
                None
            }
            None => {
                missing.push(name.to_owned());
                None
            }
        };
        let features: Vec<Option<usize>> = model.schema().features.iter().map(|f| find(&f.name)).collect();
        let kept: Vec<Option<usize>> = keep.iter().map(|k| find(k)).collect();
        if let Some((column, count)) = duplicate {
            return Err(BatchError::DuplicateColumn { path: path.to_path_buf(), column, count });
        }
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
    /// Good rows, feature-major in schema order: the first feature's value in every good
    /// row, then the second feature's, and so on (columnar input stays columnar; see
    /// [`LoadedModel::check_feature_major`]).
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
    for ((j, &c), dst) in plan.features.iter().enumerate().zip(values.chunks_exact_mut(n.max(1))) {
        let column: &ArrayRef = batch.column(c);
        match column.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                let strings = arrow::compute::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
                let strings = strings.as_string::<i32>();
                for (r, v) in dst.iter_mut().enumerate() {
                    if strings.is_null(r) || strings.value(r).trim().is_empty() {
                        fault[r].get_or_insert((j, "missing value".to_owned()));
                        continue;
                    }
                    let text = strings.value(r).trim();
                    match text.parse::<f32>() {
                        Ok(x) => *v = x,
                        Err(_) => {
                            fault[r].get_or_insert((j, format!("not a number: {text:?}")));
                        }
                    }
                }
            }
            _ => {
                let cast = arrow::compute::cast(column, &DataType::Float32).map_err(|e| e.to_string())?;
                let floats = cast.as_primitive::<Float32Type>();
                dst.copy_from_slice(&floats.values()[..n]);
                if floats.null_count() > 0 {
                    for (r, f) in fault.iter_mut().enumerate() {
                        if floats.is_null(r) {
                            f.get_or_insert((j, "missing value".to_owned()));
                        }
                    }
                }
            }
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
        let keep = converted.good.clone();
        converted.compact(w, &keep);
    }
    Ok(converted)
}

impl Converted {
    /// Rows still good.
    pub fn good_rows(&self) -> usize {
        self.good.iter().filter(|g| **g).count()
    }

    /// Keeps the values of the rows of `values` marked in `keep` (one flag per row that
    /// `values` holds now).
    fn compact(&mut self, w: usize, keep: &[bool]) {
        let rows = keep.len();
        let mut kept = Vec::with_capacity(keep.iter().filter(|k| **k).count() * w);
        for column in self.values.chunks_exact(rows.max(1)).take(w) {
            kept.extend(column.iter().zip(keep).filter(|(_, k)| **k).map(|(v, _)| *v));
        }
        self.values = kept;
    }

    /// After the model's check refused the batch: finds each refused row (non-finite
    /// value, category outside its vocabulary), rejects it with its column and reason, and
    /// drops its values.
    pub fn reject_invalid(&mut self, model: &LoadedModel) {
        let w = model.width();
        let good_rows: Vec<usize> = (0..self.good.len()).filter(|&r| self.good[r]).collect();
        let m = good_rows.len();
        let mut keep = vec![true; m];
        let mut row = vec![0f32; w];
        for (k, &r) in good_rows.iter().enumerate() {
            for (f, v) in row.iter_mut().enumerate() {
                *v = self.values[f * m + k];
            }
            if let Err(e) = model.validate(&row, 1) {
                keep[k] = false;
                self.good[r] = false;
                let (column, reason) = describe(&e);
                self.rejects.push(Reject { row: r, column, reason });
            }
        }
        self.rejects.sort_by_key(|x| x.row);
        self.compact(w, &keep);
    }
}

fn describe(e: &InputError) -> (String, String) {
    match e {
        InputError::NotFinite { feature, value, .. } => (feature.clone(), format!("not finite ({value})")),
        InputError::BadCategory { feature, value, size, .. } => {
            (feature.clone(), format!("a category with {size} values; {value} is not one of their indices"))
        }
        InputError::BadBool { feature, value, .. } => (feature.clone(), format!("a bool; {value} is neither 0 nor 1")),
        other => (String::new(), other.to_string()),
    }
}
