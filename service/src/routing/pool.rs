//! [`Pool`]: one connection pool of a service and everything that belongs to it alone.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseConnectionType, DbBackend, DbErr, ExecResult,
    QueryResult, Statement, sqlx,
};

use super::follow::{Follower, SLOW_CHECKOUT};
use super::held::HeldConnections;
use crate::config::DatabaseUrl;
use crate::error::is_read_only_refusal;
use crate::metrics::PoolMetrics;
use crate::secrets::{CredentialWatch, is_password_refusal};

/// One pool (the primary's, or a read replica's) with its held connections and its metric
/// keys. The [`DatabaseService`](crate::DatabaseService) that opened it owns it; its executors
/// (the service itself, a [`Reader`](super::Reader), a [`Transaction`](crate::Transaction))
/// carry an `Arc` of it, so a statement finds all of it without a look-up.
///
/// As a SeaORM connection it runs statements on its pool, and after a write refused as
/// read-only it retires the pool's idle sessions (see [`Pool::retire_idle_sessions`]).
pub struct Pool {
    pub(crate) conn: DatabaseConnection,
    /// The fast path's held connections (`DB_CONNECTION_HOLD`), PostgreSQL only.
    pub(crate) held: Option<Arc<HeldConnections>>,
    pub(crate) metrics: PoolMetrics,
    /// The secret file new connections read their password from, when there is one.
    pub(crate) credentials: Option<Arc<CredentialWatch>>,
    /// The hosts of a multi-host URL, for following the primary when it moves.
    follower: Option<Arc<Follower>>,
}

impl Pool {
    /// The state of `conn`'s pool, recording under `metrics`; on PostgreSQL its fast-path
    /// connections are held for `hold` when set.
    pub(crate) fn new(
        conn: DatabaseConnection,
        metrics: PoolMetrics,
        hold: Option<Duration>,
    ) -> Self {
        let held =
            hold.and_then(|hold| postgres_pool(&conn).map(|pool| HeldConnections::new(pool, hold)));
        Self {
            conn,
            held,
            metrics,
            credentials: None,
            follower: None,
        }
    }

    /// Reads the password of new connections from `url`'s secret file, if it has one (see
    /// [`crate::secrets`]).
    pub(crate) fn with_credentials_of(mut self, url: &DatabaseUrl) -> Self {
        self.credentials = CredentialWatch::start(url, &self.conn);
        self
    }

    /// The secret file's [generation](CredentialWatch::generation) now (0 without one): read
    /// before a statement, for [`password_renewed`](Self::password_renewed).
    pub(crate) fn credentials_seen(&self) -> u64 {
        self.credentials
            .as_ref()
            .map_or(0, |watch| watch.generation())
    }

    /// Whether `result`, of a statement that started when the credentials were at `seen`,
    /// failed because the server refused a new connection's password and the pool has
    /// another one now: the statement was never sent; run it again.
    pub(crate) async fn password_renewed<T>(&self, result: &Result<T, DbErr>, seen: u64) -> bool {
        match (&self.credentials, result) {
            (Some(watch), Err(err)) if is_password_refusal(err) => {
                watch.renewed_after_refusal(seen).await
            }
            _ => false,
        }
    }

    /// This pool, following the writable host of `url` when it names several (see
    /// [`Follower`]).
    pub(crate) fn following(mut self, url: &str, timeout: Duration) -> Self {
        if self.postgres().is_some() {
            self.follower = Follower::new(url, timeout, &self.credentials, &self.held);
        }
        self
    }

    /// A connection for the fast path: a held one, or one from `pool` (this pool's sqlx pool).
    ///
    /// On a pool that follows the primary ([`Follower`]), a checkout that has waited
    /// [`SLOW_CHECKOUT`] has the follower check where the primary is, and a checkout still
    /// waiting when the pool is pointed at a new primary starts over: sqlx keeps retrying the
    /// old host with a backoff of up to a fifth of `DB_ACQUIRE_TIMEOUT` (a second by default),
    /// which would hold the request past the move, and while it waits its attempt occupies
    /// one of the pool's connection slots.
    ///
    /// Unless `patient`, a checkout once the follower has found no writable host takes only
    /// a connection that is there already (held or idle), and otherwise fails at once with
    /// sqlx's `PoolTimedOut`: a new one would wait for a server that went away.
    pub(crate) async fn checkout(
        &self,
        pool: &sqlx::PgPool,
        patient: bool,
    ) -> Result<super::held::Checkout, sqlx::Error> {
        if !patient && let Some(follower) = &self.follower {
            let ready = || {
                super::held::Checkout::ready(pool, self.held.as_deref())
                    .ok_or(sqlx::Error::PoolTimedOut)
            };
            let losing = follower.losing();
            if follower.primary_lost() {
                return ready();
            }
            return tokio::select! {
                taken = self.take(pool) => taken,
                () = losing => ready(),
            };
        }
        self.take(pool).await
    }

    /// [`checkout`](Self::checkout), patiently.
    async fn take(&self, pool: &sqlx::PgPool) -> Result<super::held::Checkout, sqlx::Error> {
        let take = || async {
            match &self.held {
                Some(held) => held.checkout(&self.metrics).await,
                None => super::held::Checkout::from_pool(pool, &self.metrics).await,
            }
        };
        let Some(follower) = &self.follower else {
            return take().await;
        };
        let started = Instant::now();
        loop {
            let moved = follower.moved();
            let taken = take();
            let slow = tokio::time::sleep(SLOW_CHECKOUT);
            tokio::pin!(moved, taken, slow);
            let mut reported = false;
            loop {
                tokio::select! {
                    taken = &mut taken => return taken,
                    () = &mut moved => break,
                    () = &mut slow, if !reported => {
                        reported = true;
                        follower.checkout_slow(pool, started);
                    }
                }
            }
            tracing::debug!("checkout started over after a move");
        }
    }

