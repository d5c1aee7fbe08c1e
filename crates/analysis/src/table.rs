//! The input: one row per user with its id, optionally its platform and a conversion
//! score, and one probability per tag (the batch scorer's output). Every value is checked:
//! a missing column, a null, a value outside [0, 1] or not finite is an error that names
//! the column (and row); nothing is dropped or clipped.

use crate::AnalysisError;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Schema};
use std::path::Path;

/// Column names of the input.
#[derive(Debug, Clone)]
pub struct Columns {
    /// User id column.
    pub user: String,
    /// Platform column, used when present.
    pub platform: String,
    /// A conversion-score column, used when present.
    pub conversion: String,
    /// Tag columns; empty means every floating-point column other than the conversion one.
    pub tags: Vec<String>,
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            user: "user_id".into(),
            platform: "platform".into(),
            conversion: "conversion".into(),
            tags: Vec::new(),
        }
    }
}

/// Users and their tag probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct TagTable {
    /// Tag names, in column order.
    pub tags: Vec<String>,
    /// User ids.
    pub users: Vec<String>,
    /// Platform per user, when the input has the column.
    pub platforms: Option<Vec<String>>,
    /// Conversion score per user, when the input has the column.
    pub conversion: Option<Vec<f64>>,
    /// `users x tags` probabilities, row-major.
    pub scores: Vec<f64>,
}

impl TagTable {
    /// Rows.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Probabilities of one user.
    pub fn row(&self, i: usize) -> &[f64] {
        let t = self.tags.len();
        &self.scores[i * t..(i + 1) * t]
    }

    /// Builds a table from in-memory batches (also what [`read_parquet`] does per file).
    pub fn from_batches(
        schema: &Schema,
        batches: &[RecordBatch],
        columns: &Columns,
    ) -> Result<TagTable, AnalysisError> {
        let missing = |c: &str| AnalysisError::MissingColumn { column: c.to_owned() };
        schema.index_of(&columns.user).map_err(|_| missing(&columns.user))?;
        let tags: Vec<String> = if columns.tags.is_empty() {
            schema
                .fields()
                .iter()
                .filter(|f| matches!(f.data_type(), DataType::Float32 | DataType::Float64))
                .map(|f| f.name().clone())
                .filter(|n| *n != columns.conversion && *n != columns.platform)
                .collect()
        } else {
            for t in &columns.tags {
                schema.index_of(t).map_err(|_| missing(t))?;
            }
            columns.tags.clone()
        };
        if tags.is_empty() {
            return Err(AnalysisError::NoTagColumns);
        }
        let has_platform = schema.index_of(&columns.platform).is_ok();
        let has_conversion = schema.index_of(&columns.conversion).is_ok();
        let mut table = TagTable {
            tags: tags.clone(),
            users: Vec::new(),
            platforms: has_platform.then(Vec::new),
            conversion: has_conversion.then(Vec::new),
            scores: Vec::new(),
        };
        let mut offset = 0usize;
        for batch in batches {
            let n = batch.num_rows();
            let text = |name: &str| -> Result<Vec<String>, AnalysisError> {
                let col = batch.column_by_name(name).ok_or_else(|| missing(name))?;
                let col = arrow::compute::cast(col, &DataType::Utf8)
                    .map_err(|e| AnalysisError::ColumnType { column: name.to_owned(), reason: e.to_string() })?;
                let s = col.as_string::<i32>();
                (0..n)
                    .map(|r| {
                        if s.is_null(r) {
                            Err(AnalysisError::BadValue {
                                column: name.to_owned(),
                                row: offset + r,
                                value: "null".into(),
                            })
                        } else {
                            Ok(s.value(r).to_owned())
                        }
                    })
                    .collect()
            };
            table.users.extend(text(&columns.user)?);
            if let Some(p) = table.platforms.as_mut() {
                p.extend(text(&columns.platform)?);
            }
            let probabilities = |name: &str| -> Result<Vec<f64>, AnalysisError> {
                let col = batch.column_by_name(name).ok_or_else(|| missing(name))?;
                let col = arrow::compute::cast(col, &DataType::Float64)
                    .map_err(|e| AnalysisError::ColumnType { column: name.to_owned(), reason: e.to_string() })?;
                let v = col.as_primitive::<Float64Type>();
                (0..n)
                    .map(|r| {
                        let bad =
                            |value: String| AnalysisError::BadValue { column: name.to_owned(), row: offset + r, value };
                        if v.is_null(r) {
                            return Err(bad("null".into()));
                        }
                        let x = v.value(r);
                        if !x.is_finite() || !(0.0..=1.0).contains(&x) {
                            return Err(bad(x.to_string()));
                        }
                        Ok(x)
                    })
                    .collect()
            };
            let per_tag: Vec<Vec<f64>> = tags.iter().map(|t| probabilities(t)).collect::<Result<_, _>>()?;
            for r in 0..n {
                table.scores.extend(per_tag.iter().map(|c| c[r]));
            }
            if let Some(c) = table.conversion.as_mut() {
                c.extend(probabilities(&columns.conversion)?);
            }
            offset += n;
        }
        Ok(table)
    }
}

/// Reads a Parquet file of tag scores.
pub fn read_parquet(path: &Path, columns: &Columns) -> Result<TagTable, AnalysisError> {
    let read =
        |e: &dyn std::fmt::Display| AnalysisError::Read { path: path.display().to_string(), reason: e.to_string() };
    let file = std::fs::File::open(path).map_err(|e| read(&e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| read(&e))?
        .with_batch_size(65_536)
        .build()
        .map_err(|e| read(&e))?;
    let schema = arrow::array::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(|e| read(&e))?;
    TagTable::from_batches(&schema, &batches, columns)
}
