//! Experiments through the binary: a definition in the watched folder is picked up, every
//! exposure of an answered request survives `kill -9`, and `liveprofile experiment
//! exposures` exports them with the arm each answer named.

use super::{authorized, channel, free_port, models, serve};
use liveprofile_client::v1::{self, experiment_admin_client::ExperimentAdminClient, scoring_client::ScoringClient};
use liveprofile_experiments::read_exposures;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Conversion versions 1 and 2 (a copy with its version changed) in `root`.
pub(crate) fn two_versions(root: &Path) {
    for version in [1u32, 2] {
        let dest = root.join(format!("conversion/{version}"));
        std::fs::create_dir_all(&dest).unwrap();
        for e in std::fs::read_dir(models().join("conversion/1")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dest.join(e.file_name())).unwrap();
        }
        let path = dest.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        m["version"] = version.into();
        std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    }
}

/// The golden rows of the conversion package and its schema hash.
pub(crate) fn golden() -> (Vec<Vec<f32>>, String) {
    let dir = models().join("conversion/1");
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    };
    let rows = read("golden.json")["inputs"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    (rows, read("manifest.json")["feature_schema"]["hash"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exposure_of_an_answered_request_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    two_versions(&dir.path().join("models"));
    let now = liveprofile_store::now_ms();
    std::fs::create_dir_all(dir.path().join("experiments")).unwrap();
    std::fs::write(
        dir.path().join("experiments/pilot.toml"),
        format!(
            "name = \"pilot\"\nsalt = \"s1\"\nprimary = \"orders_per_visit\"\nstart = {}\nend = {}\n\
             [target]\ncategories = [\"apparel\"]\n\
             [[arms]]\nname = \"control\"\nshare = 50\nmodels = {{ conversion = 1 }}\n\
             [[arms]]\nname = \"treatment\"\nshare = 50\nmodels = {{ conversion = 2 }}\n",
            now - 86_400_000,
            now + 86_400_000
        ),
    )
    .unwrap();
    let port = free_port();
    let mut child = serve(&data, port);
    let ch = channel(port).await;
    // The watched folder is read once the models are in.
    let mut admin = ExperimentAdminClient::new(ch.clone());
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let list = admin.list_experiments(authorized(v1::ListExperimentsRequest {})).await;
        if list.is_ok_and(|l| l.into_inner().experiments.len() == 1) {
            break;
        }
        assert!(Instant::now() < until, "the experiment was not loaded from the folder");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Two callers score new users, ten per request, until the kill.
    let (rows, schema_hash) = golden();
    let answered: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let mut callers = Vec::new();
    for c in 0..2 {
        let answered = answered.clone();
        let mut client = ScoringClient::new(ch.clone());
        let (rows, schema_hash) = (rows.clone(), schema_hash.clone());
        callers.push(tokio::spawn(async move {
            for n in 0.. {
                let candidates = crate::douyin_apparel_candidates(&format!("c{c}-{n}"), &rows);
                let request =
                    v1::ScoreConversionRequest { schema_hash: schema_hash.clone(), candidates, ..Default::default() };
                match client.score_conversion(request).await {
                    Ok(r) => {
                        let mut a = answered.lock().unwrap();
                        for s in r.into_inner().scores {
                            a.insert(s.user_id, s.model.unwrap().experiment_arm);
                        }
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while answered.lock().unwrap().len() < 500 {
        assert!(Instant::now() < until, "scoring too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for c in callers {
        c.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();

    // Restarted, the server knows at least every answered user as exposed.
    let mut child = serve(&data, port);
    let mut admin = ExperimentAdminClient::new(channel(port).await);
    let until = Instant::now() + Duration::from_secs(60);
    let exposed = loop {
        if let Ok(l) = admin.list_experiments(authorized(v1::ListExperimentsRequest {})).await
            && let Some(x) = l.into_inner().experiments.first()
        {
            break x.exposed_users;
        }
        assert!(Instant::now() < until, "no experiment after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exposed as usize >= answered.len(), "{exposed} exposed < {} answered", answered.len());
    child.kill().unwrap();
    child.wait().unwrap();

    // Exported, each answered user is there once, with the arm its answer named.
    let out = dir.path().join("exposures.parquet");
    let export = Command::new(env!("CARGO_BIN_EXE_liveprofile"))
        .args(["experiment", "exposures", "--experiment", "pilot", "--data-dir"])
        .arg(&data)
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
