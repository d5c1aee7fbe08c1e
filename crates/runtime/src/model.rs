//! A loaded, checked model: compiled tract plans (one for a single row, one with a
//! symbolic batch, and fixed-shape ones for batches of one row and for long batches when
//! they give the symbolic plan's bits), a pool of reusable run states, and input validation
//! against the feature schema.

use crate::error::{ColumnsError, InputError, ScoreError};
use crate::manifest::Manifest;
use liveprofile_features::schema::{Dtype, FeatureSchema};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use tract_onnx::prelude::*;

pub(crate) type Plan = Arc<TypedRunnableModel<TypedModel>>;
pub(crate) type State = TypedSimpleState<TypedModel, Plan>;

/// A compiled plan. Run states (the plan's buffers) are not `Send`, so each thread keeps
/// its own state per plan, reused across calls; a thread drops the states of plans that
/// no longer exist on its next call.
pub(crate) struct PlanPool {
    pub(crate) plan: Plan,
    /// The plan takes its input transposed, `[features, rows]` (see
    /// [`crate::rewrite::to_feature_major`]); callers always give rows.
    pub(crate) feature_major: bool,
    /// The input's axes whose size is a symbol (the batch size of a symbolic plan).
    symbolic_axes: Vec<(usize, Symbol)>,
    alive: Arc<()>,
    id: u64,
}

struct CachedState {
    alive: Weak<()>,
    id: u64,
    state: State,
}

