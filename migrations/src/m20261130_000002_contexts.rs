//! Persistent contexts: saved browser state, versioned, one row per
//! context and one per saved version (the sealed bytes), so any node can
//! restore any context. A session names the context it starts from and
//! whether it persists to it; a context's writer is the PENDING or LIVE
//! session persisting to it, read from the sessions table, so the write
//! lease ends with its session on every node without being released.
//! Events of context saves carry what was saved.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Contexts {
    Table,
    Id,
    Project,
    Name,
    Metadata,
    CreatedAt,
    UpdatedAt,
    Version,
    SizeBytes,
    SavedBySessionId,
    LastSaveError,
}

#[derive(DeriveIden)]
enum ContextVersions {
    Table,
    ContextId,
    Version,
    Data,
    SessionId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Name,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    ContextId,
    ContextPersist,
}

#[derive(DeriveIden)]
enum SessionEvents {
    Table,
    ContextSave,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Contexts::Table)
                    .col(
                        ColumnDef::new(Contexts::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Contexts::Project).string().not_null())
                    .col(ColumnDef::new(Contexts::Name).string().not_null())
                    .col(ColumnDef::new(Contexts::Metadata).text().not_null())
                    .col(ColumnDef::new(Contexts::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Contexts::UpdatedAt).big_integer().not_null())
                    .col(
                        ColumnDef::new(Contexts::Version)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Contexts::SizeBytes)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Contexts::SavedBySessionId).string())
                    .col(ColumnDef::new(Contexts::LastSaveError).text())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Contexts::Table, Contexts::Project)
                            .to(Projects::Table, Projects::Name),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_contexts_project_name")
                    .table(Contexts::Table)
                    .col(Contexts::Project)
                    .col(Contexts::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ContextVersions::Table)
                    .col(
                        ColumnDef::new(ContextVersions::ContextId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContextVersions::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ContextVersions::Data).blob().not_null())
                    .col(
                        ColumnDef::new(ContextVersions::SessionId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ContextVersions::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(ContextVersions::ContextId)
                            .col(ContextVersions::Version),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ContextVersions::Table, ContextVersions::ContextId)
                            .to(Contexts::Table, Contexts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(ColumnDef::new(Sessions::ContextId).string())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(
                        ColumnDef::new(Sessions::ContextPersist)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        // A context's sessions: its writer, and those that block a delete.
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_context")
                    .table(Sessions::Table)
                    .col(Sessions::ContextId)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SessionEvents::Table)
                    .add_column(ColumnDef::new(SessionEvents::ContextSave).text())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SessionEvents::Table)
                    .drop_column(SessionEvents::ContextSave)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sessions_context")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        for column in [Sessions::ContextPersist, Sessions::ContextId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Sessions::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .drop_table(Table::drop().table(ContextVersions::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Contexts::Table).to_owned())
            .await
    }
}
