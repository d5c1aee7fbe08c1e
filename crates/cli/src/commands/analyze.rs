//! `liveprofile analyze`: cross-tag analysis of a tag-score file (the batch scorer's
//! output) into a report folder.

use clap::Args;
use liveprofile_analysis::cooccurrence::PairOptions;
use liveprofile_analysis::segments::SegmentOptions;
use liveprofile_analysis::table::{Columns, read_parquet};
use std::path::PathBuf;

/// Arguments of `liveprofile analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Tag scores: user id, optional platform and conversion columns, one probability per tag.
    #[arg(long)]
    input: PathBuf,
    /// Report folder (gets report.json).
    #[arg(long)]
    out: PathBuf,
    /// Column holding each user's platform (e.g. `main_platform` of the user feature table).
    #[arg(long, default_value = "platform")]
    platform_column: String,
    /// Tag columns, comma-separated [default: every floating-point column].
    #[arg(long, value_delimiter = ',')]
    tags: Vec<String>,
    /// Probability from which a user carries a tag.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Smallest support of a reported pair of tags.
    #[arg(long, default_value_t = 0.001)]
    min_support: f64,
    /// Smallest number of users carrying both tags of a reported pair.
    #[arg(long, default_value_t = 30)]
    min_count: u64,
    /// Family-wise significance level (Bonferroni over all pairs).
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
    /// Segment counts tried, e.g. 2-8; the best mean silhouette on the sample wins.
    #[arg(long, default_value = "2-8")]
    k: String,
    /// Users in the sample that k is chosen on.
    #[arg(long, default_value_t = 3000)]
    sample: usize,
    /// k-means initialisations per fit.
    #[arg(long, default_value_t = 10)]
    n_init: usize,
}

/// Runs the analysis.
pub fn run(args: AnalyzeArgs) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&args.threshold), "--threshold must be within [0, 1]");
    let columns = Columns { tags: args.tags, platform: args.platform_column, ..Columns::default() };
    let table = read_parquet(&args.input, &columns)?;
    let options = PairOptions {
        threshold: args.threshold,
        min_support: args.min_support,
        min_count: args.min_count,
        alpha: args.alpha,
    };
    let (k_min, k_max) = match args.k.split_once('-') {
        Some((a, b)) => (a.trim().parse::<usize>()?, b.trim().parse::<usize>()?),
        None => {
            let k = args.k.trim().parse::<usize>()?;
            (k, k)
        }
    };
    let segment_options =
        SegmentOptions { k_min, k_max, n_runs: args.n_init.max(1), sample: args.sample.max(k_max * 10) };
    let report = liveprofile_analysis::analyse(&table, &options, &segment_options)?;
    let path = liveprofile_analysis::write_report(&report, &table, &args.out)?;
    let reported: Vec<String> = report
        .pairs
        .iter()
        .filter(|p| p.reported)
        .take(5)
        .map(|p| format!("{} + {} (lift {:.2}, phi {:.2}, {} users)", p.a, p.b, p.lift, p.phi, p.both))
        .collect();
    outln!("{} users, {} tags; report in {}", report.users, report.tags.len(), path.display());
    let s = &report.segmentation;
    outln!(
        "{} segments (silhouette {:.3}); sizes {}",
        s.k,
        s.scores.iter().find(|x| x.k == s.k).map_or(0.0, |x| x.silhouette),
        s.segments.iter().map(|g| format!("{} ({})", g.size, g.tags[0].tag)).collect::<Vec<_>>().join(", ")
    );
    outln!("strongest reported pairs: {}", if reported.is_empty() { "none".to_owned() } else { reported.join("; ") });
    Ok(())
}
