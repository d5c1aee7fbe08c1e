//! The model package files: `manifest.json`, `feature_schema.json`, `golden.json`.
//! Unknown fields are accepted (packages may carry more than the runtime needs).

use crate::error::PackageError;
use liveprofile_features::schema::FeatureSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One input or output tensor of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type (`float32`).
    pub dtype: String,
    /// Shape; -1 for the batch dimension.
    pub shape: Vec<i64>,
    /// For inputs: the ordered feature names.
    #[serde(default)]
    pub features: Vec<String>,
    /// For outputs: tag, class or output names, one per column.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Reference to the feature schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaRef {
    /// File name inside the package.
    pub file: String,
    /// Schema name.
    #[serde(default)]
    pub name: String,
    /// Schema hash.
    pub hash: String,
}

/// Golden example settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoldenRef {
    /// File name inside the package.
    pub file: String,
    /// Number of examples.
    #[serde(default)]
    pub count: usize,
    /// Largest allowed absolute difference from the training framework's outputs.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
}

fn default_tolerance() -> f64 {
    1e-5
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Model name (the folder name).
    pub name: String,
    /// Version (the folder name).
    pub version: u32,
    /// `binary_classification`, `multi_label`, ...
    pub task: String,
    /// Creation time (RFC 3339).
    #[serde(default)]
    pub created_at: String,
    /// Input tensors.
    pub inputs: Vec<TensorSpec>,
    /// Output tensors.
    pub outputs: Vec<TensorSpec>,
    /// The feature schema.
    pub feature_schema: SchemaRef,
    /// Training data description (kept as given).
    #[serde(default)]
    pub training_data: serde_json::Value,
    /// Held-out metrics (kept as given).
    #[serde(default)]
    pub metrics: serde_json::Value,
    /// Framework versions (kept as given).
    #[serde(default)]
    pub framework: serde_json::Value,
    /// sha256 of `model.onnx`.
    pub onnx_sha256: String,
    /// Golden examples.
    pub golden: GoldenRef,
    /// Segment descriptions of a `segmentation` package (kept as given).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub segmentation: serde_json::Value,
}

/// `golden.json`: inputs and the training framework's outputs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Golden {
    /// Input name -> rows.
    pub inputs: std::collections::BTreeMap<String, Vec<Vec<f32>>>,
    /// Output name -> rows.
    pub outputs: std::collections::BTreeMap<String, Vec<Vec<f32>>>,
    /// One note per example.
    #[serde(default)]
    pub notes: Vec<String>,
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T, PackageError> {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|source| PackageError::Io { path: path.display().to_string(), source })?;
    serde_json::from_str(&text).map_err(|e| PackageError::Format { file: file.to_owned(), reason: e.to_string() })
}

/// Reads the manifest of a package folder.
pub fn read_manifest(dir: &Path) -> Result<Manifest, PackageError> {
    read_json(dir, "manifest.json")
}

/// Reads a package's feature schema and checks its hash against the manifest.
pub fn read_schema(dir: &Path, manifest: &Manifest) -> Result<FeatureSchema, PackageError> {
    let schema: FeatureSchema = read_json(dir, &manifest.feature_schema.file)?;
    let recomputed = liveprofile_features::schema::schema_hash(&schema.features);
    if recomputed != schema.hash {
        return Err(PackageError::Mismatch {
            against: "the feature schema",
            reason: format!("schema file states hash {} but its features hash to {recomputed}", schema.hash),
        });
    }
    if schema.hash != manifest.feature_schema.hash {
        return Err(PackageError::Mismatch {
            against: "the feature schema",
            reason: format!(
                "manifest schema hash {} but the schema file's is {}",
                manifest.feature_schema.hash, schema.hash
            ),
        });
    }
    Ok(schema)
}