thread_local! {
    static STATES: RefCell<Vec<CachedState>> = const { RefCell::new(Vec::new()) };
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

impl PlanPool {
    pub(crate) fn new(plan: Plan, feature_major: bool) -> Self {
        let symbolic_axes = plan
            .model()
            .input_fact(0)
            .map(|fact| {
                (fact.shape.iter().enumerate())
                    .filter_map(|(axis, d)| match d {
                        TDim::Sym(s) => Some((axis, s.clone())),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        PlanPool {
            plan,
            feature_major,
            symbolic_axes,
            alive: Arc::new(()),
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The input tensor for rows `start..start + n` of `values` (`rows` rows of `width`
    /// values in all), in the plan's layout.
    pub(crate) fn input(
        &self,
        values: Dense<'_>,
        rows: usize,
        start: usize,
        n: usize,
        width: usize,
    ) -> TractResult<Tensor> {
        let data = values.slice();
        if data.len() != rows * width || start + n > rows {
            return Err(TractError::msg(format!(
                "{} values for rows {start}..{} of {rows} x {width}",
                data.len(),
                start + n
            )));
        }
        let shape = if self.feature_major { [width, n] } else { [n, width] };
        match values {
            Dense::RowMajor(v) if !self.feature_major || n == 1 => {
                return Tensor::from_shape(&shape, &v[start * width..(start + n) * width]);
            }
            Dense::FeatureMajor(v) if self.feature_major && n == rows => return Tensor::from_shape(&shape, v),
            _ => {}
        }
        let mut t = Tensor::zero::<f32>(&shape)?;
        let out = t.as_slice_mut::<f32>()?;
        match values {
            Dense::RowMajor(v) => transpose(&v[start * width..], n, width, width, out, n),
            Dense::FeatureMajor(v) if self.feature_major => {
                for (f, dst) in out.chunks_exact_mut(n).enumerate() {
                    dst.copy_from_slice(&v[f * rows + start..][..n]);
                }
            }
            Dense::FeatureMajor(v) => transpose(&v[start..], width, n, rows, out, width),
        }
        Ok(t)
    }

    fn run(&self, input: Tensor) -> TractResult<TVec<TValue>> {
        STATES.with(|cell| {
            let mut states = cell.borrow_mut();
            states.retain(|s| s.alive.strong_count() > 0);
            let i = match states.iter().position(|s| s.id == self.id) {
                Some(i) => i,
                None => {
                    let state = SimpleState::new(self.plan.clone())?;
                    states.push(CachedState { alive: Arc::downgrade(&self.alive), id: self.id, state });
                    states.len() - 1
                }
            };
            let state = &mut states[i].state;
            self.set_sizes(state, &input);
            state.run(tvec!(input.into()))
        })
    }

    /// Gives `state` the sizes of the plan's symbolic input axes from `input`, as tract
    /// would find them itself: it first tries each input dimension as a number, an error it
    /// ignores, and an error captures a stack trace whenever RUST_BACKTRACE is set (10.7
    /// instead of 6.9 us for a row of conversion). Every run of a pooled plan goes through
    /// here.
    pub(crate) fn set_sizes(&self, state: &mut State, input: &Tensor) {
        for (axis, symbol) in &self.symbolic_axes {
            if let Some(&n) = input.shape().get(*axis) {
                state.session_state.resolved_symbols.set(symbol, n as i64);
            }
        }
    }

    pub(crate) fn nodes(&self) -> usize {
        self.plan.model().nodes().len()
    }

    pub(crate) fn ops(&self) -> Vec<String> {
        self.plan.model().nodes().iter().map(|n| format!("{} {}", n.op().name(), n.name)).collect()
    }
}

/// Writes the transpose of the `rows x cols` matrix whose row `i` starts at
/// `src[i * src_stride]` into `dst`, whose row `j` starts at `dst[j * dst_stride]`; in 8 x 8
/// tiles so that reads and writes both stay within a few cache lines.
fn transpose(src: &[f32], rows: usize, cols: usize, src_stride: usize, dst: &mut [f32], dst_stride: usize) {
    const T: usize = 8;
    let full_rows = rows - rows % T;
    let full_cols = cols - cols % T;
    for r0 in (0..full_rows).step_by(T) {
        for c0 in (0..full_cols).step_by(T) {
            let mut tile = [[0f32; T]; T];
            for (i, line) in tile.iter_mut().enumerate() {
                line.copy_from_slice(&src[(r0 + i) * src_stride + c0..][..T]);
            }
            for (j, column) in tile_columns(&tile).iter().enumerate() {
                dst[(c0 + j) * dst_stride + r0..][..T].copy_from_slice(column);
            }
        }
        for c in full_cols..cols {
            for i in 0..T {
                dst[c * dst_stride + r0 + i] = src[(r0 + i) * src_stride + c];
            }
        }
    }
    for r in full_rows..rows {
        for c in 0..cols {
            dst[c * dst_stride + r] = src[r * src_stride + c];
        }
    }
}

#[inline(always)]
fn tile_columns<const T: usize>(tile: &[[f32; T]; T]) -> [[f32; T]; T] {
    std::array::from_fn(|j| std::array::from_fn(|i| tile[i][j]))
}

/// A category value is the index of one of its `size` values.
#[inline(always)]
fn category_ok(v: f32, size: usize) -> bool {
    v.fract() == 0.0 && v >= 0.0 && v < size as f32
}

/// A fixed-shape plan that one-row batches run on: `rows` rows per run, the row repeated.
pub(crate) struct OneRowPlan {
    pub(crate) pool: PlanPool,
    pub(crate) rows: usize,
}

/// Rows of the fixed-size plan that long batches are cut into.
pub const CHUNK_ROWS: usize = 256;

/// Rows that [`LoadedModel::score_columns`] gathers row by row and scores at a time.
pub const COLUMN_CHUNK_ROWS: usize = 4_096;

/// Scores of a batch: per output, `rows x width` values row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// Rows scored.
    pub rows: usize,
    /// One entry per model output, in manifest order.
    pub outputs: Vec<OutputScores>,
}

/// One output's values (names are in the manifest's output of the same position).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputScores {
    /// Columns per row.
    pub width: usize,
    /// `rows * width` values.
    pub values: Vec<f32>,
}

/// Dense feature values of several rows, in schema order, in one of two layouts.
#[derive(Debug, Clone, Copy)]
pub enum Dense<'v> {
    /// Row after row, `rows x width` (the ONNX input layout; requests arrive so).
    RowMajor(&'v [f32]),
    /// Feature after feature, `width x rows` (columnar files arrive so).
    FeatureMajor(&'v [f32]),
}

impl<'v> Dense<'v> {
    fn slice(self) -> &'v [f32] {
        match self {
            Dense::RowMajor(v) | Dense::FeatureMajor(v) => v,
        }
    }
}

/// Rows that passed [`LoadedModel::check`] (or [`LoadedModel::check_feature_major`]) for
/// that model.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'m, 'v> {
    model: &'m LoadedModel,
    values: Dense<'v>,
    rows: usize,
}

impl Checked<'_, '_> {
    /// Scores the rows with the model they were checked for (symbolic-batch plan, or its
    /// bit-identical fixed-size chunks).
    pub fn score(self) -> Result<Scores, ScoreError> {
        self.model.score_checked(self.values, self.rows)
    }
}

/// A model version ready to score.
pub struct LoadedModel {
    pub(crate) manifest: Manifest,
    pub(crate) schema: FeatureSchema,
    pub(crate) dir: PathBuf,
    pub(crate) single: PlanPool,
    pub(crate) batch: PlanPool,
    /// A plan for exactly [`CHUNK_ROWS`] rows, kept only when it gives the batch plan's
    /// bits (checked at load).
    pub(crate) chunk: Option<PlanPool>,
    /// A plan for batches of one row (the server's commonest batch), kept only when it
    /// gives the batch plan's bits (checked at load).
    pub(crate) one_row: Option<OneRowPlan>,
    /// Outputs are probabilities (binary or multi-label tasks): kept within [0, 1].
    pub(crate) probabilities: bool,
    pub(crate) feature_index: HashMap<String, usize>,
    /// Per feature, how many index values it takes (a category: its vocabulary size; a bool:
    /// 2), or `None` for a number.
    pub(crate) category_sizes: Vec<Option<usize>>,
    pub(crate) load_ms: f64,
    /// The package's drift reference, checked against the schema and outputs.
    pub(crate) drift: Option<Arc<liveprofile_drift::Reference>>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .finish()
    }
}

impl LoadedModel {
    pub(crate) fn new(
        manifest: Manifest,
        schema: FeatureSchema,
        dir: PathBuf,
        single: PlanPool,
        batch: PlanPool,
    ) -> Self {
        let probabilities = matches!(manifest.task.as_str(), "binary_classification" | "multi_label");
        let feature_index = schema.features.iter().enumerate().map(|(i, f)| (f.name.clone(), i)).collect();
        let category_sizes = schema
            .features
            .iter()
            .map(|f| match f.dtype {
                Dtype::Category => Some(f.vocabulary.as_ref().map_or(0, Vec::len)),
                // 0 or 1: the indices of a two-value category.
                Dtype::Bool => Some(2),
                Dtype::Float32 => None,
            })
            .collect();
        LoadedModel {
            manifest,
            schema,
            dir,
            single,
            batch,
            chunk: None,
            one_row: None,
            probabilities,
            feature_index,
            category_sizes,
            load_ms: 0.0,
            drift: None,
        }
    }

    /// Names of the output columns: the output's name for a one-column output, else its
    /// tag or class names (as batch scoring, the Python package and the prediction log name
    /// them).
    pub fn output_columns(&self) -> Vec<String> {
        let mut names = Vec::new();
        for o in &self.manifest.outputs {
            if o.names.len() <= 1 {
                names.push(o.name.clone());
            } else {
                names.extend(o.names.iter().cloned());
            }
        }
        names
    }

    /// The package's drift reference (training histograms), when it has one.
    pub fn drift_reference(&self) -> Option<&Arc<liveprofile_drift::Reference>> {
        self.drift.as_ref()
    }

    /// Model name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Version.
    pub fn version(&self) -> u32 {
        self.manifest.version
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The feature schema.
    pub fn schema(&self) -> &FeatureSchema {
        &self.schema
    }

    /// Package folder.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Number of input features.
    pub fn width(&self) -> usize {
        self.schema.features.len()
    }

    /// Nodes of the single-row plan after optimisation.
    pub fn plan_nodes(&self) -> usize {
        self.single.nodes()
    }

    /// Operators of the single-row plan after optimisation (`op node-name`).
    pub fn plan_ops(&self) -> Vec<String> {
        self.single.ops()
    }

    /// Whether long batches run on the fixed-size plan (it reproduced the symbolic plan's
    /// bits at load).
    pub fn has_chunk_plan(&self) -> bool {
        self.chunk.is_some()
    }

    /// Whether batches of one row run on a fixed-shape plan (it reproduced the symbolic
    /// plan's bits at load).
    pub fn has_one_row_plan(&self) -> bool {
        self.one_row.is_some()
    }

    /// Milliseconds it took to load, check and warm this version.
    pub fn load_ms(&self) -> f64 {
        self.load_ms
    }

    /// Checks a caller's schema hash.
    pub fn check_schema_hash(&self, given: &str) -> Result<(), InputError> {
        if given == self.schema.hash {
            Ok(())
        } else {
            Err(InputError::SchemaHash { given: given.to_owned(), expected: self.schema.hash.clone() })
        }
    }

    /// Builds a dense row (schema order) from named values; every feature must be given
    /// exactly once and no other name.
    pub fn dense_from_named<'a>(
        &self,
        row: usize,
        named: impl IntoIterator<Item = (&'a str, f32)>,
        out: &mut Vec<f32>,
    ) -> Result<(), InputError> {
        let start = out.len();
        out.resize(start + self.width(), f32::NAN);
        let mut seen = vec![false; self.width()];
        for (name, value) in named {
            let Some(&i) = self.feature_index.get(name) else {
                out.truncate(start);
                return Err(InputError::Unknown { row, feature: name.to_owned() });
            };
            seen[i] = true;
            out[start + i] = value;
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            out.truncate(start);
            return Err(InputError::Missing { row, feature: self.schema.features[i].name.clone() });
        }
        Ok(())
    }

    /// Checks dense rows (row-major): width, finiteness, category indices.
    pub fn validate(&self, values: &[f32], rows: usize) -> Result<(), InputError> {
        self.validate_dense(Dense::RowMajor(values), rows)
    }

    fn validate_dense(&self, values: Dense<'_>, rows: usize) -> Result<(), InputError> {
        if rows == 0 {
            return Err(InputError::EmptyBatch);
        }
        let w = self.width();
        let data = values.slice();
        if data.len() != rows * w {
            let row = data.len() / w.max(1);
            return Err(InputError::WrongWidth {
                row: row.min(rows - 1),
                got: data.len() - (rows - 1).min(row) * w,
                expected: w,
            });
        }
        // The common case in passes the compiler vectorises; the first fault (in row order)
        // is looked for only when there is one.
        let finite = data.iter().fold(true, |ok, v| ok & v.is_finite());
        let mut categories = self.category_sizes.iter().enumerate().filter_map(|(i, s)| s.map(|s| (i, s)));
        let categories_ok = categories.all(|(i, size)| {
            let ok = |all: bool, v: &f32| all & category_ok(*v, size);
            match values {
                Dense::RowMajor(v) => v.iter().skip(i).step_by(w).fold(true, ok),
                Dense::FeatureMajor(v) => v[i * rows..(i + 1) * rows].iter().fold(true, ok),
            }
        });
        if finite && categories_ok {
            return Ok(());
        }
        let value = |r: usize, i: usize| match values {
            Dense::RowMajor(v) => v[r * w + i],
            Dense::FeatureMajor(v) => v[i * rows + r],
        };
        for r in 0..rows {
            for i in 0..w {
                let v = value(r, i);
                if !v.is_finite() {
                    return Err(InputError::NotFinite {
                        row: r,
                        feature: self.schema.features[i].name.clone(),
                        value: v,
                    });
                }
                if let Some(size) = self.category_sizes[i]
                    && !category_ok(v, size)
                {
                    let feature = &self.schema.features[i];
                    if feature.dtype == Dtype::Bool {
                        return Err(InputError::BadBool { row: r, feature: feature.name.clone(), value: v });
                    }
                    return Err(InputError::BadCategory {
                        row: r,
                        feature: self.schema.features[i].name.clone(),
                        value: v,
                        size,
                    });
                }
            }
        }
        Ok(())
    }

    /// Validates and scores `rows` dense rows (row-major, schema order).
    pub fn score(&self, values: &[f32], rows: usize) -> Result<Scores, ScoreError> {
        self.validate(values, rows)?;
        self.score_unchecked(values, rows)
    }

    /// Every output column of the model on rows given one column per feature (schema order,
    /// all of one length), in the order of [`LoadedModel::output_columns`]; the rows are
    /// validated and scored as [`LoadedModel::score`] does, [`COLUMN_CHUNK_ROWS`] at a time,
    /// so that only one chunk is ever held row by row. An error names the chunk's first row;
    /// columns that are not one per feature, or not all of one length, are refused first.
    pub fn score_columns(&self, features: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ColumnsError> {
        if features.len() != self.width() {
            return Err(ColumnsError::ColumnCount { got: features.len(), expected: self.width() });
        }
        let rows = features.first().map_or(0, Vec::len);
        if let Some((column, c)) = features.iter().enumerate().find(|(_, c)| c.len() != rows) {
            return Err(ColumnsError::ColumnLength { column, got: c.len(), expected: rows });
        }
        let mut out: Vec<Vec<f32>> = (0..self.output_columns().len()).map(|_| Vec::with_capacity(rows)).collect();
        let mut dense = Vec::new();
        for first_row in (0..rows).step_by(COLUMN_CHUNK_ROWS) {
            let n = (rows - first_row).min(COLUMN_CHUNK_ROWS);
            dense.clear();
            for r in first_row..first_row + n {
                dense.extend(features.iter().map(|c| c[r]));
            }
            let scores = self.score(&dense, n).map_err(|source| ColumnsError::Rows { first_row, source })?;
            let mut c = 0;
            for o in &scores.outputs {
                for j in 0..o.width {
                    out[c + j].extend((0..n).map(|r| o.values[r * o.width + j]));
                }
                c += o.width;
            }
        }
        Ok(out)
    }

    /// Validates and scores with the symbolic-batch plan whatever the number of rows, so
    /// that a row's scores do not depend on the rows scored beside it: the server's dynamic
    /// batches and the batch scorer give the same bits for the same row.
    ///
    /// Batches of at least [`CHUNK_ROWS`] rows run in chunks on the fixed-size plan, and
    /// batches of one row on the one-row plan, each checked at load to give the same bits.
    pub fn score_batched(&self, values: &[f32], rows: usize) -> Result<Scores, ScoreError> {
        self.check(values, rows)?.score()
    }

    /// Validates rows once and returns them ready to score with [`Checked::score`]: for
    /// callers that validate (and report bad rows) before they score.
    pub fn check<'m, 'v>(&'m self, values: &'v [f32], rows: usize) -> Result<Checked<'m, 'v>, InputError> {
        self.validate_dense(Dense::RowMajor(values), rows)?;
        Ok(Checked { model: self, values: Dense::RowMajor(values), rows })
    }

    /// [`LoadedModel::check`] for feature-major values (`width x rows`: each feature's
    /// values of every row, then the next feature's), as columnar files hold them. The
    /// scores are the same bits as for the same rows given row by row.
    pub fn check_feature_major<'m, 'v>(
        &'m self,
        values: &'v [f32],
        rows: usize,
    ) -> Result<Checked<'m, 'v>, InputError> {
        self.validate_dense(Dense::FeatureMajor(values), rows)?;
        Ok(Checked { model: self, values: Dense::FeatureMajor(values), rows })
    }

    fn score_checked(&self, values: Dense<'_>, rows: usize) -> Result<Scores, ScoreError> {
        if rows == 1
            && let Some(one_row) = &self.one_row
        {
            return self.run_one_row(one_row, values.slice());
        }
        let Some(chunk) = self.chunk.as_ref().filter(|_| rows >= CHUNK_ROWS) else {
            return self.run_plan(&self.batch, values, rows, 0, rows);
        };
        let mut out: Option<Scores> = None;
        let mut start = 0;
        while start < rows {
            let n = if rows - start >= CHUNK_ROWS { CHUNK_ROWS } else { rows - start };
            let pool = if n == CHUNK_ROWS { chunk } else { &self.batch };
            let s = self.run_plan(pool, values, rows, start, n)?;
            match out.as_mut() {
                None => {
                    let mut first = s;
                    for o in &mut first.outputs {
                        o.values.reserve(rows * o.width - o.values.len());
                    }
                    out = Some(first);
                }
                Some(acc) => {
                    for (a, b) in acc.outputs.iter_mut().zip(s.outputs) {
                        a.values.extend_from_slice(&b.values);
                    }
                }
            }
            start += n;
        }
        let mut out = out.expect("at least one chunk");
        out.rows = rows;
        Ok(out)
    }

    /// Scores one validated row on the one-row plan: the row repeated to the plan's rows,
    /// the first row's scores kept.
    pub(crate) fn run_one_row(&self, plan: &OneRowPlan, row: &[f32]) -> Result<Scores, ScoreError> {
        if plan.rows == 1 {
            return self.run_plan(&plan.pool, Dense::RowMajor(row), 1, 0, 1);
        }
        let repeated: Vec<f32> = row.iter().copied().cycle().take(plan.rows * row.len()).collect();
        let mut s = self.run_plan(&plan.pool, Dense::RowMajor(&repeated), plan.rows, 0, plan.rows)?;
        for o in &mut s.outputs {
            o.values.truncate(o.width);
        }
        s.rows = 1;
        Ok(s)
    }

    /// Scores rows already validated.
    pub(crate) fn score_unchecked(&self, values: &[f32], rows: usize) -> Result<Scores, ScoreError> {
        let pool = if rows == 1 { &self.single } else { &self.batch };
        self.run_plan(pool, Dense::RowMajor(values), rows, 0, rows)
    }

    /// Runs rows `start..start + n` of `values` (`rows` in all) on one plan.
    pub(crate) fn run_plan(
        &self,
        pool: &PlanPool,
        values: Dense<'_>,
        rows: usize,
        start: usize,
        n: usize,
    ) -> Result<Scores, ScoreError> {
        let input = pool.input(values, rows, start, n, self.width()).map_err(|e| ScoreError::Engine(e.to_string()))?;
        let out = pool.run(input).map_err(|e| ScoreError::Engine(e.to_string()))?;
        let mut outputs = Vec::with_capacity(self.manifest.outputs.len());
        for t in out.iter() {
            let v = t.as_slice::<f32>().map_err(|e| ScoreError::Engine(e.to_string()))?;
            let mut values = v.to_vec();
            if self.probabilities {
                // tract's sigmoid can step outside [0, 1] by a rounding error (-6e-8 was
                // seen); a probability task answers probabilities.
                for x in &mut values {
                    *x = x.clamp(0.0, 1.0);
                }
            }
            outputs.push(OutputScores { width: v.len() / n, values });
        }
        Ok(Scores { rows: n, outputs })
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn transpose_puts_every_value_at_its_column_position_for_any_shape() {
        for (rows, width) in [(1, 1), (8, 8), (256, 222), (13, 9), (7, 17), (17, 7), (9, 8)] {
            let values: Vec<f32> = (0..rows * width).map(|i| i as f32).collect();
            let mut out = vec![f32::NAN; rows * width];
            transpose(&values, rows, width, width, &mut out, rows);
            for r in 0..rows {
                for c in 0..width {
                    assert_eq!(out[c * rows + r], values[r * width + c], "{rows}x{width} at ({r}, {c})");
                }
            }
            // A block of a wider matrix, into a block of a taller one.
            let (stride, dst_stride) = (width + 3, rows + 5);
            let wide: Vec<f32> = (0..rows * stride).map(|i| i as f32).collect();
            let mut out = vec![f32::NAN; width * dst_stride];
            transpose(&wide, rows, width, stride, &mut out, dst_stride);
            for r in 0..rows {
                for c in 0..width {
                    assert_eq!(out[c * dst_stride + r], wide[r * stride + c]);
                }
            }
        }
    }
}
