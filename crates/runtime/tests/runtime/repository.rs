//! The watched repository: refusals keep the previous version serving, hot swap, routing
//! (canary, shadow), rollback, bundles, memory release, and a hundred swaps under load.

use crate::fixtures::{edit_manifest, publish};
use liveprofile_runtime::repository::RepoEvent;
use liveprofile_runtime::{Arm, Canary, ModelRepository, RepositoryConfig, RouteError, TrafficPolicy};
use liveprofile_testkit::eventually;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn row(repo: &ModelRepository) -> Vec<f32> {
    vec![0.0; repo.get("m", None).unwrap().width()]
}

#[test]
fn broken_versions_are_refused_and_the_previous_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    assert_eq!(repo.route("m", "u1").unwrap().model.version(), 1);

    // Wrong checksum, manifest/graph mismatch, golden mismatch, wrong folder identity.
    publish(dir.path(), "m", 2, |d| edit_manifest(d, |m| m["onnx_sha256"] = "ff".repeat(32).into()));
    publish(dir.path(), "m", 3, |d| edit_manifest(d, |m| m["inputs"][0]["name"] = "x".into()));
    publish(dir.path(), "m", 4, |d| {
        crate::fixtures::edit_json(&d.join("golden.json"), |g| g["outputs"]["probability"][0][0] = 2.0.into())
    });
    publish(dir.path(), "m", 5, |d| edit_manifest(d, |m| m["version"] = 7.into()));
    // A half-written folder under a temporary name is never looked at.
    std::fs::create_dir_all(dir.path().join("m/.6.tmp-abc")).unwrap();
    let events = repo.scan();
    let refused: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            RepoEvent::Refused { version, .. } => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(refused, vec![2, 3, 4, 5]);
    let route = repo.route("m", "u1").unwrap();
    assert_eq!(route.model.version(), 1, "the previous version keeps serving");
    route.model.score(&row(&repo), 1).unwrap();
    let status = &repo.models()[0];
    assert!(status.refused.iter().any(|(v, r)| *v == 5 && r.contains("folder is m/5")), "{:?}", status.refused);
    // A refused, unchanged folder is not retried on every scan.
    assert!(repo.scan().is_empty());
}

#[test]
fn a_new_version_serves_soon_after_its_folder_appears() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    let mut config = RepositoryConfig::new(dir.path());
    config.rescan_interval = Duration::from_secs(30); // the file watcher must do it
    let repo = ModelRepository::open(config).unwrap();
    let _watch = repo.watch().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let start = Instant::now();
    publish(dir.path(), "m", 2, |_| {});
    eventually("version 2", Duration::from_secs(10), || repo.route("m", "u").unwrap().model.version() == 2);
    eprintln!("version 2 served {:?} after its folder appeared", start.elapsed());
}

#[test]
fn a_scan_reading_the_packages_does_not_trigger_another_scan() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    publish(dir.path(), "n", 1, |_| {});
    let mut config = RepositoryConfig::new(dir.path());
    config.rescan_interval = Duration::from_secs(3600);
    let repo = ModelRepository::open(config).unwrap();
    let _watch = repo.watch().unwrap();
    // A scan opens and reads every package; those reads must not count as changes.
    repo.scan();
    std::thread::sleep(Duration::from_millis(1500));
    let idle = repo.scans();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(repo.scans(), idle, "no scan without a change to the folder");
    assert!(idle <= 3, "{idle} scans: the open, the one above and at most one from the watcher's start");
    // A change still triggers one.
    publish(dir.path(), "m", 2, |_| {});
    eventually("version 2", Duration::from_secs(10), || repo.route("m", "u").unwrap().model.version() == 2);
}

#[test]
fn canary_is_sticky_per_user_and_shadow_is_offered() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    publish(dir.path(), "m", 2, |_| {});
    publish(dir.path(), "m", 3, |_| {});
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    assert_eq!(repo.policy("m").unwrap().stable, 3, "highest version is stable by default");
    repo.set_policy(
        "m",
        TrafficPolicy { stable: 1, canary: Some(Canary { version: 2, percent: 25.0 }), shadow: Some(3) },
    )
    .unwrap();
    let mut canary = 0;
    for i in 0..4000 {
        let user = format!("user-{i}");
        let a = repo.route("m", &user).unwrap();
        let b = repo.route("m", &user).unwrap();
        assert_eq!((a.arm, a.model.version()), (b.arm, b.model.version()), "sticky per user");
        assert_eq!(a.shadow.as_ref().unwrap().version(), 3);
        match a.arm {
            Arm::Canary => {
                canary += 1;
                assert_eq!(a.model.version(), 2);
            }
            Arm::Stable => assert_eq!(a.model.version(), 1),
        }
    }
    assert!((800..1200).contains(&canary), "{canary} of 4000 in a 25% canary");
    // A pinned policy is not overridden by a newer version.
    publish(dir.path(), "m", 4, |_| {});
    repo.scan();
    assert_eq!(repo.policy("m").unwrap().stable, 1);
    assert!(repo.get("m", Some(4)).is_ok());
    // Bad policies.
    let err = repo.set_policy("m", TrafficPolicy { stable: 9, canary: None, shadow: None }).unwrap_err();
    assert_eq!(err, RouteError::UnknownVersion { model: "m".into(), version: 9 });
    let err = repo.set_policy(
        "m",
        TrafficPolicy { stable: 1, canary: Some(Canary { version: 2, percent: 120.0 }), shadow: None },
    );
    assert!(matches!(err, Err(RouteError::InvalidPolicy(_))));
    assert!(matches!(repo.route("nope", "u"), Err(RouteError::UnknownModel(_))));
}

