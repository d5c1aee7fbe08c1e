//! The `liveprofile` binary as a process: recovery of the profile store after `kill -9`;
//! the model commands' exit codes and profile; training sets from the prediction log.

use liveprofile_bench::synthetic::SyntheticEvents;
use liveprofile_client::v1::{self, ingest_client::IngestClient, profile_admin_client::ProfileAdminClient};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod chaos;
mod drift;
mod experiments;
mod kpis;
mod label;

pub(crate) const TOKEN: &str = "kill-test-token";

pub(crate) use liveprofile_testkit::{bundled_models as models, free_port};

pub(crate) fn serve(data: &Path, port: u16) -> Child {
    // Only the smallest model is served: this test is about the profile store.
    let repo = data.parent().unwrap().join("models");
    if !repo.exists() {
        let dest = repo.join("conversion/1");
        std::fs::create_dir_all(&dest).unwrap();
        for e in std::fs::read_dir(models().join("conversion/1")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
        }
    }
    Command::new(env!("CARGO_BIN_EXE_liveprofile"))
        .args(["serve", "--models"])
        .arg(&repo)
        .args(["--addr", &format!("127.0.0.1:{port}"), "--metrics-addr", "127.0.0.1:0", "--admin-token", TOKEN])
        .arg("--data-dir")
        .arg(data)
        .arg("--experiments")
        .arg(data.parent().unwrap().join("experiments"))
        .args(["--durability", "fsync"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

pub(crate) async fn channel(port: u16) -> tonic::transport::Channel {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
        if let Ok(c) = endpoint.connect().await {
            return c;
        }
        assert!(Instant::now() < until, "server did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(
    c: &mut IngestClient<tonic::transport::Channel>,
    events: Vec<v1::LiveEvent>,
) -> Result<v1::IngestAck, tonic::Status> {
    c.ingest_events(tokio_stream::iter([v1::EventBatch { events }])).await.map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut child = serve(&data, port);

    // Two producers send batches of 100 events as fast as they are acknowledged.
    let acked: Arc<Mutex<Vec<Vec<v1::LiveEvent>>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<Vec<v1::LiveEvent>>>> = Arc::default();
    let t0 = liveprofile_store::now_ms();
    let mut producers = Vec::new();
    for p in 0..2 {
        let (acked, unacked) = (acked.clone(), unacked.clone());
        let mut c = IngestClient::new(channel(port).await);
        producers.push(tokio::spawn(async move {
            let mut g = SyntheticEvents::new(&format!("p{p}"), 300);
            for b in 0i64.. {
                let batch: Vec<v1::LiveEvent> = (0..100)
                    .map(|i| {
                        let mut e = g.next_event(t0 + b * 100 + i);
                        e.user_id = format!("p{p}-{}", e.user_id);
                        e
                    })
                    .collect();
                match send(&mut c, batch.clone()).await {
                    Ok(ack) => {
                        assert_eq!(ack.accepted, 100, "{:?}", ack.errors.first());
                        acked.lock().unwrap().push(batch);
                    }
                    Err(_) => {
                        unacked.lock().unwrap().push(batch);
                        return;
                    }
                }
            }
        }));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 40 {
        assert!(Instant::now() < until, "ingest too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for p in producers {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let unacked = unacked.lock().unwrap().clone();
    let acked_events = acked.iter().map(Vec::len).sum::<usize>() as u64;

    let mut child = serve(&data, port);
    let ch = channel(port).await;
    let mut c = IngestClient::new(ch.clone());
    let mut admin = ProfileAdminClient::new(ch);
    let stats =
        admin.get_profile_store_stats(authorized(v1::GetProfileStoreStatsRequest {})).await.unwrap().into_inner();
    assert!(stats.recovered_records >= acked_events, "{stats:?} < {acked_events}");
    // Every acknowledged event is known after the restart: sent again, it is a duplicate.
    for batch in &acked {
        let ack = send(&mut c, batch.clone()).await.unwrap();
        assert_eq!((ack.accepted, ack.duplicates), (0, 100), "{:?}", ack.errors.first());
    }
    // Events in flight at the kill are either in or not, never half: sent again, each is
    // taken or a duplicate.
    for batch in &unacked {
        let ack = send(&mut c, batch.clone()).await.unwrap();
        assert_eq!(ack.accepted + ack.duplicates, 100);
    }
    let stats =
        admin.get_profile_store_stats(authorized(v1::GetProfileStoreStatsRequest {})).await.unwrap().into_inner();
    assert_eq!(stats.last_sequence, acked_events + (unacked.len() * 100) as u64, "no event logged twice");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Ten conversion candidates in a Douyin apparel room, users `{prefix}-{k}`, their rows
/// cycling through `rows`: what the experiment callers send.
pub(crate) fn douyin_apparel_candidates(prefix: &str, rows: &[Vec<f32>]) -> Vec<v1::ConversionCandidate> {
    (0..10)
        .map(|k| v1::ConversionCandidate {
            user_id: format!("{prefix}-{k}"),
            room_id: "room".into(),
            platform: "douyin".into(),
            category: "apparel".into(),
            features: Some(v1::Features {
                values: Some(v1::features::Values::Dense(v1::DenseFeatures { values: rows[k % rows.len()].clone() })),
            }),
        })
        .collect()
}

pub(crate) fn authorized<T>(message: T) -> tonic::Request<T> {
    liveprofile_client::with_token(message, TOKEN)
}

#[test]
fn model_commands_answer_with_exit_codes_and_profile_the_served_plan() {
    let liveprofile = || Command::new(env!("CARGO_BIN_EXE_liveprofile"));
    let package = models().join("user_tags/1");
    let out = liveprofile().args(["model", "check"]).arg(&package).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: user_tags version 1"));

    let out =
        liveprofile().args(["model", "profile"]).arg(&package).args(["--rows", "256", "--runs", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(profile["plan"], "chunk");
    assert_eq!(profile["rows"], 256);
    let ops: Vec<&str> = profile["nodes"].as_array().unwrap().iter().map(|n| n["op"].as_str().unwrap()).collect();
    // The logarithm of the count features runs fused and vectorised, and the products run
    // on tract's kernels.
    assert!(ops.contains(&"Log1pRelu") && !ops.contains(&"Ln"), "{ops:?}");
    assert!(ops.contains(&"OptMatMul"), "{ops:?}");
    assert!(profile["scored_micros_per_run"].as_f64().unwrap() > 0.0);

    let out = liveprofile().args(["model", "profile"]).arg(&package).args(["--rows", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let empty = tempfile::tempdir().unwrap();
    let out = liveprofile().args(["model", "check"]).arg(empty.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("refused: "));
}
