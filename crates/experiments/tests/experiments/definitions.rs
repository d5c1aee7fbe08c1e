//! Definitions: parsing, every refusal naming its field, and the checks against loaded
//! models and running experiments.

use liveprofile_experiments::{Experiment, Metric, check_conflicts, check_models};

const EXAMPLE: &str = r#"
name = "conversion-v2-apparel"
salt = "conversion-v2-apparel-2026-11"
primary = "orders_per_visit"
guardrails = ["watch_minutes_per_visit"]
start = "2026-11-16T00:00:00+08:00"
end = "2026-11-30T00:00:00+08:00"

[target]
categories = ["apparel"]
platforms = ["taobao", "douyin", "kuaishou"]

[[arms]]
name = "control"
share = 50

[[arms]]
name = "treatment"
share = 50
models = { conversion = 2 }
"#;

fn refused(text: &str) -> String {
    Experiment::parse(text).unwrap_err().to_string()
}

#[test]
fn the_example_parses_and_round_trips_through_toml() {
    let e = Experiment::parse(EXAMPLE).unwrap();
    assert_eq!(e.name, "conversion-v2-apparel");
    assert_eq!(e.primary, Metric::OrdersPerVisit);
    assert_eq!(e.guardrails, vec![Metric::WatchMinutesPerVisit]);
    assert_eq!(e.start_ms, 1_794_758_400_000);
    assert_eq!(e.end_ms - e.start_ms, 14 * 86_400_000);
    assert_eq!(e.arms[1].models.get("conversion"), Some(&2));
    assert_eq!(e.covariate_days, 7);
    assert_eq!(Experiment::parse(&e.to_toml()).unwrap(), e);
}

#[test]
fn refusals_name_the_field() {
    let shares = refused(&EXAMPLE.replace("share = 50\nmodels", "share = 40\nmodels"));
    assert!(shares.contains("arms[].share") && shares.contains("sum to 90"), "{shares}");
    let metric = refused(&EXAMPLE.replace("primary = \"orders_per_visit\"", "primary = \"revenue\""));
    assert!(metric.contains("primary") && metric.contains("unknown metric \"revenue\""), "{metric}");
    let guard = refused(&EXAMPLE.replace("[\"watch_minutes_per_visit\"]", "[\"watch_time\"]"));
    assert!(guard.contains("guardrails[0]"), "{guard}");
    let platform = refused(&EXAMPLE.replace("\"kuaishou\"]", "\"tiktok\"]"));
    assert!(platform.contains("target.platforms[2]"), "{platform}");
    let end = refused(&EXAMPLE.replace("2026-11-30T00:00:00+08:00", "2026-11-01T00:00:00+08:00"));
    assert!(end.contains("end:"), "{end}");
    let one_arm = refused(EXAMPLE.split("[[arms]]\nname = \"treatment\"").next().unwrap());
    assert!(one_arm.contains("arms:"), "{one_arm}");
    let unknown = refused(&format!("{EXAMPLE}\nowner = \"me\"\n"));
    assert!(unknown.contains("owner"), "{unknown}");
}

#[test]
fn arms_must_name_loaded_versions() {
    let e = Experiment::parse(EXAMPLE).unwrap();
    assert!(check_models(&e, |m, v| m == "conversion" && v == 2).is_ok());
    let err = check_models(&e, |_, v| v == 1).unwrap_err().to_string();
    assert!(err.contains("arms[1].models.conversion") && err.contains("version 2 is not loaded"), "{err}");
}

#[test]
fn overlapping_experiments_on_one_model_are_refused() {
    let a = Experiment::parse(EXAMPLE).unwrap();
    let b = Experiment::parse(&EXAMPLE.replace("name = \"conversion-v2-apparel\"", "name = \"other\"")).unwrap();
    let err = check_conflicts(&b, [&a]).unwrap_err().to_string();
    assert!(err.contains("target") && err.contains("model conversion"), "{err}");
    // Another category does not overlap.
    let c = Experiment::parse(
        &EXAMPLE
            .replace("name = \"conversion-v2-apparel\"", "name = \"beauty\"")
            .replace("[\"apparel\"]", "[\"beauty\"]"),
    )
    .unwrap();
    assert!(check_conflicts(&c, [&a]).is_ok());
    // Nor does a later window.
    let d = Experiment::parse(
        &EXAMPLE
            .replace("name = \"conversion-v2-apparel\"", "name = \"december\"")
            .replace("2026-11-16T00:00:00+08:00", "2026-11-30T00:00:00+08:00")
            .replace("end = \"2026-11-30T00:00:00+08:00\"", "end = \"2026-12-14T00:00:00+08:00\""),
    )
    .unwrap();
    assert!(check_conflicts(&d, [&a]).is_ok());
    // The same name is refused.
    assert!(check_conflicts(&a, [&a]).unwrap_err().to_string().contains("name"));
}
