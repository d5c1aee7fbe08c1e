//! Integration tests of the model runtime.

mod fixtures;
mod packages;
mod repository;
mod segments;
