//! What the store fails with, and which failures mean "not now" rather
//! than "never".

use sea_orm::DbErr;

use crate::domain::Error;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("unreadable row for session {id}: {what}")]
    Corrupt { id: String, what: String },
}

impl StoreError {
    /// Whether the database is out of reach or refuses writes for now (a
    /// server down or restarting, a broken connection, a full or read-only
    /// disk), as opposed to a request it will never accept.
    pub fn is_unavailable(&self) -> bool {
        use sea_orm::sqlx::Error as Sqlx;
        let Self::Db(error) = self else {
            return false;
        };
        let runtime = match error {
            DbErr::ConnectionAcquire(_) => return true,
            DbErr::Conn(runtime) | DbErr::Exec(runtime) | DbErr::Query(runtime) => runtime,
            _ => return false,
        };
        let sea_orm::RuntimeErr::SqlxError(sqlx) = runtime else {
            return false;
        };
        match sqlx.as_ref() {
            Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolTimedOut | Sqlx::PoolClosed => true,
            Sqlx::WorkerCrashed => true,
            Sqlx::Database(db) => {
                let code = db.code().unwrap_or_default();
                // PostgreSQL: connection exceptions (08), insufficient
                // resources such as a full disk (53), operator intervention
                // such as a shutdown (57), read-only transactions (25006).
                // SQLite: busy, locked, read-only, I/O error, full, cannot
                // open (primary result codes 5, 6, 8, 10, 13, 14).
                ["08", "53", "57"]
                    .iter()
                    .any(|class| code.starts_with(class))
                    || code == "25006"
                    || code
                        .parse::<i32>()
                        .is_ok_and(|c| [5, 6, 8, 10, 13, 14].contains(&(c & 0xff)))
            }
            _ => false,
        }
    }
}

/// Here rather than in the domain, which names no storage type.
impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::StoreUnavailable(Box::new(error))
        } else {
            Self::Store(Box::new(error))
        }
    }
}
