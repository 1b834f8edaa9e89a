//! Opening a database and saying, in one line, why it failed.
//!
//! Used by the migrator CLI and by `service::DatabaseService::connect`, so both report a wrong
//! host, port, password or database name the same way, and neither ever shows the password.

use std::fmt;

use sea_orm_migration::sea_orm::{
    ConnAcquireErr, ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr, sqlx,
};

use crate::database_url::redact;

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The URL is malformed or names an unsupported database.
    InvalidUrl(String),
    /// The host name does not resolve.
    HostNotFound,
    /// Nothing listens on that host and port.
    Refused,
    /// The connection was closed before the server answered (a proxy or container port in
    /// front of a server that is not up yet).
    Reset,
    /// The server did not answer within the connect timeout.
    TimedOut,
    /// The server is starting up, shutting down or in recovery.
    ServerStarting,
    /// The server has no free connection slots.
    TooManyConnections,
    /// The user name or password was rejected.
    Authentication,
    /// The server has no database of that name.
    UnknownDatabase,
    /// The SQLite file cannot be opened (missing folder, permissions, `mode=ro` on a missing
    /// file).
    CannotOpenFile,
    /// TLS could not be negotiated.
    Tls,
    /// Anything else, with the driver's message (password removed).
    Other(String),
}

impl ConnectFailure {
    /// Whether waiting and trying again may help (the server may be starting).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Refused
                | Self::Reset
                | Self::TimedOut
                | Self::ServerStarting
                | Self::TooManyConnections
        )
    }

    /// Classifies a connection error. `secret` (the password, if any) is removed from any
    /// driver text that is kept.
    #[must_use]
    pub fn classify(err: &DbErr, secret: Option<&str>) -> Self {
        let sqlx_err = match err {
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => return Self::TimedOut,
            DbErr::Conn(RuntimeErr::SqlxError(e))
            | DbErr::Exec(RuntimeErr::SqlxError(e))
            | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
            other => return Self::Other(scrub(&other.to_string(), secret)),
        };
        match &**sqlx_err {
            sqlx::Error::Configuration(e) => Self::InvalidUrl(scrub(&e.to_string(), secret)),
            sqlx::Error::Tls(_) => Self::Tls,
            sqlx::Error::PoolTimedOut => Self::TimedOut,
            sqlx::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => Self::Refused,
                std::io::ErrorKind::TimedOut => Self::TimedOut,
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => Self::Reset,
                _ if io.to_string().contains("lookup address") => Self::HostNotFound,
                _ => Self::Other(scrub(&io.to_string(), secret)),
            },
            sqlx::Error::Database(db) => match db.code().as_deref() {
                // invalid_password, invalid_authorization_specification
                Some("28P01" | "28000") => Self::Authentication,
                Some("3D000") => Self::UnknownDatabase,
                Some("57P03") => Self::ServerStarting,
                Some("53300") => Self::TooManyConnections,
                // SQLITE_CANTOPEN
                Some("14") => Self::CannotOpenFile,
                _ => Self::Other(scrub(db.message(), secret)),
            },
            other => Self::Other(scrub(&other.to_string(), secret)),
        }
    }
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidUrl(reason) => write!(f, "invalid database URL: {reason}"),
            Self::HostNotFound => f.write_str("unknown host (the host name does not resolve)"),
            Self::Refused => f.write_str(
                "connection refused (is the server running, and on that host and port?)",
            ),
            Self::Reset => f.write_str("the connection was closed before the server answered"),
            Self::TimedOut => f.write_str("timed out (the server did not answer in time)"),
            Self::ServerStarting => f.write_str("the server is starting up or shutting down"),
            Self::TooManyConnections => f.write_str("the server has no free connection slots"),
            Self::Authentication => {
                f.write_str("authentication failed (check the user name and password)")
            }
            Self::UnknownDatabase => f.write_str("the database does not exist on that server"),
            Self::CannotOpenFile => f.write_str("cannot open the SQLite database file"),
            Self::Tls => f.write_str("TLS negotiation failed"),
            Self::Other(message) => f.write_str(message),
        }
    }
}

