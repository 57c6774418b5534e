//! Storage.
pub mod cli;
