//! The one error type of this crate.

use migration::connect::ConnectError;
use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, SqlErr, sqlx};

use crate::config::ConfigError;

/// Everything that can go wrong in this crate, by what the caller can do about it. Messages
/// say what was being done and never contain a password or a connection URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The row does not exist.
    #[error("{entity} {key} not found")]
    NotFound {
        /// What was looked for, e.g. `user`.
        entity: &'static str,
        /// How it was looked for, e.g. `id 42`.
        key: String,
    },
    /// A unique value is already taken (for users: the email, compared case-insensitively).
    #[error("a {entity} with this {field} already exists")]
    Conflict {
        /// The kind of row, e.g. `user`.
        entity: &'static str,
        /// The field that must be unique, e.g. `email`.
        field: &'static str,
    },
    /// Input that is refused before it reaches the database.
    #[error("invalid {field}: {reason}")]
    Validation {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The database cannot be reached now (down, restarting, pool exhausted past the acquire
    /// timeout). Retrying later may succeed.
    #[error("database unavailable while trying to {operation}: {reason}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// Why, e.g. "timed out waiting for a pooled connection".
        reason: String,
    },
    /// The database could not be connected to at all, for a reason retrying will not fix
    /// (wrong password, unknown database, bad URL).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Applying migrations failed (the error names the migration and the cause).
    #[error(transparent)]
    Migration(#[from] migration::runner::MigrateError),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Any other database error.
    #[error("database error while trying to {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: DbErr,
    },
}

/// Short for `std::result::Result<T, service::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Sorts a database error raised while doing `operation`: a lost or unobtainable
    /// connection becomes [`Error::Unavailable`], anything else [`Error::Database`].
    /// (Unique violations are mapped by the repositories, which know the field.)
    #[must_use]
    pub fn from_db(operation: &'static str, err: DbErr) -> Self {
        match unavailable_reason(&err) {
            Some(reason) => Self::Unavailable { operation, reason },
            None => Self::Database {
                operation,
                source: err,
            },
        }
    }

    /// Whether the error means the database could not be reached (as opposed to a bad
    /// request or a bug).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
            || matches!(self, Self::Connect(e) if e.failure.is_transient())
    }
}

/// Whether `err` is a unique-constraint violation, on any backend.
pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

fn unavailable_reason(err: &DbErr) -> Option<String> {
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => {
            return Some("timed out waiting for a pooled connection".into());
        }
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
            return Some("the connection pool is closed".into());
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return None,
    };
    match &**sqlx_err {
        sqlx::Error::PoolTimedOut => Some("timed out waiting for a pooled connection".into()),
        sqlx::Error::PoolClosed => Some("the connection pool is closed".into()),
        sqlx::Error::Io(e) => Some(format!("connection lost ({})", e.kind())),
        sqlx::Error::Tls(_) => Some("TLS failure on the connection".into()),
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            Some("the connection broke".into())
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections
            Some("57P01" | "57P02" | "57P03" | "53300") => {
                Some(format!("the server ended the session ({})", db.message()))
            }
            _ => None,
        },
        _ => None,
    }
}
