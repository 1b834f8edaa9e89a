//! [`DatabaseService`]: the pooled connection every part of an application shares.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use migration::database_url::UrlSource;
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::error::{Error, Result};
use crate::health::{HealthReport, HealthStatus, MigrationsReport, PoolReport};

/// The database handle of an application: one connection pool, its health, its shutdown.
///
/// Cloning is cheap (an `Arc`), and every clone shares the same pool, so put it in your web
/// framework's state (axum `State`, an `Extension`) and clone it into each request — the
/// Rust form of the Python template's `get_db_service()` dependency. Pass
/// [`connection`](Self::connection) to the repositories (e.g. [`crate::user`]).
#[derive(Clone)]
pub struct DatabaseService {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    url: DatabaseUrl,
    max_connections: u32,
    health_timeout: Duration,
    server_version: Option<String>,
    /// Names of the migrations this build knows, for the health report.
    known_migrations: Vec<String>,
    /// `SELECT "version" FROM "seaql_migrations"`, rendered once: it is the health check's
    /// only round trip and tells both "reachable" and "which migrations are applied".
    applied_migrations: Statement,
}

impl fmt::Debug for DatabaseService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseService")
            .field("url", &self.inner.url)
            .field("backend", &self.backend())
            .field("max_connections", &self.inner.max_connections)
            .finish_non_exhaustive()
    }
}

impl DatabaseService {
    /// Opens the pool described by `config`.
    ///
    /// While the server is starting (connection refused, timed out, "the database system is
    /// starting up") it retries with exponential backoff (100 ms, doubling, at most 5 s apart)
    /// until `config.connect_deadline` has passed. Errors that waiting cannot fix (wrong
    /// password, unknown database, malformed URL) are returned at once.
    ///
    /// With the embedded SQLite default it logs a warning naming the file, and creates the
    /// file's folder.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration, [`Error::Connect`] when the database
    /// cannot be reached (after the deadline for transient failures).
    pub async fn connect(config: &DatabaseConfig) -> Result<Self> {
        config.validate()?;
        if let UrlSource::EmbeddedDefault(path) = config.url.source() {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            tracing::warn!(
                "DATABASE_URL is not set: using the embedded SQLite database {}",
                shown.display()
            );
        }
        config
            .url
            .source()
            .prepare()
            .map_err(|err| Error::Unavailable {
                operation: "create the SQLite database folder",
                reason: err.to_string(),
            })?;

        let options = connect_options(config);
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        let db = loop {
            match migration::connect::connect(options.clone()).await {
                Ok(db) => break db,
                Err(err) if err.failure.is_transient() => {
                    let left = config.connect_deadline.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        return Err(err.into());
                    }
                    let wait = delay.min(left);
                    tracing::warn!("{err}; retrying in {} ms", wait.as_millis());
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(err) => return Err(err.into()),
            }
        };

        let backend = db.get_database_backend();
        let server_version = server_version(&db).await;
        tracing::info!(
            url = %config.url,
            backend = backend_name(backend),
            server_version = server_version.as_deref().unwrap_or("unknown"),
            "connected to the database"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                applied_migrations: Statement::from_string(
                    backend,
                    format!(
                        r#"SELECT "version" FROM "{}""#,
                        Migrator::migration_table_name()
                    ),
                ),
                db,
                url: config.url.clone(),
                max_connections: config.max_connections,
                health_timeout: config.health_timeout,
                server_version,
                known_migrations: Migrator::migrations()
                    .iter()
                    .map(|m| m.name().to_owned())
                    .collect(),
            }),
        })
    }

    /// The pooled connection, for the repositories and for SeaORM queries of your own.
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// Which database this is.
    #[must_use]
    pub fn backend(&self) -> DbBackend {
        self.inner.db.get_database_backend()
    }

    /// Applies every pending migration (what `cargo migrate up` does), for services that
    /// migrate at start-up. On PostgreSQL it holds the migration advisory lock for the run (on a
    /// session of its own), so replicas starting together apply each migration once: the others
    /// wait, then find nothing pending. Returns the names of the migrations applied.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] naming the failed migration, unknown applied migrations, or a lock
    /// timeout.
    pub async fn apply_migrations(&self) -> Result<Vec<String>> {
        Ok(migration::runner::up::<Migrator>(
            &self.inner.db,
            migration::runner::UpTo::Latest,
            migration::runner::DEFAULT_LOCK_TIMEOUT,
        )
        .await?)
    }

    /// A full health report: reachability, round-trip latency, pool usage, migrations applied,
    /// pending and unknown to this build, backend and server version.
    ///
    /// It costs one round trip (reading the migrations table answers both "is it up" and
    /// "which migrations are applied"), never panics, and always returns within the configured
    /// health timeout (`DB_HEALTH_TIMEOUT`, 2 s by default), reporting
    /// [`HealthStatus::Unhealthy`] when the server does not answer in time.
    pub async fn health(&self) -> HealthReport {
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            self.inner.health_timeout,
            self.inner
                .db
                .query_all_raw(self.inner.applied_migrations.clone()),
        )
        .await;
        let latency = started.elapsed();
        let (status, migrations, error) = match outcome {
            Ok(Ok(rows)) => {
                let applied: HashSet<String> = rows
                    .iter()
                    .filter_map(|row| row.try_get_by_index::<String>(0).ok())
                    .collect();
                let migrations = self.compare_migrations(&applied);
                let status = if migrations.pending.is_empty() && migrations.unknown.is_empty() {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Degraded
                };
                (status, Some(migrations), None)
            }
            // Reachable, but nothing has been migrated yet: the table does not exist.
            Ok(Err(err)) if is_missing_table(&err) => (
                HealthStatus::Degraded,
                Some(self.compare_migrations(&HashSet::new())),
                None,
            ),
            Ok(Err(err)) => (
                HealthStatus::Unhealthy,
                None,
                Some(Error::from_db("check health", err).to_string()),
            ),
            Err(_) => (
                HealthStatus::Unhealthy,
                None,
                Some(format!(
                    "no answer within the health timeout ({} ms)",
                    self.inner.health_timeout.as_millis()
                )),
            ),
        };
        HealthReport {
            status,
            backend: backend_name(self.backend()),
            server_version: self.inner.server_version.clone(),
            // Microsecond resolution is all a round trip needs.
            latency_ms: (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            pool: self.pool_report(),
            migrations,
            error,
        }
    }

    /// A cheap readiness probe: can a pooled connection talk to the server within the health
    /// timeout? (Migrations are not looked at; [`health`](Self::health) does that.)
    pub async fn is_ready(&self) -> bool {
        matches!(
            tokio::time::timeout(self.inner.health_timeout, self.inner.db.ping()).await,
            Ok(Ok(()))
        )
    }

    /// Closes the pool: waits for connections in use to be returned, then closes them all.
    /// Every clone of this service is closed with it; later queries get
    /// [`Error::Unavailable`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if closing fails.
    pub async fn close(&self) -> Result<()> {
        self.inner
            .db
            .close_by_ref()
            .await
            .map_err(|err| Error::from_db("close the pool", err))
    }

    fn compare_migrations(&self, applied: &HashSet<String>) -> MigrationsReport {
        let known = &self.inner.known_migrations;
        let mut unknown: Vec<String> = applied
            .iter()
            .filter(|name| !known.contains(name))
            .cloned()
            .collect();
        unknown.sort();
        MigrationsReport {
            applied: applied.len() - unknown.len(),
            pending: known
                .iter()
                .filter(|name| !applied.contains(*name))
                .cloned()
                .collect(),
            unknown,
        }
    }

    fn pool_report(&self) -> PoolReport {
        let (size, idle) = match self.backend() {
            DbBackend::Postgres => {
                let pool = self.inner.db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle())
            }
            DbBackend::Sqlite => {
                let pool = self.inner.db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle())
            }
            _ => (0, 0),
        };
        PoolReport {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max: self.inner.max_connections,
        }
    }
}