/// A connection that could not be opened: where to (password redacted) and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot connect to {target}: {failure}")]
pub struct ConnectError {
    /// The database URL with its password replaced by `***`.
    pub target: String,
    /// Why it failed.
    pub failure: ConnectFailure,
}

impl ConnectError {
    /// Builds the error for `url` from the driver's error.
    #[must_use]
    pub fn new(url: &str, err: &DbErr) -> Self {
        Self {
            target: redact(url),
            failure: ConnectFailure::classify(err, password(url).as_deref()),
        }
    }
}

/// Opens a pool for `options` (one attempt; callers that wait for a starting server retry on
/// [`ConnectFailure::is_transient`]).
///
/// The URL is checked first, so that a malformed one is reported without being echoed
/// (SeaORM's own message would print it, password included). On PostgreSQL one plain
/// connection is opened before the pool: the pool retries a refused connection until its
/// timeout and then reports only "timed out", while the plain connection says at once whether
/// the host, port, password or database name is wrong.
///
/// # Errors
///
/// A [`ConnectError`] naming the database (password redacted) and the cause.
pub async fn connect(options: ConnectOptions) -> Result<DatabaseConnection, ConnectError> {
    let url = options.get_url().to_owned();
    check_url(&url).map_err(|reason| ConnectError {
        target: redact(&url),
        failure: ConnectFailure::InvalidUrl(reason),
    })?;
    if !url.starts_with("sqlite:") {
        let timeout = options
            .get_connect_timeout()
            .unwrap_or(std::time::Duration::from_secs(30));
        probe_postgres(&url, timeout)
            .await
            .map_err(|err| ConnectError::new(&url, &err))?;
    }
    Database::connect(options)
        .await
        .map_err(|err| ConnectError::new(&url, &err))
}

async fn probe_postgres(url: &str, timeout: std::time::Duration) -> Result<(), DbErr> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let to_err = |e: sqlx::Error| DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(e)));
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(to_err)?;
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(to_err(e)),
        Err(_) => Err(to_err(sqlx::Error::PoolTimedOut)),
    }
}

/// Checks that `url` parses and names a supported database; the reason never contains the URL.
///
/// # Errors
///
/// Why the URL is not usable.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    match parsed.scheme() {
        "postgres" | "postgresql" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err("a PostgreSQL URL needs a host".into());
            }
            Ok(())
        }
        "sqlite" => Ok(()),
        other => Err(format!(
            "unsupported scheme `{other}` (use postgres:// or sqlite:)"
        )),
    }
}

/// The password in `url` (before the `@`, or as `?password=`), percent-decoded, if it has one.
#[must_use]
pub fn password(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.password() {
        Some(raw) => Some(
            percent_encoding::percent_decode_str(raw)
                .decode_utf8()
                .map_or_else(|_| raw.to_owned(), |decoded| decoded.into_owned()),
        ),
        None => parsed
            .query_pairs()
            .find(|(key, _)| key == "password")
            .map(|(_, value)| value.into_owned()),
    }
}

/// Removes every occurrence of `secret` from `text`.
#[must_use]
pub fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => text.replace(secret, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_percent_decoded() {
        assert_eq!(
            password("postgres://u:p%40ss@h/db").as_deref(),
            Some("p@ss")
        );
        assert_eq!(password("postgres://u@h/db"), None);
        assert_eq!(
            password("postgres://u@h/db?password=p%40ss").as_deref(),
            Some("p@ss")
        );
    }

    #[test]
    fn check_url_rejects_without_echoing() {
        let err = check_url("mysql://u:hunter2@h/db").unwrap_err();
        assert!(err.contains("unsupported scheme `mysql`"), "{err}");
        assert!(!err.contains("hunter2"));
        let err = check_url("postgres://u:hunter2@[::1/db").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(check_url("sqlite::memory:").is_ok());
        assert!(check_url("postgresql://u@localhost/db").is_ok());
    }

    #[test]
    fn scrub_removes_the_secret() {
        assert_eq!(scrub("bad pw hunter2!", Some("hunter2")), "bad pw ***!");
        assert_eq!(scrub("nothing", None), "nothing");
    }
}
