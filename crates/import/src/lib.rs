//! Importers of real event data into the liveprofile event contract.
//!
//! - [`taobao`]: the Alibaba Tianchi "User Behavior Data from Taobao" CSV.

pub mod taobao;

pub use taobao::{ImportReport, Malformed, TaobaoImportError, import_taobao};
