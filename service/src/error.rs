//! The one error type of this crate.

use connection::classify::{ErrorKind, ServerError, server_error};
use connection::connect::ConnectError;
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
    /// The database cannot serve now: down, restarting, refusing connections, out of
    /// connection slots or other resources, read-only, or the pool exhausted past the acquire
    /// timeout. Retrying later may succeed; the service recovers by itself once the server
    /// does. `docs/FAILURE_MODES.md` lists what the server says for each (by SQLSTATE).
    #[error("database unavailable while trying to {operation}: {reason}")]
    Unavailable {
        /// What was being done.
        operation: &'static str,
        /// Why, e.g. "timed out waiting for a pooled connection"; it may quote the server's
        /// message (database and role names), so it is for logs, not for end users.
        reason: String,
    },
    /// The server rolled the statement or transaction back because a concurrent transaction
    /// conflicted with it (serialization failure `40001`, deadlock `40P01`). Nothing of it was
    /// applied; running the *whole* transaction again may succeed (a statement run on the pool
    /// is its own transaction). The repositories do not retry: only the caller knows where its
    /// transaction began.
    #[error("conflict with a concurrent transaction while trying to {operation}: {reason}")]
    Contention {
        /// What was being done.
        operation: &'static str,
        /// The server's message.
        reason: String,
    },
    /// The connection was lost after a write was sent (the server went away, or ended the
    /// session, while the statement or its `COMMIT` ran): it may have been applied or not, and
    /// nothing here can tell which. The service never sends such a write again by itself. The
    /// caller should look before writing again, or retry only a write that a second run cannot
    /// duplicate: one with a natural key, whose repeat is refused as a [`Error::Conflict`] when
    /// the first went through (creating a user: the same email). Like an outage it clears by
    /// itself ([`is_unavailable`](Self::is_unavailable)), but it is not
    /// [`is_retryable`](Self::is_retryable).
    #[error(
        "the connection was lost while trying to {operation}, after the write was sent: it may \
         or may not have been applied ({reason})"
    )]
    CommitUnknown {
        /// What was being done.
        operation: &'static str,
        /// How the connection was lost (for logs).
        reason: String,
    },
    /// The database role lacks a privilege the statement needs (`42501`): a configuration
    /// error — the service runs as a role the migrations did not grant this (see
    /// `DB_APP_ROLE`), or the statement is one the application role must not run (DDL, the
    /// migrations' tables). Retrying will not help; neither a conflict nor an outage.
    #[error(
        "the database role lacks a privilege to {operation}: {reason} (a configuration error: \
         run `cargo migrate up` as the owner with DB_APP_ROLE naming this role, or grant it)"
    )]
    PermissionDenied {
        /// What was being done.
        operation: &'static str,
        /// The server's message, naming the privilege's object (e.g. `permission denied for
        /// table user`).
        reason: String,
    },
    /// The database could not be connected to at all, for a reason retrying will not fix
    /// (wrong password, unknown database, bad URL).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Applying migrations failed (the error names the migration and the cause).
    #[error(transparent)]
    Migration(#[from] migrator::runner::MigrateError),
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
    /// Sorts a database error raised while doing `operation` by what the server (or the
    /// connection to it) said: an outage becomes [`Error::Unavailable`], a conflict with a
    /// concurrent transaction [`Error::Contention`], anything else [`Error::Database`].
    /// (Unique violations are mapped by the repositories, which know the field.)
    ///
    /// This is the one classification of a running service's database errors; the table is in
    /// `docs/FAILURE_MODES.md`. (Start-up has its own, [`ConnectFailure`](crate::ConnectFailure),
    /// which reports a wrong password or database name as the configuration error it is there.)
    #[must_use]
    pub fn from_db(operation: &'static str, err: DbErr) -> Self {
        if let Some(server) = server_error(&err)
            && server.kind == ErrorKind::InsufficientPrivilege
        {
            return Self::PermissionDenied {
                operation,
                reason: server.message.to_owned(),
            };
        }
        match refusal(&err) {
            Some(Refusal::Unavailable(reason)) => Self::Unavailable { operation, reason },
            Some(Refusal::Contention(reason)) => Self::Contention { operation, reason },
            None => Self::Database {
                operation,
                source: err,
            },
        }
    }

    /// [`from_db`](Self::from_db) for a write (a statement that changes rows outside a
    /// transaction, or a transaction's `COMMIT`): when the connection was lost after the
    /// statement was sent, the write may have been applied, and the error is
    /// [`Error::CommitUnknown`] instead of [`Error::Unavailable`]. A connection that could not
    /// be had at all (the statement was never sent) stays `Unavailable`.
    #[must_use]
    pub fn from_write(operation: &'static str, err: DbErr) -> Self {
        match lost_after_sending(&err) {
            Some(reason) => Self::CommitUnknown { operation, reason },
            None => Self::from_db(operation, err),
        }
    }

    /// Whether the error means the database cannot serve now (as opposed to a bad request or a
    /// bug): an outage, which clears by itself. This includes [`Error::CommitUnknown`].
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::CommitUnknown { .. })
            || matches!(self, Self::Connect(e) if e.failure.is_transient())
    }

    /// Whether trying again later may succeed without doing anything twice: an outage in which
    /// nothing was applied ([`is_unavailable`](Self::is_unavailable), except
    /// [`Error::CommitUnknown`]) or a conflict with a concurrent transaction
    /// ([`Error::Contention`], retry the whole transaction).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        (self.is_unavailable() && !matches!(self, Self::CommitUnknown { .. }))
            || matches!(self, Self::Contention { .. })
    }
}

