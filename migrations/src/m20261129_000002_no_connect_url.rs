//! Connect tokens are no longer stored: they are signed with the server
//! secret and rebuilt when a session is shown. The column that held each
//! live session's connect_url goes, and so does the copy of it in every
//! stored event snapshot. (Tokens stored before this ran belong to
//! sessions a restart has ended: they would open nothing, but a copy of
//! the database need not carry them.)

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ConnectUrl,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let scrub = match manager.get_database_backend() {
            DatabaseBackend::Sqlite => {
                "UPDATE session_events SET snapshot = json_remove(snapshot, '$.connect_url') \
                 WHERE snapshot LIKE '%\"connect_url\"%'"
            }
            DatabaseBackend::Postgres => {
                "UPDATE session_events SET snapshot = (snapshot::jsonb - 'connect_url')::text \
                 WHERE snapshot LIKE '%\"connect_url\"%'"
            }
            other => {
                return Err(DbErr::Migration(format!(
                    "unsupported database backend {other:?}"
                )));
            }
        };
        manager.get_connection().execute_unprepared(scrub).await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::ConnectUrl)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The tokens are gone for good; the column comes back empty.
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(ColumnDef::new(Sessions::ConnectUrl).text())
                    .to_owned(),
            )
            .await
    }
}