#[test]
fn rollback_and_bundles_restore_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    for (name, v) in [("tags", 1), ("conv", 1), ("tags", 2), ("conv", 2)] {
        publish(dir.path(), name, v, |_| {});
    }
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    assert_eq!(repo.policy("tags").unwrap().stable, 2);
    assert_eq!(repo.rollback("tags").unwrap(), 1);
    assert_eq!(repo.route("tags", "u").unwrap().model.version(), 1);

    repo.pin_bundle(&[("tags".into(), 2), ("conv".into(), 1)]).unwrap();
    assert_eq!((repo.policy("tags").unwrap().stable, repo.policy("conv").unwrap().stable), (2, 1));
    repo.rollback_bundle().unwrap();
    assert_eq!((repo.policy("tags").unwrap().stable, repo.policy("conv").unwrap().stable), (1, 2));
    // A bundle naming a missing version changes nothing.
    assert!(repo.pin_bundle(&[("tags".into(), 2), ("conv".into(), 9)]).is_err());
    assert_eq!((repo.policy("tags").unwrap().stable, repo.policy("conv").unwrap().stable), (1, 2));
}

#[test]
fn an_old_version_is_released_when_its_last_request_ends() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    let mut config = RepositoryConfig::new(dir.path());
    config.keep_versions = 1;
    let repo = ModelRepository::open(config).unwrap();
    let in_flight = repo.route("m", "u").unwrap();
    let weak = Arc::downgrade(&in_flight.model);
    publish(dir.path(), "m", 2, |_| {});
    repo.scan();
    assert_eq!(repo.route("m", "u").unwrap().model.version(), 2);
    // The request that started on version 1 finishes on it.
    in_flight.model.score(&row(&repo), 1).unwrap();
    assert!(weak.upgrade().is_some());
    drop(in_flight);
    assert!(weak.upgrade().is_none(), "version 1 is released");
}

