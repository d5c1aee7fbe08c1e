//! A natural logarithm over whole tensors that the compiler vectorises.
//!
//! tract evaluates `Ln` one value at a time through the C library's `logf`. The models
//! take `log(1 + x)` of every count feature, so a 256-row batch of a 222-feature model
//! spent over a third of its time there. This version has no branch and no table in its
//! inner loop: the exponent comes from the bits (shifted so that the mantissa lands in
//! [sqrt(1/2), sqrt(2))), and `log(1 + f)` is the Cephes `logf` minimax polynomial,
//! evaluated in Estrin's order so that eight lanes keep the multipliers busy. Values outside
//! the positive normal range (zero, negatives, subnormals, infinities, NaN) are rare: a
//! block that holds one goes through `f32::ln` for those values. The largest error is one
//! unit in the last place against the exactly rounded logarithm (a test walks the whole
//! positive range), within every package's golden tolerance; the golden examples check
//! each plan that uses it on load.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::element_wise::{ElementWiseMiniOp, ElementWiseOp};
use tract_onnx::tract_core::ops::math::Ln;

const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// `log(1 + f) = f - f^2/2 + f^3 P(f)`, highest power first.
const P: [f32; 9] = [
    0.070_376_836,
    -0.115_146_1,
    0.116_769_984,
    -0.124_201_41,
    0.142_493_23,
    -0.166_680_57,
    0.200_007_14,
    -0.249_999_94,
    0.333_333_3,
];
/// Values per block: a block checks for special values once.
const BLOCK: usize = 1024;

/// `ln(x)` for positive, normal, finite `x`.
#[inline(always)]
fn ln_normal(x: f32) -> f32 {
    let bits = x.to_bits() as i32;
    // Exponent such that the remaining mantissa is in [sqrt(1/2), sqrt(2)).
    let e = bits.wrapping_sub(0x3f35_04f3) >> 23;
    let m = f32::from_bits(bits.wrapping_sub(e << 23) as u32);
    let f = m - 1.0;
    let e = e as f32;
    let z = f * f;
    let z2 = z * z;
    let a = P[0] * f + P[1];
    let b = P[2] * f + P[3];
    let c = P[4] * f + P[5];
    let d = P[6] * f + P[7];
    let p = ((a * z + b) * z2 + (c * z + d)) * f + P[8];
    let y = p * f * z + e * LN2_LO - 0.5 * z;
    f + y + e * LN2_HI
}

#[inline(always)]
fn is_special(x: f32) -> bool {
    !(f32::MIN_POSITIVE..f32::INFINITY).contains(&x)
}

/// Natural logarithm of one value, as [`ln_in_place`] computes it.
pub fn ln(x: f32) -> f32 {
    if is_special(x) { x.ln() } else { ln_normal(x) }
}

/// Replaces every value by its natural logarithm.
pub fn ln_in_place(xs: &mut [f32]) {
    for block in xs.chunks_mut(BLOCK) {
        if block.iter().fold(0u32, |any, x| any | u32::from(is_special(*x))) == 0 {
            for x in block.iter_mut() {
                *x = ln_normal(*x);
            }
        } else {
            for x in block.iter_mut() {
                *x = ln(*x);
            }
        }
    }
}

/// tract's element-wise `Ln` on f32 tensors through [`ln_in_place`].
#[derive(Debug, Clone)]
pub struct VectorLn;

impl ElementWiseMiniOp for VectorLn {
    fn name(&self) -> String {
        "VectorLn".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, _out_dt: Option<DatumType>) -> TractResult<()> {
        ln_in_place(t.as_slice_mut::<f32>()?);
        Ok(())
    }

    fn same_as(&self, other: &dyn ElementWiseMiniOp) -> bool {
        other.is::<VectorLn>()
    }
}

/// `ln(max(x, 0) + 1)` on f32 tensors in one pass over cache-sized blocks: the
/// `Log(Relu(x) + 1)` with which the bundled models take the logarithm of their count
/// features, three tract nodes and three passes over the batch otherwise. The same
/// arithmetic as the three ops, so the same bits.
#[derive(Debug, Clone)]
pub struct Log1pRelu;

