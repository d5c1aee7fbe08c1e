//! Chaos: events ingested over gRPC and MQTT and conversion requests scored in an
//! experiment, while the server is killed with `kill -9`, its disk fills (a file-size limit
//! set on the running process), the broker restarts and model folders churn. Producers
//! retry every batch until it is acknowledged, as a real producer does; at the end every
//! event sent is in the store exactly once (each user's like count equals the likes sent,
//! and every event sent again is a duplicate) and every answered user is exposed exactly
//! once, with the arm its answer named.
//!
//! The short form runs in the test suite (`LIVEPROFILE_CHAOS_SECONDS`, default 20); a
//! longer run is `LIVEPROFILE_CHAOS_SECONDS=300 cargo test --release -p liveprofile --test
//! cli chaos -- --nocapture`. The seed of the fault schedule is printed and can be fixed
//! with `LIVEPROFILE_CHAOS_SEED`.

use super::experiments::{golden, two_versions};
use super::{TOKEN, authorized, channel, free_port};
use liveprofile_client::v1::{
    self, ingest_client::IngestClient, profile_admin_client::ProfileAdminClient, scoring_client::ScoringClient,
};
use liveprofile_experiments::read_exposures;
use liveprofile_store::{ProfileStore, StoreOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Users per gRPC producer; every batch holds one like of each.
const USERS_PER_PRODUCER: usize = 40;
const GRPC_PRODUCERS: usize = 2;
/// MQTT users; each message holds one like of each.
const MQTT_USERS: usize = 20;

/// The world the chaos acts on: folders, ports and the two processes.
struct World {
    root: PathBuf,
    port: u16,
    broker_port: u16,
    server: Option<Child>,
    broker: Option<Child>,
}

impl World {
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn start_server(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_liveprofile"))
            .args(["serve", "--models"])
            .arg(self.root.join("models"))
            .args(["--addr", &format!("127.0.0.1:{}", self.port), "--metrics-addr", "127.0.0.1:0"])
            .args(["--admin-token", TOKEN, "--durability", "fsync"])
            .arg("--data-dir")
            .arg(self.data())
            .arg("--experiments")
            .arg(self.root.join("experiments"))
            .args(["--mqtt-broker", &format!("127.0.0.1:{}", self.broker_port), "--mqtt-client-id", "chaos"])
            .stdout(Stdio::null())
            .stderr(log_to("LIVEPROFILE_CHAOS_SERVER_LOG"))
            .spawn()
            .unwrap();
        self.server = Some(child);
    }

    /// `kill -9`: nothing is flushed, nothing is drained.
    fn kill_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait: the store is closed as an operator's stop closes it.
    fn stop_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            signal(&c, "TERM");
            let until = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < until, "the server did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The server died on its own (not killed by the chaos): a failure of the test.
    fn assert_server_alive(&mut self) {
        if let Some(c) = self.server.as_mut()
            && let Some(status) = c.try_wait().unwrap()
        {
            panic!("the server exited by itself: {status}");
        }
    }

    fn start_broker(&mut self) {
        let dir = self.root.join("broker");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        // Persistence keeps the server's session and its queued QoS 1 messages across a
        // broker restart. Started as root, Mosquitto would drop to its own user, which
        // cannot write the test's folder: `user root` keeps it (ignored when not root).
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\n\
                 max_queued_messages 100000\nuser root\nlog_type all\n",
                self.broker_port,
                dir.display()
            ),
        )
        .unwrap();
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("the chaos test needs Mosquitto: apt-get install mosquitto (.ci/test installs it)");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(log_to("LIVEPROFILE_CHAOS_BROKER_LOG"))
            .spawn()
            .unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.broker_port)).is_err() {
            assert!(Instant::now() < until, "mosquitto did not listen on {}", self.broker_port);
            std::thread::sleep(Duration::from_millis(20));
        }
        self.broker = Some(child);
    }

    /// A clean broker restart (SIGTERM saves its persistence file).
    fn restart_broker(&mut self) {
        if let Some(mut c) = self.broker.take() {
            signal(&c, "TERM");
            c.wait().unwrap();
        }
        self.start_broker();
    }

    /// Sets the server's file-size limit: with a few kilobytes the disk is "full" (every
    /// write past them fails with EFBIG, as writes fail with ENOSPC on a full disk); `None`
    /// lifts it.
    fn limit_file_size(&self, bytes: Option<u64>) {
        let Some(c) = self.server.as_ref() else { return };
        let limit = bytes.map_or("unlimited".to_owned(), |b| b.to_string());
        let _ = Command::new("prlimit")
            .arg(format!("--pid={}", c.id()))
            .arg(format!("--fsize={limit}:unlimited"))
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_server();
        if let Some(mut c) = self.broker.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where a process's log goes: appended to the file named by `variable`, if set (to see
/// what happened in a failed run), else nowhere.
fn log_to(variable: &str) -> Stdio {
    match std::env::var_os(variable) {
        Some(path) => std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap().into(),
        None => Stdio::null(),
    }
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status();
}

/// A small deterministic generator for the fault schedule.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn like(event_id: String, user_id: String, ts_ms: i64) -> v1::LiveEvent {
    v1::LiveEvent {
        event_id,
        ts_ms,
        platform: "kuaishou".into(),
        user_id,
        room_id: "chaos-room".into(),
        kind: "like".into(),
        ..Default::default()
    }
}

