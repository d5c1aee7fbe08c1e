//! Where a plan spends its time: each node of the plan that a batch of a given size runs
//! on, timed over repeated runs of the same input.

use crate::model::{CHUNK_ROWS, LoadedModel, PlanPool};
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
    /// Which plan ran: `single` (1 row), `chunk` (exactly [`CHUNK_ROWS`] rows) or
    /// `symbolic` (any other number).
    pub plan: &'static str,
    /// Rows per run.
    pub rows: usize,
    /// Runs timed (after as many untimed warm-up runs).
    pub runs: usize,
    /// Mean wall time of a whole plan run, microseconds.
    pub micros_per_run: f64,
    /// Mean wall time of scoring the same rows as the server and the batch scorer do
    /// (checks, input layout, chunks, output copies), microseconds.
    pub scored_micros_per_run: f64,
    /// Every node, slowest first.
    pub nodes: Vec<NodeTime>,
}

impl LoadedModel {
    /// Runs `runs` batches of `rows` rows, taken in turn from `examples` (the golden inputs,
    /// say), on the plan that serving picks for that many rows, and times each node.
    pub fn profile(&self, examples: &[Vec<f32>], rows: usize, runs: usize) -> TractResult<PlanProfile> {
        if examples.is_empty() || rows == 0 {
            return Err(TractError::msg(format!("nothing to profile: {} examples, {rows} rows", examples.len())));
        }
        if let Some(bad) = examples.iter().find(|r| r.len() != self.width()) {
            return Err(TractError::msg(format!(
                "an example has {} values, the model {} features",
                bad.len(),
                self.width()
            )));
        }
        let (pool, plan): (&PlanPool, &'static str) = match (&self.chunk, rows) {
            (_, 1) => (&self.single, "single"),
            (Some(c), CHUNK_ROWS) => (c, "chunk"),
            _ => (&self.batch, "symbolic"),
        };
        let values: Vec<f32> = examples.iter().cycle().take(rows).flatten().copied().collect();
        let input = pool.input(crate::model::Dense::RowMajor(&values), rows, 0, rows, self.width())?;
        let model = pool.plan.model();
        let mut spent = vec![Duration::ZERO; model.nodes().len()];
        let mut state = SimpleState::new(pool.plan.clone())?;
        let mut total = Duration::ZERO;
        for timed in [false, true] {
            for _ in 0..runs {
                let started = Instant::now();
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
                let scores = self.check(&values, rows).map_err(|e| TractError::msg(e.to_string()))?.score();
                std::hint::black_box(scores.map_err(|e| TractError::msg(e.to_string()))?);
                if timed {
                    scored += started.elapsed();
                }
            }
        }
        Ok(PlanProfile {
            plan,
            rows,
            runs,
            micros_per_run: per_run(total),
            scored_micros_per_run: per_run(scored),
            nodes,
        })
    }
}
