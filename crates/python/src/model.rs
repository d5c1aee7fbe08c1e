//! `Model`: a model package loaded by the serving runtime, scoring Arrow tables and dense
//! rows with the batch scorer's code (so the CLI's and the server's bits).

use crate::errors::{ModelLoadError, data_error};
use arrow::array::ffi_stream::ArrowArrayStreamReader;
use arrow::array::{Array, ArrayData, ArrayRef, Float32Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_pyarrow::{IntoPyArrow, PyArrowType, Table};
use liveprofile_runtime::LoadedModel;
use pyo3::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// Names the caller's data in error messages.
const TABLE_SOURCE: &str = "<arrow table>";
const ROWS_SOURCE: &str = "<array>";

/// A model version loaded exactly as the server loads it: checksum, feature schema and
/// golden parity checked before it can score.
#[pyclass(frozen, module = "liveprofile")]
pub struct Model {
    inner: Arc<LoadedModel>,
}

/// Arrow batches to a `pyarrow.Table`.
pub(crate) fn to_table<'py>(
    py: Python<'py>,
    schema: Arc<Schema>,
    batches: Vec<RecordBatch>,
) -> PyResult<Bound<'py, PyAny>> {
    Table::try_new(batches, schema).map_err(data_error)?.into_pyarrow(py)
}

/// Every batch of an Arrow stream (read while the GIL is held: the producer may be Python).
pub fn read_stream(stream: ArrowArrayStreamReader) -> PyResult<(Arc<Schema>, Vec<RecordBatch>)> {
    let schema = arrow::record_batch::RecordBatchReader::schema(&stream);
    let batches = stream.collect::<Result<Vec<_>, _>>().map_err(data_error)?;
    Ok((schema, batches))
}

impl Model {
    /// The loaded version.
    pub(crate) fn loaded(&self) -> &Arc<LoadedModel> {
        &self.inner
    }

    /// Scores batches in order, counting rows across them for error messages.
    fn score_batches(
        &self,
        source: &str,
        schema: &Arc<Schema>,
        batches: &[RecordBatch],
        keep: &[String],
        chunk_rows: usize,
    ) -> PyResult<(Arc<Schema>, Vec<RecordBatch>)> {
        let model = self.inner.as_ref();
        if batches.is_empty() {
            // No rows: the output's columns still follow from the input's.
            let empty = RecordBatch::new_empty(schema.clone());
            let out = liveprofile_batch::score_batch(model, source, &empty, 0, keep, chunk_rows).map_err(data_error)?;
            return Ok((out.schema(), Vec::new()));
        }
        let mut first_row = 0u64;
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            out.push(
                liveprofile_batch::score_batch(model, source, batch, first_row, keep, chunk_rows)
                    .map_err(data_error)?,
            );
            first_row += batch.num_rows() as u64;
        }
        Ok((out[0].schema(), out))
    }
}

#[pymethods]
impl Model {
    /// Loads the package in `path` (a version folder such as `models/conversion/1`).
    #[staticmethod]
    fn load(py: Python<'_>, path: PathBuf) -> PyResult<Model> {
        let loaded = py
            .detach(|| liveprofile_runtime::load_package(&path))
            .map_err(|e| ModelLoadError::new_err(e.to_string()))?;
        Ok(Model { inner: Arc::new(loaded) })
    }

    /// The model's name.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// The model's version.
    #[getter]
    fn version(&self) -> u32 {
        self.inner.version()
    }

    /// The package folder.
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.dir().to_path_buf()
    }

    /// Feature names, in schema order (the columns `score` reads).
    #[getter]
    fn inputs(&self) -> Vec<String> {
        self.inner.schema().features.iter().map(|f| f.name.clone()).collect()
    }

    /// Output column names, as `liveprofile score` names them (one per tag or class for
    /// multi-column outputs).
    #[getter]
    fn outputs(&self) -> Vec<String> {
        self.inner.output_columns()
    }

    /// The schema hash a caller must send with dense rows.
    #[getter]
    fn schema_hash(&self) -> String {
        self.inner.schema().hash.clone()
    }

    /// `manifest.json` as the package holds it, as a dict.
    #[getter]
    fn manifest<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let path = self.inner.dir().join("manifest.json");
        let text =
            std::fs::read_to_string(&path).map_err(|e| ModelLoadError::new_err(format!("{}: {e}", path.display())))?;
        json_value(py, &text)
    }

    /// The feature schema (features with their types and meanings, labels, hash), as a dict.
    #[getter]
    fn feature_schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_value(py, &self.inner.schema().to_json())
    }

    /// Scores an Arrow stream (a `pyarrow.Table` or `RecordBatchReader`): feature columns
    /// by name, `keep` columns copied in front of the scores.
    #[pyo3(signature = (data, keep = Vec::new(), chunk_rows = 512))]
    fn score_table<'py>(
        &self,
        py: Python<'py>,
        data: PyArrowType<ArrowArrayStreamReader>,
        keep: Vec<String>,
        chunk_rows: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (schema, batches) = read_stream(data.0)?;
        let (schema, out) = py.detach(|| self.score_batches(TABLE_SOURCE, &schema, &batches, &keep, chunk_rows))?;
        to_table(py, schema, out)
    }

    /// Scores dense rows: `values` holds `rows` rows of the model's features in schema
    /// order, row after row (a C-ordered 2-D float32 array flattened without a copy, or the
    /// values of a list column); nulls are missing values.
    #[pyo3(signature = (values, rows, chunk_rows = 512))]
    fn score_rows<'py>(
        &self,
        py: Python<'py>,
        values: PyArrowType<ArrayData>,
        rows: usize,
        chunk_rows: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let values = arrow::array::make_array(values.0);
        let Some(values) = values.as_any().downcast_ref::<Float32Array>() else {
            return Err(data_error(format!("dense rows must be float32, not {}", values.data_type())));
        };
        let width = self.inner.width();
        if values.len() != rows * width {
            return Err(data_error(format!(
                "{} values are not {rows} rows of the model's {width} features",
                values.len()
            )));
        }
        let (schema, batch) = self.feature_columns(values, rows)?;
        let (schema, out) = py.detach(|| self.score_batches(ROWS_SOURCE, &schema, &[batch], &[], chunk_rows))?;
        to_table(py, schema, out)
    }

    fn __repr__(&self) -> String {
        format!("Model(name={:?}, version={}, path={:?})", self.inner.name(), self.inner.version(), self.inner.dir())
    }
}

impl Model {
    /// Row-major values as one float32 column per feature, named as the schema names them;
    /// a null value stays null (a missing value, named by row and column when scored).
    fn feature_columns(&self, values: &Float32Array, rows: usize) -> PyResult<(Arc<Schema>, RecordBatch)> {
        let features = &self.inner.schema().features;
        let width = features.len();
        let fields: Vec<Field> = features.iter().map(|f| Field::new(&f.name, DataType::Float32, true)).collect();
        let schema = Arc::new(Schema::new(fields));
        let column = |j: usize| -> ArrayRef {
            let at = (0..rows).map(move |r| r * width + j);
            if values.null_count() == 0 {
                let v = values.values();
                Arc::new(Float32Array::from_iter_values(at.map(|i| v[i])))
            } else {
                Arc::new(at.map(|i| values.is_valid(i).then(|| values.value(i))).collect::<Float32Array>())
            }
        };
        let columns: Vec<ArrayRef> = (0..width).map(column).collect();
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(data_error)?;
        Ok((schema, batch))
    }
}

/// A JSON text as Python objects.
pub fn json_value<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}
