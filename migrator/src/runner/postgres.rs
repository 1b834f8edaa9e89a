//! The PostgreSQL backend of the runner: a session-level advisory lock
//! ([`MIGRATION_LOCK_KEY`]) held for the whole run on a session of its own, and lock timeouts.
//!
//! * The lock is taken on one dedicated session (a pool of exactly one connection, so every
//!   statement of the run, and the unlock, use the session that holds the lock); a second
//!   migrator waits for it, logging that it is waiting, for at most `lock_timeout`; it is
//!   released explicitly after the run, and by the server when the session ends.
//! * Each step checks that the session is still the one holding the lock (a reconnect would
//!   have lost it: [`MigrateError::LockLost`]).
//! * A DDL statement waiting for a lock (behind a long transaction that read the table) holds
//!   its place in the lock queue, and every later query of the application queues behind it.
//!   So the session runs with `lock_timeout` (`lock_wait`, `MIGRATION_LOCK_WAIT`, default 5 s):
//!   a migration that cannot get its lock in that time fails (its transaction rolls back), the
//!   application's queries go on, and the runner tries it again after a pause ([`backoff`]),
//!   up to `lock_retries` times. Meanwhile another connection watches `pg_blocking_pids` of the
//!   session ([`Blockers`]), so the error after the last try names the sessions that blocked it
//!   (pid, user, application, state, transaction age; never their query text).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, SqlxPostgresConnector, Statement, sqlx,
};

use super::{Backend, MigrateError, Session, db_err};
use crate::options::MigratorOptions;

/// The advisory lock key: FNV-1a (64 bit) of the migrations table's name, `seaql_migrations`,
/// as a signed integer: `SELECT pg_advisory_lock(426561254407358603)`. Any tool that wants to
/// wait for migrations can take the same lock.
pub const MIGRATION_LOCK_KEY: i64 = fnv1a(b"seaql_migrations").cast_signed();

/// A run on PostgreSQL: the dedicated session holding the migration lock, its backend pid (to
/// notice if the pool ever replaced it), and the caller's connection, which watches what
/// blocks the session.
#[derive(Debug)]
pub struct Postgres {
    session: DatabaseConnection,
    holder_pid: i32,
    watcher: DatabaseConnection,
}

impl Postgres {
    /// The backend pid of the session holding the lock.
    #[must_use]
    pub fn holder_pid(&self) -> i32 {
        self.holder_pid
    }
}

impl Backend for Postgres {
    async fn open(
        db: &DatabaseConnection,
        options: &MigratorOptions,
    ) -> Result<Self, MigrateError> {
        let session = dedicated_session(db).await?;
        let locked = async {
            acquire(&session, options.lock_timeout).await?;
            session
                .execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!(
                        "SET lock_timeout = '{}ms'",
                        options.lock_wait.as_millis().max(1)
                    ),
                ))
                .await
                .map_err(db_err("set the lock timeout"))?;
            backend_pid(&session).await
        }
        .await;
        match locked {
            Ok(holder_pid) => Ok(Self {
                session,
                holder_pid,
                watcher: db.clone(),
            }),
            Err(err) => {
                let _ = session.close_by_ref().await;
                Err(err)
            }
        }
    }

    fn connection(&self) -> &DatabaseConnection {
        &self.session
    }

    async fn step<T>(
        &self,
        work: impl AsyncFnOnce(Session<'_>) -> Result<T, MigrateError>,
    ) -> Result<T, MigrateError> {
        if backend_pid(&self.session).await? != self.holder_pid {
            return Err(MigrateError::LockLost);
        }
        work(Session::Connection(&self.session)).await
    }

    fn watch_blockers(&self) -> Option<Blockers> {
        Some(Blockers::watch(self.watcher.clone(), self.holder_pid))
    }

    fn is_lock_timeout(&self, err: &DbErr) -> bool {
        connection::classify(err) == connection::ErrorKind::LockNotAvailable
    }

    async fn close(self) {
        // Released explicitly here; if this fails (the connection died), the server has
        // already released it with the session.
        let _ = query_bool(&self.session, "SELECT pg_advisory_unlock($1)").await;
        let _ = self.session.close_by_ref().await;
    }
}

/// The pause before try `n` (1-based) of a migration that timed out on a lock: 0.5 s doubling,
/// at most 8 s.
#[must_use]
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << n.saturating_sub(1).min(4)))
}

