//! Schema migrations for browserd, the same for SQLite and PostgreSQL.
//! They name tables and columns with their own idens and never import the
//! service's entities, so old migrations keep compiling as the code moves on.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_init;
mod m20261129_000001_event_kind;
mod m20261129_000002_no_connect_url;
mod m20261130_000001_access;
mod m20261130_000002_contexts;
mod m20261130_000003_cluster;
mod m20261201_000001_live_view_links;
mod m20261207_000001_egress;

/// Migrations that delete secrets. On SQLite the deleted bytes stay in
/// the file's free pages and in WAL frames until the database is vacuumed
/// and its WAL truncated, which the store does after running one of these.
pub const ERASING_SECRETS: &[&str] = &["m20261129_000002_no_connect_url"];

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_init::Migration),
            Box::new(m20261129_000001_event_kind::Migration),
            Box::new(m20261129_000002_no_connect_url::Migration),
            Box::new(m20261130_000001_access::Migration),
            Box::new(m20261130_000002_contexts::Migration),
            Box::new(m20261130_000003_cluster::Migration),
            Box::new(m20261201_000001_live_view_links::Migration),
            Box::new(m20261207_000001_egress::Migration),
        ]
    }
}
