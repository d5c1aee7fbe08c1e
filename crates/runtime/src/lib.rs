//! The model runtime: the one crate that knows about tract. The server and the batch
//! scorer run models through it and nothing else.
//!
//! - [`package`]: load a package, check it against its manifest, schema and golden
//!   outputs, compile and warm its plans.
//! - [`model`]: a loaded version; input validation and scoring.
//! - [`repository`]: the watched `models/` folder, versions kept for rollback, hot swap
//!   through `ArcSwap`, traffic policies (stable, canary, shadow) and bundles.

pub mod error;
pub mod fast_ln;
pub mod manifest;
pub mod model;
pub mod package;
pub mod plan_profile;
pub mod policy;
pub mod repository;
pub mod rewrite;
pub mod shadow;

pub use error::{ColumnsError, InputError, PackageError, ScoreError};
pub use manifest::Manifest;
pub use model::{CHUNK_ROWS, COLUMN_CHUNK_ROWS, Checked, Dense, LoadedModel, OutputScores, Scores};
pub use package::load_package;
pub use plan_profile::{NodeTime, PlanProfile};
pub use policy::{Arm, Canary, TrafficPolicy};
pub use repository::{ModelRepository, RepoEvent, RepositoryConfig, Route, RouteError};
pub use shadow::{Divergence, ShadowScorer};
