//! Several nodes on one database: a row per node (its lease, addresses,
//! capacity and whether it drains), the node incarnation (`epoch`) each
//! session was created under, so a survivor that takes over a lost node
//! ends only what that incarnation left, and the event counter that makes
//! an event's sequence its commit order (see `store::log`).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    Epoch,
    GrpcUrl,
    RelayUrl,
    Capacity,
    Sessions,
    Warm,
    Draining,
    StartedAt,
    HeartbeatAt,
    LeaseExpiresAt,
    LostAt,
}

#[derive(DeriveIden)]
enum EventCounter {
    Table,
    Id,
    Sequence,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    NodeId,
    NodeEpoch,
    Status,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let int = |c: Nodes| ColumnDef::new(c).big_integer().not_null().to_owned();
        manager
            .create_table(
                Table::create()
                    .table(Nodes::Table)
                    .col(ColumnDef::new(Nodes::Id).string().not_null().primary_key())
                    .col(int(Nodes::Epoch))
                    .col(ColumnDef::new(Nodes::GrpcUrl).string().not_null())
                    .col(ColumnDef::new(Nodes::RelayUrl).string().not_null())
                    .col(int(Nodes::Capacity))
                    .col(int(Nodes::Sessions))
                    .col(int(Nodes::Warm))
                    .col(ColumnDef::new(Nodes::Draining).boolean().not_null())
                    .col(int(Nodes::StartedAt))
                    .col(int(Nodes::HeartbeatAt))
                    .col(int(Nodes::LeaseExpiresAt))
                    .col(ColumnDef::new(Nodes::LostAt).big_integer())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(EventCounter::Table)
                    .col(
                        ColumnDef::new(EventCounter::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(EventCounter::Sequence)
                            .big_integer()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // The counter goes on from the log as it stands.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO event_counter (id, sequence) \
                 SELECT 1, COALESCE(MAX(sequence), 0) FROM session_events",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(
                        ColumnDef::new(Sessions::NodeEpoch)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        // A lost node's unfinished sessions, found by the survivor.
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_node_status")
                    .table(Sessions::Table)
                    .col(Sessions::NodeId)
                    .col(Sessions::Status)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sessions_node_status")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .drop_column(Sessions::NodeEpoch)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(EventCounter::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Nodes::Table).to_owned())
            .await
    }
}
