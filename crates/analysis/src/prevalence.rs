//! Tag prevalence per platform with 95% Wilson intervals, and where a tag is
//! over-represented: the platform's share against the other platforms' share, with a
//! two-proportion z-test.

use crate::stats::{Z95, normal_two_sided_p, wilson};
use crate::table::TagTable;
use serde::Serialize;
use std::collections::BTreeMap;

/// Prevalence of one tag on one platform (or `all`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prevalence {
    /// Platform, or `all`.
    pub platform: String,
    /// Tag.
    pub tag: String,
    /// Users on the platform.
    pub users: u64,
    /// Users carrying the tag.
    pub carriers: u64,
    /// Their share.
    pub share: f64,
    /// 95% interval of the share.
    pub ci_low: f64,
    /// Upper end.
    pub ci_high: f64,
    /// Mean probability of the tag (the expected share).
    pub mean_probability: f64,
    /// Share on the platform over the share on every other platform.
    pub ratio_to_rest: f64,
    /// Two-sided p-value of the difference from the other platforms.
    pub p_value: f64,
}

/// Prevalence of every tag, overall and per platform (when the table has platforms).
pub fn prevalence(table: &TagTable, threshold: f64) -> Vec<Prevalence> {
    let t = table.tags.len();
    // platform -> (users, carriers per tag, probability sum per tag)
    let mut groups: BTreeMap<String, (u64, Vec<u64>, Vec<f64>)> = BTreeMap::new();
    for u in 0..table.len() {
        let platform = table.platforms.as_ref().map_or("all", |p| p[u].as_str());
        let g = groups.entry(platform.to_owned()).or_insert_with(|| (0, vec![0; t], vec![0.0; t]));
        g.0 += 1;
        for (k, p) in table.row(u).iter().enumerate() {
            g.1[k] += u64::from(*p >= threshold);
            g.2[k] += p;
        }
    }
    let total_users: u64 = groups.values().map(|g| g.0).sum();
    let total_carriers: Vec<u64> = (0..t).map(|k| groups.values().map(|g| g.1[k]).sum()).collect();
    let total_prob: Vec<f64> = (0..t).map(|k| groups.values().map(|g| g.2[k]).sum()).collect();
    let mut out = Vec::new();
    let mut push = |platform: &str, users: u64, carriers: u64, prob: f64, k: usize, rest: Option<(u64, u64)>| {
        let share = if users > 0 { carriers as f64 / users as f64 } else { 0.0 };
        let (ci_low, ci_high) = wilson(carriers, users, Z95);
        let (ratio_to_rest, p_value) = match rest {
            Some((ru, rc)) if ru > 0 && users > 0 => {
                let rest_share = rc as f64 / ru as f64;
                let pooled = (carriers + rc) as f64 / (users + ru) as f64;
                let se = (pooled * (1.0 - pooled) * (1.0 / users as f64 + 1.0 / ru as f64)).sqrt();
                let z = if se > 0.0 { (share - rest_share) / se } else { 0.0 };
                (if rest_share > 0.0 { share / rest_share } else { f64::INFINITY }, normal_two_sided_p(z))
            }
            _ => (1.0, 1.0),
        };
        out.push(Prevalence {
            platform: platform.to_owned(),
            tag: table.tags[k].clone(),
            users,
            carriers,
            share,
            ci_low,
            ci_high,
            mean_probability: if users > 0 { prob / users as f64 } else { 0.0 },
            ratio_to_rest,
            p_value,
        });
    };
    for k in 0..t {
        push("all", total_users, total_carriers[k], total_prob[k], k, None);
        if table.platforms.is_some() {
            for (platform, g) in &groups {
                push(platform, g.0, g.1[k], g.2[k], k, Some((total_users - g.0, total_carriers[k] - g.1[k])));
            }
        }
    }
    out
}
