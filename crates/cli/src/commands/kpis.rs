//! `liveprofile kpis`.

use anyhow::{Context, bail};
use clap::Args;
use liveprofile_experiments::kpis::{kpis_from_file, write_kpis};
use liveprofile_experiments::{KpiReport, Metric};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `liveprofile kpis`.
#[derive(Debug, Args)]
pub struct KpisArgs {
    /// Event Parquet file.
    #[arg(long, value_name = "FILE")]
    events: PathBuf,
    /// Folder for `kpis.json` and `kpis.html` (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Fail if any event row breaks the contract (it is counted and listed otherwise).
    #[arg(long)]
    strict: bool,
}

/// Computes the KPI report and publishes it.
pub fn run(args: KpisArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let report = kpis_from_file(&args.events).with_context(|| format!("reading {}", args.events.display()))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "read {} events of {} users from {} in {:.2} s ({:.0} events/s); {} rows refused",
        report.events,
        report.users,
        args.events.display(),
        secs,
        report.events as f64 / secs.max(1e-9),
        report.rejected_rows
    );
    for r in report.rejected.iter().take(10) {
        eprintln!(
            "  row {}{}: {}",
            r.row,
            r.event_id.as_deref().map(|id| format!(" ({id})")).unwrap_or_default(),
            r.error
        );
    }
    if args.strict && report.rejected_rows > 0 {
        bail!("{} rows break the event contract (--strict)", report.rejected_rows);
    }
    let files = write_kpis(&report, &args.out).with_context(|| format!("writing into {}", args.out.display()))?;
    print_summary(&report);
    outln!("wrote {} and {}", files.json.display(), files.html.display());
    Ok(())
}

fn print_summary(r: &KpiReport) {
    let shown = [Metric::OrdersPerVisit, Metric::GmvPerUser, Metric::WatchMinutesPerVisit, Metric::RepurchaseRate];
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let mut head = format!("{:<16}{:>10}{:>10}", "platform", "users", "visits");
    for m in shown {
        head.push_str(&format!("{:>26}", m.name()));
    }
    outln!("{head}");
    for c in r.by_platform.iter().chain(std::iter::once(&r.total)) {
        let mut row = format!("{:<16}{:>10}{:>10}", c.platform.as_deref().unwrap_or("all"), c.users, c.visits);
        for m in shown {
            row.push_str(&format!("{:>26}", fmt(c.value(m))));
        }
        outln!("{row}");
    }
}
