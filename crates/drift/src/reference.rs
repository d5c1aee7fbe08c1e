//! The reference of a model package: binned histograms of the training rows, per feature
//! in schema order and per output column, in `drift_reference.json`.

use serde::{Deserialize, Serialize};

/// The reference file's format number.
pub const REFERENCE_FORMAT: u32 = 1;

/// Why a reference cannot be built or does not fit its model.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// The reference is not valid JSON of the expected shape.
    #[error("drift reference: {0}")]
    Format(String),
    /// The reference contradicts itself (counts that do not add up, edges out of order).
    #[error("drift reference, column {column:?}: {reason}")]
    Column {
        /// Column name.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The reference was made for other features or outputs than the model has.
    #[error("drift reference does not fit the model: {0}")]
    Mismatch(String),
    /// A live row does not have the reference's number of features or output values.
    #[error(
        "a row of {features} features and {outputs} output values, the drift reference has {expected_features} \
         features and {expected_outputs} output columns"
    )]
    RowWidth {
        /// Features in the row.
        features: usize,
        /// Output values in the row.
        outputs: usize,
        /// Features of the reference.
        expected_features: usize,
        /// Output columns of the reference.
        expected_outputs: usize,
    },
}

/// One column's reference: edges and the training rows' counts per bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnReference {
    /// Feature name, or output column name.
    pub name: String,
    /// Bin edges, strictly increasing, finite (see the crate docs for the bins they make).
    pub edges: Vec<f32>,
    /// Training rows per bin: `edges.len() + 1` numbers.
    pub counts: Vec<u64>,
    /// Training rows whose value was missing (null, NaN or infinite).
    pub missing: u64,
}

impl ColumnReference {
    /// The column of `values` (training rows, NaN or infinite for missing) with at most
    /// `bins` quantile bins (at least 1, at most [`crate::MAX_BINS`]); a column of at most
    /// `bins` distinct finite values gets one bin per value, however rare (see the crate
    /// docs).
    pub fn from_values(name: &str, values: &[f32], bins: usize) -> Self {
        let bins = bins.clamp(1, crate::MAX_BINS);
        // -0.0 and 0.0 are one value.
        let mut finite: Vec<f32> = values.iter().filter(|v| v.is_finite()).map(|&v| v + 0.0).collect();
        finite.sort_unstable_by(f32::total_cmp);
        let mut distinct: Vec<f32> = Vec::with_capacity(bins + 1);
        for &v in &finite {
            if distinct.last() != Some(&v) {
                if distinct.len() > bins {
                    break;
                }
                distinct.push(v);
            }
        }
        let edges = if distinct.len() <= bins {
            // Few distinct values: every one closes a bin of its own, so a rare value is
            // not merged with a neighbour (quantile edges would skip a value holding less
            // than about 1/bins of the rows).
            distinct
        } else {
            let mut edges: Vec<f32> = Vec::with_capacity(bins + 1);
            let last = finite.len() - 1;
            for j in 0..=bins {
                let v = finite[j * last / bins];
                if edges.last() != Some(&v) {
                    edges.push(v);
                }
            }
            edges
        };
        let mut column = ColumnReference { name: name.to_owned(), edges, counts: Vec::new(), missing: 0 };
        column.counts = vec![0; column.edges.len() + 1];
        for &v in values {
            match column.bin(v) {
                Some(b) => column.counts[b] += 1,
                None => column.missing += 1,
            }
        }
        column
    }

    /// The bin of `value`, or `None` when it is missing (NaN or infinite).
    #[inline]
    pub fn bin(&self, value: f32) -> Option<usize> {
        bin_of(&self.edges, value)
    }

    /// Rows counted: in bins and missing.
    pub fn rows(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.missing
    }

    fn check(&self, rows: u64) -> Result<(), ReferenceError> {
        let bad = |reason: String| Err(ReferenceError::Column { column: self.name.clone(), reason });
        if self.counts.len() != self.edges.len() + 1 {
            return bad(format!(
                "{} counts for {} edges (one more count than edges)",
                self.counts.len(),
                self.edges.len()
            ));
        }
        if let Some(e) = self.edges.iter().find(|e| !e.is_finite()) {
            return bad(format!("edge {e} is not finite"));
        }
        if self.edges.windows(2).any(|w| w[0] >= w[1]) {
            return bad("edges are not strictly increasing".into());
        }
        if self.rows() != rows {
            return bad(format!("counts add up to {} rows, the reference has {rows}", self.rows()));
        }
        Ok(())
    }
}