/// How the connection was lost, when `err` says it was lost while a statement ran on it (so
/// the statement had been sent): the socket failed, the protocol broke, or the server ended
/// the session (a `FATAL` error such as `57P01` during a shutdown or a switchover). An error
/// while opening the connection (`DbErr::Conn`, `DbErr::ConnectionAcquire`) is not one.
fn lost_after_sending(err: &DbErr) -> Option<String> {
    let (DbErr::Exec(RuntimeErr::SqlxError(sqlx_err))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_err))) = err
    else {
        return None;
    };
    match &**sqlx_err {
        sqlx::Error::Io(e) => Some(format!("connection lost ({})", e.kind())),
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            Some("the connection broke".to_owned())
        }
        sqlx::Error::Database(_) => server_error(err)
            .filter(|server| {
                server.server == connection::classify::Server::Postgres
                    && !server.opening
                    && (server.fatal
                        || matches!(
                            server.kind,
                            ErrorKind::SessionEnded | ErrorKind::ConnectionFailed
                        ))
            })
            .map(|server| {
                format!(
                    "the server ended the session ({}: {})",
                    server.code, server.message
                )
            }),
        _ => None,
    }
}

/// Whether `err` is a unique-constraint violation, on any backend.
pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Whether `err` is the server refusing a write because it is read-only (`25006`: a standby,
/// or `default_transaction_read_only`). The session that got it keeps that state for its
/// lifetime, so the pool should not hand it out again.
pub(crate) fn is_read_only_refusal(err: &DbErr) -> bool {
    connection::classify(err) == ErrorKind::ReadOnly
}

/// What a database error means for the caller, when it is not a plain error.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The database cannot serve now; the reason is for the log.
    Unavailable(String),
    /// A concurrent transaction won; the reason is the server's message.
    Contention(String),
}

fn refusal(err: &DbErr) -> Option<Refusal> {
    let unavailable = |reason: &str| Some(Refusal::Unavailable(reason.to_owned()));
    let sqlx_err = match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => {
            return unavailable("timed out waiting for a pooled connection");
        }
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
            return unavailable("the connection pool is closed");
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return None,
    };
    match &**sqlx_err {
        sqlx::Error::PoolTimedOut => unavailable("timed out waiting for a pooled connection"),
        sqlx::Error::PoolClosed => unavailable("the connection pool is closed"),
        sqlx::Error::Io(e) => Some(Refusal::Unavailable(format!(
            "connection lost ({})",
            e.kind()
        ))),
        sqlx::Error::Tls(_) => unavailable("TLS failure on the connection"),
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => {
            unavailable("the connection broke")
        }
        sqlx::Error::Database(_) => server_error(err)
            .filter(|server| server.server == connection::classify::Server::Postgres)
            .and_then(|server| refusal_of(&server)),
        _ => None,
    }
}

