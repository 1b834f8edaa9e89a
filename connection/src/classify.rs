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
    /// `28P01`: the password (or the user name: the server does not say which) was rejected.
    InvalidCredentials,
    /// `28000` "no pg_hba.conf entry … no encryption": the server accepts this host, user and
    /// database only over TLS.
    EncryptionRequired,
    /// `28000` "role … is not permitted to log in": the role lacks the `LOGIN` attribute.
    LoginNotPermitted,
    /// Other `28000`: `pg_hba.conf` has no entry for (or rejects) this host, user, database
    /// and encryption, or the role does not exist (under trust authentication).
    ConnectionNotAllowed,
    /// `25P03`: the server ended a session whose transaction sat idle longer than
    /// `idle_in_transaction_session_timeout`.
    IdleInTransactionTimeout,
    /// `42501` (`insufficient_privilege`): the role lacks a privilege the statement needs.
    InsufficientPrivilege,
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
        "28P01" => ErrorKind::InvalidCredentials,
        // The server's message is the only thing that tells these apart (PostgreSQL reports
        // them all as `28000`); with `lc_messages` other than English, all are
        // `ConnectionNotAllowed`, whose text names encryption as a possible cause.
        "28000" if message.contains("no encryption") => ErrorKind::EncryptionRequired,
        "28000" if message.contains("not permitted to log in") => ErrorKind::LoginNotPermitted,
        "28000" => ErrorKind::ConnectionNotAllowed,
        "42501" => ErrorKind::InsufficientPrivilege,
        "25P03" => ErrorKind::IdleInTransactionTimeout,
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

/// Why a TLS handshake failed (or was never made), as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate is not signed by a CA the client trusts (`sslrootcert`).
    UnknownIssuer,
    /// The server's certificate does not name the host the client connected to
    /// (`sslmode=verify-full`).
    HostNameMismatch,
    /// The server's certificate has expired, or is not valid yet.
    Expired,
    /// The server does not offer TLS, while `sslmode` requires it.
    NotOffered,
    /// The server refused the client's certificate, or asked for one the client did not have
    /// (a TLS alert from the server).
    ClientCertificateRefused,
    /// The client's certificate or key (`sslcert`, `sslkey`) or the CA file (`sslrootcert`)
    /// cannot be used.
    ClientFiles(String),
    /// Anything else, with the TLS library's words.
    Other(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownIssuer => f.write_str(
                "the server's certificate is not signed by a CA this client trusts (set \
                 sslrootcert to the file of the CA that signed it: your provider's CA bundle)",
            ),
            Self::HostNameMismatch => f.write_str(
                "the server's certificate is not valid for the host name in the URL (connect \
                 with a name the certificate lists; sslmode=verify-ca skips this check)",
            ),
            Self::Expired => f.write_str(
                "the server's certificate has expired or is not valid yet (renew it on the \
                 server, or check this machine's clock)",
            ),
            Self::NotOffered => f.write_str(
                "the server does not offer TLS, and sslmode requires it (turn on ssl at the \
                 server, or lower sslmode)",
            ),
            Self::ClientCertificateRefused => f.write_str(
                "the server refused the client certificate, or wanted one (set sslcert and \
                 sslkey to a certificate its ssl_ca_file trusts, whose common name is the user)",
            ),
            Self::ClientFiles(reason) => {
                write!(f, "cannot use the TLS certificate or key files ({reason})")
            }
            Self::Other(reason) => f.write_str(reason),
        }
    }
}

/// The TLS failure inside `err`, if that is what it is. (rustls reports a failed handshake as
/// an I/O error wrapping its own error; sqlx reports a server without TLS and unusable
/// certificate files as `Error::Tls`.)
#[must_use]
pub fn tls_failure(err: &sqlx::Error) -> Option<TlsFailure> {
    use rustls::Error as Rustls;
    match err {
        sqlx::Error::Tls(e) => {
            let text = e.to_string();
            Some(if text.contains("does not support TLS") {
                TlsFailure::NotOffered
            } else if let Some(rustls) = e.downcast_ref::<Rustls>() {
                rustls_failure(rustls)
            } else {
                TlsFailure::ClientFiles(text)
            })
        }
        sqlx::Error::Configuration(e) if e.to_string().contains("key and certs") => {
            Some(TlsFailure::ClientFiles(e.to_string()))
        }
        sqlx::Error::Io(io) => {
            let inner = io.get_ref()?.downcast_ref::<Rustls>()?;
            Some(rustls_failure(inner))
        }
        _ => None,
    }
}

fn rustls_failure(err: &rustls::Error) -> TlsFailure {
    use rustls::{CertificateError as C, Error as Rustls};
    match err {
        Rustls::InvalidCertificate(cert) => match cert {
            C::UnknownIssuer | C::BadSignature => TlsFailure::UnknownIssuer,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::HostNameMismatch,
            C::Expired
            | C::ExpiredContext { .. }
            | C::NotValidYet
            | C::NotValidYetContext { .. } => TlsFailure::Expired,
            other => TlsFailure::Other(format!("invalid server certificate: {other:?}")),
        },
        Rustls::AlertReceived(alert) => {
            let alert = format!("{alert:?}");
            if alert.contains("Certificate") || alert.contains("UnknownCA") {
                TlsFailure::ClientCertificateRefused
            } else {
                TlsFailure::Other(format!("the server sent the TLS alert {alert}"))
            }
        }
        Rustls::NoCertificatesPresented => TlsFailure::ClientCertificateRefused,
        other => TlsFailure::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_by_class() {
        let kind = |code| ServerError::postgres(code, "m", false, false).kind;
        assert_eq!(kind("28P01"), ErrorKind::InvalidCredentials);
        assert_eq!(kind("28000"), ErrorKind::ConnectionNotAllowed);
        assert_eq!(kind("42501"), ErrorKind::InsufficientPrivilege);
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
    fn the_refusals_of_class_28_are_told_apart_by_the_servers_words() {
        let kind = |message| ServerError::postgres("28000", message, true, true).kind;
        assert_eq!(
            kind(
                "no pg_hba.conf entry for host \"127.0.0.1\", user \"app\", database \"app\", \
                 no encryption"
            ),
            ErrorKind::EncryptionRequired
        );
        assert_eq!(
            kind("role \"reader\" is not permitted to log in"),
            ErrorKind::LoginNotPermitted
        );
        assert_eq!(
            kind("pg_hba.conf rejects connection for host \"127.0.0.1\", user \"x\""),
            ErrorKind::ConnectionNotAllowed
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
