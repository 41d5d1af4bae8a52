//! browserd's integration suite: a real server on ephemeral ports, real
//! Chromium, and each test on both SQLite and PostgreSQL
//! (`TEST_DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test).

mod access;
mod binary;
mod cli;
mod cluster;
mod console;
mod contexts;
mod devtools;
mod egress;
mod errors;
mod events;
mod faults;
mod files;
mod isolation;
mod lifecycle;
mod persist;
mod pool;
mod relay;
mod secrets;
mod sessions;
mod snapshot;
mod soak;
mod support;
mod telemetry;
mod tls;
mod trust;
