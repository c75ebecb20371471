//! arca: a self-hosted secrets vault server.
//!
//! Layers (data flows down): `bin/arca.rs` (CLI) -> `http` (actix-web) -> `core` (domain, no
//! actix/sled/cron) -> `store` (the `Store` trait; sled behind it). `client` is the typed HTTP
//! client shared by the CLI and the tests.
#![forbid(unsafe_code)]

pub mod audit_log;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod http;
pub mod scheduler;
pub mod server;
pub mod store;
