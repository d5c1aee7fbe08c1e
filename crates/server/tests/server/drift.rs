//! The drift monitor on a running server: after traffic, /metrics holds every feature's
//! and output's PSI and KS for the version, equal to the drift library's figures on the
//! same rows; with the monitor turned off, no drift gauges; two models served in turn are
//! both sampled; a drift queue smaller than a batch is refused; the output score histogram
//! counts every score given.

use crate::common::*;
use liveprofile_drift::{DriftReport, LiveHistograms};

const MODEL: &str = "uci_session_conversion";

async fn infer(
    client: &mut liveprofile_client::inference::grpc_inference_service_client::GrpcInferenceServiceClient<
        tonic::transport::Channel,
    >,
    row: &[f32],
) -> Vec<f32> {
    let answer =
        client.model_infer(crate::kserve::infer_request(MODEL, &[row.to_vec()], false)).await.unwrap().into_inner();
    answer.outputs[0].contents.as_ref().unwrap().fp32_contents.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_exports_psi_and_ks_of_every_column_after_traffic() {
    let repo = tempfile::tempdir().unwrap();
    liveprofile_testkit::publish_copy(&bundled_models().join(MODEL).join("1"), repo.path(), MODEL, 1, |_| {});
    let mut c = config(repo.path());
    c.drift.as_mut().unwrap().sample = 1.0;
    c.drift.as_mut().unwrap().min_rows = 150;
    let server = start(c).await;
    let loaded = liveprofile_runtime::load_package(&repo.path().join(MODEL).join("1")).unwrap();
    let reference = loaded.drift_reference().unwrap().clone();
    let g_rows = golden(MODEL).rows;
    let mut client = kserve(&server).await;
    let mut expected = LiveHistograms::empty(&reference);
    let rows = 200;
    for i in 0..rows {
        let row = &g_rows[i % g_rows.len()];
        let out = infer(&mut client, row).await;
        expected.add_row(&reference, row, &out).unwrap();
    }
    let report = DriftReport::new(MODEL, 1, "test", &reference, &expected);
    let labels = [format!("model=\"{MODEL}\""), "version=\"1\"".to_owned()];
    // The monitor takes rows every 250 ms.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let text = loop {
        let text = metrics(&server).await;
        if sample(&text, "liveprofile_drift_rows", &[&labels[0], &labels[1]]) == Some(rows as f64)
            && text.contains("liveprofile_drift_psi{")
        {
            break text;
        }
        assert!(std::time::Instant::now() < until, "no drift figures of {rows} rows on /metrics:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    for c in report.features.iter().chain(&report.outputs) {
        let column = format!("column=\"{}\"", c.name);
        let kind = format!("kind=\"{}\"", c.kind.as_str());
        let parts = [labels[0].as_str(), labels[1].as_str(), column.as_str(), kind.as_str()];
        let psi = sample(&text, "liveprofile_drift_psi", &parts).unwrap_or_else(|| panic!("no PSI of {}", c.name));
        let ks = sample(&text, "liveprofile_drift_ks", &parts).unwrap();
        assert!((psi - c.psi).abs() < 1e-9, "{}: PSI {psi} on /metrics, {} from the library", c.name, c.psi);
        assert!((ks - c.ks).abs() < 1e-9, "{}: KS {ks}, {}", c.name, c.ks);
    }
    let flagged = sample(&text, "liveprofile_drift_flagged", &[&labels[0], "kind=\"feature\""]).unwrap();
    assert_eq!(flagged, report.flagged_features.len() as f64);
    assert_eq!(sample(&text, "liveprofile_drift_rows_dropped", &[]), Some(0.0));
    server.shutdown().await.unwrap();

    // A quarter of the batches (one-row requests sent one at a time: one batch each).
    let mut c = config(repo.path());
    c.drift.as_mut().unwrap().sample = 0.25;
    c.drift.as_mut().unwrap().min_rows = 1;
    let server = start(c).await;
    let mut client = kserve(&server).await;
    for i in 0..rows {
        infer(&mut client, &g_rows[i % g_rows.len()]).await;
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = metrics(&server).await;
        if sample(&text, "liveprofile_drift_rows", &[&labels[0], &labels[1]]) == Some(rows as f64 / 4.0) {
            break;
        }
        assert!(std::time::Instant::now() < until, "not a quarter of {rows} rows monitored:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.shutdown().await.unwrap();

    // Turned off: no drift gauges.
    let mut c = config(repo.path());
    c.drift = None;
    let server = start(c).await;
    let mut client = kserve(&server).await;
    infer(&mut client, &g_rows[0]).await;
    let text = metrics(&server).await;
    assert!(!text.contains("liveprofile_drift_psi{") && !text.contains("liveprofile_drift_rows{"), "{text}");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_models_served_in_turn_are_both_sampled() {
    // With one batch counter for all models, batches of A and B in turn and half of the
    // batches sampled took every B batch and no A batch.
    let models = [MODEL, "conversion"];
    let repo = repository(&models);
    let mut c = config(repo.path());
    c.drift.as_mut().unwrap().sample = 0.5;
    c.drift.as_mut().unwrap().min_rows = 1;
    let server = start(c).await;
    let mut client = kserve(&server).await;
    let rows: Vec<Vec<f32>> = models.iter().map(|m| golden(m).rows[0].clone()).collect();
    let sent = 40;
    for _ in 0..sent {
        for (m, row) in models.iter().zip(&rows) {
            client.model_infer(crate::kserve::infer_request(m, std::slice::from_ref(row), false)).await.unwrap();
        }
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = metrics(&server).await;
        let monitored: Vec<Option<f64>> = models
            .iter()
            .map(|m| sample(&text, "liveprofile_drift_rows", &[&format!("model=\"{m}\""), "version=\"1\""]))
            .collect();
        if monitored.iter().all(|&r| r == Some(sent as f64 / 2.0)) {
            break;
        }
        assert!(std::time::Instant::now() < until, "not half of each model's rows monitored: {monitored:?}\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.shutdown().await.unwrap();
}

#[test]
fn a_drift_queue_smaller_than_the_largest_batch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_request_rows = 4_096;
    c.drift.as_mut().unwrap().queue_rows = 4_095;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("drift-queue-rows (4095)") && e.contains("largest batch the server scores (4096"), "{e}");
    c.drift.as_mut().unwrap().queue_rows = 4_096;
    c.validate().unwrap();
    c.drift = None;
    c.max_request_rows = 10;
    c.validate().unwrap();
}

/// `liveprofile_output_score` counts every score given, in one-row and many-row batches:
/// its count, sum and every cumulative bucket equal the scores the answers carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_score_histogram_counts_every_score_given() {
    let repo = tempfile::tempdir().unwrap();
    liveprofile_testkit::publish_copy(&bundled_models().join(MODEL).join("1"), repo.path(), MODEL, 1, |_| {});
    let server = start(config(repo.path())).await;
    let g_rows = golden(MODEL).rows;
    let mut client = kserve(&server).await;
    let mut given: Vec<f32> = Vec::new();
    for i in 0..5 {
        given.extend(infer(&mut client, &g_rows[i % g_rows.len()]).await);
    }
    let many: Vec<Vec<f32>> = (0..23).map(|i| g_rows[i % g_rows.len()].clone()).collect();
    let answer = client.model_infer(crate::kserve::infer_request(MODEL, &many, false)).await.unwrap().into_inner();
    let scores = answer.outputs[0].contents.as_ref().unwrap().fp32_contents.clone();
    assert_eq!(scores.len(), 23);
    given.extend(scores);

    let text = metrics(&server).await;
    let parts = [format!("model=\"{MODEL}\""), "version=\"1\"".to_owned(), "output=\"Revenue\"".to_owned()];
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    assert_eq!(sample(&text, "liveprofile_output_score_count", &parts), Some(given.len() as f64), "{text}");
    let sum: f64 = given.iter().map(|&v| f64::from(v)).sum();
    let on_page = sample(&text, "liveprofile_output_score_sum", &parts).unwrap();
    assert!((on_page - sum).abs() < 1e-9 * sum.abs().max(1.0), "sum {on_page} on /metrics, {sum} given");
    for le in ["0.01", "0.1", "0.5", "0.9", "0.99", "+Inf"] {
        let bound: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
        let le_part = format!("le=\"{le}\"");
        let mut with_le = parts.clone();
        with_le.push(&le_part);
        let expected = given.iter().filter(|&&v| f64::from(v) <= bound).count() as f64;
        assert_eq!(sample(&text, "liveprofile_output_score_bucket", &with_le), Some(expected), "le {le}");
    }
    server.shutdown().await.unwrap();
}
