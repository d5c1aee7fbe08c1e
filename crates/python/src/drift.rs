//! `drift_reference`: a drift reference (`drift_reference.json`) from training rows, with
//! `liveprofile-drift`'s binning: the features of an Arrow table, and the outputs a model
//! gives on them (or an outputs table).

use crate::errors::data_error;
use crate::model::{Model, read_stream};
use arrow::array::ffi_stream::ArrowArrayStreamReader;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type};
use arrow_pyarrow::PyArrowType;
use liveprofile_drift::{ColumnReference, Reference};
use pyo3::prelude::*;

/// Every value of the column `name` of `batches` as f32 (nulls as NaN: missing), and the
/// number of nulls.
fn column(batches: &[RecordBatch], name: &str) -> PyResult<(Vec<f32>, usize)> {
    let mut values = Vec::new();
    let mut nulls = 0;
    for b in batches {
        let col = b.column_by_name(name).ok_or_else(|| data_error(format!("the table has no column {name:?}")))?;
        let col = arrow::compute::cast(col, &DataType::Float32)
            .map_err(|e| data_error(format!("column {name:?} is not numeric: {e}")))?;
        let col = col.as_primitive::<Float32Type>();
        nulls += col.null_count();
        values.extend((0..col.len()).map(|i| if col.is_null(i) { f32::NAN } else { col.value(i) }));
    }
    Ok((values, nulls))
}

/// The reference as JSON. With `model`: its features (by name, in schema order) from
/// `features`, its outputs scored on those rows (unless `outputs` is given), its schema
/// hash. Without: every column of `features` in order, every column of `outputs`, and
/// `schema_hash`. Nulls, NaN and infinities count as missing, except when the model
/// scores the rows: then the rows must be complete (as the model scores them, imputed as
/// for training), and a column with such values is an error naming it and the counts.
#[pyfunction]
#[pyo3(signature = (features, model=None, outputs=None, schema_hash=None, description=String::new(), bins=liveprofile_drift::DEFAULT_BINS))]
pub fn drift_reference(
    py: Python<'_>,
    features: PyArrowType<ArrowArrayStreamReader>,
    model: Option<&Model>,
    outputs: Option<PyArrowType<ArrowArrayStreamReader>>,
    schema_hash: Option<String>,
    description: String,
    bins: usize,
) -> PyResult<String> {
    if bins == 0 || bins > liveprofile_drift::MAX_BINS {
        return Err(data_error(format!("bins must be between 1 and {}", liveprofile_drift::MAX_BINS)));
    }
    let (feature_schema, feature_batches) = read_stream(features.0)?;
    let outputs = outputs.map(|o| read_stream(o.0)).transpose()?;
    let loaded = model.map(Model::loaded);
    let feature_names: Vec<String> = match &loaded {
        Some(m) => m.schema().names().into_iter().map(str::to_owned).collect(),
        None => feature_schema.fields().iter().map(|f| f.name().clone()).collect(),
    };
    let hash = match (&loaded, schema_hash) {
        (Some(m), _) => m.schema().hash.clone(),
        (None, Some(h)) => h,
        (None, None) => return Err(data_error("without a model, give schema_hash (the features' schema hash)")),
    };
    py.detach(|| {
        let mut feature_columns = Vec::with_capacity(feature_names.len());
        let mut feature_nulls = Vec::with_capacity(feature_names.len());
        for name in &feature_names {
            let (values, nulls) = column(&feature_batches, name)?;
            feature_columns.push(values);
            feature_nulls.push(nulls);
        }
        let output_columns: Vec<(String, Vec<f32>)> = match (&outputs, &loaded) {
            (Some((schema, batches)), _) => schema
                .fields()
                .iter()
                .map(|f| Ok((f.name().clone(), column(batches, f.name())?.0)))
                .collect::<PyResult<_>>()?,
            (None, Some(m)) => {
                // The model scores complete rows only: say which column is not, up front.
                for ((name, values), &nulls) in feature_names.iter().zip(&feature_columns).zip(&feature_nulls) {
                    let other = values.iter().filter(|v| !v.is_finite()).count() - nulls;
                    if nulls > 0 || other > 0 {
                        return Err(data_error(format!(
                            "column {name:?} has {nulls} nulls and {other} NaN or infinite values in {} rows; a drift \
                             reference is built on complete rows, as the model scores them: impute the table as for \
                             training, or drop those rows (or give the outputs table)",
                            values.len()
                        )));
                    }
                }
                let out = m.score_columns(&feature_columns).map_err(|e| data_error(e.to_string()))?;
                m.output_columns().into_iter().zip(out).collect()
            }
            (None, None) => Vec::new(),
        };
        let features =
            feature_names.iter().zip(&feature_columns).map(|(n, v)| ColumnReference::from_values(n, v, bins)).collect();
        let outputs = output_columns.iter().map(|(n, v)| ColumnReference::from_values(n, v, bins)).collect();
        let reference = Reference::new(description, hash, bins, features, outputs).map_err(data_error)?;
        if let Some(m) = &loaded {
            reference.check_fits(&m.schema().hash, &m.schema().names(), &m.output_columns()).map_err(data_error)?;
        }
        Ok(reference.to_json())
    })
}
