//! `liveprofile serve`: the scoring service on the model repository.

use liveprofile_server::ServeArgs;

/// Resolves the configuration and serves until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let runtime = super::tokio_runtime()?;
    runtime.block_on(liveprofile_server::run(config, liveprofile_server::termination()))
}