#[test]
fn a_hundred_swaps_under_load_fail_no_call() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    publish(dir.path(), "m", 2, |_| {});
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    // history[i] = stable version after swap i; `swaps` counts completed swaps.
    let history = Arc::new(Mutex::new(vec![2u32]));
    let swaps = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let width = repo.get("m", None).unwrap().width();
    let calls = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..3 {
            let (repo, history, swaps, stop, calls) = (&repo, &history, &swaps, &stop, &calls);
            s.spawn(move || {
                let x = vec![t as f32 * 0.0; width];
                while !stop.load(Ordering::Relaxed) {
                    let before = swaps.load(Ordering::SeqCst) as usize;
                    let route = repo.route("m", "u").unwrap();
                    let scores = route.model.score(&x, 1).expect("no failed call");
                    assert!(scores.outputs[0].values[0].is_finite());
                    let after = swaps.load(Ordering::SeqCst) as usize;
                    let h = history.lock().unwrap();
                    // A swap's policy is set (and its version pushed, under the same lock)
                    // before it is counted: the swap in progress when `after` was read,
                    // entry `after + 1`, may already have served the call.
                    assert!(
                        h[before..=(after + 1).min(h.len() - 1)].contains(&route.model.version()),
                        "answer from version {} which was not current during the call",
                        route.model.version()
                    );
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        for i in 0..100u32 {
            let v = 1 + i % 2;
            {
                let mut h = history.lock().unwrap();
                repo.set_policy("m", TrafficPolicy { stable: v, canary: None, shadow: None }).unwrap();
                h.push(v);
            }
            swaps.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(calls.load(Ordering::Relaxed) > 100);
}

#[test]
fn shadow_scoring_measures_divergence_off_the_request_path() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    // Version 2 is the same graph, so the shadow's outputs equal the true answer: half
    // of the submitted answers are shifted by 0.5 to give a known divergence.
    publish(dir.path(), "m", 2, |_| {});
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    repo.set_policy("m", TrafficPolicy { stable: 1, canary: None, shadow: Some(2) }).unwrap();
    let scorer = liveprofile_runtime::ShadowScorer::start(64);
    let x = row(&repo);
    for i in 0..10 {
        let route = repo.route("m", &format!("u{i}")).unwrap();
        let answer = route.model.score(&x, 1).unwrap().outputs[0].values.clone();
        let shifted: Vec<f32> = if i < 5 { answer.clone() } else { answer.iter().map(|v| v + 0.5).collect() };
        assert!(scorer.submit(route.shadow.clone().unwrap(), route.model.version(), &x, 1, shifted));
    }
    let d = scorer.finish();
    let d = d[&("m".to_owned(), 1, 2)];
    assert_eq!((d.rows, d.dropped, d.failed), (10, 0, 0));
    assert!((d.mean_abs_diff - 0.25).abs() < 1e-6, "{d:?}");
    assert!((d.max_abs_diff - 0.5).abs() < 1e-6, "{d:?}");
}

fn refusals(repo: &ModelRepository, model: &str) -> Vec<(u32, String)> {
    repo.models().into_iter().find(|m| m.name == model).map(|m| m.refused).unwrap_or_default()
}

#[test]
fn an_empty_or_refused_model_leaves_the_others_serving_and_is_forgotten_with_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    // A version folder without a manifest is being published: not a model, not a refusal.
    std::fs::create_dir_all(dir.path().join("x/1")).unwrap();
    assert!(repo.scan().is_empty());
    assert!(!repo.knows("x"));
    assert_eq!(repo.readiness().into_iter().collect::<Vec<_>>(), [("m".to_owned(), true)]);
    // A new model whose only version is refused: known, not ready, the repository still
    // answers for the other model.
    publish(dir.path(), "bad", 1, |d| edit_manifest(d, |m| m["onnx_sha256"] = "ff".repeat(32).into()));
    repo.scan();
    assert!(refusals(&repo, "bad")[0].1.contains("sha256"), "{:?}", refusals(&repo, "bad"));
    assert_eq!(repo.readiness().get("bad"), Some(&false));
    assert!(repo.any_ready());
    assert!(matches!(repo.route("bad", "u"), Err(RouteError::NotReady(_))));
    // Folders removed: the refusal and the model are forgotten.
    std::fs::remove_dir_all(dir.path().join("bad")).unwrap();
    std::fs::remove_dir_all(dir.path().join("x")).unwrap();
    repo.scan();
    assert!(!repo.knows("bad"));
    assert!(matches!(repo.route("bad", "u"), Err(RouteError::UnknownModel(_))));
    assert_eq!(repo.models().iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["m"]);
    // A refused version of a serving model is forgotten too; the model keeps serving.
    publish(dir.path(), "m", 2, |d| edit_manifest(d, |m| m["onnx_sha256"] = "ff".repeat(32).into()));
    repo.scan();
    assert_eq!(refusals(&repo, "m").len(), 1);
    std::fs::remove_dir_all(dir.path().join("m/2")).unwrap();
    repo.scan();
    assert!(refusals(&repo, "m").is_empty());
    assert_eq!(repo.route("m", "u").unwrap().model.version(), 1);
    // The manifest of the empty folder arrives: the folder is loaded then.
    let v3 = publish(dir.path(), "m", 3, |_| {});
    assert_eq!(v3, dir.path().join("m/3"));
    repo.scan();
    assert_eq!(repo.route("m", "u").unwrap().model.version(), 3);
}

#[test]
fn only_canonical_version_folders_up_to_the_maximum_are_read() {
    use liveprofile_runtime::repository::{MAX_VERSION, version_of_folder};
    for (name, version) in [("0", Some(0)), ("7", Some(7)), ("2147483647", Some(MAX_VERSION))] {
        assert_eq!(version_of_folder(name), version, "{name}");
    }
    for name in ["+8", "007", "-1", " 8", "8 ", "٣", "2147483648", "4294967295", "99999999999", ""] {
        assert_eq!(version_of_folder(name), None, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    // Packages whose manifests agree with what a lax parser would read from the folder name.
    for (folder, version) in [("+8", 8u32), ("007", 7), ("4294967295", u32::MAX), ("2147483648", MAX_VERSION + 1)] {
        let path = publish(dir.path(), "m", version, |_| {});
        std::fs::rename(&path, dir.path().join("m").join(folder)).unwrap();
    }
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    let status = &repo.models()[0];
    assert_eq!(status.versions.iter().map(|v| v.version()).collect::<Vec<_>>(), [1]);
    assert!(status.refused.is_empty(), "{:?}", status.refused);
    assert_eq!(repo.policy("m").unwrap().stable, 1);
    // A later version is promoted as usual.
    publish(dir.path(), "m", 2, |_| {});
    repo.scan();
    assert_eq!(repo.policy("m").unwrap().stable, 2);
    // Asking for a version over the maximum by number is refused too.
    assert_eq!(
        repo.load_version("m", u32::MAX).unwrap_err(),
        RouteError::VersionTooLarge { model: "m".into(), version: u32::MAX }
    );
}

#[cfg(unix)]
#[test]
fn links_out_of_the_repository_are_refused_and_links_within_it_load() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    // A version folder that is a link to a package outside the repository.
    let elsewhere = publish(outside.path(), "m", 2, |_| {});
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("m/2")).unwrap();
    // A package whose model.onnx links to a file outside the repository.
    let onnx = publish(outside.path(), "m", 3, |_| {}).join("model.onnx");
    publish(dir.path(), "m", 3, |d| {
        std::fs::remove_file(d.join("model.onnx")).unwrap();
        std::os::unix::fs::symlink(&onnx, d.join("model.onnx")).unwrap();
    });
    // A version folder linked to a package kept elsewhere inside the repository.
    let kept = publish(&dir.path().join(".store"), "m", 4, |_| {});
    std::os::unix::fs::symlink(&kept, dir.path().join("m/4")).unwrap();
    let repo = ModelRepository::open(RepositoryConfig::new(dir.path())).unwrap();
    let refused = refusals(&repo, "m");
    assert_eq!(refused.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3], "{refused:?}");
    assert!(refused.iter().all(|(_, reason)| reason.contains("outside the model repository")), "{refused:?}");
    assert_eq!(repo.policy("m").unwrap().stable, 4);
    assert!(repo.get("m", Some(2)).is_err() && repo.get("m", Some(3)).is_err());
}

#[cfg(unix)]
#[test]
fn fifos_and_oversized_files_in_a_package_are_refused_without_blocking_and_later_versions_load() {
    use liveprofile_runtime::manifest::MAX_ONNX_BYTES;
    let mkfifo = |path: &std::path::Path| {
        std::fs::remove_file(path).unwrap();
        let ok = std::process::Command::new("mkfifo").arg(path).status().unwrap().success();
        assert!(ok, "mkfifo {}", path.display());
    };
    let dir = tempfile::tempdir().unwrap();
    publish(dir.path(), "m", 1, |_| {});
    // A FIFO as the graph and as the golden file: opening one for reading would wait for
    // a writer forever.
    publish(dir.path(), "m", 2, |d| mkfifo(&d.join("model.onnx")));
    publish(dir.path(), "m", 3, |d| mkfifo(&d.join("golden.json")));
    // A graph over the size limit (sparse: no disk is used), refused before it is read.
    publish(dir.path(), "m", 4, |d| {
        std::fs::File::options().write(true).open(d.join("model.onnx")).unwrap().set_len(MAX_ONNX_BYTES + 1).unwrap()
    });
    // A manifest naming a file outside its folder.
    publish(dir.path(), "m", 5, |d| edit_manifest(d, |m| m["golden"]["file"] = "../1/golden.json".into()));
    publish(dir.path(), "m", 6, |_| {});
    let (tx, rx) = std::sync::mpsc::channel();
    let root = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let repo = ModelRepository::open(RepositoryConfig::new(&root)).unwrap();
        let again = repo.load_version("m", 2).map(|_| ());
        let _ = tx.send((repo, again));
    });
    let (repo, again) = rx.recv_timeout(Duration::from_secs(120)).expect("the scan finished: nothing blocked");
    let refused = refusals(&repo, "m");
    let reason = |v: u32| refused.iter().find(|r| r.0 == v).map(|r| r.1.clone()).unwrap_or_default();
    assert_eq!(refused.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3, 4, 5], "{refused:?}");
    assert!(reason(2).ends_with("model.onnx is a FIFO, not a regular file: package files must be regular files"));
    assert!(reason(3).ends_with("golden.json is a FIFO, not a regular file: package files must be regular files"));
    assert!(
        reason(4)
            .contains(&format!("is {} bytes, over the {MAX_ONNX_BYTES}-byte limit for model.onnx", MAX_ONNX_BYTES + 1))
    );
    assert!(reason(5).contains("a plain file name in the package folder"), "{}", reason(5));
    assert!(matches!(again, Err(RouteError::Refused { version: 2, .. })), "{again:?}");
    assert_eq!(repo.policy("m").unwrap().stable, 6, "the version after the refused ones loads");
}
