//! The one classification of database errors: what the server's SQLSTATE (PostgreSQL) or
//! result code (SQLite) means, for the connection layer, the migrator's lock wait and the
//! service's error type alike. Each caller decides what to do about a kind; what a code means
//! is decided here only (the table of `docs/FAILURE_MODES.md`).

use std::borrow::Cow;

use sea_orm::{DbErr, RuntimeErr, sqlx};

/// What a database error means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `28000`, `28P01`: the user name or password was rejected.
    InvalidCredentials,
    /// `3D000`: no database of that name.
    UnknownDatabase,
    /// `57P03` (`cannot_connect_now`): the server is starting up, shutting down or in recovery.
    ServerStarting,
    /// `53300`: no free connection slots.
    TooManyConnections,
    /// Other `53…` (`insufficient_resources`): out of memory, disk full.
    OutOfResources,
    /// Other `57P…`: the server ended or refused the session (shutdown, database dropped,
    /// idle session timeout).
    SessionEnded,
    /// `08…` (`connection_exception`).
    ConnectionFailed,
    /// `08P01` as PgBouncer reports a start-up parameter it does not know.
    StartupParameterRefused,
    /// `42P05`, `26000`: a prepared statement of another client connection, or one missing, on
    /// a server session shared by a connection pooler.
    PreparedStatementCollision,
    /// `25006`: the server is read-only (a standby, `default_transaction_read_only`).
    ReadOnly,
    /// `40001`, `40P01`: a serialization failure or deadlock; the transaction was rolled back.
    Contention,
    /// `55000` (`object_not_in_prerequisite_state`), e.g. a database not accepting connections.
    NotInPrerequisiteState,
    /// `55P03`: a lock could not be taken within `lock_timeout`.
    LockNotAvailable,
    /// `42P01`, or SQLite's "no such table".
    UndefinedTable,
    /// SQLite `SQLITE_CANTOPEN` (14): the database file cannot be opened.
    CannotOpenFile,
    /// Anything else.
    Other,
}

/// Which server an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// A PostgreSQL error response (with a SQLSTATE).
    Postgres,
    /// A SQLite result code.
    Sqlite,
}

/// An error response of the database, reduced to what its classification needs.
#[derive(Debug, Clone)]
pub struct ServerError<'a> {
    /// The SQLSTATE (PostgreSQL) or result code (SQLite).
    pub code: Cow<'a, str>,
    /// The primary message (may name databases and roles: for logs only).
    pub message: &'a str,
    /// Severity FATAL or PANIC: the server ends the session (every error while a session is
    /// being opened is FATAL).
    pub fatal: bool,
    /// Raised while the pool opened a new connection (SeaORM reports those as `DbErr::Conn`).
    pub opening: bool,
    /// Which server said it.
    pub server: Server,
    /// What it means.
    pub kind: ErrorKind,
}

impl<'a> ServerError<'a> {
    /// A PostgreSQL error response with this SQLSTATE and message.
    #[must_use]
    pub fn postgres(code: &'a str, message: &'a str, fatal: bool, opening: bool) -> Self {
        Self {
            code: Cow::Borrowed(code),
            message,
            fatal,
            opening,
            server: Server::Postgres,
            kind: postgres_kind(code, message),
        }
    }
}

/// The database's error response inside `err`, if that is what it is.
#[must_use]
pub fn server_error(err: &DbErr) -> Option<ServerError<'_>> {
    use sqlx::postgres::{PgDatabaseError, PgSeverity};
    let (sqlx_err, opening) = match err {
        DbErr::Conn(RuntimeErr::SqlxError(e)) => (e, true),
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            (e, false)
        }
        _ => return None,
    };
    let sqlx::Error::Database(db) = &**sqlx_err else {
        return None;
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        let fatal = matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic);
        return Some(ServerError::postgres(
            pg.code(),
            pg.message(),
            fatal,
            opening,
        ));
    }
    let code = db.code().unwrap_or_default();
    let kind = sqlite_kind(&code, db.message());
    Some(ServerError {
        code,
        message: db.message(),
        fatal: false,
        opening,
        server: Server::Sqlite,
        kind,
    })
}

/// What `err` means ([`ErrorKind::Other`] when it is no database error the table knows).
/// A migration's error that SeaORM passed on as text is recognised by its words.
#[must_use]
pub fn classify(err: &DbErr) -> ErrorKind {
    if let Some(server) = server_error(err) {
        return server.kind;
    }
    match err {
        DbErr::Migration(text)
        | DbErr::Exec(RuntimeErr::Internal(text))
        | DbErr::Query(RuntimeErr::Internal(text))
            if text.contains("55P03") || text.contains("lock timeout") =>
        {
            ErrorKind::LockNotAvailable
        }
        _ => ErrorKind::Other,
    }
}

/// The PostgreSQL SQLSTATE table.
fn postgres_kind(code: &str, message: &str) -> ErrorKind {
    match code {
        "28000" | "28P01" => ErrorKind::InvalidCredentials,
        "3D000" => ErrorKind::UnknownDatabase,
        "57P03" => ErrorKind::ServerStarting,
        "53300" => ErrorKind::TooManyConnections,
        "42P05" | "26000" => ErrorKind::PreparedStatementCollision,
        "08P01" if message.starts_with("unsupported startup parameter") => {
            ErrorKind::StartupParameterRefused
        }
        "25006" => ErrorKind::ReadOnly,
        "40001" | "40P01" => ErrorKind::Contention,
        "55000" => ErrorKind::NotInPrerequisiteState,
        "55P03" => ErrorKind::LockNotAvailable,
        "42P01" => ErrorKind::UndefinedTable,
        _ if code.starts_with("08") => ErrorKind::ConnectionFailed,
        _ if code.starts_with("53") => ErrorKind::OutOfResources,
        _ if code.starts_with("57P") => ErrorKind::SessionEnded,
        _ => ErrorKind::Other,
    }
}

/// The SQLite result code table.
fn sqlite_kind(code: &str, message: &str) -> ErrorKind {
    match code {
        "14" => ErrorKind::CannotOpenFile,
        _ if message.starts_with("no such table") => ErrorKind::UndefinedTable,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_by_class() {
        let kind = |code| ServerError::postgres(code, "m", false, false).kind;
        assert_eq!(kind("28P01"), ErrorKind::InvalidCredentials);
        assert_eq!(kind("53300"), ErrorKind::TooManyConnections);
        assert_eq!(kind("53100"), ErrorKind::OutOfResources);
        assert_eq!(kind("57P03"), ErrorKind::ServerStarting);
        assert_eq!(kind("57P01"), ErrorKind::SessionEnded);
        assert_eq!(kind("57014"), ErrorKind::Other);
        assert_eq!(kind("08006"), ErrorKind::ConnectionFailed);
        assert_eq!(kind("08P01"), ErrorKind::ConnectionFailed);
        assert_eq!(kind("55P03"), ErrorKind::LockNotAvailable);
        assert_eq!(
            ServerError::postgres("08P01", "unsupported startup parameter: x", true, true).kind,
            ErrorKind::StartupParameterRefused
        );
    }

    #[test]
    fn a_lock_timeout_passed_on_as_text_is_recognised() {
        assert_eq!(
            classify(&DbErr::Migration(
                "canceling statement due to lock timeout".into()
            )),
            ErrorKind::LockNotAvailable
        );
        assert_eq!(classify(&DbErr::Migration("x".into())), ErrorKind::Other);
    }
}