/// Watches which sessions block `pid`, from another connection, until stopped.
#[derive(Debug)]
pub struct Blockers {
    seen: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Blockers {
    /// Starts watching (every 100 ms) through `watcher`.
    #[must_use]
    pub fn watch(watcher: DatabaseConnection, pid: i32) -> Self {
        let seen: Arc<Mutex<Option<String>>> = Arc::default();
        let out = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(Some(text)) = describe_blockers(&watcher, pid).await
                    && let Ok(mut slot) = out.lock()
                {
                    *slot = Some(text);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { seen, task }
    }

    /// Stops watching; the last blockers seen, if any.
    #[must_use]
    pub fn stop(self) -> Option<String> {
        self.task.abort();
        self.seen.lock().ok().and_then(|slot| slot.clone())
    }
}

/// The sessions blocking `pid`, described without their query text.
///
/// # Errors
///
/// Any database error.
pub async fn describe_blockers(db: &DatabaseConnection, pid: i32) -> Result<Option<String>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT a.pid, COALESCE(a.usename::text, ''), COALESCE(a.application_name, ''), \
                    COALESCE(a.state, ''), \
                    COALESCE(EXTRACT(EPOCH FROM now() - a.xact_start)::bigint, 0) \
             FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids($1)) ORDER BY a.pid",
            [pid.into()],
        ))
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut parts = Vec::new();
    for row in rows {
        let blocker: i32 = row.try_get_by_index(0)?;
        let user: String = row.try_get_by_index(1)?;
        let application: String = row.try_get_by_index(2)?;
        let state: String = row.try_get_by_index(3)?;
        let age: i64 = row.try_get_by_index(4)?;
        parts.push(format!(
            "pid {blocker} (user {user}, application {}, {state}, transaction open for {age} s)",
            if application.is_empty() {
                "unnamed".to_owned()
            } else {
                format!("{application:?}")
            }
        ));
    }
    Ok(Some(parts.join("; ")))
}

/// A pool of exactly one connection, never recycled, with the connect options and search path
/// of `db`'s pool: one session for the whole run. The search path is set on connect, so it
/// would survive a reconnect (which [`step`] refuses to continue after anyway).
async fn dedicated_session(db: &DatabaseConnection) -> Result<DatabaseConnection, MigrateError> {
    let pool = db.get_postgres_connection_pool();
    let search_path = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SHOW search_path",
        ))
        .await
        .map_err(db_err("read the search path"))?
        .and_then(|row| row.try_get_by_index::<String>(0).ok());
    // SHOW returns the value already quoted as SET expects it.
    let set_search_path = search_path.map(|path| format!("SET search_path TO {path}"));
    let session_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .after_connect(move |conn, _| {
            let sql = set_search_path.clone();
            Box::pin(async move {
                if let Some(sql) = sql {
                    sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(sql)).await?;
                }
                Ok(())
            })
        })
        .connect_with((*pool.connect_options()).clone())
        .await
        .map_err(|e| MigrateError::Database {
            operation: "open a session for the migrations",
            source: DbErr::Conn(sea_orm_migration::sea_orm::RuntimeErr::SqlxError(
                std::sync::Arc::new(e),
            )),
        })?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(session_pool))
}

async fn backend_pid(session: &DatabaseConnection) -> Result<i32, MigrateError> {
    session
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid()",
        ))
        .await
        .map_err(db_err("identify the migration session"))?
        .and_then(|row| row.try_get_by_index::<i32>(0).ok())
        .ok_or(MigrateError::LockLost)
}

async fn acquire(session: &DatabaseConnection, timeout: Duration) -> Result<(), MigrateError> {
    let started = Instant::now();
    let mut announced = false;
    loop {
        if query_bool(session, "SELECT pg_try_advisory_lock($1)").await? {
            if announced {
                tracing::info!(
                    "Got the migration lock after {} ms",
                    started.elapsed().as_millis()
                );
            }
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(MigrateError::LockTimeout(timeout));
        }
        if !announced {
            tracing::warn!(
                "Another migrator is running (it holds advisory lock {MIGRATION_LOCK_KEY}); \
                 waiting up to {} s for it to finish",
                timeout.as_secs()
            );
            announced = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn query_bool(session: &DatabaseConnection, sql: &str) -> Result<bool, MigrateError> {
    let row = session
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [MIGRATION_LOCK_KEY.into()],
        ))
        .await
        .map_err(db_err("use the migration lock"))?;
    Ok(row
        .and_then(|row| row.try_get_by_index::<bool>(0).ok())
        .unwrap_or(false))
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_key_is_the_documented_constant() {
        assert_eq!(MIGRATION_LOCK_KEY, 426_561_254_407_358_603);
    }

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_eight() {
        let pauses: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }
}
