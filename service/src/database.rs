//! [`DatabaseService`]: the pooled connection every part of an application shares.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connection::connect::{ConnectError, ConnectFailure, InRecovery, ServerSessions};
use connection::database_url::UrlSource;
use migration::{Migrator, MigratorTrait};
use migrator::MigratorOptions;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, sqlx,
};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::error::{Error, Result};
use crate::health::{HealthReport, HealthStatus, MigrationsReport, PoolReport};
use crate::metrics::{self, PRIMARY_POOL};
use crate::routing::held::HeldConnections;
use crate::routing::replicas::{self, ReplicaSet};
use crate::routing::{Reader, WalPosition};

/// The database handle of an application: the primary's connection pool (and one per read
/// replica, when configured), their health, their shutdown.
///
/// Cloning is cheap (an `Arc`), and every clone shares the same pools, so put it in your web
/// framework's state (axum `State`, an `Extension`) and clone it into each request — the
/// Rust form of the Python template's `get_db_service()` dependency. Pass
/// [`connection`](Self::connection) (the primary) to the repositories (e.g. [`crate::user`]),
/// or [`reader`](Self::reader) for reads a replica may serve.
#[derive(Clone)]
pub struct DatabaseService {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    /// The fast path's held connections of each PostgreSQL pool (`DB_CONNECTION_HOLD`).
    held: Vec<Arc<HeldConnections>>,
    /// The read replicas and their probes; `None` without `DATABASE_REPLICA_URLS`.
    replicas: Option<Arc<ReplicaSet>>,
    /// Whether a connection pooler in transaction mode shares the primary's server sessions.
    sessions: ServerSessions,
    /// What [`DatabaseService::apply_migrations`] connects to when set.
    direct: Option<DatabaseConfig>,
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
            .field("replicas", &self.inner.replicas)
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
    /// On PostgreSQL every new connection of the primary's pool checks that the server is not
    /// in recovery (a standby is read-only), and refuses it otherwise. A connection pooler in
    /// transaction mode that mixes up prepared statements is refused (it would return other
    /// clients' answers); one that keeps them apart is accepted unless `DB_STATEMENT_TIMEOUT`
    /// or `DATABASE_SCHEMA`, which need a session of their own, are set. Read replicas
    /// (`DATABASE_REPLICA_URLS`) connect lazily: a replica that is down delays nothing and
    /// fails nothing; its probe keeps it out of rotation until it answers.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an invalid configuration, [`Error::Connect`] when the database
    /// cannot be reached (after the deadline for transient failures) or cannot be used
    /// safely (a standby, a pooler that mixes up statements).
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

        let options = connect_options(config, Role::Primary);
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        let (db, sessions) = loop {
            match connection::connect::connect_pooled(options.clone()).await {
                Ok(connected) => break connected,
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

        if sessions == ServerSessions::Shared {
            if config.statement_timeout.is_some() || config.schema.is_some() {
                let _ = db.close().await;
                return Err(Error::Connect(ConnectError {
                    target: config.url.to_string(),
                    failure: ConnectFailure::SessionRequired(
                        "DB_STATEMENT_TIMEOUT or DATABASE_SCHEMA (set once per session)",
                    ),
                }));
            }
            tracing::warn!(
                "a connection pooler in transaction mode serves DATABASE_URL; it keeps prepared \
                 statements apart, but migrations need DATABASE_DIRECT_URL"
            );
        }

        let backend = db.get_database_backend();
        let server_version = server_version(&db).await;
        tracing::info!(
            url = %config.url,
            backend = backend_name(backend),
            server_version = server_version.as_deref().unwrap_or("unknown"),
            replicas = config.replica_urls.len(),
            "connected to the database"
        );
        let replicas = open_replicas(config, &db).await?;
        let held = match config.connection_hold {
            Some(hold) => std::iter::once(&db)
                .chain(replicas.iter().flat_map(|set| set.connections()))
                .filter_map(crate::routing::pool_of)
                .map(|pool| HeldConnections::register(pool, hold))
                .collect(),
            None => Vec::new(),
        };
        let direct = config.direct_url.clone().map(|url| {
            let mut direct = config.clone();
            direct.url = url;
            direct.replica_urls.clear();
            direct
        });
        let service = Self {
            inner: Arc::new(Inner {
                held,
                replicas,
                sessions,
                direct,
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
        };
        service.spawn_pool_sampler();
        Ok(service)
    }

    /// Records the pools' usage now (the [`metrics`] `db_pool_connections_*` gauges, for the
    /// primary and each read replica). The service does this every second by itself; call it
    /// before rendering a scrape for figures of that very moment.
    pub fn record_pool_metrics(&self) {
        let usage = self.pool_report();
        PRIMARY_POOL.sample(usage.size, usage.idle as usize, usage.max);
        if let Some(replicas) = &self.inner.replicas {
            replicas.record_pool_metrics();
        }
    }

    /// Records the pools' usage every [`POOL_SAMPLE_INTERVAL`] until the pool is closed or the
    /// last clone of the service is dropped.
    fn spawn_pool_sampler(&self) {
        let service = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POOL_SAMPLE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = service.upgrade() else {
                    break;
                };
                let service = Self { inner };
                if service.is_closed() {
                    break;
                }
                service.record_pool_metrics();
            }
        });
    }

