//! `liveprofile drift` on a prediction log written by the server: the report equals the
//! server's drift gauges on the same traffic; bad input (no rows of the model, a package
//! without a reference, another feature schema, a log of other column types) is an error
//! with exit code 1. `liveprofile drift reference` checks everything before it writes: a
//! refused reference leaves the package as it was; a null entry in the manifest is
//! replaced; a null feature value is an error naming the column.

use liveprofile_client::inference::{self as pb, grpc_inference_service_client::GrpcInferenceServiceClient};
use liveprofile_drift::DriftReport;
use liveprofile_testkit::{bundled_models, publish_copy, sample};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const MODEL: &str = "uci_session_conversion";

fn golden_rows() -> Vec<Vec<f32>> {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundled_models().join(MODEL).join("1/golden.json")).unwrap())
            .unwrap();
    g["inputs"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

fn drift(args: &[&str], log: &Path, models: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_liveprofile"))
        .arg("drift")
        .arg("--log")
        .arg(log)
        .arg("--models")
        .arg(models)
        .arg("--out")
        .arg(out)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_on_the_servers_log_equals_its_gauges_and_bad_input_fails() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("models");
    publish_copy(&bundled_models().join(MODEL).join("1"), &repo, MODEL, 1, |_| {});
    let log = dir.path().join("log");
    let mut config = liveprofile_server::ServerConfig::for_tests(&repo);
    config.profiles.data_dir = dir.path().join("data");
    config.prediction_log = Some(liveprofile_predlog::LogConfig::new(&log));
    config.drift.as_mut().unwrap().sample = 1.0;
    config.drift.as_mut().unwrap().min_rows = 100;
    let server = liveprofile_server::start(config).await.unwrap();
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = GrpcInferenceServiceClient::new(channel);
    let rows = golden_rows();
    let sent = 300;
    for i in 0..sent {
        let row = &rows[i % rows.len()];
        client
            .model_infer(pb::ModelInferRequest {
                model_name: MODEL.into(),
                inputs: vec![pb::model_infer_request::InferInputTensor {
                    name: "features".into(),
                    datatype: "FP32".into(),
                    shape: vec![1, row.len() as i64],
                    contents: Some(pb::InferTensorContents { fp32_contents: row.clone(), ..Default::default() }),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let model_label = format!("model=\"{MODEL}\"");
    let until = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let text = scrape(server.metrics_addr).await;
        if sample(&text, "liveprofile_drift_rows", &[&model_label]) == Some(sent as f64)
            && text.contains("liveprofile_drift_psi{")
        {
            break text;
        }
        assert!(Instant::now() < until, "no drift figures on /metrics:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    server.shutdown().await.unwrap();

    // The report of the log: every row, the server's figures.
    let out = dir.path().join("report");
    let done = drift(&["--model", MODEL], &log, &repo, &out);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let report: DriftReport = serde_json::from_str(&std::fs::read_to_string(out.join("drift.json")).unwrap()).unwrap();
    assert_eq!((report.model.as_str(), report.version, report.live_rows), (MODEL, 1, sent as u64));
    assert_eq!(report.features.len(), 17);
    assert_eq!(report.outputs.len(), 1);
    for c in report.features.iter().chain(&report.outputs) {
        let parts = [model_label.clone(), format!("column=\"{}\"", c.name), format!("kind=\"{}\"", c.kind.as_str())];
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let psi = sample(&metrics, "liveprofile_drift_psi", &parts).unwrap();
        let ks = sample(&metrics, "liveprofile_drift_ks", &parts).unwrap();
        assert!((psi - c.psi).abs() < 1e-9 && (ks - c.ks).abs() < 1e-9, "{}: {psi} {ks} against {c:?}", c.name);
        assert_eq!(c.live_counts.iter().sum::<u64>() + c.live_missing, sent as u64);
    }
    let html = std::fs::read_to_string(out.join("drift.html")).unwrap();
    let top = &report.ranked()[0];
    assert!(html.contains("<svg") && html.contains(&format!("<b>{}</b>", top.name)), "top mover drawn");

    // No rows of the model asked for.
    let bad = drift(&["--model", "conversion"], &log, &repo, &dir.path().join("x"));
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("has no rows of model \"conversion\""), "{stderr}");
    let bad = drift(&["--model", MODEL, "--version", "2"], &log, &repo, &dir.path().join("x"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("versions in it: [1]"));
    // A package without a reference.
    let plain = dir.path().join("plain");
    publish_copy(&bundled_models().join(MODEL).join("1"), &plain, MODEL, 1, |d| {
        std::fs::remove_file(d.join("drift_reference.json")).unwrap();
        liveprofile_testkit::edit_json(&d.join("manifest.json"), |m| {
            m.as_object_mut().unwrap().remove("drift_reference");
        });
    });
    let bad = drift(&["--model", MODEL], &log, &plain, &dir.path().join("x"));
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("has no drift reference"));
    // A package under the same name and version that reads another feature schema.
    let other = dir.path().join("other");
    publish_copy(&bundled_models().join("user_segments/1"), &other, MODEL, 1, |_| {});
    let bad = drift(&["--model", MODEL], &log, &other, &dir.path().join("x"));
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("has feature schema hash") && stderr.contains("the package's is"), "{stderr}");
    assert!(!dir.path().join("x").join("drift.json").exists(), "nothing written on an error");
}

/// A Parquet table of the model's features: `rows` golden rows in turn, the value of
/// `null_in` (a feature) null in its first row.
fn training_table(path: &Path, rows: usize, null_in: Option<&str>) {
    use arrow::array::{ArrayRef, Float32Array, RecordBatch};
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundled_models().join(MODEL).join("1/manifest.json")).unwrap())
            .unwrap();
    let names: Vec<&str> =
        manifest["inputs"][0]["features"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let golden = golden_rows();
    let columns: Vec<(&str, ArrayRef)> = names
        .iter()
        .enumerate()
        .map(|(k, &name)| {
            let values = (0..rows)
                .map(|r| if r == 0 && null_in == Some(name) { None } else { Some(golden[r % golden.len()][k]) });
            (name, std::sync::Arc::new(values.collect::<Float32Array>()) as ArrayRef)
        })
        .collect();
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn make_reference(package: &Path, table: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_liveprofile"))
        .args(["drift", "reference", "--model"])
        .arg(package)
        .arg("--table")
        .arg(table)
        .output()
        .unwrap()
}

/// Every file of a folder and its bytes.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn drift_reference_checks_everything_before_writing_and_handles_a_null_entry() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("train.parquet");
    training_table(&table, 300, None);

    // A manifest with `"drift_reference": null` and no reference file: the entry is
    // replaced, not added a second time.
    let repo = dir.path().join("models");
    let package = publish_copy(&bundled_models().join(MODEL).join("1"), &repo, MODEL, 1, |d| {
        std::fs::remove_file(d.join("drift_reference.json")).unwrap();
        liveprofile_testkit::edit_json(&d.join("manifest.json"), |m| m["drift_reference"] = serde_json::Value::Null);
    });
    assert!(liveprofile_runtime::load_package(&package).unwrap().drift_reference().is_none());
    let done = make_reference(&package, &table);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let manifest = std::fs::read_to_string(package.join("manifest.json")).unwrap();
    assert_eq!(manifest.matches("\"drift_reference\"").count(), 1, "{manifest}");
    let loaded = liveprofile_runtime::load_package(&package).unwrap();
    assert_eq!(loaded.drift_reference().unwrap().rows, 300);
    // Made again from other rows: the sha256 replaced, the package loads.
    let more = dir.path().join("more.parquet");
    training_table(&more, 500, None);
    let done = make_reference(&package, &more);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    assert_eq!(liveprofile_runtime::load_package(&package).unwrap().drift_reference().unwrap().rows, 500);

    // A refused reference (the manifest's sha256 also occurs elsewhere in its text, so
    // it cannot be replaced alone) leaves the package byte for byte as it was, loading.
    let other = dir.path().join("other");
    let package = publish_copy(&bundled_models().join(MODEL).join("1"), &other, MODEL, 1, |d| {
        liveprofile_testkit::edit_json(&d.join("manifest.json"), |m| {
            let sha = m["drift_reference"]["sha256"].clone();
            m["training_data"]["reference_sha256"] = sha;
        });
    });
    let before = files(&package);
    let bad = make_reference(&package, &table);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("occurs more than once"), "{stderr}");
    assert_eq!(files(&package), before, "the refused reference changed the package");
    liveprofile_runtime::load_package(&package).unwrap().drift_reference().unwrap();

    // A null feature value: an error naming the column and the count, nothing written.
    let holes = dir.path().join("holes.parquet");
    training_table(&holes, 300, Some("Informational"));
    let bad = make_reference(&package, &holes);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("column \"Informational\" has 1 nulls") && stderr.contains("complete rows"), "{stderr}");
    assert_eq!(files(&package), before);
}

#[test]
fn a_log_of_other_column_types_is_an_error_not_a_panic() {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    std::fs::create_dir_all(&log).unwrap();
    let batch = RecordBatch::try_from_iter([
        ("model", std::sync::Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ("model_version", std::sync::Arc::new(UInt32Array::from(vec![1, 1])) as ArrayRef),
    ])
    .unwrap();
    let file = std::fs::File::create(log.join("predictions-0.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let bad = drift(&["--model", MODEL], &log, &bundled_models(), &dir.path().join("x"));
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("column \"model\" is Int64, a prediction log's is Utf8"), "{stderr}");
}
