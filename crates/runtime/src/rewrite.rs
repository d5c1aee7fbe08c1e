//! Graph rewrites applied before compiling, each checked afterwards by the golden examples:
//!
//! - [`gathers_to_matmul`] (exact, below);
//! - [`fuse_log1p_relu`]: `Log(Relu(x) + 1)` as one vectorised op (the same arithmetic);
//! - [`to_feature_major`]: batch plans on transposed activations (the same dot products,
//!   which the kernels may sum in another order).
//!
//! `Gather` along the feature axis with constant indices (column selection, one-hot
//! expansion of category columns) is slow in tract: on a 17-feature model three such nodes
//! take two thirds of a single-row call and most of a 1,024-row batch. The same selection
//! is a product with a constant 0/1 matrix, which tract runs as one small matrix multiply;
//! `x * 1 + 0 * y` is exactly `x` for the finite inputs the runtime admits.

use std::collections::HashMap;
use tract_onnx::pb;

use crate::manifest::onnx_type::{FLOAT, INT32, INT64};

/// ONNX `AttributeProto.AttributeType` of one integer.
const ATTRIBUTE_INT: i32 = 2;
/// ONNX `AttributeProto.AttributeType` of a list of integers.
const ATTRIBUTE_INTS: i32 = 7;

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

/// Element-wise ops that do not care how a matrix is laid out.
const UNARY: &[&str] = &[
    "Abs",
    "Cast",
    "Ceil",
    "Erf",
    "Exp",
    "Floor",
    "Identity",
    "Log",
    "Neg",
    "Not",
    "Reciprocal",
    "Relu",
    "Sigmoid",
    "Softplus",
    "Sqrt",
    "Tanh",
    crate::fast_ln::LOG1P_RELU_OP,
];

fn scalar_value(t: &pb::TensorProto) -> Option<f32> {
    if t.data_type != FLOAT || t.dims.iter().product::<i64>() != 1 {
        return None;
    }
    match (t.float_data.first(), t.raw_data.get(..4)) {
        (Some(v), _) => Some(*v),
        (None, Some(b)) => Some(f32::from_le_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

/// Fuses `Log(Add(Relu(x), 1))` (either operand order of the `Add`, a constant 1.0) into
/// one [`crate::fast_ln::Log1pRelu`] node where the intermediate values feed nothing else.
/// Returns the number of fusions.
pub fn fuse_log1p_relu(proto: &mut pb::ModelProto) -> usize {
    let Some(graph) = proto.graph.as_mut() else { return 0 };
    let mut ones: std::collections::HashSet<String> =
        graph.initializer.iter().filter(|t| scalar_value(t) == Some(1.0)).map(|t| t.name.clone()).collect();
    for node in &graph.node {
        if node.op_type == "Constant"
            && let Some(t) = node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref())
            && scalar_value(t) == Some(1.0)
        {
            ones.insert(node.output[0].clone());
        }
    }
    let mut uses: HashMap<String, usize> = HashMap::new();
    for name in graph.node.iter().flat_map(|n| n.input.iter()).chain(graph.output.iter().map(|o| &o.name)) {
        *uses.entry(name.clone()).or_default() += 1;
    }
    let producer: HashMap<String, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i))).collect();
    let mut dropped = std::collections::HashSet::new();
    let mut fused = Vec::new();
    for (i, log) in graph.node.iter().enumerate() {
        if log.op_type != "Log" || !log.domain.is_empty() || log.input.len() != 1 {
            continue;
        }
        let Some(&a) = producer.get(&log.input[0]) else { continue };
        let add = &graph.node[a];
        if add.op_type != "Add" || add.input.len() != 2 || uses.get(&add.output[0]) != Some(&1) {
            continue;
        }
        let relu_output = match (ones.contains(&add.input[0]), ones.contains(&add.input[1])) {
            (false, true) => &add.input[0],
            (true, false) => &add.input[1],
            _ => continue,
        };
        let Some(&r) = producer.get(relu_output) else { continue };
        let relu = &graph.node[r];
        if relu.op_type != "Relu" || relu.input.len() != 1 || uses.get(relu_output) != Some(&1) {
            continue;
        }
        fused.push((i, relu.input[0].clone()));
        dropped.extend([a, r]);
    }
    for (i, input) in &fused {
        let node = &mut graph.node[*i];
        node.op_type = crate::fast_ln::LOG1P_RELU_OP.into();
        node.input = vec![input.clone()];
    }
    let mut index = 0;
    graph.node.retain(|_| {
        index += 1;
        !dropped.contains(&(index - 1))
    });
    fused.len()
}

/// Broadcasting element-wise ops: transposing both operands of a 2-D broadcast keeps it valid.
const BINARY: &[&str] = &["Add", "Div", "Equal", "Greater", "Less", "Max", "Min", "Mul", "Pow", "Sub"];