/// The bin of `value` for `edges` (see the crate docs), or `None` for NaN or infinity.
#[inline]
pub fn bin_of(edges: &[f32], value: f32) -> Option<usize> {
    if !value.is_finite() {
        return None;
    }
    // The first edge at or above the value closes its bin; none: the open top bin.
    Some(edges.partition_point(|&e| e < value))
}

/// `drift_reference.json`: what the training rows looked like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// [`REFERENCE_FORMAT`].
    pub format: u32,
    /// The data the reference was made from (table, split, rows), for people.
    pub description: String,
    /// Training rows counted.
    pub rows: u64,
    /// Quantile bins asked for per column (a column has fewer when values repeat).
    pub bins: usize,
    /// Hash of the feature schema the features follow.
    pub schema_hash: String,
    /// One per feature, in schema order.
    pub features: Vec<ColumnReference>,
    /// One per output column, in the model's output column order.
    pub outputs: Vec<ColumnReference>,
}

impl Reference {
    /// A reference from its columns (all of them counted over the same `rows` rows).
    pub fn new(
        description: impl Into<String>,
        schema_hash: impl Into<String>,
        bins: usize,
        features: Vec<ColumnReference>,
        outputs: Vec<ColumnReference>,
    ) -> Result<Self, ReferenceError> {
        let rows = features.first().or(outputs.first()).map_or(0, ColumnReference::rows);
        let reference = Reference {
            format: REFERENCE_FORMAT,
            description: description.into(),
            rows,
            bins,
            schema_hash: schema_hash.into(),
            features,
            outputs,
        };
        reference.validate()?;
        Ok(reference)
    }

    /// Reads a reference from JSON and checks that it is consistent.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ReferenceError> {
        let reference: Reference = serde_json::from_slice(bytes).map_err(|e| ReferenceError::Format(e.to_string()))?;
        reference.validate()?;
        Ok(reference)
    }

    /// The reference as pretty JSON.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a reference serialises");
        s.push('\n');
        s
    }

    /// Checks the format, that every column counts every row and that edges increase.
    pub fn validate(&self) -> Result<(), ReferenceError> {
        if self.format != REFERENCE_FORMAT {
            return Err(ReferenceError::Format(format!(
                "format {} (this build reads format {REFERENCE_FORMAT})",
                self.format
            )));
        }
        if self.rows == 0 {
            return Err(ReferenceError::Format("the reference counts no rows".into()));
        }
        for c in self.features.iter().chain(&self.outputs) {
            c.check(self.rows)?;
        }
        Ok(())
    }

    /// Checks that the reference was made for these features (schema order, schema hash)
    /// and output columns.
    pub fn check_fits(&self, schema_hash: &str, features: &[&str], outputs: &[String]) -> Result<(), ReferenceError> {
        if self.schema_hash != schema_hash {
            return Err(ReferenceError::Mismatch(format!(
                "made for feature schema {}, the model reads {schema_hash}",
                self.schema_hash
            )));
        }
        let names: Vec<&str> = self.features.iter().map(|c| c.name.as_str()).collect();
        if names != features {
            let first = names.iter().zip(features).position(|(a, b)| a != b).unwrap_or(names.len().min(features.len()));
            return Err(ReferenceError::Mismatch(format!(
                "{} features, the model has {}; they differ from position {first}",
                names.len(),
                features.len()
            )));
        }
        let outs: Vec<&str> = self.outputs.iter().map(|c| c.name.as_str()).collect();
        let want: Vec<&str> = outputs.iter().map(String::as_str).collect();
        if outs != want {
            return Err(ReferenceError::Mismatch(format!("output columns {outs:?}, the model answers {want:?}")));
        }
        Ok(())
    }

    /// The columns, features first, then outputs.
    pub fn columns(&self) -> impl Iterator<Item = &ColumnReference> {
        self.features.iter().chain(&self.outputs)
    }
}
