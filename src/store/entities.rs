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
        /// Absent from snapshots stored before projects existed: those
        /// sessions are the default project's.
        #[serde(default = "default_project")]
        pub project: String,
        /// Absent from snapshots stored before contexts existed.
        #[serde(default)]
        pub context_id: Option<String>,
        #[serde(default)]
        pub context_persist: bool,
        /// The incarnation of `node_id` that created it (absent from
        /// snapshots stored before clusters existed).
        #[serde(default)]
        pub node_epoch: i64,
        /// The session's egress rules (`{"allow":[…],"deny":[…]}`); absent
        /// from snapshots stored before egress rules existed.
        #[serde(default)]
        pub egress: Option<String>,
        /// What went through its egress proxy, stored when it ends.
        #[serde(default)]
        pub egress_usage: Option<String>,
    }

    fn default_project() -> String {
        crate::domain::access::DEFAULT_PROJECT.to_owned()
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
        pub actor: String,
        /// JSON of the save, for the context-save kinds.
        pub context_save: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod projects {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub max_sessions: Option<i32>,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_keys {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub project: String,
        pub admin: bool,
        /// SHA-256 of the key's secret part, hex: the key itself is never
        /// stored.
        pub hash: String,
        pub description: Option<String>,
        pub created_at: i64,
        pub revoked_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod contexts {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contexts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub project: String,
        pub name: String,
        pub metadata: String,
        pub created_at: i64,
        pub updated_at: i64,
        pub version: i64,
        pub size_bytes: i64,
        pub saved_by_session_id: Option<String>,
        pub last_save_error: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod context_versions {
    use sea_orm::entity::prelude::*;

    /// One saved version's sealed bytes; immutable once written.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "context_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub context_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        pub data: Vec<u8>,
        pub session_id: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod nodes {
    use sea_orm::entity::prelude::*;

    /// One row per node that ever ran on this database; its lease is
    /// renewed by heartbeats, in the database's clock.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "nodes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Bumped by every start and by every takeover: a node whose
        /// heartbeat no longer matches it has been fenced.
        pub epoch: i64,
        pub grpc_url: String,
        pub relay_url: String,
        pub capacity: i64,
        pub sessions: i64,
        pub warm: i64,
        pub draining: bool,
        pub started_at: i64,
        pub heartbeat_at: i64,
        pub lease_expires_at: i64,
        pub lost_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod live_view_links {
    use sea_orm::entity::prelude::*;

    /// A live view link: what it opens and until when. Its key (a MAC over
    /// these fields) is never stored.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "live_view_links")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub session_id: String,
        pub project: String,
        pub target_id: Option<String>,
        pub control: bool,
        pub created_at: i64,
        pub expires_at: i64,
        pub revoked_at: Option<i64>,
        pub created_by: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