fn attr_i(node: &pb::NodeProto, name: &str, default: i64) -> i64 {
    node.attribute.iter().find(|a| a.name == name).map_or(default, |a| a.i)
}

fn set_attr_i(node: &mut pb::NodeProto, name: &str, value: i64) {
    node.attribute.retain(|a| a.name != name);
    node.attribute.push(pb::AttributeProto {
        name: name.into(),
        r#type: ATTRIBUTE_INT,
        i: value,
        ..Default::default()
    });
}

/// Suffix of the tensors a rewrite adds or renames.
const FM: &str = "__feature_major";

/// Rewrites a graph of 2-D activations (`[batch, features]` in, `[batch, outputs]` out) to
/// work on transposed activations (`[features, batch]`), and transposes only the outputs
/// back. tract packs the activation operand of each matrix product before multiplying;
/// with the batch axis contiguous that packing is a run of block copies, and with the
/// feature axis contiguous (the ONNX layout) an element-by-element gather that cost as
/// much as the products themselves. A matrix product `x W` becomes `W^T x^T`: the same dot
/// products, which the kernels may sum in another order (the golden examples check the
/// result like every other rewrite).
///
/// Applies only when every node is one this function knows to be layout-free or knows how
/// to transpose (`Gemm`/`MatMul` with a constant right operand, `Concat`, element-wise ops
/// whose constants are scalars or per-feature vectors); otherwise the graph is left as it
/// is and `false` returned. The input keeps its name, with the shape `[features, batch]`.
pub fn to_feature_major(proto: &mut pb::ModelProto) -> bool {
    let Some(original) = proto.graph.as_ref() else { return false };
    let mut graph = original.clone();
    if graph.input.iter().filter(|i| !graph.initializer.iter().any(|t| t.name == i.name)).count() != 1 {
        return false;
    }
    if !constant_nodes_to_initializers(&mut graph) {
        return false;
    }
    let mut columns = Columns {
        constants: graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect(),
        added: Vec::new(),
    };
    if !graph.node.iter_mut().all(|node| columns.transpose_node(node)) {
        return false;
    }
    transpose_outputs_back(&mut graph);
    let Columns { constants, added } = columns;
    graph.initializer.extend(added);
    // Shapes recorded for intermediate tensors describe the old layout.
    graph.value_info.clear();
    let input = graph.input.iter_mut().find(|i| !constants.contains_key(&i.name)).expect("one input");
    if let Some(pb::type_proto::Value::TensorType(t)) = input.r#type.as_mut().and_then(|t| t.value.as_mut())
        && let Some(shape) = t.shape.as_mut()
        && shape.dim.len() == 2
    {
        shape.dim.swap(0, 1);
    } else {
        return false;
    }
    proto.graph = Some(graph);
    true
}

/// `Constant` nodes become initializers (the same tensors); `false` for one without a
/// tensor value.
fn constant_nodes_to_initializers(graph: &mut pb::GraphProto) -> bool {
    let mut constant_nodes = Vec::new();
    for node in &graph.node {
        if node.op_type == "Constant" {
            match node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref()) {
                Some(t) => constant_nodes.push(pb::TensorProto { name: node.output[0].clone(), ..t.clone() }),
                None => return false,
            }
        }
    }
    graph.node.retain(|n| n.op_type != "Constant");
    graph.initializer.extend(constant_nodes);
    true
}

/// The graph's constants, and the column forms of per-feature constants added for the
/// feature-major graph.
struct Columns {
    constants: HashMap<String, pb::TensorProto>,
    added: Vec<pb::TensorProto>,
}

impl Columns {
    /// A per-feature constant ([F] or [1, F]) as a column [F, 1]; scalars stay as they
    /// are; `None` for any other shape.
    fn column(&mut self, name: &str) -> Option<String> {
        let t = self.constants.get(name)?;
        let size: i64 = t.dims.iter().product();
        if t.dims.is_empty() || size == 1 {
            return Some(name.to_string());
        }
        let features = match t.dims.as_slice() {
            [f] | [1, f] => *f,
            _ => return None,
        };
        let new_name = format!("{name}{FM}");
        if !self.constants.contains_key(&new_name) {
            let mut c = t.clone();
            c.name = new_name.clone();
            c.dims = vec![features, 1];
            self.constants.insert(new_name.clone(), c.clone());
            self.added.push(c);
        }
        Some(new_name)
    }