    fn is_closed(&self) -> bool {
        match self.backend() {
            DbBackend::Postgres => self.inner.db.get_postgres_connection_pool().is_closed(),
            DbBackend::Sqlite => self.inner.db.get_sqlite_connection_pool().is_closed(),
            _ => false,
        }
    }

    /// The pooled connection, for the repositories and for SeaORM queries of your own.
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// A connection for reads that a read replica may serve: a replica in rotation (taking
    /// turns), or the primary when there is none. See [`Reader`] for what happens when the
    /// replica fails or has not yet received a row.
    #[must_use]
    pub fn reader(&self) -> Reader {
        self.reader_choosing(None)
    }

    /// [`reader`](Self::reader) for a caller that must see its own writes: only a replica that
    /// has replayed the primary's WAL at least up to `position` (from
    /// [`write_position`](Self::write_position) after the writes) is chosen; otherwise the
    /// primary.
    #[must_use]
    pub fn reader_after(&self, position: WalPosition) -> Reader {
        self.reader_choosing(Some(position))
    }

    fn reader_choosing(&self, after: Option<WalPosition>) -> Reader {
        let replica = self
            .inner
            .replicas
            .as_ref()
            .and_then(|replicas| replicas.choose(after));
        Reader::new(self.inner.db.clone(), replica)
    }

    /// The primary's WAL position now, which includes every write committed before this call:
    /// hand it to [`reader_after`](Self::reader_after) (or to the client, which sends it back
    /// on its next read) for read-your-writes. `None` without read replicas — every read then
    /// goes to the primary anyway — so this costs a round trip only when replicas are
    /// configured.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] / [`Error::Database`] when the primary cannot be asked.
    pub async fn write_position(&self) -> Result<Option<WalPosition>> {
        if self.inner.replicas.is_none() {
            return Ok(None);
        }
        replicas::primary_position(&self.inner.db)
            .await
            .map(Some)
            .map_err(|err| Error::from_db("read the primary's WAL position", err))
    }

    /// Which database this is.
    #[must_use]
    pub fn backend(&self) -> DbBackend {
        self.inner.db.get_database_backend()
    }

