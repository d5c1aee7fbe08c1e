//! No build step: this script exists so that the build-dependencies above take part in
//! feature resolution (see the note in Cargo.toml).

fn main() {}
