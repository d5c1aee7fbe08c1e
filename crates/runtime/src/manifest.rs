//! The model package files: `manifest.json`, `feature_schema.json`, `golden.json`.
//! Unknown fields are accepted (packages may carry more than the runtime needs).

use crate::error::PackageError;
use liveprofile_features::schema::FeatureSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// ONNX `TensorProto.DataType` codes the runtime names.
pub mod onnx_type {
    /// float32.
    pub const FLOAT: i32 = 1;
    /// int32.
    pub const INT32: i32 = 6;
    /// int64.
    pub const INT64: i32 = 7;
    /// string.
    pub const STRING: i32 = 8;
    /// bool.
    pub const BOOL: i32 = 9;
    /// float16.
    pub const FLOAT16: i32 = 10;
    /// float64.
    pub const DOUBLE: i32 = 11;
}

/// Element type of a tensor, as the manifest names it (`float32`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TensorDtype {
    /// 32-bit float: what the runtime serves.
    Float32,
    /// 64-bit float.
    Float64,
    /// 16-bit float.
    Float16,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// Boolean.
    Bool,
    /// String.
    String,
}

impl TensorDtype {
    /// The type of an ONNX element type code, if it is one the runtime names.
    pub fn from_onnx(code: i32) -> Option<Self> {
        Some(match code {
            onnx_type::FLOAT => TensorDtype::Float32,
            onnx_type::DOUBLE => TensorDtype::Float64,
            onnx_type::FLOAT16 => TensorDtype::Float16,
            onnx_type::INT32 => TensorDtype::Int32,
            onnx_type::INT64 => TensorDtype::Int64,
            onnx_type::BOOL => TensorDtype::Bool,
            onnx_type::STRING => TensorDtype::String,
            _ => return None,
        })
    }

    /// The manifest's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TensorDtype::Float32 => "float32",
            TensorDtype::Float64 => "float64",
            TensorDtype::Float16 => "float16",
            TensorDtype::Int32 => "int32",
            TensorDtype::Int64 => "int64",
            TensorDtype::Bool => "bool",
            TensorDtype::String => "string",
        }
    }
}

impl std::fmt::Display for TensorDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One input or output tensor of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name in the graph.
    pub name: String,
    /// Element type (`float32`).
    pub dtype: TensorDtype,
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
    /// The segments of a `segmentation` package, one per output column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
    /// The drift reference (training histograms); packages without one load, and drift is
    /// not reported for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_reference: Option<FileRef>,
}

/// A further file of the package with its checksum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRef {
    /// File name inside the package.
    pub file: String,
    /// sha256 of the file, lower-case hex.
    pub sha256: String,
}

/// The segments a `segmentation` package's outputs are distances to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segmentation {
    /// One per output column, in order.
    pub segments: Vec<SegmentSpec>,
    /// How they were found (k, scaling, tag order, scores, source), kept as given.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSpec {
    /// Name answered with each user's segment.
    pub name: String,
    /// What sets it apart, for people.
    #[serde(default)]
    pub description: String,
    /// The rest (size, share, top tags, centroid), kept as given.
    #[serde(flatten)]
    pub details: serde_json::Map<String, serde_json::Value>,
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

/// Largest `model.onnx` the runtime reads (the bundled ones are under 1 MiB; a ranking
/// model with large embedding tables stays well under this).
pub const MAX_ONNX_BYTES: u64 = 512 << 20;
/// Largest manifest, schema or golden JSON file the runtime reads.
pub const MAX_JSON_BYTES: u64 = 16 << 20;

/// Reads one file of a package: a regular file only (opened without blocking, so a FIFO
/// or a device cannot stall the reader, and checked on the open handle), of at most
/// `limit` bytes (checked before reading and again while reading, for a file that grows).
pub fn read_package_file(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, PackageError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let io = |source: std::io::Error| PackageError::Io { path: path.display().to_string(), source };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let t = meta.file_type();
    if !t.is_file() {
        let kind = if t.is_fifo() {
            "a FIFO"
        } else if t.is_dir() {
            "a folder"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else {
            "a special file"
        };
        return Err(PackageError::NotRegularFile { path: path.display().to_string(), kind });
    }
    let too_large = |bytes: u64| PackageError::TooLarge { path: path.display().to_string(), bytes, limit, what };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The bytes of a JSON file the manifest names (a plain name in the package folder).
pub(crate) fn read_named(dir: &Path, file: &str) -> Result<Vec<u8>, PackageError> {
    // Files named by the manifest are siblings of it: no path may lead out of the folder.
    if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
        return Err(PackageError::Format {
            file: file.to_owned(),
            reason: "a package file is named by a plain file name in the package folder".to_owned(),
        });
    }
    read_package_file(&dir.join(file), MAX_JSON_BYTES, "a JSON file")
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, file: &str) -> Result<T, PackageError> {
    let bytes = read_named(dir, file)?;
    serde_json::from_slice(&bytes).map_err(|e| PackageError::Format { file: file.to_owned(), reason: e.to_string() })
}

/// Reads the drift reference the manifest names, if any: its sha256 against the manifest,
/// then its content (consistent counts and edges).
pub fn read_drift_reference(
    dir: &Path,
    manifest: &Manifest,
) -> Result<Option<liveprofile_drift::Reference>, PackageError> {
    let Some(named) = &manifest.drift_reference else { return Ok(None) };
    let bytes = read_named(dir, &named.file)?;
    let actual = crate::package::sha256_hex(&bytes);
    if actual != named.sha256 {
        return Err(PackageError::FileChecksum { file: named.file.clone(), expected: named.sha256.clone(), actual });
    }
    liveprofile_drift::Reference::from_json(&bytes)
        .map(Some)
        .map_err(|e| PackageError::Format { file: named.file.clone(), reason: e.to_string() })
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
