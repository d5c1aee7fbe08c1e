//! Loading a model package: manifest, checksum, schema, graph contract, compiled plans,
//! golden parity, warm-up. Any failure refuses the package with a message that names it.

use crate::error::PackageError;
use crate::manifest::{Golden, Manifest, TensorDtype, read_json, read_manifest, read_schema};
use crate::model::{CHUNK_ROWS, Dense, LoadedModel, OneRowPlan, PlanPool, Scores};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Warm-up runs per plan before a model is reported ready.
const WARMUP_RUNS: usize = 16;

/// (name, dtype if the runtime names it, shape with -1 for symbolic dims) of graph inputs
/// or outputs.
fn graph_tensors(values: &[pb::ValueInfoProto]) -> Vec<(String, Option<TensorDtype>, Vec<i64>)> {
    values
        .iter()
        .map(|v| {
            let (dtype, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(pb::type_proto::Value::TensorType(t)) => {
                    let shape = t
                        .shape
                        .as_ref()
                        .map(|s| {
                            s.dim
                                .iter()
                                .map(|d| match d.value {
                                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) => n,
                                    _ => -1,
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    (TensorDtype::from_onnx(t.elem_type), shape)
                }
                None => (None, vec![]),
            };
            (v.name.clone(), dtype, shape)
        })
        .collect()
}

fn check_contract(manifest: &Manifest, graph: &pb::GraphProto, schema_names: &[&str]) -> Result<(), PackageError> {
    let mismatch = |reason: String| PackageError::Mismatch { against: "the ONNX graph", reason };
    let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs: Vec<_> =
        graph_tensors(&graph.input).into_iter().filter(|(n, _, _)| !initializers.contains(n.as_str())).collect();
    let outputs = graph_tensors(&graph.output);
    for (kind, specs, actual) in [("input", &manifest.inputs, &inputs), ("output", &manifest.outputs, &outputs)] {
        if specs.len() != actual.len() {
            return Err(mismatch(format!("{} {kind}s in the manifest, {} in the graph", specs.len(), actual.len())));
        }
        for (spec, (name, dtype, shape)) in specs.iter().zip(actual) {
            if &spec.name != name {
                return Err(mismatch(format!("{kind} named {:?} in the manifest, {name:?} in the graph", spec.name)));
            }
            if Some(spec.dtype) != *dtype {
                let graph = dtype.map_or("a type the runtime does not name", TensorDtype::as_str);
                return Err(mismatch(format!(
                    "{kind} {name}: dtype {} in the manifest, {graph} in the graph",
                    spec.dtype
                )));
            }
            if &spec.shape != shape {
                return Err(mismatch(format!(
                    "{kind} {name}: shape {:?} in the manifest, {shape:?} in the graph",
                    spec.shape
                )));
            }
            if shape.first() != Some(&-1) {
                return Err(mismatch(format!("{kind} {name}: the batch dimension is not symbolic ({shape:?})")));
            }
        }
    }
    if manifest.inputs.len() != 1
        || manifest.inputs[0].dtype != TensorDtype::Float32
        || manifest.inputs[0].shape.len() != 2
    {
        return Err(mismatch("the runtime serves one float32 input of shape [batch, features]".into()));
    }
    let input = &manifest.inputs[0];
    if input.features != schema_names {
        return Err(PackageError::Mismatch {
            against: "the feature schema",
            reason: format!(
                "input features ({}) are not the schema's features in order ({})",
                input.features.len(),
                schema_names.len()
            ),
        });
    }
    if input.shape[1] != schema_names.len() as i64 {
        return Err(mismatch(format!(
            "input width {} but the schema has {} features",
            input.shape[1],
            schema_names.len()
        )));
    }
    for out in &manifest.outputs {
        if out.shape.len() != 2 || out.dtype != TensorDtype::Float32 {
            return Err(mismatch(format!("output {} must be float32 [batch, k]", out.name)));
        }
        if manifest.task == "segmentation" {
            let described = manifest.segmentation.as_ref().map_or(0, |s| s.segments.len());
            if described as i64 != out.shape[1] {
                return Err(mismatch(format!(
                    "output {} has {} distance columns but the manifest describes {described} segments",
                    out.name, out.shape[1]
                )));
            }
        }
        if !out.names.is_empty() && out.names.len() as i64 != out.shape[1] {
            return Err(mismatch(format!(
                "output {} has {} names for width {}",
                out.name,
                out.names.len(),
                out.shape[1]
            )));
        }
    }
    Ok(())
}

/// Rows of a compiled plan.
#[derive(Debug, Clone, Copy)]
enum Rows {
    /// Any number (symbolic batch).
    Any,
    /// Exactly this many.
    Fixed(usize),
}

/// Compiles a plan for `rows` rows. `feature_major`: the graph was rewritten by
/// [`crate::rewrite::to_feature_major`] and takes `[features, rows]`.
fn compile(proto: &pb::ModelProto, width: usize, rows: Rows, feature_major: bool) -> TractResult<PlanPool> {
    let mut model = crate::fast_ln::onnx().model_for_proto_model(proto)?;
    let batch = model.symbols.sym("batch");
    let rows: TDim = match rows {
        Rows::Fixed(n) => n.into(),
        Rows::Any => batch.to_dim(),
    };
    let dims: TVec<TDim> = if feature_major { tvec!(width.into(), rows) } else { tvec!(rows, width.into()) };
    model.set_input_fact(0, f32::fact(dims).into())?;
    let outputs = model.output_outlets()?.len();
    for o in 0..outputs {
        model.set_output_fact(o, InferenceFact::default())?;
    }
    let mut optimized = model.into_optimized()?;
    crate::fast_ln::replace_ln(&mut optimized)?;
    Ok(PlanPool::new(Arc::new(optimized.into_runnable()?), feature_major))
}

fn check_golden(model: &LoadedModel, golden: &Golden, tolerance: f32) -> Result<(), PackageError> {
    let format = |reason: String| PackageError::Format { file: model.manifest.golden.file.clone(), reason };
    let input_name = &model.manifest.inputs[0].name;
    let rows = golden.inputs.get(input_name).ok_or_else(|| format(format!("no inputs for {input_name:?}")))?;
    if rows.is_empty() {
        return Err(format("no golden examples".into()));
    }
    let width = model.width();
    let mut flat = Vec::with_capacity(rows.len() * width);
    for (i, r) in rows.iter().enumerate() {
        if r.len() != width {
            return Err(format(format!("example {i} has {} values for {width} features", r.len())));
        }
        flat.extend_from_slice(r);
    }
    let note = |i: usize| golden.notes.get(i).cloned().unwrap_or_default();
    // The batch plan on every example at once, and the single-row plan on each one.
    let batch = model.score_unchecked(&flat, rows.len()).map_err(|e| PackageError::Compile(e.to_string()))?;
    let singles = flat
        .chunks_exact(width)
        .map(|r| model.score_unchecked(r, 1).map_err(|e| PackageError::Compile(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    for (o, (out, spec)) in batch.outputs.iter().zip(&model.manifest.outputs).enumerate() {
        let expected =
            golden.outputs.get(&spec.name).ok_or_else(|| format(format!("no outputs for {:?}", spec.name)))?;
        if expected.len() != rows.len() {
            return Err(format(format!("{} inputs but {} outputs for {:?}", rows.len(), expected.len(), spec.name)));
        }
        for (i, want) in expected.iter().enumerate() {
            let got_rows = [&out.values[i * out.width..(i + 1) * out.width], &singles[i].outputs[o].values[..]];
            for got in got_rows {
                if got.len() != want.len() {
                    return Err(format(format!(
                        "example {i}: output {} has {} values, expected {}",
                        spec.name,
                        got.len(),
                        want.len()
                    )));
                }
                for (k, (a, b)) in got.iter().zip(want).enumerate() {
                    let diff = (a - b).abs();
                    if diff.is_nan() || diff > tolerance {
                        return Err(PackageError::Golden {
                            example: i,
                            note: note(i),
                            output: spec.name.clone(),
                            index: k,
                            actual: *a,
                            expected: *b,
                            diff,
                            tolerance,
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Compiles the plan for exactly [`CHUNK_ROWS`] rows (tract optimises fixed shapes further
/// than symbolic ones) and keeps it only if it gives the symbolic-batch plan's bits on the
/// golden rows, so that using it never changes a score.
fn attach_chunk_plan(model: &mut LoadedModel, proto: &pb::ModelProto, feature_major: bool, golden: &Golden) {
    let width = model.width();
    let Some(rows) = golden.inputs.get(&model.manifest.inputs[0].name) else { return };
    let mut flat = Vec::with_capacity(CHUNK_ROWS * width);
    for i in 0..CHUNK_ROWS {
        flat.extend_from_slice(&rows[i % rows.len()]);
    }
    let plan = match compile(proto, width, Rows::Fixed(CHUNK_ROWS), feature_major) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(model = model.name(), error = %e, "no fixed-size plan; batches use the symbolic one");
            return;
        }
    };
    let input = Dense::RowMajor(&flat);
    let same = match (
        model.run_plan(&plan, input, CHUNK_ROWS, 0, CHUNK_ROWS),
        model.run_plan(&model.batch, input, CHUNK_ROWS, 0, CHUNK_ROWS),
    ) {
        (Ok(a), Ok(b)) => a
            .outputs
            .iter()
            .zip(&b.outputs)
            .all(|(x, y)| x.values.iter().map(|v| v.to_bits()).eq(y.values.iter().map(|v| v.to_bits()))),
        _ => false,
    };
    if same {
        model.chunk = Some(plan);
    } else {
        tracing::warn!(
            model = model.name(),
            "the fixed-size plan differs from the symbolic one in some bits; not used"
        );
    }
}

/// Rows of the fixed plans tried for one-row batches.
const ONE_ROW_PLAN_ROWS: [usize; 3] = [1, 2, 4];

/// Finds a plan for batches of one row, the server's commonest batch, that gives the
/// symbolic-batch plan's bits: the single-row plan when it does, else the batch graph
/// compiled for exactly 1, 2 or 4 rows ([`ONE_ROW_PLAN_ROWS`]), the row repeated. Fixed shapes
/// run faster than the symbolic plan, but tract may sum a product in another order for a
/// small fixed batch than for a symbolic one; larger fixed batches that match cost more than
/// the symbolic plan (32 rows: 5x for `conversion`). Checked on every golden row and on each with its number features scaled (values
/// the golden file does not hold), against the same rows scored together on the symbolic
/// plan; without a match, one-row batches stay on the symbolic plan.
fn attach_one_row_plan(model: &mut LoadedModel, batch_proto: &pb::ModelProto, feature_major: bool, golden: &Golden) {
    let width = model.width();
    let Some(examples) = golden.inputs.get(&model.manifest.inputs[0].name) else { return };
    if examples.is_empty() || examples.iter().any(|r| r.len() != width) {
        return;
    }
    let mut flat: Vec<f32> = examples.iter().flatten().copied().collect();
    for r in examples {
        flat.extend(r.iter().zip(&model.category_sizes).map(|(&v, size)| if size.is_some() { v } else { v * 1.375 }));
    }
    let n = flat.len() / width;
    let Ok(together) = model.run_plan(&model.batch, Dense::RowMajor(&flat), n, 0, n) else { return };
    let bits = |s: &Scores, r: usize| -> Vec<u32> {
        s.outputs.iter().flat_map(|o| o.values[r * o.width..(r + 1) * o.width].iter().map(|v| v.to_bits())).collect()
    };
    let exact = |plan: &OneRowPlan| {
        (0..n).all(|r| {
            model.run_one_row(plan, &flat[r * width..(r + 1) * width]).is_ok_and(|s| bits(&s, 0) == bits(&together, r))
        })
    };
    let mut candidates =
        vec![OneRowPlan { pool: PlanPool::new(model.single.plan.clone(), model.single.feature_major), rows: 1 }];
    for rows in ONE_ROW_PLAN_ROWS {
        match compile(batch_proto, width, Rows::Fixed(rows), feature_major) {
            Ok(pool) => candidates.push(OneRowPlan { pool, rows }),
            Err(e) => tracing::warn!(model = model.name(), error = %e, rows, "no fixed plan"),
        }
    }
    for c in candidates {
        if exact(&c) {
            model.one_row = Some(c);
            return;
        }
    }
    tracing::info!(
        model = model.name(),
        "no one-row plan gives the symbolic plan's bits; single rows use the symbolic one"
    );
}

/// sha256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Loads, checks and warms a package folder. Refuses it, with the reason, on any failure.
pub fn load_package(dir: &Path) -> Result<LoadedModel, PackageError> {
    let started = Instant::now();
    let manifest = read_manifest(dir)?;
    let onnx_path = dir.join("model.onnx");
    let bytes = crate::manifest::read_package_file(&onnx_path, crate::manifest::MAX_ONNX_BYTES, "model.onnx")?;
    let actual = sha256_hex(&bytes);
    if actual != manifest.onnx_sha256 {
        return Err(PackageError::Checksum { expected: manifest.onnx_sha256.clone(), actual });
    }
    let schema = read_schema(dir, &manifest)?;
    let drift = crate::manifest::read_drift_reference(dir, &manifest)?;
    let mut proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| PackageError::Compile(format!("{e:#}")))?;
    let graph = proto.graph.as_ref().ok_or_else(|| PackageError::Compile("no graph".into()))?;
    check_contract(&manifest, graph, &schema.names())?;
    // Exact rewrites for speed; the golden examples below check the result.
    crate::rewrite::gathers_to_matmul(&mut proto);
    crate::rewrite::fuse_log1p_relu(&mut proto);
    let width = schema.features.len();
    // Batches run transposed where the graph allows it (single rows gain nothing from it).
    let mut batch_proto = proto.clone();
    let feature_major = crate::rewrite::to_feature_major(&mut batch_proto);
    let compile_err = |e: TractError| PackageError::Compile(format!("{e:#}"));
    let single = compile(&proto, width, Rows::Fixed(1), false).map_err(compile_err)?;
    let batch = compile(&batch_proto, width, Rows::Any, feature_major).map_err(compile_err)?;
    let golden: Golden = read_json(dir, &manifest.golden.file)?;
    let tolerance = manifest.golden.tolerance as f32;
    let mut model = LoadedModel::new(manifest, schema, dir.to_path_buf(), single, batch);
    if let Some(reference) = drift {
        let file = model.manifest.drift_reference.as_ref().map(|f| f.file.clone()).unwrap_or_default();
        reference
            .check_fits(&model.schema.hash, &model.schema.names(), &model.output_columns())
            .map_err(|e| PackageError::Format { file, reason: e.to_string() })?;
        model.drift = Some(Arc::new(reference));
    }
    check_golden(&model, &golden, tolerance)?;
    attach_chunk_plan(&mut model, &batch_proto, feature_major, &golden);
    attach_one_row_plan(&mut model, &batch_proto, feature_major, &golden);
    // Warm the plans (and fill the state pools) before the model is reported ready.
    let zeros = vec![0.0f32; width * 8];
    for _ in 0..WARMUP_RUNS {
        model.score_unchecked(&zeros[..width], 1).map_err(|e| PackageError::Compile(e.to_string()))?;
        model.score_unchecked(&zeros, 8).map_err(|e| PackageError::Compile(e.to_string()))?;
        if let Some(one_row) = &model.one_row {
            model.run_one_row(one_row, &zeros[..width]).map_err(|e| PackageError::Compile(e.to_string()))?;
        }
    }
    model.load_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(model)
}