    /// Applies every pending migration (what `cargo migrate up` does), for services that
    /// migrate at start-up. On PostgreSQL it holds the migration advisory lock for the run (on a
    /// session of its own), so instances starting together apply each migration once: the
    /// others wait, then find nothing pending. Returns the names of the migrations applied.
    ///
    /// With `DATABASE_DIRECT_URL` set, it connects there for the run (a pool of its own, closed
    /// afterwards), so a service whose `DATABASE_URL` is a connection pooler still migrates
    /// under the lock.
    ///
    /// # Errors
    ///
    /// [`Error::Migration`] naming the failed migration, unknown applied migrations, or a lock
    /// timeout; [`Error::Connect`] when the direct URL cannot be reached, or when `DATABASE_URL`
    /// is a pooler in transaction mode and no direct URL is set.
    pub async fn apply_migrations(&self, options: &MigratorOptions) -> Result<Vec<String>> {
        let up = |db| migrator::runner::up::<Migrator>(db, migrator::runner::UpTo::Latest, options);
        match &self.inner.direct {
            Some(direct) => {
                let mut options = connect_options(direct, Role::Primary);
                options.max_connections(2).min_connections(0);
                let db = connection::connect::connect(options).await?;
                let applied = up(&db).await;
                let _ = db.close().await;
                Ok(applied?)
            }
            None if self.inner.sessions == ServerSessions::Shared => {
                Err(Error::Connect(ConnectError {
                    target: self.inner.url.to_string(),
                    failure: ConnectFailure::SessionRequired("the migration lock"),
                }))
            }
            None => Ok(up(&self.inner.db).await?),
        }
    }

    /// A full health report: reachability, round-trip latency, pool usage, migrations applied,
    /// pending and unknown to this build, backend and server version; and each read replica's
    /// role, reachability, latency and lag.
    ///
    /// Without replicas it costs one round trip (reading the migrations table answers both "is
    /// it up" and "which migrations are applied"). With replicas, each is checked at the same
    /// time (its answer also updates whether it is in rotation). It never panics, and always
    /// returns within the configured health timeout (`DB_HEALTH_TIMEOUT`, 2 s by default),
    /// reporting [`HealthStatus::Unhealthy`] when the primary does not answer in time. A
    /// replica that is down or lagging makes the status [`HealthStatus::Degraded`], never
    /// unhealthy: reads go to the primary meanwhile ([`HealthReport::can_serve`]).
    pub async fn health(&self) -> HealthReport {
        let timeout = self.inner.health_timeout;
        let started = Instant::now();
        let primary = async {
            let outcome = tokio::time::timeout(
                timeout,
                self.inner
                    .db
                    .query_all_raw(self.inner.applied_migrations.clone()),
            )
            .await;
            (outcome, started.elapsed())
        };
        let replicas = async {
            match &self.inner.replicas {
                Some(replicas) => replicas.check_all(timeout).await,
                None => Vec::new(),
            }
        };
        let ((outcome, latency), replicas) = tokio::join!(primary, replicas);
        let (mut status, migrations, error) = match outcome {
            Ok(Ok(rows)) => {
                let applied: HashSet<String> = rows
                    .iter()
                    .filter_map(|row| row.try_get_by_index::<String>(0).ok())
                    .collect();
                let migrations = self.compare_migrations(&applied);
                metrics::record_migrations(&migrations);
                let status = if migrations.pending.is_empty() && migrations.unknown.is_empty() {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Degraded
                };
                (status, Some(migrations), None)
            }
            // Reachable, but nothing has been migrated yet: the table does not exist.
            Ok(Err(err)) if is_missing_table(&err) => {
                let migrations = self.compare_migrations(&HashSet::new());
                metrics::record_migrations(&migrations);
                (HealthStatus::Degraded, Some(migrations), None)
            }
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
                    timeout.as_millis()
                )),
            ),
        };
        if status == HealthStatus::Healthy && replicas.iter().any(|r| !r.in_rotation) {
            status = HealthStatus::Degraded;
        }
        HealthReport {
            status,
            backend: backend_name(self.backend()),
            server_version: self.inner.server_version.clone(),
            // Microsecond resolution is all a round trip needs.
            latency_ms: (latency.as_secs_f64() * 1_000_000.0).round() / 1000.0,
            pool: self.pool_report(),
            migrations,
            error,
            replicas,
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
        for held in &self.inner.held {
            held.unregister();
        }
        if let Some(replicas) = &self.inner.replicas {
            replicas.close().await;
        }
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

impl Drop for Inner {
    fn drop(&mut self) {
        for held in &self.held {
            held.unregister();
        }
    }
}

/// How often the pool gauges are sampled.
const POOL_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Which node a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Writes go here: a server in recovery is refused.
    Primary,
    /// A standby: its role is the probe's business.
    Replica,
}

