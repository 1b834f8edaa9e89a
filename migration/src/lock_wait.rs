//! Lock timeouts for migrations on PostgreSQL.
//!
//! A DDL statement waiting for a lock (behind a long transaction that read the table) holds
//! its place in the lock queue, and every later query of the application queues behind it:
//! one stuck `ALTER TABLE` stops all traffic to the table. So the migration session runs with
//! `lock_timeout` ([`LockWait::timeout`], `MIGRATION_LOCK_WAIT`, default 5 s): a migration that
//! cannot get its lock in that time fails (its transaction rolls back, nothing applied), the
//! application's queries go on, and the migration is tried again after a pause (0.5 s, 1 s,
//! 2 s, … up to `MIGRATION_LOCK_RETRIES`, default 3 retries). While a migration runs, another
//! connection watches `pg_blocking_pids` of the migration session, so the error after the last
//! try names the sessions that blocked it (pid, user, application, state, transaction age;
//! never their query text).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, RuntimeErr, Statement,
};

/// How long a migration waits for a lock, and how often it tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockWait {
    /// `lock_timeout` of the migration session.
    pub timeout: Duration,
    /// Tries after the first.
    pub retries: u32,
}

impl Default for LockWait {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retries: 3,
        }
    }
}

impl LockWait {
    /// From `MIGRATION_LOCK_WAIT` (seconds, decimals allowed) and `MIGRATION_LOCK_RETRIES`;
    /// unset or unreadable values keep the defaults (5 s, 3), with a warning for the latter.
    #[must_use]
    pub fn from_env() -> Self {
        let mut wait = Self::default();
        if let Ok(text) = std::env::var("MIGRATION_LOCK_WAIT") {
            match text.trim().parse::<f64>() {
                Ok(secs) if secs > 0.0 && secs <= 3600.0 => {
                    wait.timeout = Duration::from_secs_f64(secs);
                }
                _ => tracing::warn!(
                    "MIGRATION_LOCK_WAIT={text:?} is not a number of seconds (0 < s <= 3600); \
                     using 5"
                ),
            }
        }
        if let Ok(text) = std::env::var("MIGRATION_LOCK_RETRIES") {
            match text.trim().parse::<u32>() {
                Ok(n) if n <= 100 => wait.retries = n,
                _ => tracing::warn!(
                    "MIGRATION_LOCK_RETRIES={text:?} is not a whole number up to 100; using 3"
                ),
            }
        }
        wait
    }

    /// The pause before try `n` (1-based): 0.5 s doubling, at most 8 s.
    #[must_use]
    pub fn backoff(n: u32) -> Duration {
        Duration::from_millis(500u64.saturating_mul(1 << n.saturating_sub(1).min(4)))
    }

    /// The statement that sets the timeout on a session.
    #[must_use]
    pub fn set_statement(&self) -> Statement {
        Statement::from_string(
            DbBackend::Postgres,
            format!("SET lock_timeout = '{}ms'", self.timeout.as_millis().max(1)),
        )
    }
}

/// Whether `err` is PostgreSQL's `lock_not_available` (55P03): a lock timeout.
#[must_use]
pub fn is_lock_timeout(err: &DbErr) -> bool {
    let runtime = match err {
        DbErr::Exec(e) | DbErr::Query(e) | DbErr::Conn(e) => e,
        DbErr::Migration(text) => return text.contains("55P03") || text.contains("lock timeout"),
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|code| code == "55P03"),
        RuntimeErr::Internal(text) => text.contains("lock timeout"),
    }
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
                if let Ok(Some(text)) = describe(&watcher, pid).await
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
pub async fn describe(db: &DatabaseConnection, pid: i32) -> Result<Option<String>, DbErr> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_eight() {
        let pauses: Vec<u64> = (1..=7)
            .map(|n| LockWait::backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
    }

    #[test]
    fn the_timeout_is_set_in_milliseconds() {
        let wait = LockWait {
            timeout: Duration::from_millis(250),
            retries: 0,
        };
        assert_eq!(wait.set_statement().sql, "SET lock_timeout = '250ms'");
    }
}
