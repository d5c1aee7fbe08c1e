//! `liveprofile import`.
use clap::Subcommand;
/// Importers.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {}
/// Runs an importer.
pub fn run(cmd: ImportCommand) -> anyhow::Result<()> { match cmd {} }
