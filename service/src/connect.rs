//! Connecting: the pool options every pool gets, the per-session set-up every new PostgreSQL
//! connection runs, and the retry while the primary starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connection::connect::{ConnectError, InRecovery, ServerSessions};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement, sqlx,
};

use crate::config::{DatabaseConfig, DatabaseUrl};
use crate::error::{Error, Result};
use crate::routing::replicas::ReplicaPool;

/// Opens the primary's pool, retrying with exponential backoff (100 ms, doubling, at most 5 s
/// apart) while the failure is transient, until `config.connect_deadline` has passed. Also
/// tells whether a pooler in transaction mode shares the server's sessions.
pub(crate) async fn connect_primary(
    config: &DatabaseConfig,
) -> Result<(DatabaseConnection, ServerSessions)> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        // A multi-host URL is resolved on every attempt: the primary may be moving.
        let attempt = async {
            let url = resolve(&config.url, config.connect_timeout).await?;
            connection::connect::connect_pooled(connect_options(config, Role::Primary, &url)).await
        };
        match attempt.await {
            Ok(connected) => return Ok(connected),
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
    }
}

/// Which node a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Writes go here: a server in recovery is refused.
    Primary,
    /// A standby: its role is the probe's business.
    Replica,
}

/// The single-host URL to open for `url`: itself, or the first host of a multi-host URL that
/// matches its `target_session_attrs` (see [`connection::hosts::resolve`]).
pub(crate) async fn resolve(
    url: &DatabaseUrl,
    timeout: Duration,
) -> std::result::Result<String, ConnectError> {
    connection::hosts::resolve(&url.expose_secret(), timeout).await
}

/// The pool options of `config` for a pool of `role` on `url` (a single-host URL: the
/// configuration's, or the host [`resolve`] chose).
pub(crate) fn connect_options(config: &DatabaseConfig, role: Role, url: &str) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
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
        if let Some(timeout) = config.idle_in_transaction_timeout {
            sql.push_str(&format!(
                "SET idle_in_transaction_session_timeout = {};",
                timeout.as_millis()
            ));
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

/// The pools of the nodes that serve reads ([`DatabaseConfig::read_nodes`]), each named
/// `host:port/database`, connecting lazily (so one that is down fails nothing here).
pub(crate) async fn open_replicas(config: &DatabaseConfig) -> Result<Vec<ReplicaPool>> {
    let nodes = config.read_nodes();
    let mut pools = Vec::with_capacity(nodes.len());
    for (url, standby_of_primary) in nodes {
        let mut replica = config.clone();
        replica.url = url.clone();
        // A replica URL naming several hosts: the first that matches now, or the first at all
        // when none answers yet (the pool connects lazily; its probe tells when it serves).
        let single = match resolve(&url, config.connect_timeout).await {
            Ok(single) => single,
            Err(err) => match connection::hosts::HostList::parse(&url.expose_secret()) {
                Ok(Some(list)) => {
                    tracing::warn!("{err}; using the first host for now");
                    list.url_for(0)
                }
                _ => url.expose_secret(),
            },
        };
        let mut options = connect_options(&replica, Role::Replica, &single);
        options
            // A read that cannot get a replica connection soon goes to the primary instead.
            .acquire_timeout(config.acquire_timeout.min(REPLICA_ACQUIRE_TIMEOUT))
            .connect_lazy(true)
            .map_sqlx_postgres_opts({
                let url = url.expose_secret();
                move |pg| connection::connect::adjust_postgres_options(pg, &url)
            });
        let conn = Database::connect(options)
            .await
            .map_err(|err| Error::Connect(ConnectError::new(&url.expose_secret(), &err)))?;
        pools.push(ReplicaPool {
            name: url.node_name(),
            conn,
            url,
            standby_of_primary,
        });
    }
    Ok(pools)
}

/// The server's version, or `None` when it cannot be read.
pub(crate) async fn server_version(db: &DatabaseConnection) -> Option<String> {
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

/// Whether the connection is encrypted (TLS), from `pg_stat_ssl`; `None` on SQLite or when it
/// cannot be read.
pub(crate) async fn encrypted(db: &DatabaseConnection) -> Option<bool> {
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
        ))
        .await
        .ok()??;
    row.try_get_by_index::<bool>(0).ok()
}
