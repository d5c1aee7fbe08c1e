//! Where a plan spends its time: each node of the plan that a batch of a given size runs
//! on, timed over repeated runs of the same input.

use crate::error::ScoreError;
use crate::manifest::{Golden, read_json};
use crate::model::{CHUNK_ROWS, Dense, LoadedModel, PlanPool, Scores, State};
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;

/// Time spent in one node of a plan, summed over the profiled runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeTime {
    /// Node name in the optimised plan.
    pub node: String,
    /// Operator name.
    pub op: String,
    /// Mean time per run, microseconds.
    pub micros_per_run: f64,
}

/// A plan's per-node profile.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlanProfile {
    /// Which plan the scoring call runs: `single` (one row through
    /// [`LoadedModel::score`]), `chunk` (batches of at least [`CHUNK_ROWS`] rows, in
    /// chunks of that many) or `symbolic` (other batches).
    pub plan: &'static str,
    /// Rows per scoring call.
    pub rows: usize,
    /// Rows per plan run: `rows`, or [`CHUNK_ROWS`] for the chunk plan.
    pub plan_rows: usize,
    /// Runs timed (after as many untimed warm-up runs).
    pub runs: usize,
    /// Mean wall time of one plan run, microseconds.
    pub micros_per_run: f64,
    /// Mean wall time of the whole scoring call for `rows` rows (checks, input layout,
    /// every chunk, output copies), microseconds.
    pub scored_micros_per_run: f64,
    /// Every node of one plan run, slowest first.
    pub nodes: Vec<NodeTime>,
}

impl LoadedModel {
    /// Scores batches of `rows` rows, taken in turn from the package's golden inputs,
    /// `runs` times, and times each node of the plan that call runs on (a single row as
    /// [`LoadedModel::score`] runs it, more rows as [`crate::Checked::score`] does: the
    /// server's and the batch scorer's path).
    pub fn profile(&self, rows: usize, runs: usize) -> TractResult<PlanProfile> {
        let golden: Golden =
            read_json(&self.dir, &self.manifest.golden.file).map_err(|e| TractError::msg(e.to_string()))?;
        let examples = golden.inputs.get(&self.manifest.inputs[0].name).map(Vec::as_slice).unwrap_or_default();
        if examples.is_empty() || rows == 0 {
            return Err(TractError::msg(format!(
                "nothing to profile: {} golden examples, {rows} rows",
                examples.len()
            )));
        }
        let values: Vec<f32> = examples.iter().cycle().take(rows).flatten().copied().collect();
        let score = || -> Result<Scores, ScoreError> {
            if rows == 1 { self.score(&values, 1) } else { self.check(&values, rows)?.score() }
        };
        score().map_err(|e| TractError::msg(e.to_string()))?;
        let (pool, plan, plan_rows): (&PlanPool, &'static str, usize) = match &self.chunk {
            _ if rows == 1 => (&self.single, "single", 1),
            Some(c) if rows >= CHUNK_ROWS => (c, "chunk", CHUNK_ROWS),
            _ => (&self.batch, "symbolic", rows),
        };
        let input = pool.input(Dense::RowMajor(&values), rows, 0, plan_rows, self.width())?;
        let model = pool.plan.model();
        let mut spent = vec![Duration::ZERO; model.nodes().len()];
        let mut state: State = SimpleState::new(pool.plan.clone())?;
        let mut total = Duration::ZERO;
        for timed in [false, true] {
            for _ in 0..runs {
                let started = Instant::now();
                pool.set_sizes(&mut state, &input);
                state.run_plan_with_eval(tvec!(input.clone().into()), |session, op_state, node, inputs| {
                    let t = Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(session, op_state, node, inputs);
                    if timed {
                        spent[node.id] += t.elapsed();
                    }
                    out
                })?;
                if timed {
                    total += started.elapsed();
                }
            }
        }
        let per_run = |d: Duration| d.as_secs_f64() * 1e6 / runs.max(1) as f64;
        let mut nodes: Vec<NodeTime> = model
            .nodes()
            .iter()
            .filter(|n| !spent[n.id].is_zero())
            .map(|n| NodeTime {
                node: n.name.clone(),
                op: n.op().name().to_string(),
                micros_per_run: per_run(spent[n.id]),
            })
            .collect();
        nodes.sort_by(|a, b| b.micros_per_run.total_cmp(&a.micros_per_run));
        let mut scored = Duration::ZERO;
        for timed in [false, true] {
            for _ in 0..runs {
                let started = Instant::now();
                std::hint::black_box(score().map_err(|e| TractError::msg(e.to_string()))?);
                if timed {
                    scored += started.elapsed();
                }
            }
        }
        Ok(PlanProfile {
            plan,
            rows,
            plan_rows,
            runs,
            micros_per_run: per_run(total),
            scored_micros_per_run: per_run(scored),
            nodes,
        })
    }
}
