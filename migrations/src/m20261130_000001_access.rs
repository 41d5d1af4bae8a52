//! Projects and API keys. Every session belongs to a project (those made
//! before this belong to `default`, which this creates); every event
//! records its actor; idempotency keys become unique per project, written
//! `<project>/<key>` (a project name has no `/`), so one project's key
//! can never return another's session.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::ConnectionTrait;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Name,
    MaxSessions,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Project,
    Admin,
    Hash,
    Description,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Project,
    Status,
    CreatedAt,
    Id,
}

#[derive(DeriveIden)]
enum SessionEvents {
    Table,
    Actor,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(
                        ColumnDef::new(Projects::Name)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Projects::MaxSessions).integer())
                    .col(ColumnDef::new(Projects::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(Projects::Table)
                    .columns([Projects::Name, Projects::CreatedAt])
                    .values_panic(["default".into(), now.into()])
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(
                        ColumnDef::new(ApiKeys::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ApiKeys::Project).string().not_null())
                    .col(ColumnDef::new(ApiKeys::Admin).boolean().not_null())
                    // SHA-256 of the key's secret part, hex.
                    .col(ColumnDef::new(ApiKeys::Hash).string().not_null())
                    .col(ColumnDef::new(ApiKeys::Description).text())
                    .col(ColumnDef::new(ApiKeys::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(ApiKeys::RevokedAt).big_integer())
                    .foreign_key(
                        ForeignKey::create()
                            .from(ApiKeys::Table, ApiKeys::Project)
                            .to(Projects::Table, Projects::Name),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(
                        ColumnDef::new(Sessions::Project)
                            .string()
                            .not_null()
                            .default("default"),
                    )
                    .to_owned(),
            )
            .await?;
        // A project's sessions, newest first (ListSessions), and its
        // running ones (the quota).
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_project")
                    .table(Sessions::Table)
                    .col(Sessions::Project)
                    .col(Sessions::CreatedAt)
                    .col(Sessions::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_project_status")
                    .table(Sessions::Table)
                    .col(Sessions::Project)
                    .col(Sessions::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE sessions SET idempotency_key = 'default/' || idempotency_key \
                 WHERE idempotency_key IS NOT NULL",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SessionEvents::Table)
                    .add_column(
                        ColumnDef::new(SessionEvents::Actor)
                            .string()
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SessionEvents::Table)
                    .drop_column(SessionEvents::Actor)
                    .to_owned(),
            )
            .await?;
        // Keys of other projects would collide once unscoped: only the
        // default project's keep theirs.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE sessions SET idempotency_key = CASE \
                 WHEN idempotency_key LIKE 'default/%' THEN substr(idempotency_key, 9) \
                 ELSE NULL END WHERE idempotency_key IS NOT NULL",
            )
            .await?;
        for index in ["idx_sessions_project_status", "idx_sessions_project"] {
            manager
                .drop_index(Index::drop().name(index).table(Sessions::Table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::Project)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(ApiKeys::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Projects::Table).to_owned())
            .await
    }
}