fn connect_options(config: &DatabaseConfig, role: Role) -> ConnectOptions {
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
    if let Some(setup) = SessionSetup::new(config, role).filter(|_| !config.url.is_sqlite()) {
        options.map_sqlx_postgres_pool_opts(move |pool| {
            let setup = setup.clone();
            pool.after_connect(move |conn, _| {
                let setup = setup.clone();
                Box::pin(async move { setup.run(conn).await })
            })
        });
    }
    options
}

/// What every new PostgreSQL connection runs first, in one round trip (simple protocol): the
/// session settings, sent as `SET` rather than as start-up parameters (which connection
/// poolers such as PgBouncer refuse), and on the primary a check that the server is not a
/// standby. (A replica's role is its probe's business.)
#[derive(Debug, Clone)]
struct SessionSetup {
    sql: Arc<str>,
    role: Role,
}

impl SessionSetup {
    /// The set-up for `role`, or `None` when there is nothing to run.
    fn new(config: &DatabaseConfig, role: Role) -> Option<Self> {
        let mut sql = String::new();
        if let Some(timeout) = config.statement_timeout {
            sql.push_str(&format!("SET statement_timeout = {};", timeout.as_millis()));
        }
        if let Some(schema) = &config.schema {
            sql.push_str(&format!(
                "SET search_path = \"{}\";",
                schema.replace('"', "\"\"")
            ));
        }
        if role == Role::Primary {
            sql.push_str("SELECT pg_is_in_recovery()");
        }
        (!sql.is_empty()).then(|| Self {
            sql: sql.into(),
            role,
        })
    }

    async fn run(&self, conn: &mut sqlx::PgConnection) -> std::result::Result<(), sqlx::Error> {
        use sqlx::Row as _;
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(self.sql.to_string()))
            .fetch_all(conn)
            .await?;
        if self.role == Role::Primary {
            let in_recovery = rows
                .last()
                .map(|row| row.try_get::<bool, _>(0))
                .transpose()?
                .unwrap_or(false);
            if in_recovery {
                return Err(sqlx::Error::Configuration(Box::new(InRecovery)));
            }
        }
        Ok(())
    }
}

/// How long a read waits for a replica's connection before it goes to the primary instead.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// The replicas' pools (connecting lazily, so one that is down fails nothing here) and their
/// probes; `None` without replicas.
async fn open_replicas(
    config: &DatabaseConfig,
    primary: &DatabaseConnection,
) -> Result<Option<Arc<ReplicaSet>>> {
    if config.replica_urls.is_empty() {
        return Ok(None);
    }
    let mut pools = Vec::with_capacity(config.replica_urls.len());
    for url in &config.replica_urls {
        let mut replica = config.clone();
        replica.url = url.clone();
        let mut options = connect_options(&replica, Role::Replica);
        options
            // A read that cannot get a replica connection soon goes to the primary instead.
            .acquire_timeout(config.acquire_timeout.min(REPLICA_ACQUIRE_TIMEOUT))
            .connect_lazy(true)
            .map_sqlx_postgres_opts(|pg| pg.extra_float_digits(None));
        let conn = Database::connect(options)
            .await
            .map_err(|err| Error::Connect(ConnectError::new(&url.expose_secret(), &err)))?;
        pools.push((url.node_name(), conn));
    }
    let replicas = ReplicaSet::new(primary.clone(), pools, config.replica_max_lag);
    replicas.spawn_probes(config.replica_probe_interval, config.health_timeout);
    Ok(Some(replicas))
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
    connection::classify(err) == connection::ErrorKind::UndefinedTable
}

pub(crate) fn backend_name(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}