/// What a PostgreSQL error response means for the caller (the SQLSTATE table of
/// `docs/FAILURE_MODES.md`; what each SQLSTATE is comes from `connection::classify`).
/// SQLite's errors carry no SQLSTATE; they are left as they are.
fn refusal_of(server: &ServerError<'_>) -> Option<Refusal> {
    let (code, message) = (&server.code, server.message);
    // A session being opened fails with FATAL, whatever the cause.
    let opening = server.opening || server.fatal;
    let what = match server.kind {
        ErrorKind::ReadOnly => {
            "the server is read-only (a standby after a failover, or \
             default_transaction_read_only): writes are refused"
        }
        ErrorKind::Contention => return Some(Refusal::Contention(format!("{code}: {message}"))),
        // "database … is not currently accepting connections" (ALLOW_CONNECTIONS false). In a
        // statement it is a bug.
        ErrorKind::NotInPrerequisiteState if opening => "the database is not accepting connections",
        // Renamed or dropped under the running service.
        ErrorKind::UnknownDatabase if opening => {
            "the database does not exist (renamed or dropped?)"
        }
        // The role or its password changed under the running service.
        ErrorKind::InvalidCredentials if opening => "the server rejected the password",
        ErrorKind::EncryptionRequired if opening => {
            "the server requires an encrypted connection (TLS) for this user"
        }
        ErrorKind::LoginNotPermitted if opening => "the role is not permitted to log in",
        ErrorKind::ConnectionNotAllowed if opening => {
            "the server's pg_hba.conf allows no connection for this host, user and database"
        }
        ErrorKind::IdleInTransactionTimeout => {
            "the server ended a transaction left idle longer than DB_IDLE_IN_TRANSACTION_TIMEOUT \
             (it was rolled back)"
        }
        ErrorKind::ConnectionFailed | ErrorKind::StartupParameterRefused => "the connection failed",
        ErrorKind::TooManyConnections | ErrorKind::OutOfResources => {
            "the server is out of resources"
        }
        ErrorKind::ServerStarting | ErrorKind::SessionEnded => {
            "the server ended or refused the session"
        }
        _ if server.fatal => "the server ended the session",
        _ => return None,
    };
    Some(Refusal::Unavailable(format!("{what} ({code}: {message})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(code: &str, fatal: bool, opening: bool) -> Option<Refusal> {
        refusal_of(&ServerError::postgres(
            code,
            "the server's message",
            fatal,
            opening,
        ))
    }

    fn is_unavailable(code: &str, fatal: bool, opening: bool) -> bool {
        matches!(
            classify(code, fatal, opening),
            Some(Refusal::Unavailable(_))
        )
    }

    #[test]
    fn outages_are_unavailable_in_a_statement_and_when_opening() {
        for code in [
            "08000", "08003", "08006", "08001", "08004", "08P01", // connection_exception
            "53000", "53100", "53200", "53300", "53400", // insufficient_resources
            "57P01", "57P02", "57P03", "57P04", "57P05", // admin/crash shutdown, …
            "25006", // read_only_sql_transaction
        ] {
            assert!(is_unavailable(code, false, false), "{code} in a statement");
            assert!(is_unavailable(code, true, true), "{code} when opening");
        }
    }

    #[test]
    fn refusals_while_opening_a_connection_are_unavailable_but_bugs_in_a_statement() {
        for code in ["55000", "3D000", "28000", "28P01"] {
            assert!(is_unavailable(code, true, true), "{code} (FATAL, opening)");
            assert!(is_unavailable(code, false, true), "{code} (DbErr::Conn)");
            assert!(is_unavailable(code, true, false), "{code} (FATAL)");
            assert_eq!(classify(code, false, false), None, "{code} in a statement");
        }
    }

    #[test]
    fn anything_fatal_is_unavailable_and_other_errors_stay_errors() {
        assert!(is_unavailable("XX000", true, false));
        for code in [
            "23505", "42P01", "42601", "22001", "57014", "XX000", "55P03",
        ] {
            assert_eq!(classify(code, false, false), None, "{code}");
        }
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_contention() {
        for code in ["40001", "40P01"] {
            assert_eq!(
                classify(code, false, false),
                Some(Refusal::Contention(format!("{code}: the server's message")))
            );
        }
    }

    #[test]
    fn reasons_say_what_happened_and_quote_the_server() {
        let Some(Refusal::Unavailable(reason)) = classify("25006", false, false) else {
            panic!("25006 is unavailable");
        };
        assert!(reason.starts_with("the server is read-only"), "{reason}");
        assert!(
            reason.ends_with("(25006: the server's message)"),
            "{reason}"
        );
        let Some(Refusal::Unavailable(reason)) = classify("55000", true, true) else {
            panic!("55000 while opening is unavailable");
        };
        assert!(
            reason.starts_with("the database is not accepting connections"),
            "{reason}"
        );
    }

    #[test]
    fn pool_and_transport_failures_are_unavailable() {
        let sqlx_err = |e: sqlx::Error| DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(e)));
        for err in [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            sqlx_err(sqlx::Error::PoolTimedOut),
            sqlx_err(sqlx::Error::PoolClosed),
            sqlx_err(sqlx::Error::Io(std::io::ErrorKind::ConnectionReset.into())),
            sqlx_err(sqlx::Error::Protocol("unexpected message".into())),
        ] {
            let mapped = Error::from_db("read a user", err);
            assert!(mapped.is_unavailable(), "{mapped:?}");
            assert!(mapped.is_retryable(), "{mapped:?}");
        }
        let other = Error::from_db("read a user", DbErr::Custom("a bug".into()));
        assert!(matches!(other, Error::Database { .. }), "{other:?}");
        assert!(!other.is_retryable());
    }

    #[test]
    fn a_write_whose_connection_was_lost_may_have_been_applied() {
        let sqlx_err = |e: sqlx::Error| std::sync::Arc::new(e);
        for err in [
            DbErr::Query(RuntimeErr::SqlxError(sqlx_err(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionReset.into(),
            )))),
            DbErr::Exec(RuntimeErr::SqlxError(sqlx_err(sqlx::Error::Protocol(
                "unexpected end of stream".into(),
            )))),
        ] {
            let mapped = Error::from_write("create a user", err.clone());
            assert!(matches!(mapped, Error::CommitUnknown { .. }), "{mapped:?}");
            assert!(mapped.is_unavailable(), "{mapped:?}");
            assert!(!mapped.is_retryable(), "{mapped:?}");
            assert!(
                mapped.to_string().starts_with(
                    "the connection was lost while trying to create a user, after the write was \
                     sent: it may or may not have been applied"
                ),
                "{mapped}"
            );
            // A read that lost its connection applied nothing.
            assert!(Error::from_db("read a user", err).is_retryable());
        }
        // Never sent: no connection could be had.
        for err in [
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            DbErr::Conn(RuntimeErr::SqlxError(sqlx_err(sqlx::Error::Io(
                std::io::ErrorKind::ConnectionRefused.into(),
            )))),
        ] {
            let mapped = Error::from_write("create a user", err);
            assert!(matches!(mapped, Error::Unavailable { .. }), "{mapped:?}");
            assert!(mapped.is_retryable(), "{mapped:?}");
        }
        let other = Error::from_write("create a user", DbErr::Custom("a bug".into()));
        assert!(matches!(other, Error::Database { .. }), "{other:?}");
        assert!(!other.is_retryable());
    }
}