    /// After an error on this pool: looks for the primary when it may have moved.
    pub(crate) fn after_error(&self, err: &DbErr) {
        if let (Some(follower), Some(pool)) = (&self.follower, self.postgres()) {
            follower.after_error(pool, err);
            if let Some(held) = &self.held
                && crate::routing::follow::means_moved(err)
            {
                held.close_all();
            }
        }
    }

    /// `host:port/database` of the server new connections go to (PostgreSQL only): after a
    /// failover followed, the new primary.
    pub(crate) fn node_name(&self) -> Option<String> {
        let options = self.postgres()?.connect_options();
        Some(format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or_default()
        ))
    }

    /// The sqlx pool when this is PostgreSQL: the fast path's.
    pub(crate) fn postgres(&self) -> Option<&sqlx::PgPool> {
        postgres_pool(&self.conn)
    }

    /// Records the pool's usage ([`PoolMetrics::sample`]).
    pub(crate) fn record_usage(&self) {
        let (size, idle, max) = self.usage();
        self.metrics.sample(size, idle, max);
    }

    /// Connections open, idle, and the pool's limit.
    pub(crate) fn usage(&self) -> (u32, usize, u32) {
        match &self.conn.inner {
            DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
                let pool = self.conn.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
                let pool = self.conn.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => (0, 0, 0),
        }
    }

    /// Whether the pool has been closed.
    pub(crate) fn is_closed(&self) -> bool {
        match &self.conn.inner {
            DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
                self.conn.get_postgres_connection_pool().is_closed()
            }
            DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
                self.conn.get_sqlite_connection_pool().is_closed()
            }
            _ => false,
        }
    }

    /// Gives back the held connections and closes the pool.
    pub(crate) async fn close(&self) -> Result<(), DbErr> {
        if let Some(held) = &self.held {
            held.stop();
        }
        self.conn.close_by_ref().await
    }

    /// After the server refused a write as read-only (`25006`): closes the pool's idle (and
    /// held) sessions, so that the next statements run on new ones. A session keeps the
    /// read-only state it started with (`default_transaction_read_only` set on the database or
    /// role, a standby behind the address after a failover), so without this, writes would
    /// keep failing on it after the server or database is writable again, until
    /// `DB_MAX_LIFETIME` retires it.
    pub(crate) fn retire_idle_sessions(&self) {
        if let Some(held) = &self.held {
            held.close_all();
        }
        if let Some(pool) = self.postgres() {
            for _ in 0..pool.num_idle() {
                match pool.try_acquire() {
                    Some(mut conn) => conn.close_on_drop(),
                    None => break,
                }
            }
        }
    }

    /// [`retire_idle_sessions`](Self::retire_idle_sessions) when `result` is a read-only
    /// refusal; `result` unchanged.
    pub(crate) fn retire_if_read_only<T>(&self, result: Result<T, DbErr>) -> Result<T, DbErr> {
        if let Err(err) = &result {
            if is_read_only_refusal(err) {
                self.retire_idle_sessions();
            }
            self.after_error(err);
        }
        result
    }
}

/// The sqlx pool of a pooled PostgreSQL connection.
fn postgres_pool(conn: &DatabaseConnection) -> Option<&sqlx::PgPool> {
    matches!(
        conn.inner,
        DatabaseConnectionType::SqlxPostgresPoolConnection(_)
    )
    .then(|| conn.get_postgres_connection_pool())
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("metrics", &self.metrics)
            .field("held", &self.held.is_some())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Pool {
    fn get_database_backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let (again, seen) = (
            self.credentials.is_some().then(|| stmt.clone()),
            self.credentials_seen(),
        );
        let mut result = self.conn.execute_raw(stmt).await;
        if let Some(stmt) = again
            && self.password_renewed(&result, seen).await
        {
            result = self.conn.execute_raw(stmt).await;
        }
        self.retire_if_read_only(result)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let seen = self.credentials_seen();
        let mut result = self.conn.execute_unprepared(sql).await;
        if self.password_renewed(&result, seen).await {
            result = self.conn.execute_unprepared(sql).await;
        }
        self.retire_if_read_only(result)
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let (again, seen) = (
            self.credentials.is_some().then(|| stmt.clone()),
            self.credentials_seen(),
        );
        let mut result = self.conn.query_one_raw(stmt).await;
        if let Some(stmt) = again
            && self.password_renewed(&result, seen).await
        {
            result = self.conn.query_one_raw(stmt).await;
        }
        self.retire_if_read_only(result)
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let (again, seen) = (
            self.credentials.is_some().then(|| stmt.clone()),
            self.credentials_seen(),
        );
        let mut result = self.conn.query_all_raw(stmt).await;
        if let Some(stmt) = again
            && self.password_renewed(&result, seen).await
        {
            result = self.conn.query_all_raw(stmt).await;
        }
        self.retire_if_read_only(result)
    }

    fn support_returning(&self) -> bool {
        self.conn.support_returning()
    }
}