fn connect_options(config: &DatabaseConfig) -> ConnectOptions {
    let mut options = ConnectOptions::new(config.url.expose_secret());
    options
        .max_connections(config.max_connections)
        .min_connections(config.min_connections)
        .connect_timeout(config.connect_timeout)
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .set_application_name(config.application_name.clone())
        .sqlx_logging(config.echo)
        .sqlx_logging_level(tracing::log::LevelFilter::Info);
    // The checkout-ping policy. SeaORM (like sqlx) pings every connection on every checkout by
    // default: one extra round trip per query. sqlx 0.9 already pings each connection when it
    // goes back to the pool, so a connection that broke during a query is dropped there. What
    // is left is a connection that broke while it sat idle (server restart, a proxy or
    // firewall closing quiet connections): ping those, and only those, once they have been
    // idle for `ping_after_idle` (30 s by default). A server restart less than that ago can
    // still cost one failed query (`Unavailable`) per pooled connection; the pool then
    // reconnects. `tests/integration/failures.rs` restarts a server under an idle pool with
    // and without the ping.
    match config.ping_after_idle {
        Some(idle) if idle.is_zero() => options.test_before_acquire(true),
        Some(idle) => options.test_before_acquire_if_idle_for(idle),
        None => options.test_before_acquire(false),
    };
    if !config.url.is_sqlite() {
        if let Some(timeout) = config.statement_timeout {
            options.statement_timeout(timeout);
        }
        if let Some(schema) = &config.schema {
            options.set_schema_search_path(schema.clone());
        }
    }
    options
}

async fn server_version(db: &DatabaseConnection) -> Option<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => "SELECT current_setting('server_version')",
        DbBackend::Sqlite => "SELECT sqlite_version()",
        _ => return None,
    };
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .ok()??;
    row.try_get_by_index::<String>(0).ok()
}

fn is_missing_table(err: &sea_orm::DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    match err {
        sea_orm::DbErr::Query(RuntimeErr::SqlxError(e))
        | sea_orm::DbErr::Exec(RuntimeErr::SqlxError(e)) => match &**e {
            sqlx::Error::Database(db) => {
                db.code().as_deref() == Some("42P01") // undefined_table
                    || db.message().starts_with("no such table") // SQLite
            }
            _ => false,
        },
        _ => false,
    }
}

pub(crate) fn backend_name(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}
