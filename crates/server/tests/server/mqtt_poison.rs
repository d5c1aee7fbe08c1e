//! Poison MQTT messages through a real Mosquitto broker: a message over the size limit
//! and one that is not events are dead-lettered (recorded under the data folder, counted,
//! acknowledged), the messages after them are taken in, and after a restart nothing is
//! delivered again.

use crate::common::*;
use liveprofile_server::mqtt::{DEAD_LETTER_DIR, DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, MAX_MESSAGE_BYTES};
use liveprofile_store::{ProfileStore, now_ms};
use std::path::Path;
use std::time::{Duration, Instant};

/// A producer that can publish messages far over the server's limit.
fn producer(broker: &liveprofile_testkit::Mosquitto, id: &str) -> rumqttc::AsyncClient {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(10));
    options.set_max_packet_size(64 << 20, 64 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    client
}

async fn publish(client: &rumqttc::AsyncClient, topic: &str, payload: Vec<u8>) {
    client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
}

/// Publishes probe events of `user` until the server has taken one in. A message
/// published before the first probe has been handled by then, and acknowledged when it
/// came in an earlier batch than the probe.
async fn probe(client: &rumqttc::AsyncClient, store: &ProfileStore, user: &str) {
    let until = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while store.user_features(user, None).is_err() {
        assert!(Instant::now() < until, "the server never took in {user}'s probe");
        n += 1;
        let payload = format!(r#"{{"event_id":"{user}-{n}","ts_ms":{},"user_id":"{user}","kind":"like"}}"#, now_ms());
        publish(client, "live/douyin/room-1/events", payload.into_bytes()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn records(data: &Path) -> Vec<(String, DeadLetter)> {
    let dir = data.join(DEAD_LETTER_DIR);
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let record = serde_json::from_slice(&std::fs::read(dir.join(&n)).unwrap()).unwrap();
            (n, record)
        })
        .collect()
}

fn dead_letters(text: &str, reason: &str) -> Option<f64> {
    sample(text, "liveprofile_mqtt_dead_letters", &[&format!("reason=\"{reason}\"")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_size_and_undecodable_messages_are_dead_lettered_and_later_messages_flow() {
    let broker = liveprofile_testkit::Mosquitto::start();
    let repo = repository(&["user_tags"]);
    let data = tempfile::tempdir().unwrap();
    let client_id = format!("liveprofile-poison-{}", std::process::id());
    let config_with_mqtt = || {
        let mut c = config(repo.path());
        c.profiles.data_dir = data.path().to_owned();
        c.profiles.mqtt = Some(liveprofile_server::config::MqttConfig {
            host: "127.0.0.1".into(),
            port: broker.port,
            topic: "live/+/+/events".into(),
            client_id: client_id.clone(),
        });
        c
    };
    let client = producer(&broker, "producer-poison");
    let server = start(config_with_mqtt()).await;
    let store = server.state().profiles.clone();
    probe(&client, &store, "probe-a").await;
    let text = metrics(&server).await;
    for reason in ["too_large", "undecodable", "refused"] {
        assert_eq!(dead_letters(&text, reason), Some(0.0), "{reason} is shown from the start");
    }

    // 17 MiB of well-formed events (over the limit all the same), then bytes that are
    // neither JSON nor protobuf, then good events.
    let t = now_ms();
    let mut huge = String::from("[");
    let mut i = 0;
    while huge.len() < 17 << 20 {
        huge.push_str(&format!(r#"{{"event_id":"big-{i}","ts_ms":{t},"user_id":"big-spender","kind":"like"}},"#));
        i += 1;
    }
    huge.pop();
    huge.push(']');
    let huge = huge.into_bytes();
    assert!(huge.len() > MAX_MESSAGE_BYTES);
    let garbage = vec![0xff, 0x00, 0x01, b'x'];
    let good = format!(r#"{{"event_id":"after-1","ts_ms":{t},"user_id":"after-poison","kind":"like"}}"#);
    let started = now_ms();
    publish(&client, "live/douyin/room-big/events", huge.clone()).await;
    publish(&client, "live/douyin/room-bad/events", garbage).await;
    publish(&client, "live/douyin/room-ok/events", good.into_bytes()).await;
    // A coupon offer is taken in; an order of 5e16 yuan is refused alone.
    let offer = format!(
        r#"[{{"event_id":"offer-1","ts_ms":{t},"user_id":"offered","kind":"coupon_offer","coupon":true}},
            {{"event_id":"order-1","ts_ms":{t},"user_id":"offered","kind":"order","value":5e16}}]"#
    );
    publish(&client, "live/douyin/room-ok/events", offer.into_bytes()).await;

    liveprofile_testkit::eventually_async("the messages after the poison ones", Duration::from_secs(60), || {
        let taken = store.user_features("offered", None).is_ok();
        async move { taken }
    })
    .await;
    // A probe published now comes in a later batch than the messages above: once it is
    // in, their batch is done (counted, recorded, acknowledgements queued ahead of any
    // disconnection).
    probe(&client, &store, "probe-b").await;
    assert!(store.user_features("after-poison", None).is_ok());
    assert_eq!(store.user_features("offered", None).unwrap().last_event_ms, Some(t));
    assert!(store.user_features("big-spender", None).is_err(), "nothing of the over-size message is taken in");
    let text = metrics(&server).await;
    assert_eq!(dead_letters(&text, "too_large"), Some(1.0));
    assert_eq!(dead_letters(&text, "undecodable"), Some(1.0));
    assert_eq!(dead_letters(&text, "refused"), Some(0.0));
    // The two dead letters and the order.
    assert_eq!(sample(&text, "liveprofile_ingest_events", &["path=\"mqtt\"", "outcome=\"rejected\""]), Some(3.0));

    let got = records(data.path());
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["00000000000000000001.json", "00000000000000000002.json"]);
    let (big, bad) = (&got[0].1, &got[1].1);
    assert!(big.dead_lettered_ms >= started && big.dead_lettered_ms <= now_ms(), "{big:?}");
    assert_eq!(
        (big.topic.as_str(), big.bytes, big.reason.as_str(), big.detail.clone()),
        (
            "live/douyin/room-big/events",
            huge.len(),
            "too_large",
            format!("payload is {} bytes, over the limit of 16777216 bytes", huge.len())
        )
    );
    assert_eq!(
        (big.payload_prefix_bytes, big.payload_prefix_encoding.as_str(), big.payload_prefix.as_bytes()),
        (DEAD_LETTER_PAYLOAD_BYTES, "utf8", &huge[..DEAD_LETTER_PAYLOAD_BYTES])
    );
    assert_eq!((bad.topic.as_str(), bad.bytes, bad.reason.as_str()), ("live/douyin/room-bad/events", 4, "undecodable"));
    assert!(bad.detail.starts_with("neither JSON nor a protobuf EventBatch: "), "{}", bad.detail);
    assert_eq!(
        (bad.payload_prefix_bytes, bad.payload_prefix_encoding.as_str(), bad.payload_prefix.as_str()),
        (4, "base64", "/wABeA==")
    );

    drop(store); // the data folder is free once the last handle on the store is gone
    server.shutdown().await.unwrap();

    // After a restart the broker delivers unacknowledged messages first: none come.
    let server = start(config_with_mqtt()).await;
    let store = server.state().profiles.clone();
    probe(&client, &store, "probe-c").await;
    let text = metrics(&server).await;
    for reason in ["too_large", "undecodable", "refused"] {
        assert_eq!(dead_letters(&text, reason), Some(0.0), "{reason} after the restart");
    }
    assert_eq!(sample(&text, "liveprofile_ingest_events", &["path=\"mqtt\"", "outcome=\"rejected\""]), None);
    assert_eq!(records(data.path()).len(), 2);
    assert!(store.user_features("after-poison", None).is_ok());
    assert_eq!(store.user_features("offered", None).unwrap().last_event_ms, Some(t));
    assert!(store.user_features("big-spender", None).is_err());
    server.shutdown().await.unwrap();
}
