//! The one feature pipeline of liveprofile, used for training data and for serving.
//!
//! - [`schema`]: the ordered, hashed feature schemas written for the notebooks.
//! - [`aggregates`]: the single definition of user features (window sums + derivation).
//! - [`online`] / [`profiles`]: the online driver, per-user state updated per event.
//! - [`offline`] / [`build`]: the offline driver over event files, on all cores.
//! - [`conversion`]: room-visit features at a decision point; [`labels`] and [`tags`].

pub mod aggregates;
pub mod build;
pub mod conversion;
pub mod dataset;
pub mod labels;
pub mod offline;
pub mod online;
pub mod profiles;
pub mod schema;
pub mod table;
pub mod tags;

pub use build::{
    BuildError, ExampleOptions, UserTableOptions, build_examples, build_user_table, check_label_coverage,
    examples_table, open_visit_features, user_table, user_table_part,
};
pub use dataset::EventSet;
pub use online::{OnlineError, UserState};
pub use profiles::OnlineProfiles;
pub use schema::{FeatureSchema, conversion_schema, user_schema};
pub use table::FeatureTable;
