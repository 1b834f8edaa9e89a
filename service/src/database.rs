//! [`DatabaseService`]: the handle every part of an application shares — its pools, the
//! executors it makes ([`Reader`], [`Transaction`]), migrations at start-up, shutdown.
//! Connecting lives in [`crate::connect`], the health check in [`crate::health`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use connection::connect::{ConnectError, ConnectFailure, ServerSessions};
use connection::database_url::UrlSource;
use migration::{Migrator, MigratorTrait};
use migrator::MigratorOptions;
use sea_orm::{DatabaseConnection, DbBackend, Statement};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::connect::{self, Role, connect_options};
use crate::error::{Error, Result};
use crate::metrics::PoolMetrics;
use crate::routing::pool::Pool;
use crate::routing::replicas::{self, ReplicaSet};
use crate::routing::{Executor, Reader, Route, Sealed, Transactional, WalPosition};
use crate::transaction::Transaction;

/// The database handle of an application: the primary's connection pool (and one per read
/// replica, when configured), their health, their shutdown.
///
/// Cloning is cheap (an `Arc`), and every clone shares the same pools, so put it in your web
/// framework's state (axum `State`, an `Extension`) and clone it into each request — the
/// Rust form of the Python template's `get_db_service()` dependency. It is an
/// [`Executor`]: pass `&service` to the repositories (e.g. [`crate::user`]) for the primary,
/// [`reader`](Self::reader) for reads a replica may serve, [`begin`](Self::begin) for a
/// transaction.
///
/// Each service owns its pools and their state (held connections, metric keys): two services
/// in one process, on different databases, share nothing.
#[derive(Clone)]
pub struct DatabaseService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The primary's pool, its held connections (`DB_CONNECTION_HOLD`) and metric keys.
    pub(crate) primary: Arc<Pool>,
    /// The read replicas and their probes; `None` without `DATABASE_REPLICA_URLS`.
    pub(crate) replicas: Option<Arc<ReplicaSet>>,
    /// Whether a connection pooler in transaction mode shares the primary's server sessions.
    sessions: ServerSessions,
    /// What [`DatabaseService::apply_migrations`] connects to when set.
    direct: Option<DatabaseConfig>,
    url: DatabaseUrl,
    pub(crate) max_connections: u32,
    pub(crate) health_timeout: Duration,
    pub(crate) server_version: Option<String>,
    /// Whether the primary's connections are encrypted (TLS).
    pub(crate) encrypted: Option<bool>,
    /// Names of the migrations this build knows, for the health report.
    pub(crate) known_migrations: Vec<String>,
    /// `SELECT "version" FROM "seaql_migrations"`, rendered once: it is the health check's
    /// only round trip and tells both "reachable" and "which migrations are applied".
    pub(crate) applied_migrations: Statement,
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

        let (db, sessions) = connect::connect_primary(config).await?;
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
        let server_version = connect::server_version(&db).await;
        let encrypted = connect::encrypted(&db).await;
        tracing::info!(
            url = %config.url,
            backend = backend_name(backend),
            server_version = server_version.as_deref().unwrap_or("unknown"),
            encrypted = encrypted.unwrap_or(false),
            replicas = config.replica_urls.len(),
            read_from_standbys = config.read_from_standbys,
            "connected to the database"
        );
        let replicas = if config.read_nodes().is_empty() {
            None
        } else {
            let pools = connect::open_replicas(config).await?;
            let replicas = ReplicaSet::new(
                db.clone(),
                pools,
                config.replica_max_lag,
                config.connection_hold,
            );
            replicas.spawn_probes(config.replica_probe_interval, config.health_timeout);
            Some(replicas)
        };
        let direct = config.direct_url.clone().map(|url| {
            let mut direct = config.clone();
            direct.url = url;
            direct.replica_urls.clear();
            direct.read_from_standbys = false;
            direct
        });
        let service = Self {
            inner: Arc::new(Inner {
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
                primary: Arc::new(
                    Pool::new(db, PoolMetrics::primary(), config.connection_hold)
                        .with_credentials_of(&config.url)
                        .following(&config.url.expose_secret(), config.connect_timeout),
                ),
                url: config.url.clone(),
                max_connections: config.max_connections,
                health_timeout: config.health_timeout,
                server_version,
                encrypted,
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
        self.inner.primary.record_usage();
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
                if service.inner.primary.is_closed() {
                    break;
                }
                service.record_pool_metrics();
            }
        });
    }

    /// The primary's SeaORM connection pool, for SeaORM queries of your own. The repositories
    /// accept it too, but take SeaORM's generic path on it: pass the service itself for
    /// the fast path and read-only retirement.
    #[must_use]
    pub fn connection(&self) -> &DatabaseConnection {
        &self.inner.primary.conn
    }

    /// Begins a transaction on the primary: pass `&tx` to the repositories, then
    /// [`commit`](Transaction::commit) it.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] / [`Error::Database`] when no transaction can be begun.
    pub async fn begin(&self) -> Result<Transaction> {
        Transaction::begin(self.inner.primary.clone()).await
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
        Reader::new(self.inner.primary.clone(), replica)
    }

    /// The primary's WAL position now, which includes every write committed before this call:
    /// hand it to [`reader_after`](Self::reader_after) (or to the client, which sends it back
    /// on its next read) for read-your-writes. `None` without read replicas — every read then
    /// goes to the primary anyway — so this costs a round trip only when replicas are
    /// configured. It is asked once, on a connection of the fast path; once the service has
    /// found the primary of a multi-host `DATABASE_URL` gone, only on a connection that is
    /// there already, so the answer to a write that was committed is not held back.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] / [`Error::Database`] when the primary cannot be asked.
    pub async fn write_position(&self) -> Result<Option<WalPosition>> {
        if self.inner.replicas.is_none() {
            return Ok(None);
        }
        replicas::write_position(&self.inner.primary)
            .await
            .map(Some)
            .map_err(|err| Error::from_db("read the primary's WAL position", err))
    }

    /// Which database this is.
    #[must_use]
    pub fn backend(&self) -> DbBackend {
        self.inner.primary.conn.get_database_backend()
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
                // A secret file is read again for the new connection.
                let mut direct = direct.clone();
                direct.url = direct
                    .url
                    .reread()
                    .map_err(crate::config::ConfigError::SecretFile)?;
                let url = connect::resolve(&direct.url, direct.connect_timeout).await?;
                let mut options = connect_options(&direct, Role::Primary, &url);
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
            None => Ok(up(&self.inner.primary.conn).await?),
        }
    }

    /// Closes the pool: waits for connections in use to be returned, then closes them all.
    /// Every clone of this service is closed with it; later queries get
    /// [`Error::Unavailable`].
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if closing fails.
    pub async fn close(&self) -> Result<()> {
        if let Some(replicas) = &self.inner.replicas {
            replicas.close().await;
        }
        self.inner
            .primary
            .close()
            .await
            .map_err(|err| Error::from_db("close the pool", err))
    }
}

/// How often the pool gauges are sampled.
const POOL_SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn backend_name(backend: DbBackend) -> &'static str {
    match backend {
        DbBackend::Postgres => "postgres",
        DbBackend::Sqlite => "sqlite",
        _ => "other",
    }
}

impl Executor for DatabaseService {}

impl Sealed for DatabaseService {
    type Seaorm = Pool;

    fn seaorm(&self) -> &Pool {
        &self.inner.primary
    }

    fn route(&self) -> Route<'_> {
        let primary = &*self.inner.primary;
        match primary.postgres() {
            Some(_) => Route::Fast {
                primary,
                replica: None,
            },
            None => Route::Seaorm,
        }
    }

    fn transactional(&self) -> Transactional<'_> {
        Transactional::Connection(&self.inner.primary.conn)
    }
}