/// Sends one batch until the server acknowledges every event of it (taken in or a
/// duplicate of one taken in before), through kills and a full disk.
async fn send_until_acknowledged(
    port: u16,
    batch: &[v1::LiveEvent],
    stop_retrying: &AtomicBool,
    failures: &Mutex<HashMap<tonic::Code, u64>>,
) -> bool {
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(10));
        if let Ok(ch) = endpoint.connect().await {
            let mut client = IngestClient::new(ch);
            let sent = client.ingest_events(tokio_stream::iter([v1::EventBatch { events: batch.to_vec() }])).await;
            if let Err(status) = &sent {
                *failures.lock().unwrap().entry(status.code()).or_default() += 1;
            }
            if let Ok(ack) = sent {
                let ack = ack.into_inner();
                assert_eq!(
                    (ack.late, ack.rejected),
                    (0, 0),
                    "a retried event must be taken in or a duplicate: {:?}",
                    ack.errors.first()
                );
                assert_eq!(ack.accepted + ack.duplicates, batch.len() as u64);
                return true;
            }
        }
        if stop_retrying.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes probe events until the server has taken one in: from then on its persistent
/// session holds what is published while it is down.
async fn wait_for_mqtt_subscription(broker_port: u16, port: u16) {
    let mut options = rumqttc::MqttOptions::new("chaos-probe", "127.0.0.1", broker_port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    let pump = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let mut admin = ProfileAdminClient::new(channel(port).await);
    let until = Instant::now() + Duration::from_secs(60);
    for probe in 0.. {
        let stats = admin.get_profile_store_stats(authorized(v1::GetProfileStoreStatsRequest {})).await;
        if stats.is_ok_and(|s| s.into_inner().accepted > 0) {
            break;
        }
        assert!(Instant::now() < until, "the server never received an MQTT message");
        let payload = format!(
            r#"{{"event_id":"probe-{probe}","ts_ms":{},"user_id":"probe","kind":"like"}}"#,
            liveprofile_store::now_ms()
        );
        client.publish("live/kuaishou/chaos-room/events", rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pump.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_and_exposures_survive_kills_full_disks_broker_restarts_and_model_churn() {
    let seconds: u64 = std::env::var("LIVEPROFILE_CHAOS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("LIVEPROFILE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| liveprofile_store::now_ms() as u64);
    eprintln!("chaos: {seconds} s, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    two_versions(&root.join("models"));
    let now = liveprofile_store::now_ms();
    std::fs::create_dir_all(root.join("experiments")).unwrap();
    std::fs::write(
        root.join("experiments/chaos.toml"),
        format!(
            "name = \"chaos\"\nsalt = \"c1\"\nprimary = \"orders_per_visit\"\nstart = {}\nend = {}\n\
             [target]\ncategories = [\"apparel\"]\n\
             [[arms]]\nname = \"control\"\nshare = 50\nmodels = {{ conversion = 1 }}\n\
             [[arms]]\nname = \"treatment\"\nshare = 50\nmodels = {{ conversion = 2 }}\n",
            now - 86_400_000,
            now + 86_400_000
        ),
    )
    .unwrap();
    let mut world =
        World { root: root.clone(), port: free_port(), broker_port: free_port(), server: None, broker: None };
    world.start_broker();
    world.start_server();
    let port = world.port;
    wait_for_mqtt_subscription(world.broker_port, port).await;

    let chaos_over = Arc::new(AtomicBool::new(false));
    let give_up = Arc::new(AtomicBool::new(false));
    let t0 = liveprofile_store::now_ms();

    // gRPC producers: a batch holds one like of each of their users; the next batch is
    // made once the last is acknowledged.
    let grpc_sent: Arc<Mutex<Vec<Vec<v1::LiveEvent>>>> = Arc::default();
    let failures: Arc<Mutex<HashMap<tonic::Code, u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for p in 0..GRPC_PRODUCERS {
        let (sent, over, give_up, failures) =
            (grpc_sent.clone(), chaos_over.clone(), give_up.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0i64.. {
                if over.load(Ordering::Relaxed) {
                    return;
                }
                let batch: Vec<v1::LiveEvent> = (0..USERS_PER_PRODUCER)
                    .map(|u| like(format!("g{p}-{b}-{u}"), format!("grpc{p}-{u}"), t0 + b))
                    .collect();
                sent.lock().unwrap().push(batch.clone());
                if !send_until_acknowledged(port, &batch, &give_up, &failures).await {
                    return;
                }
            }
        }));
    }

    // The MQTT producer publishes with QoS 1 and republishes a message until the broker
    // acknowledges it (through broker restarts); the server takes each in once.
    let mqtt_sent: Arc<Mutex<Vec<Vec<v1::LiveEvent>>>> = Arc::default();
    let mqtt_acked = Arc::new(AtomicU64::new(0));
    {
        let (sent, over, acked, broker_port) =
            (mqtt_sent.clone(), chaos_over.clone(), mqtt_acked.clone(), world.broker_port);
        tasks.push(tokio::spawn(async move {
            let mut options = rumqttc::MqttOptions::new("chaos-producer", "127.0.0.1", broker_port);
            options.set_keep_alive(Duration::from_secs(5));
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
            // The pump reports the packet id of each publish sent and of each PUBACK, so a
            // late PUBACK of an earlier try is never taken for the current message's.
            let (tx, mut packets) = tokio::sync::mpsc::unbounded_channel();
            let pump = tokio::spawn(async move {
                loop {
                    let report = match eventloop.poll().await {
                        Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(pkid))) => Some((false, pkid)),
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack))) => Some((true, ack.pkid)),
                        Ok(_) => None,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            None
                        }
                    };
                    if let Some(r) = report
                        && tx.send(r).is_err()
                    {
                        return;
                    }
                }
            });
            for m in 0i64.. {
                if over.load(Ordering::Relaxed) {
                    break;
                }
                let events: Vec<v1::LiveEvent> =
                    (0..MQTT_USERS).map(|u| like(format!("m-{m}-{u}"), format!("mqtt-{u}"), t0 + m)).collect();
                sent.lock().unwrap().push(events.clone());
                let payload = prost::Message::encode_to_vec(&v1::EventBatch { events });
                'publish: loop {
                    while packets.try_recv().is_ok() {}
                    let _ = client
                        .publish("live/kuaishou/chaos-room/events", rumqttc::QoS::AtLeastOnce, false, payload.clone())
                        .await;
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                    let mut sent_as = None;
                    while let Ok(Some((is_ack, pkid))) = tokio::time::timeout_at(deadline, packets.recv()).await {
                        match (is_ack, sent_as) {
                            (false, None) => sent_as = Some(pkid),
                            (true, Some(p)) if p == pkid => break 'publish,
                            _ => {}
                        }
                    }
                }
                acked.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            pump.abort();
        }));
    }

    // Scoring callers: new users in the targeted category, ten per request.
    let (rows, schema_hash) = golden();
    let answered: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    for c in 0..2 {
        let (answered, over) = (answered.clone(), chaos_over.clone());
        let (rows, schema_hash) = (rows.clone(), schema_hash.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !over.load(Ordering::Relaxed) {
                let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(10));
                let Ok(ch) = endpoint.connect().await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut client = ScoringClient::new(ch);
                while !over.load(Ordering::Relaxed) {
                    n += 1;
                    let candidates = crate::douyin_apparel_candidates(&format!("s{c}-{n}"), &rows);
                    let request = v1::ScoreConversionRequest {
                        schema_hash: schema_hash.clone(),
                        candidates,
                        ..Default::default()
                    };
                    match client.score_conversion(request).await {
                        Ok(r) => {
                            let mut a = answered.lock().unwrap();
                            for s in r.into_inner().scores {
                                a.insert(s.user_id, s.model.unwrap().experiment_arm);
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
        }));
    }

    // The faults, one every 1 to 3 seconds.
    let mut schedule = Schedule(seed);
    let mut faults: HashMap<&str, u32> = HashMap::new();
    let mut churned: Option<u32> = None;
    let mut next_version = 3u32;
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1000 + schedule.next() % 2000)).await;
        world.assert_server_alive();
        let fault = match schedule.next() % 4 {
            0 => {
                world.kill_server();
                world.start_server();
                "kill -9"
            }
            1 => {
                world.restart_broker();
                "broker restart"
            }
            2 => {
                // A new version published by rename, the previous churned one removed.
                let models = root.join("models/conversion");
                let staging = models.join(format!(".staging-{next_version}"));
                std::fs::create_dir_all(&staging).unwrap();
                for e in std::fs::read_dir(models.join("1")).unwrap() {
                    let e = e.unwrap();
                    std::fs::copy(e.path(), staging.join(e.file_name())).unwrap();
                }
                let manifest = staging.join("manifest.json");
                let mut m: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
                m["version"] = next_version.into();
                std::fs::write(&manifest, serde_json::to_string_pretty(&m).unwrap()).unwrap();
                std::fs::rename(&staging, models.join(next_version.to_string())).unwrap();
                if let Some(old) = churned.replace(next_version) {
                    let _ = std::fs::remove_dir_all(models.join(old.to_string()));
                }
                next_version += 1;
                "model churn"
            }
            _ => {
                world.limit_file_size(Some(4096));
                tokio::time::sleep(Duration::from_millis(500 + schedule.next() % 1000)).await;
                world.assert_server_alive();
                world.limit_file_size(None);
                "disk full"
            }
        };
        *faults.entry(fault).or_default() += 1;
    }
    world.assert_server_alive();
    chaos_over.store(true, Ordering::Relaxed);
    eprintln!("chaos: faults {faults:?}");

    // Every producer finishes its batch in flight against the recovered server.
    let settle = tokio::time::timeout(Duration::from_secs(120), async {
        for t in tasks {
            t.await.unwrap();
        }
    });
    if settle.await.is_err() {
        give_up.store(true, Ordering::Relaxed);
        panic!("producers could not get their last batches acknowledged within 120 s");
    }
    let grpc_sent = grpc_sent.lock().unwrap().clone();
    let mqtt_sent = mqtt_sent.lock().unwrap().clone();
    let answered = answered.lock().unwrap().clone();
    eprintln!(
        "chaos: {} gRPC batches, {} MQTT messages acknowledged by the broker, {} users answered",
        grpc_sent.len(),
        mqtt_acked.load(Ordering::Relaxed),
        answered.len()
    );
    let failures = failures.lock().unwrap().clone();
    eprintln!("chaos: failed ingest calls by code {failures:?}");
    assert!(grpc_sent.len() >= 10 && !answered.is_empty(), "too little traffic to judge");
    // A full disk fails the batches written meanwhile, as RESOURCE_EXHAUSTED.
    if faults.contains_key("disk full") {
        assert!(failures.contains_key(&tonic::Code::ResourceExhausted), "the full disk failed no batch: {failures:?}");
    }

    // Every gRPC event sent again is a duplicate: each is stored.
    let mut ingest = IngestClient::new(channel(port).await);
    for batch in &grpc_sent {
        let ack = ingest
            .ingest_events(tokio_stream::iter([v1::EventBatch { events: batch.clone() }]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((ack.accepted, ack.duplicates), (0, batch.len() as u64), "{:?}", ack.errors.first());
    }

    // The MQTT messages the broker acknowledged reach the store (the server may still be
    // taking in what the broker queued while it was down), then each user's like count is
    // exactly what was sent: nothing lost, nothing counted twice.
    let social = liveprofile_features::user_schema().features.iter().position(|f| f.name == "social_1d").unwrap();
    let mut expected: HashMap<String, f32> = HashMap::new();
    for e in grpc_sent.iter().chain(&mqtt_sent).flatten() {
        *expected.entry(e.user_id.clone()).or_default() += 1.0;
    }
    let wait = Instant::now() + Duration::from_secs(60);
    loop {
        world.stop_server();
        let store = ProfileStore::open(StoreOptions::new(world.data())).unwrap();
        let counts: HashMap<String, f32> = expected
            .keys()
            .map(|u| (u.clone(), store.user_features(u, None).map_or(0.0, |f| f.values[social])))
            .collect();
        drop(store);
        let missing_mqtt = (0..MQTT_USERS).any(|u| counts[&format!("mqtt-{u}")] < expected[&format!("mqtt-{u}")]);
        if !missing_mqtt || Instant::now() > wait {
            let mut wrong: Vec<(&String, f32, f32)> =
                expected.iter().filter(|(u, n)| counts[*u] != **n).map(|(u, n)| (u, counts[u], *n)).collect();
            wrong.sort_by(|a, b| a.0.cmp(b.0));
            assert!(wrong.is_empty(), "like counts after the chaos (user, stored, sent): {wrong:?}");
            break;
        }
        world.start_server();
        let _ = channel(port).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // Exposures: each answered user once, with the arm its answer named.
    let out = root.join("exposures.parquet");
    let export = Command::new(env!("CARGO_BIN_EXE_liveprofile"))
        .args(["experiment", "exposures", "--experiment", "chaos", "--data-dir"])
        .arg(world.data())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let exposures = read_exposures(&out).unwrap();
    let by_user: HashMap<&str, &str> = exposures.iter().map(|x| (x.user_id.as_str(), x.arm.as_str())).collect();
    assert_eq!(by_user.len(), exposures.len(), "one exposure per user");
    for (user, arm) in &answered {
        assert_eq!(by_user.get(user.as_str()), Some(&arm.as_str()), "answered user {user}");
    }
}

/// A health status, as a load balancer reads it (`""`: the server's).
async fn health_of(port: u16, service: &str) -> i32 {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(port).await);
    let request = tonic_health::pb::HealthCheckRequest { service: service.into() };
    health.check(request).await.map_or(-1, |r| r.into_inner().status)
}

/// Polls until `service` reports `status` (the store checks every second).
async fn wait_for_health(port: u16, service: &str, status: tonic_health::ServingStatus) {
    let until = Instant::now() + Duration::from_secs(30);
    while health_of(port, service).await != status as i32 {
        assert!(Instant::now() < until, "{service:?} never turned {status:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_store_health(port: u16, status: tonic_health::ServingStatus) {
    wait_for_health(port, "liveprofile.store", status).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_batches_alone_turns_store_health_not_serving_and_recovers_without_a_restart() {
    use tonic_health::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut world = World {
        root: dir.path().to_owned(),
        port,
        broker_port: 0,
        server: Some(super::serve(&data, port)),
        broker: None,
    };
    let mut ingest = IngestClient::new(channel(port).await);
    let t0 = liveprofile_store::now_ms();
    let batch = |tag: &str| -> Vec<v1::LiveEvent> {
        (0..50).map(|u| like(format!("{tag}-{u}"), format!("user-{u}"), t0)).collect()
    };
    let send = |client: &mut IngestClient<tonic::transport::Channel>, events: Vec<v1::LiveEvent>| {
        let mut client = client.clone();
        async move { client.ingest_events(tokio_stream::iter([v1::EventBatch { events }])).await.map(|a| a.into_inner()) }
    };
    assert_eq!(send(&mut ingest, batch("a")).await.unwrap().accepted, 50);
    wait_for_store_health(port, ServingStatus::Serving).await;
    wait_for_health(port, "", ServingStatus::Serving).await;

    world.limit_file_size(Some(4096));
    let err = send(&mut ingest, batch("b")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().starts_with("disk full: ") && err.message().ends_with("nothing of it was logged or applied"));
    wait_for_store_health(port, ServingStatus::NotServing).await;
    world.assert_server_alive();
    // Scoring goes on: the server as a whole stays SERVING.
    assert_eq!(health_of(port, "").await, ServingStatus::Serving as i32);

    // Room again: the store notices by itself, and the failed batch is taken in whole.
    world.limit_file_size(None);
    wait_for_store_health(port, ServingStatus::Serving).await;
    let ack = send(&mut ingest, batch("b")).await.unwrap();
    assert_eq!((ack.accepted, ack.duplicates), (50, 0), "nothing of the failed batch was kept");

    // After kill -9 both batches are there once.
    world.kill_server();
    world.server = Some(super::serve(&data, port));
    let mut ingest = IngestClient::new(channel(port).await);
    for tag in ["a", "b"] {
        let ack = send(&mut ingest, batch(tag)).await.unwrap();
        assert_eq!((ack.accepted, ack.duplicates), (0, 50));
    }
}
