//! `liveprofile features`.
use clap::Subcommand;
/// Feature commands.
#[derive(Debug, Subcommand)]
pub enum FeaturesCommand {}
/// Runs a feature command.
pub fn run(cmd: FeaturesCommand) -> anyhow::Result<()> { match cmd {} }
