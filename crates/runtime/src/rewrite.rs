//! Graph rewrites applied before compiling, each exact and each checked afterwards by the
//! golden examples.
//!
//! `Gather` along the feature axis with constant indices (column selection, one-hot
//! expansion of category columns) is slow in tract: on a 17-feature model three such nodes
//! take two thirds of a single-row call and most of a 1,024-row batch. The same selection
//! is a product with a constant 0/1 matrix, which tract runs as one small matrix multiply;
//! `x * 1 + 0 * y` is exactly `x` for the finite inputs the runtime admits.

use std::collections::HashMap;
use tract_onnx::pb;

const FLOAT: i32 = 1;
const INT32: i32 = 6;
const INT64: i32 = 7;

fn int_values(t: &pb::TensorProto) -> Option<Vec<i64>> {
    match t.data_type {
        INT64 if !t.int64_data.is_empty() => Some(t.int64_data.clone()),
        INT64 => Some(t.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
        INT32 if !t.int32_data.is_empty() => Some(t.int32_data.iter().map(|v| i64::from(*v)).collect()),
        INT32 => Some(
            t.raw_data.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("4 bytes")))).collect(),
        ),
        _ => None,
    }
}

/// Rewrites `Gather(x, constant 1-D indices, axis=1)` on float matrices of known width
/// (the model input, and the outputs of rewritten gathers) into `MatMul(x, selection)`.
/// Returns the number of nodes rewritten.
pub fn gathers_to_matmul(proto: &mut pb::ModelProto) -> usize {
    let Some(graph) = proto.graph.as_mut() else { return 0 };
    let initializer_names: std::collections::HashSet<String> =
        graph.initializer.iter().map(|t| t.name.clone()).collect();
    let mut widths: HashMap<String, i64> = HashMap::new();
    for input in graph.input.iter().filter(|i| !initializer_names.contains(&i.name)) {
        if let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_ref().and_then(|t| t.value.as_ref())
            && t.elem_type == FLOAT
            && let Some(shape) = &t.shape
            && shape.dim.len() == 2
            && let Some(pb::tensor_shape_proto::dimension::Value::DimValue(w)) = shape.dim[1].value
        {
            widths.insert(input.name.clone(), w);
        }
    }
    let mut constants: HashMap<String, (Vec<i64>, usize)> = HashMap::new();
    for t in &graph.initializer {
        if let Some(v) = int_values(t) {
            constants.insert(t.name.clone(), (v, t.dims.len()));
        }
    }
    let mut added = Vec::new();
    let mut rewritten = 0;
    for node in graph.node.iter_mut() {
        if node.op_type == "Constant"
            && let Some(t) = node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref())
            && let Some(v) = int_values(t)
        {
            constants.insert(node.output[0].clone(), (v, t.dims.len()));
            continue;
        }
        if node.op_type != "Gather" || node.input.len() != 2 || !node.domain.is_empty() {
            continue;
        }
        let axis = node.attribute.iter().find(|a| a.name == "axis").map_or(0, |a| a.i);
        let (Some(&width), Some((indices, rank))) = (widths.get(&node.input[0]), constants.get(&node.input[1])) else {
            continue;
        };
        if !(axis == 1 || axis == -1) || *rank != 1 || indices.iter().any(|i| *i < -width || *i >= width) {
            continue;
        }
        let k = indices.len();
        let mut select = vec![0f32; width as usize * k];
        for (col, i) in indices.iter().enumerate() {
            let row = if *i < 0 { i + width } else { *i } as usize;
            select[row * k + col] = 1.0;
        }
        let name = format!("{}__selection", node.output[0]);
        added.push(pb::TensorProto {
            dims: vec![width, k as i64],
            data_type: FLOAT,
            float_data: select,
            name: name.clone(),
            ..Default::default()
        });
        node.op_type = "MatMul".into();
        node.input[1] = name;
        node.attribute.clear();
        widths.insert(node.output[0].clone(), k as i64);
        rewritten += 1;
    }
    graph.initializer.extend(added);
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::Framework;

    #[test]
    fn column_gathers_of_the_bundled_model_become_matmuls() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/uci_session_conversion/1/model.onnx");
        let mut proto = tract_onnx::onnx().proto_model_for_path(path).unwrap();
        assert_eq!(gathers_to_matmul(&mut proto), 3);
        let graph = proto.graph.unwrap();
        assert!(graph.node.iter().all(|n| n.op_type != "Gather"));
    }
}