    /// Rewrites one node for transposed activations; `false` when it is not one this
    /// rewrite knows.
    fn transpose_node(&mut self, node: &mut pb::NodeProto) -> bool {
        if !node.domain.is_empty() {
            return false;
        }
        let op = node.op_type.as_str();
        if UNARY.contains(&op) {
            true
        } else if BINARY.contains(&op) {
            if node.input.len() != 2 {
                return false;
            }
            for i in 0..2 {
                if self.constants.contains_key(&node.input[i]) {
                    match self.column(&node.input[i]) {
                        Some(n) => node.input[i] = n,
                        None => return false,
                    }
                }
            }
            true
        } else if op == "Concat" {
            match attr_i(node, "axis", 1) {
                1 | -1 => {
                    set_attr_i(node, "axis", 0);
                    true
                }
                _ => false,
            }
        } else if op == "Gemm" || op == "MatMul" {
            let (trans_a, trans_b) =
                if op == "Gemm" { (attr_i(node, "transA", 0), attr_i(node, "transB", 0)) } else { (0, 0) };
            if node.input.len() < 2 || trans_a != 0 || self.constants.contains_key(&node.input[0]) {
                return false;
            }
            match self.constants.get(&node.input[1]) {
                Some(w) if w.dims.len() == 2 => {}
                _ => return false,
            }
            if let Some(c) = node.input.get(2).filter(|c| !c.is_empty()).cloned() {
                match self.column(&c) {
                    Some(n) => node.input[2] = n,
                    None => return false,
                }
            }
            // y^T = op(W)^T x^T (+ c as a column).
            node.input.swap(0, 1);
            node.op_type = "Gemm".into();
            set_attr_i(node, "transA", 1 - trans_b);
            set_attr_i(node, "transB", 0);
            true
        } else {
            false
        }
    }
}

/// Outputs are computed transposed, then transposed back under their own names.
fn transpose_outputs_back(graph: &mut pb::GraphProto) {
    let outputs: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    for name in &outputs {
        let inner = format!("{name}{FM}");
        for node in graph.node.iter_mut() {
            for o in node.output.iter_mut().filter(|o| *o == name) {
                o.clone_from(&inner);
            }
            for i in node.input.iter_mut().filter(|i| *i == name) {
                i.clone_from(&inner);
            }
        }
        graph.node.push(pb::NodeProto {
            op_type: "Transpose".into(),
            name: format!("{name}{FM}/transpose"),
            input: vec![inner],
            output: vec![name.clone()],
            attribute: vec![pb::AttributeProto {
                name: "perm".into(),
                r#type: ATTRIBUTE_INTS,
                ints: vec![1, 0],
                ..Default::default()
            }],
            ..Default::default()
        });
    }
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

    fn bundled(name: &str) -> pb::ModelProto {
        let path = format!("{}/../../models/{name}/1/model.onnx", env!("CARGO_MANIFEST_DIR"));
        tract_onnx::onnx().proto_model_for_path(path).unwrap()
    }

    fn input_dims(proto: &pb::ModelProto) -> Vec<String> {
        let graph = proto.graph.as_ref().unwrap();
        let Some(pb::type_proto::Value::TensorType(t)) = graph.input[0].r#type.as_ref().and_then(|t| t.value.as_ref())
        else {
            panic!("tensor input")
        };
        t.shape.as_ref().unwrap().dim.iter().map(|d| format!("{:?}", d.value)).collect()
    }

    #[test]
    fn dense_graphs_go_feature_major_and_transpose_their_outputs_back() {
        for name in ["user_tags", "conversion", "taobao_purchase", "uci_session_conversion", "user_segments"] {
            let mut proto = bundled(name);
            gathers_to_matmul(&mut proto);
            let before = input_dims(&proto);
            assert!(to_feature_major(&mut proto), "{name}");
            let after = input_dims(&proto);
            assert_eq!(after, vec![before[1].clone(), before[0].clone()], "{name}");
            let graph = proto.graph.unwrap();
            let output = &graph.output[0].name;
            let last = graph.node.iter().find(|n| n.output.contains(output)).unwrap();
            assert_eq!(last.op_type, "Transpose", "{name}");
            assert!(graph.node.iter().all(|n| n.op_type != "MatMul"), "{name}: products become Gemm");
        }
    }

    #[test]
    fn log_of_relu_plus_one_becomes_one_node() {
        for name in ["user_tags", "conversion", "taobao_purchase", "uci_session_conversion"] {
            let mut proto = bundled(name);
            let before = proto.graph.as_ref().unwrap().node.len();
            assert_eq!(fuse_log1p_relu(&mut proto), 1, "{name}");
            let graph = proto.graph.unwrap();
            assert_eq!(graph.node.len(), before - 2, "{name}");
            assert!(graph.node.iter().all(|n| n.op_type != "Log"), "{name}");
        }
        // Nothing to fuse in the segment graph.
        let mut proto = bundled("user_segments");
        assert_eq!(fuse_log1p_relu(&mut proto), 0);
    }

    #[test]
    fn graphs_with_other_ops_are_left_as_they_are() {
        // Softmax works along an axis: no layout-free form here.
        let mut proto = bundled("user_tags");
        let graph = proto.graph.as_mut().unwrap();
        graph.node.iter_mut().find(|n| n.op_type == "Sigmoid").unwrap().op_type = "Softmax".into();
        let before = proto.clone();
        assert!(!to_feature_major(&mut proto));
        assert_eq!(proto, before);
    }
}
