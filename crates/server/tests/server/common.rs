//! Fixtures: a copy of the bundled models, a started server, clients, golden rows.

use liveprofile_client::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use liveprofile_client::v1::{self, model_admin_client::ModelAdminClient, scoring_client::ScoringClient};
use liveprofile_server::{RunningServer, ServerConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;

pub const TOKEN: &str = "test-admin-token";

pub use liveprofile_testkit::{bundled_models, sample};

/// Copies version 1 of a bundled model to `root/<name>/<version>`, through a hidden
/// staging folder renamed into place.
pub fn publish(root: &Path, name: &str, version: u32) -> PathBuf {
    liveprofile_testkit::publish_copy(&bundled_models().join(name).join("1"), root, name, version, |_| {})
}

/// A temporary repository holding version 1 of the given bundled models.
pub fn repository(models: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in models {
        publish(dir.path(), m, 1);
    }
    dir
}

/// Test defaults: loopback, free ports, an admin token.
pub fn config(root: &Path) -> ServerConfig {
    let mut c = ServerConfig::for_tests(root);
    c.admin_token = Some(TOKEN.to_owned());
    // Inside the temporary repository (hidden folders are not models): removed with it.
    c.profiles.data_dir = root.join(".profiles");
    c
}

/// Starts a server and waits until its models are ready.
pub async fn start(config: ServerConfig) -> RunningServer {
    let server = liveprofile_server::start(config).await.unwrap();
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    server
}

pub async fn channel(server: &RunningServer) -> Channel {
    Channel::from_shared(format!("http://{}", server.grpc_addr)).unwrap().connect().await.unwrap()
}

pub async fn scoring(server: &RunningServer) -> ScoringClient<Channel> {
    ScoringClient::new(channel(server).await).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
}

pub async fn kserve(server: &RunningServer) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::new(channel(server).await)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
}

pub async fn admin(server: &RunningServer) -> ModelAdminClient<Channel> {
    ModelAdminClient::new(channel(server).await)
}

/// Adds the bearer token to an admin request.
pub fn authorized<T>(message: T) -> tonic::Request<T> {
    liveprofile_client::with_token(message, TOKEN)
}

/// A package's golden examples: input rows, output rows (first output), feature names,
/// schema hash, tolerance.
pub struct Golden {
    pub rows: Vec<Vec<f32>>,
    pub outputs: Vec<Vec<f32>>,
    pub features: Vec<String>,
    pub schema_hash: String,
    pub output_names: Vec<String>,
    pub tolerance: f32,
}

pub fn golden(model: &str) -> Golden {
    let dir = bundled_models().join(model).join("1");
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let manifest = read("manifest.json");
    let g = read("golden.json");
    let input = manifest["inputs"][0]["name"].as_str().unwrap();
    let output = manifest["outputs"][0]["name"].as_str().unwrap();
    let rows = |v: &serde_json::Value| -> Vec<Vec<f32>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
            .collect()
    };
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
    };
    Golden {
        rows: rows(&g["inputs"][input]),
        outputs: rows(&g["outputs"][output]),
        features: strings(&manifest["inputs"][0]["features"]),
        schema_hash: manifest["feature_schema"]["hash"].as_str().unwrap().to_owned(),
        output_names: strings(&manifest["outputs"][0]["names"]),
        tolerance: manifest["golden"]["tolerance"].as_f64().unwrap_or(1e-5) as f32,
    }
}

impl Golden {
    pub fn dense(&self, i: usize) -> v1::Features {
        v1::Features { values: Some(v1::features::Values::Dense(v1::DenseFeatures { values: self.rows[i].clone() })) }
    }

    pub fn named(&self, i: usize) -> v1::Features {
        v1::Features {
            values: Some(v1::features::Values::Named(v1::NamedFeatures {
                values: self.features.iter().cloned().zip(self.rows[i].iter().copied()).collect(),
            })),
        }
    }

    pub fn users(&self, n: usize, dense: bool) -> Vec<v1::UserFeatures> {
        (0..n)
            .map(|i| v1::UserFeatures {
                user_id: format!("u{i:08}"),
                features: Some(if dense { self.dense(i % self.rows.len()) } else { self.named(i % self.rows.len()) }),
                ..Default::default()
            })
            .collect()
    }

    pub fn tags_request(&self, n: usize) -> v1::ScoreTagsRequest {
        v1::ScoreTagsRequest { schema_hash: self.schema_hash.clone(), users: self.users(n, true), ..Default::default() }
    }
}

/// Asserts a value is within the package's tolerance of the training framework's.
pub fn assert_close(actual: f32, expected: f32, tolerance: f32, what: &str) {
    assert!((actual - expected).abs() <= tolerance, "{what}: {actual} vs Keras {expected}");
}

/// `GET /metrics` over plain HTTP/1.0.
pub async fn metrics(server: &RunningServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.metrics_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"), "{body}");
    body
}
