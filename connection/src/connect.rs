//! Opening a database and saying, in one line, why it failed.
//!
//! Used by the migrator and by `service::DatabaseService::connect`, so both report a wrong
//! host, port, password or database name the same way, and neither ever shows the password.

use std::fmt;

use sea_orm::{
    ConnAcquireErr, ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr, sqlx,
};

use crate::classify::{ErrorKind, TlsFailure};
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
    /// The password was rejected (`28P01`; also a user that does not exist: the server does
    /// not say which).
    Authentication,
    /// The server accepts this host, user and database only over TLS, and the connection was
    /// not encrypted (`28000`, "no pg_hba.conf entry … no encryption").
    EncryptionRequired,
    /// The role exists but may not log in (`28000`, the role lacks `LOGIN`).
    LoginNotPermitted,
    /// The server's `pg_hba.conf` allows no connection of this host, user, database and
    /// encryption, or rejects it (`28000`).
    NotAllowed,
    /// The server has no database of that name.
    UnknownDatabase,
    /// The SQLite file cannot be opened (missing folder, permissions, `mode=ro` on a missing
    /// file).
    CannotOpenFile,
    /// TLS could not be negotiated, for this reason.
    Tls(TlsFailure),
    /// The server is a standby in recovery (read-only), where the primary was expected.
    Standby,
    /// The server, or a connection pooler in front of it, refused a start-up parameter the
    /// client sent (PgBouncer refuses every parameter it does not know).
    StartupParameterRefused(String),
    /// Server sessions are shared between client connections (a connection pooler in
    /// transaction mode) and prepared statements are not kept apart: a query could run another
    /// client's statement and return its answer.
    TransactionPooler,
    /// Server sessions are shared between client connections (a connection pooler in
    /// transaction mode), but what is named here needs a session of its own (a session-level
    /// lock, a `SET`).
    SessionRequired(&'static str),
    /// No host of a multi-host URL (or of a URL with `target_session_attrs`) could be used:
    /// what each said, in the order tried.
    NoSuitableHost {
        /// The sessions the URL asks for.
        wanted: crate::hosts::TargetSessionAttrs,
        /// Each host (`host:port`) and why it was not used.
        hosts: Vec<(String, crate::hosts::HostOutcome)>,
    },
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
                // A failover in progress: the standby may be promoted in a moment.
                | Self::Standby
        ) || matches!(self, Self::NoSuitableHost { hosts, .. } if hosts.iter().any(|(_, outcome)| {
            match outcome {
                // A standby now may be the primary in a moment, and the other way round.
                crate::hosts::HostOutcome::Unsuitable(_) => true,
                crate::hosts::HostOutcome::Failed(failure) => failure.is_transient(),
            }
        }))
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
        if let Some(failure) = crate::classify::tls_failure(sqlx_err) {
            return Self::Tls(match failure {
                TlsFailure::ClientFiles(text) => TlsFailure::ClientFiles(scrub(&text, secret)),
                TlsFailure::Other(text) => TlsFailure::Other(scrub(&text, secret)),
                failure => failure,
            });
        }
        match &**sqlx_err {
            sqlx::Error::Configuration(e) if e.is::<InRecovery>() => Self::Standby,
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
            sqlx::Error::Database(_) => match crate::classify::server_error(err) {
                Some(server) => match server.kind {
                    ErrorKind::InvalidCredentials => Self::Authentication,
                    ErrorKind::EncryptionRequired => Self::EncryptionRequired,
                    ErrorKind::LoginNotPermitted => Self::LoginNotPermitted,
                    ErrorKind::ConnectionNotAllowed => Self::NotAllowed,
                    ErrorKind::UnknownDatabase => Self::UnknownDatabase,
                    ErrorKind::ServerStarting => Self::ServerStarting,
                    ErrorKind::TooManyConnections => Self::TooManyConnections,
                    ErrorKind::CannotOpenFile => Self::CannotOpenFile,
                    ErrorKind::PreparedStatementCollision => Self::TransactionPooler,
                    ErrorKind::StartupParameterRefused => Self::StartupParameterRefused(
                        server
                            .message
                            .rsplit(':')
                            .next()
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    ),
                    _ => Self::Other(scrub(server.message, secret)),
                },
                None => Self::Other(scrub(&err.to_string(), secret)),
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
            Self::Authentication => f.write_str(
                "password authentication failed (check the user name and the password)",
            ),
            Self::EncryptionRequired => f.write_str(
                "the server accepts this user only over an encrypted connection (TLS), and this \
                 one was not encrypted: set sslmode=verify-full and sslrootcert=CA-FILE in the URL \
                 (or sslmode=require)",
            ),
            Self::LoginNotPermitted => f.write_str(
                "the role is not permitted to log in (it lacks the LOGIN attribute: \
                 ALTER ROLE … LOGIN, or connect as a login role)",
            ),
            Self::NotAllowed => f.write_str(
                "the server's pg_hba.conf allows no connection for this host, user and database \
                 (or rejects it); if the server requires TLS, set sslmode=verify-full in the URL",
            ),
            Self::UnknownDatabase => f.write_str("the database does not exist on that server"),
            Self::CannotOpenFile => f.write_str("cannot open the SQLite database file"),
            Self::Tls(failure) => write!(f, "TLS failed: {failure}"),
            Self::Standby => f.write_str(
                "the server is a standby in recovery (read-only); the URL must point at the primary",
            ),
            Self::StartupParameterRefused(name) => write!(
                f,
                "the server or a connection pooler in front of it refused the start-up parameter \
                 `{name}` (PgBouncer: add it to ignore_startup_parameters in pgbouncer.ini)"
            ),
            Self::TransactionPooler => f.write_str(
                "a connection pooler in transaction mode shares server sessions between client \
                 connections without keeping prepared statements apart, so a query could get \
                 another client's answer; use the pooler's session mode (PgBouncer: pool_mode = \
                 session), a pooler that keeps prepared statements per client (PgBouncer 1.21 or \
                 newer with max_prepared_statements), or connect to the server directly \
                 (DATABASE_DIRECT_URL for migrations)",
            ),
            Self::SessionRequired(what) => write!(
                f,
                "a connection pooler in transaction mode shares server sessions between client \
                 connections, but {what} needs a session of its own; use the pooler's session \
                 mode (PgBouncer: pool_mode = session) or connect to the server directly \
                 (DATABASE_DIRECT_URL)"
            ),
            Self::NoSuitableHost { wanted, hosts } => {
                write!(f, "no host is suitable for target_session_attrs={wanted}")?;
                for (index, (host, outcome)) in hosts.iter().enumerate() {
                    let separator = if index == 0 { ": " } else { "; " };
                    write!(f, "{separator}{host}: {outcome}")?;
                }
                Ok(())
            }
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

/// The marker error of a connection refused because the server is in recovery: returned by
/// the primary's connection set-up (see `service`), classified as [`ConnectFailure::Standby`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the server is a standby in recovery (read-only), not the primary")]
pub struct InRecovery;

/// Whether the server session behind each client connection is that connection's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSessions {
    /// One server session per client connection: a direct connection, or a connection pooler
    /// in session mode.
    Own,
    /// Server sessions are shared between client connections: a connection pooler in
    /// transaction mode that keeps prepared statements apart (PgBouncer 1.21 or newer with
    /// `max_prepared_statements`). Statements are safe; session state (`SET`, session-level
    /// advisory locks) is not.
    Shared,
}

/// Opens a pool for `options` (one attempt; callers that wait for a starting server retry on
/// [`ConnectFailure::is_transient`]), and refuses a connection pooler in transaction mode:
/// this is the connection of the migrator, whose lock needs a session of its own.
///
/// # Errors
///
/// A [`ConnectError`] naming the database (password redacted) and the cause.
pub async fn connect(options: ConnectOptions) -> Result<DatabaseConnection, ConnectError> {
    let url = options.get_url().to_owned();
    match connect_pooled(options).await? {
        (db, ServerSessions::Own) => Ok(db),
        (db, ServerSessions::Shared) => {
            let _ = db.close().await;
            Err(ConnectError {
                target: redact(&url),
                failure: ConnectFailure::SessionRequired("the migration lock"),
            })
        }
    }
}

/// Opens a pool for `options` (one attempt) and tells whether server sessions are shared
/// (a connection pooler in transaction mode that keeps prepared statements apart, which the
/// caller may accept). A pooler whose sessions are shared without keeping prepared statements
/// apart is refused: it returns other clients' answers.
///
/// The URL is checked first, so that a malformed one is reported without being echoed
/// (SeaORM's own message would print it, password included). On PostgreSQL two plain
/// connections are opened before the pool:
/// * the pool retries a refused connection until its timeout and then reports only "timed
///   out", while a plain connection says at once whether the host, port, password or database
///   name is wrong;
/// * the two connections tell whether a pooler shares server sessions between them (see
///   [`server_sessions`]);
/// * a server in recovery (a standby: read-only) is refused, since the pool is for writes.
///
/// On PostgreSQL the start-up parameter `extra_float_digits`, which sqlx sends by default and
/// PgBouncer refuses unless told to ignore it, is not sent: PostgreSQL 12 and newer already
/// send floats exactly (and sqlx reads them in binary).
///
/// # Errors
///
/// A [`ConnectError`] naming the database (password redacted) and the cause.
pub async fn connect_pooled(
    mut options: ConnectOptions,
) -> Result<(DatabaseConnection, ServerSessions), ConnectError> {
    let url = options.get_url().to_owned();
    check_url(&url).map_err(|reason| ConnectError {
        target: redact(&url),
        failure: ConnectFailure::InvalidUrl(reason),
    })?;
    let mut sessions = ServerSessions::Own;
    if !url.starts_with("sqlite:") {
        let timeout = options
            .get_connect_timeout()
            .unwrap_or(std::time::Duration::from_secs(30));
        sessions = probe_postgres(&url, timeout)
            .await
            .map_err(|failure| ConnectError {
                target: redact(&url),
                failure,
            })?;
        let tls_url = url.clone();
        options.map_sqlx_postgres_opts(move |pg| adjust_postgres_options(pg, &tls_url));
    }
    let db = Database::connect(options)
        .await
        .map_err(|err| ConnectError::new(&url, &err))?;
    Ok((db, sessions))
}

/// What every PostgreSQL connection of the project gets on top of what sqlx reads from `url`:
///
/// * no `extra_float_digits` start-up parameter (PgBouncer refuses it; PostgreSQL 12 and newer
///   send floats exactly anyway);
/// * libpq's meaning of `sslmode=require` with `sslrootcert`: the server's certificate is then
///   verified against that CA (as `verify-ca`), where sqlx alone would accept any certificate.
#[must_use]
pub fn adjust_postgres_options(
    options: sqlx::postgres::PgConnectOptions,
    url: &str,
) -> sqlx::postgres::PgConnectOptions {
    use sqlx::postgres::PgSslMode;
    let mut options = options.extra_float_digits(None);
    let root_cert = url::Url::parse(url).ok().is_some_and(|parsed| {
        parsed
            .query_pairs()
            .any(|(key, _)| matches!(&*key, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
    });
    if root_cert && matches!(options.get_ssl_mode(), PgSslMode::Require) {
        options = options.ssl_mode(PgSslMode::VerifyCa);
    }
    options
}

/// Connects twice to `url` and tells whether the server sessions behind the two connections
/// are their own.
async fn probe_postgres(
    url: &str,
    timeout: std::time::Duration,
) -> Result<ServerSessions, ConnectFailure> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let failure = |e: sqlx::Error| {
        let err = DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(e)));
        ConnectFailure::classify(&err, password(url).as_deref())
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(failure)?;
    let options = adjust_postgres_options(options, url);
    let probe = async {
        let mut first = options.connect().await.map_err(failure)?;
        let standby = sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
            .fetch_one(&mut first)
            .await
            .map_err(failure)?;
        if standby {
            let _ = first.close().await;
            return Err(ConnectFailure::Standby);
        }
        let outcome = match options.connect().await {
            Ok(mut second) => {
                let outcome = server_sessions(&mut first, &mut second).await;
                let _ = second.close().await;
                outcome.map_err(failure)
            }
            Err(e) => Err(failure(e)),
        };
        let _ = first.close().await;
        outcome
    };
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or(Err(ConnectFailure::TimedOut))
}

/// Whether two client connections, open at the same time, run on server sessions of their own.
///
/// Every sqlx connection numbers its prepared statements from `sqlx_s_1`, so any two name
/// some statement alike. `first` has prepared one already (the recovery check); it now runs
/// `SELECT pg_backend_pid()`, then `second` prepares and runs the same as its `sqlx_s_1`, then
/// `first` runs its cached statement again. Directly or through a pooler in session mode, each
/// has its own server session: no error, two different pids, and `first`'s pid unchanged.
/// Through a pooler in transaction mode, the server session `first` used goes back to the
/// pooler after each statement (PgBouncer hands out the most recently used one first), so
/// `second` lands on it and finds `sqlx_s_1` already there (`42P05`), or `first` lands on
/// another and finds its statement missing (`26000`): server sessions are shared, and
/// statements collide. A pooler that keeps prepared statements apart shows the same pid
/// twice, or `first`'s pid changing, without an error.
async fn server_sessions(
    first: &mut sqlx::PgConnection,
    second: &mut sqlx::PgConnection,
) -> Result<ServerSessions, sqlx::Error> {
    async fn pid(conn: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
    }
    let first_pid = pid(first).await?;
    let second_pid = pid(second).await?;
    let first_again = pid(first).await?;
    if second_pid == first_pid || first_again != first_pid {
        Ok(ServerSessions::Shared)
    } else {
        Ok(ServerSessions::Own)
    }
}

/// Checks that `url` parses and names a supported database; the reason never contains the URL.
///
/// # Errors
///
/// Why the URL is not usable.
pub fn check_url(url: &str) -> Result<(), String> {
    if let Some(list) = crate::hosts::HostList::parse(url)?
        && list.needs_choosing()
    {
        if list.hosts().iter().any(|host| host.host.is_empty()) {
            return Err("a PostgreSQL URL needs a host".into());
        }
        return Ok(());
    }
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
    let parsed = match url::Url::parse(url) {
        Ok(parsed) => parsed,
        // A multi-host URL: its first host's URL has the same password.
        Err(_) => url::Url::parse(&crate::hosts::HostList::parse(url).ok()??.url_for(0)).ok()?,
    };
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
