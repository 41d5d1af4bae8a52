//! SeaORM entities for the tables created by `migrations/`.

pub mod sessions {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};

    /// One row per session, its current state. Serialised as the snapshot
    /// stored with each event, so a replayed event shows the session exactly
    /// as it was at that transition.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub status: String,
        pub end_reason: Option<String>,
        pub error: Option<String>,
        pub created_at: i64,
        pub started_at: Option<i64>,
        pub ended_at: Option<i64>,
        pub expires_at: i64,
        pub timeout_ms: i64,
        pub inactivity_timeout_ms: Option<i64>,
        pub keep_alive: bool,
        pub metadata: String,
        pub viewport_width: i32,
        pub viewport_height: i32,
        pub user_agent: Option<String>,
        pub proxy_url: Option<String>,
        pub idempotency_key: Option<String>,
        pub browser_version: Option<String>,
        pub node_id: String,
        pub browser_pid: Option<i32>,
        pub user_data_dir: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session_metadata {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_metadata")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub session_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod session_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "session_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub sequence: i64,
        pub session_id: String,
        pub occurred_at: i64,
        pub from_status: Option<String>,
        pub to_status: String,
        pub end_reason: Option<String>,
        pub snapshot: String,
        pub kind: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