/// ONNX operator name of [`Log1pRelu`] in rewritten graphs (see
/// [`crate::rewrite::fuse_log1p_relu`]).
pub const LOG1P_RELU_OP: &str = "LiveprofileLog1pRelu";

/// Replaces every value `x` by `ln(max(x, 0) + 1)`.
pub fn log1p_relu_in_place(xs: &mut [f32]) {
    for block in xs.chunks_mut(BLOCK) {
        for x in block.iter_mut() {
            *x = if *x > 0.0 { *x } else { 0.0 } + 1.0;
        }
        ln_in_place(block);
    }
}

impl ElementWiseMiniOp for Log1pRelu {
    fn name(&self) -> String {
        "Log1pRelu".into()
    }

    fn eval_in_place(&self, t: &mut Tensor, _out_dt: Option<DatumType>) -> TractResult<()> {
        log1p_relu_in_place(t.as_slice_mut::<f32>()?);
        Ok(())
    }

    fn same_as(&self, other: &dyn ElementWiseMiniOp) -> bool {
        other.is::<Log1pRelu>()
    }
}

/// The ONNX framework with [`LOG1P_RELU_OP`] registered.
pub fn onnx() -> tract_onnx::Onnx {
    use tract_onnx::tract_hir::ops::element_wise::ElementWiseIntoHir;
    let mut onnx = tract_onnx::onnx();
    onnx.op_register.insert(LOG1P_RELU_OP, |_, _| Ok((ElementWiseOp(Box::new(Log1pRelu), None).into_hir(), vec![])));
    onnx
}

/// Puts [`VectorLn`] in place of every f32 `Ln` node of an optimised model; returns how
/// many it replaced.
pub fn replace_ln(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let is_f32_ln = model.node(id).op_as::<ElementWiseOp>().is_some_and(|op| op.0.is::<Ln>() && op.1.is_none())
            && model.outlet_fact(OutletId::new(id, 0))?.datum_type == f32::datum_type();
        if is_f32_ln {
            model.node_mut(id).op = Box::new(ElementWiseOp(Box::new(VectorLn), None));
            replaced += 1;
        }
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in units of the last place between two finite f32 of the same sign.
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn within_one_ulp_of_the_rounded_logarithm_over_the_positive_range() {
        let mut worst = (0u32, 0f32);
        // Every 61st bit pattern from the smallest subnormal to the largest finite value.
        for bits in (1u32..0x7f80_0000).step_by(61) {
            let x = f32::from_bits(bits);
            let want = (x as f64).ln() as f32;
            let got = ln(x);
            let d = ulps(got, want);
            if d > worst.0 {
                worst = (d, x);
            }
        }
        assert!(worst.0 <= 1, "ln({:e}) is {} ulps off", worst.1, worst.0);
    }

    #[test]
    fn exact_where_the_logarithm_is_exact_and_special_values_as_std() {
        assert_eq!(ln(1.0).to_bits(), 0f32.to_bits());
        for x in [0.0f32, -0.0, -1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE / 4.0] {
            let (got, want) = (ln(x), x.ln());
            assert!(got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()), "ln({x}) = {got}, std {want}");
        }
    }

    #[test]
    fn log1p_relu_is_the_log_of_relu_plus_one() {
        let values: Vec<f32> = (0..3000).map(|i| (i as f32 - 1500.0) * 0.731).chain([-0.0, 0.0, 1e30, -1e30]).collect();
        let mut fused = values.clone();
        log1p_relu_in_place(&mut fused);
        for (x, got) in values.iter().zip(&fused) {
            assert_eq!(got.to_bits(), ln(x.max(0.0) + 1.0).to_bits(), "x = {x}");
        }
    }

    #[test]
    fn slices_match_the_scalar_function_at_every_length() {
        let mut values: Vec<f32> = (0..2100).map(|i| 0.37 * i as f32 + 1.0).collect();
        values[1500] = 0.0; // a block with a special value
        for n in [0, 1, 7, 8, 9, 1023, 1024, 1025, 2100] {
            let mut v = values[..n].to_vec();
            ln_in_place(&mut v);
            assert!(v.iter().zip(&values).all(|(a, b)| a.to_bits() == ln(*b).to_bits()));
        }
    }
}
