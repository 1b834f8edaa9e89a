//! Running migrations safely: one migrator at a time, every failure named, guarded targets.
//!
//! SeaORM's migrator runs each migration in a transaction but takes no lock, so two processes
//! running `up` at once (two replicas starting, a deploy job and a developer) race: both see the
//! same migration pending and the second fails half-way or applies it twice. Here every command
//! that changes the schema holds a PostgreSQL session-level advisory lock
//! ([`MIGRATION_LOCK_KEY`]) for its whole run:
//!
//! * it is taken on one dedicated session (a pool of exactly one connection, so every
//!   statement of the run, and the unlock, use the session that holds the lock);
//! * a second migrator waits for it, logging that it is waiting, for at most the lock timeout;
//! * once it has the lock, the migrator reads what is pending *then*, so the second of two
//!   concurrent `up`s finds nothing left to do;
//! * it is released on every exit path: explicitly after the run, and by the server when the
//!   session ends (a crashed or killed migrator cannot leave it behind).
//!
//! SQLite has no advisory locks; there each migration runs in a `BEGIN IMMEDIATE` transaction
//! that first re-reads what is pending. The immediate transaction takes SQLite's write lock at
//! once, so concurrent migrators take turns migration by migration (waiting up to SQLite's busy
//! timeout, 5 s) and skip what another one already applied; one that waits longer gives up
//! with "database is locked", having changed nothing. The run uses one connection with
//! foreign key enforcement off (SQLite ignores `PRAGMA foreign_keys` inside a transaction, and
//! rebuilding a referenced table with it on would cascade deletes, see [`crate::alter`]); each
//! step instead runs `PRAGMA foreign_key_check` before it commits and fails, changing nothing,
//! if a row would point at a missing parent.
//!
//! Every migration runs in its own transaction (all migrations of this crate set
//! `use_transaction`), so one that fails leaves neither schema changes nor a record behind, and
//! the error names it.

use std::time::{Duration, Instant};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{
    DatabaseConnection, DatabaseExecutor, DatabaseTransaction, DbBackend, SqliteTransactionMode,
    SqlxPostgresConnector, Statement, TransactionOptions, TransactionTrait, sqlx,
};

use crate::MigrationStatus;
use crate::lock_wait::{self, Blockers, LockWait};

/// The advisory lock key: FNV-1a (64 bit) of the migrations table's name, `seaql_migrations`,
/// as a signed integer: `SELECT pg_advisory_lock(426561254407358603)`. Any tool that wants to
/// wait for migrations can take the same lock.
pub const MIGRATION_LOCK_KEY: i64 = fnv1a(b"seaql_migrations").cast_signed();

/// The gauge set after each migration this process applies or rolls back: how long it took, in
/// seconds, labelled `direction` (`up` or `down`); recorded through the `metrics` facade, so it
/// goes wherever the process installed a recorder (nowhere in the CLI).
pub const LAST_DURATION_METRIC: &str = "db_migration_last_duration_seconds";

/// How long a migrator waits for another one to finish, by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// How far `up` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpTo {
    /// Every pending migration.
    Latest,
    /// The next N pending migrations.
    Steps(u32),
    /// Up to and including this version (nothing if it is already applied).
    Version(String),
}

/// How far `down` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownTo {
    /// The last N applied migrations.
    Steps(u32),
    /// Everything applied after this version, which stays applied.
    Version(String),
    /// Every applied migration.
    Nothing,
}

/// Why a migration command did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A migration failed; its transaction was rolled back, so neither its changes nor its
    /// record remain.
    #[error("migration {migration} failed ({direction}); nothing of it was applied: {source}")]
    Failed {
        /// The migration's name.
        migration: String,
        /// `up` or `down`.
        direction: &'static str,
        /// The database's error.
        source: DbErr,
    },
    /// The database records migrations this build does not have (applied by a newer or
    /// different build); running would act on a schema this code does not know.
    #[error(
        "the database has migrations this build does not know: {}; deploy the build that has \
         them, or remove their rows from seaql_migrations if they were abandoned",
        versions.join(", ")
    )]
    UnknownApplied {
        /// Their names.
        versions: Vec<String>,
    },
    /// Applied migrations whose source changed after they were applied (their recorded
    /// checksum differs from this build's).
    #[error(
        "these applied migrations were edited after they were applied: {}; the database ran \
         their old text. Restore their source (and put the change in a new migration), or run \
         with --allow-changed (MIGRATION_ALLOW_CHANGED=1) if the edit changes nothing that ran",
        .0.join(", ")
    )]
    Changed(Vec<String>),
    /// A migration could not get its lock within the lock timeout, on every try (PostgreSQL).
    #[error(
        "migration {migration} could not get its lock within {} ms, {tries} times; nothing of \
         it was applied. Blocked by {blocked_by}. Let that transaction finish (or end it), \
         then run again; MIGRATION_LOCK_WAIT and MIGRATION_LOCK_RETRIES set the wait",
        .wait.as_millis()
    )]
    LockWait {
        /// The migration.
        migration: String,
        /// How many times it was tried.
        tries: u32,
        /// The lock timeout of each try.
        wait: Duration,
        /// The sessions seen blocking it (no query text).
        blocked_by: String,
    },
    /// `--to` names no migration of this build.
    #[error("no migration named {0} in this build (see `status`)")]
    NoSuchMigration(String),
    /// `down --to` names a migration that is not applied.
    #[error("migration {0} is not applied, so there is nothing to roll back to")]
    NotApplied(String),
    /// Another migrator held the lock for longer than the timeout.
    #[error(
        "timed out after {} s waiting for the migration lock: another migrator is still running \
         (advisory lock {MIGRATION_LOCK_KEY})",
        .0.as_secs()
    )]
    LockTimeout(Duration),
    /// The session holding the lock was replaced mid-run (the connection broke and the pool
    /// reconnected), so the lock can no longer be vouched for; the run stops between two
    /// migrations.
    #[error(
        "lost the migration lock: the database session was reset during the run; the \
         migrations applied so far are recorded, run the command again to continue"
    )]
    LockLost,
    /// A database error outside any one migration (reading the status, the lock, dropping).
    #[error("cannot {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The database's error.
        source: DbErr,
    },
}

/// Where one step of a run executes: the locked session (PostgreSQL), an immediate transaction
/// (SQLite), or the plain connection (SQLite `fresh`).
#[derive(Clone, Copy)]
enum Session<'a> {
    Connection(&'a DatabaseConnection),
    Transaction(&'a DatabaseTransaction),
}

impl<'a> Session<'a> {
    fn exec(self) -> DatabaseExecutor<'a> {
        match self {
            Self::Connection(c) => c.into(),
            Self::Transaction(t) => t.into(),
        }
    }
}

fn db_err(operation: &'static str) -> impl FnOnce(DbErr) -> MigrateError {
    move |source| MigrateError::Database { operation, source }
}

/// Applies pending migrations of `M` up to `target`, holding the migration lock, and returns
/// the names of those it applied. `db` may be any connection (a service's pool): on PostgreSQL
/// a dedicated session is opened for the run.
///
/// # Errors
///
/// [`MigrateError`] naming the failing migration, an unknown target, unknown applied
/// migrations, or a lock timeout.
pub async fn up<M: MigratorTrait>(
    db: &DatabaseConnection,
    target: UpTo,
    lock_timeout: Duration,
) -> Result<Vec<String>, MigrateError> {
    up_with::<M>(db, target, lock_timeout, Changed::Refuse).await
}

/// What `up` does when an applied migration's source changed since it was applied (see
/// [`crate::checksum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Stop with [`MigrateError::Changed`] (the default).
    Refuse,
    /// Go on (`--allow-changed`, `MIGRATION_ALLOW_CHANGED=1`); the recorded checksums stay,
    /// so `status` keeps naming the migration.
    Allow,
}

/// [`up`], saying what to do about applied migrations whose source changed.
///
/// # Errors
///
/// As for [`up`].
pub async fn up_with<M: MigratorTrait>(
    db: &DatabaseConnection,
    target: UpTo,
    lock_timeout: Duration,
    changed: Changed,
) -> Result<Vec<String>, MigrateError> {
    with_lock(db, lock_timeout, async |conn| {
        up_locked::<M>(conn, &target, changed).await
    })
    .await
}

/// Rolls back applied migrations of `M` down to `target`, holding the migration lock, and
/// returns the names of those rolled back, newest first.
///
/// # Errors
///
/// As for [`up`]; [`MigrateError::NotApplied`] when the target is not applied.
pub async fn down<M: MigratorTrait>(
    db: &DatabaseConnection,
    target: DownTo,
    lock_timeout: Duration,
) -> Result<Vec<String>, MigrateError> {
    with_lock(db, lock_timeout, async |conn| {
        down_locked::<M>(conn, &target).await
    })
    .await
}

/// Rolls back every applied migration, then applies them all again (`refresh`), under one hold
/// of the lock.
///
/// # Errors
///
/// As for [`up`] and [`down`].
pub async fn refresh<M: MigratorTrait>(
    db: &DatabaseConnection,
    lock_timeout: Duration,
) -> Result<(), MigrateError> {
    with_lock(db, lock_timeout, async |conn| {
        down_locked::<M>(conn, &DownTo::Nothing).await?;
        up_locked::<M>(conn, &UpTo::Latest, Changed::Refuse)
            .await
            .map(|_| ())
    })
    .await
}

/// Rolls back every applied migration and drops the migrations table (`reset`).
///
/// # Errors
///
/// As for [`down`].
pub async fn reset<M: MigratorTrait>(
    db: &DatabaseConnection,
    lock_timeout: Duration,
) -> Result<(), MigrateError> {
    with_lock(db, lock_timeout, async |conn| {
        down_locked::<M>(conn, &DownTo::Nothing).await?;
        crate::checksum::drop_table(&conn.session)
            .await
            .map_err(db_err("drop the checksum table"))?;
        M::uninstall(&conn.session)
            .await
            .map_err(db_err("drop the migrations table"))
    })
    .await
}

/// Drops every table (and, on PostgreSQL, every type) of the schema, then applies every
/// migration (`fresh`).
///
/// # Errors
///
/// As for [`up`].
pub async fn fresh<M: MigratorTrait>(
    db: &DatabaseConnection,
    lock_timeout: Duration,
) -> Result<(), MigrateError> {
    with_lock(db, lock_timeout, async |conn| {
        M::fresh(&conn.session)
            .await
            .map_err(db_err("drop everything and re-apply the migrations"))?;
        let applied = M::migrations()
            .iter()
            .map(|m| m.name().to_owned())
            .collect::<Vec<_>>();
        crate::checksum::record(&conn.session, &applied, true)
            .await
            .map_err(db_err("record the migrations' checksums"))
    })
    .await
}

async fn up_locked<M: MigratorTrait>(
    conn: &Locked,
    target: &UpTo,
    changed: Changed,
) -> Result<Vec<String>, MigrateError> {
    let status = step(conn, async |session| {
        let status = checked_status::<M>(session).await?;
        let applied: Vec<String> = status.applied.iter().map(|a| a.version.clone()).collect();
        let recorded = crate::checksum::recorded(&session.exec())
            .await
            .map_err(db_err("read the migrations' checksums"))?;
        let edited = crate::checksum::changed(applied.iter().map(String::as_str), &recorded);
        if !edited.is_empty() {
            if changed == Changed::Refuse {
                return Err(MigrateError::Changed(edited));
            }
            tracing::warn!(
                "Going on although these applied migrations changed since they were applied: {}",
                edited.join(", ")
            );
        }
        // A database migrated before checksums were kept adopts this build's as its baseline;
        // one that recorded a superseded source (see `checksum::SUPERSEDED`) gets the current.
        let superseded: Vec<String> = applied
            .iter()
            .filter(|v| {
                recorded.get(*v).is_some_and(|r| {
                    Some(r.as_str()) != crate::checksum::of(v) && crate::checksum::accepts(v, r)
                })
            })
            .cloned()
            .collect();
        if applied.iter().any(|v| !recorded.contains_key(v)) || !superseded.is_empty() {
            crate::checksum::record(&session.exec(), &applied, false)
                .await
                .map_err(db_err("record the migrations' checksums"))?;
            crate::checksum::record(&session.exec(), &superseded, true)
                .await
                .map_err(db_err("record the migrations' checksums"))?;
        }
        Ok(status)
    })
    .await?;
    let count = match target {
        UpTo::Latest => status.pending.len(),
        UpTo::Steps(n) => status.pending.len().min(*n as usize),
        UpTo::Version(version) => {
            if let Some(i) = status.pending.iter().position(|p| p == version) {
                i + 1
            } else if status.applied.iter().any(|a| &a.version == version) {
                tracing::info!("{version} is already applied");
                0
            } else {
                return Err(MigrateError::NoSuchMigration(version.clone()));
            }
        }
    };
    if count == 0 {
        tracing::info!("No pending migrations to apply");
    }
    let mut applied = Vec::with_capacity(count);
    for name in status.pending.into_iter().take(count) {
        let started = Instant::now();
        let mut tries = 0;
        let ran = loop {
            let watch = watch_blockers(conn);
            let outcome = step(conn, async |session| {
                // Read again inside the step: on SQLite another migrator may have applied it.
                let now = checked_status::<M>(session).await?;
                if now.pending.first() != Some(&name) {
                    return Ok(false);
                }
                M::up(session.exec(), Some(1))
                    .await
                    .map_err(|source| MigrateError::Failed {
                        migration: name.clone(),
                        direction: "up",
                        source,
                    })?;
                crate::checksum::record(&session.exec(), std::slice::from_ref(&name), true)
                    .await
                    .map_err(db_err("record the migration's checksum"))?;
                Ok(true)
            })
            .await;
            if let Some(ran) =
                retry_on_lock_timeout(conn, &name, watch, outcome, &mut tries).await?
            {
                break ran;
            }
        };
        if ran {
            record_duration("up", started);
            applied.push(name);
        }
    }
    Ok(applied)
}

async fn down_locked<M: MigratorTrait>(
    conn: &Locked,
    target: &DownTo,
) -> Result<Vec<String>, MigrateError> {
    let status = step(conn, async |session| checked_status::<M>(session).await).await?;
    let applied = applied_in_code_order::<M>(&status);
    let count = match target {
        DownTo::Steps(n) => applied.len().min(*n as usize),
        DownTo::Nothing => applied.len(),
        DownTo::Version(version) => match applied.iter().position(|a| a == version) {
            Some(i) => applied.len() - i - 1,
            None if status.pending.contains(version) => {
                return Err(MigrateError::NotApplied(version.clone()));
            }
            None => return Err(MigrateError::NoSuchMigration(version.clone())),
        },
    };
    if count == 0 {
        tracing::info!("No migrations to roll back");
    }
    let mut rolled_back = Vec::with_capacity(count);
    for name in applied.into_iter().rev().take(count) {
        let started = Instant::now();
        let mut tries = 0;
        let ran = loop {
            let watch = watch_blockers(conn);
            let outcome = step(conn, async |session| {
                let now = checked_status::<M>(session).await?;
                if applied_in_code_order::<M>(&now).last() != Some(&name) {
                    return Ok(false);
                }
                M::down(session.exec(), Some(1))
                    .await
                    .map_err(|source| MigrateError::Failed {
                        migration: name.clone(),
                        direction: "down",
                        source,
                    })?;
                crate::checksum::forget(&session.exec(), std::slice::from_ref(&name))
                    .await
                    .map_err(db_err("forget the migration's checksum"))?;
                Ok(true)
            })
            .await;
            if let Some(ran) =
                retry_on_lock_timeout(conn, &name, watch, outcome, &mut tries).await?
            {
                break ran;
            }
        };
        if ran {
            record_duration("down", started);
            rolled_back.push(name);
        }
    }
    Ok(rolled_back)
}

/// Sets [`LAST_DURATION_METRIC`] to the time since `started` (lock retries included).
fn record_duration(direction: &'static str, started: Instant) {
    metrics::gauge!(LAST_DURATION_METRIC, "direction" => direction).set(started.elapsed());
}

/// Starts watching what blocks the migration session (PostgreSQL).
fn watch_blockers(conn: &Locked) -> Option<Blockers> {
    match (conn.holder_pid, &conn.watcher) {
        (Some(pid), Some(watcher)) => Some(Blockers::watch(watcher.clone(), pid)),
        _ => None,
    }
}

/// After one try of a migration's step: its value, or `None` after a lock timeout with tries
/// left (having paused before the next, see [`crate::lock_wait`]), or the error; after the
/// last try the error names what blocked it.
async fn retry_on_lock_timeout<T>(
    conn: &Locked,
    migration: &str,
    watch: Option<Blockers>,
    outcome: Result<T, MigrateError>,
    tries: &mut u32,
) -> Result<Option<T>, MigrateError> {
    let blocked_by = watch.and_then(Blockers::stop);
    match outcome {
        Err(MigrateError::Failed { source, .. })
            if conn.holder_pid.is_some() && lock_wait::is_lock_timeout(&source) =>
        {
            let wait = conn.lock_wait;
            *tries += 1;
            let blocked_by = blocked_by.unwrap_or_else(|| {
                "a session that released its lock before it could be named".to_owned()
            });
            if *tries > wait.retries {
                return Err(MigrateError::LockWait {
                    migration: migration.to_owned(),
                    tries: *tries,
                    wait: wait.timeout,
                    blocked_by,
                });
            }
            let pause = LockWait::backoff(*tries);
            tracing::warn!(
                "{migration}: no lock within {} ms (blocked by {blocked_by}); nothing applied, \
                 trying again in {} ms ({}/{})",
                wait.timeout.as_millis(),
                pause.as_millis(),
                tries,
                wait.retries
            );
            tokio::time::sleep(pause).await;
            Ok(None)
        }
        other => other.map(Some),
    }
}

/// The applied migrations in the code's order (the order `down` undoes them in reverse).
fn applied_in_code_order<M: MigratorTrait>(status: &MigrationStatus) -> Vec<String> {
    M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .filter(|name| status.applied.iter().any(|a| &a.version == name))
        .collect()
}

async fn checked_status<M: MigratorTrait>(
    session: Session<'_>,
) -> Result<MigrationStatus, MigrateError> {
    let status = crate::status::<M, _>(&session.exec())
        .await
        .map_err(db_err("read the migration status"))?;
    if !status.unknown.is_empty() {
        return Err(MigrateError::UnknownApplied {
            versions: status.unknown.into_iter().map(|u| u.version).collect(),
        });
    }
    Ok(status)
}

/// A run's connection: on PostgreSQL the dedicated session holding the migration lock (and
/// its backend pid, to notice if the pool ever replaced it); on SQLite the caller's pool.
struct Locked {
    session: DatabaseConnection,
    holder_pid: Option<i32>,
    /// The caller's connection, which watches what blocks the session (PostgreSQL).
    watcher: Option<DatabaseConnection>,
    lock_wait: LockWait,
}

/// One step of a run: on SQLite an immediate transaction (it takes the write lock at once, so
/// concurrent migrators take turns and each re-reads the status first); on PostgreSQL the
/// locked session itself (each migration brings its own transaction), after checking that it
/// is still the session that holds the lock.
async fn step<T>(
    locked: &Locked,
    work: impl AsyncFnOnce(Session<'_>) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    let conn = &locked.session;
    if let Some(holder) = locked.holder_pid {
        if backend_pid(conn).await? != holder {
            return Err(MigrateError::LockLost);
        }
        return work(Session::Connection(conn)).await;
    }
    let transaction = conn
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .map_err(db_err("begin a migration step"))?;
    let outcome = match work(Session::Transaction(&transaction)).await {
        Ok(value) => foreign_key_violations(&transaction).await.map(|()| value),
        Err(err) => Err(err),
    };
    match outcome {
        Ok(value) => {
            transaction
                .commit()
                .await
                .map_err(db_err("commit a migration step"))?;
            Ok(value)
        }
        Err(err) => {
            let _ = transaction.rollback().await;
            Err(err)
        }
    }
}

/// Runs `work` on a dedicated session holding the migration lock (PostgreSQL), or on `db`
/// itself (SQLite, where [`step`] serialises instead).
async fn with_lock<T>(
    db: &DatabaseConnection,
    timeout: Duration,
    work: impl AsyncFnOnce(&Locked) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return with_sqlite_session(db, work).await;
    }
    let session = dedicated_session(db).await?;
    let outcome = async {
        acquire(&session, timeout).await?;
        let lock_wait = LockWait::from_env();
        session
            .execute_raw(lock_wait.set_statement())
            .await
            .map_err(db_err("set the lock timeout"))?;
        let locked = Locked {
            holder_pid: Some(backend_pid(&session).await?),
            session: session.clone(),
            watcher: Some(db.clone()),
            lock_wait,
        };
        let result = work(&locked).await;
        // Released explicitly here; if this fails (the connection died), the server has
        // already released it with the session.
        let _ = query_bool(&session, "SELECT pg_advisory_unlock($1)").await;
        result
    }
    .await;
    let _ = session.close_by_ref().await;
    outcome
}

/// Runs `work` on one SQLite connection with foreign key enforcement off (restored after),
/// so a migration can rebuild a table that others reference without cascading (see
/// [`crate::alter`]); each step checks every foreign key before it commits instead. A pool of
/// one connection (the migrator's, an in-memory database) is used as it is; a larger pool
/// gets a dedicated connection for the run, since the setting is per connection.
async fn with_sqlite_session<T>(
    db: &DatabaseConnection,
    work: impl AsyncFnOnce(&Locked) -> Result<T, MigrateError>,
) -> Result<T, MigrateError> {
    let pool = db.get_sqlite_connection_pool();
    let dedicated = pool.options().get_max_connections() > 1;
    let session = if dedicated {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(pool.options().get_acquire_timeout())
            .connect_with((*pool.connect_options()).clone())
            .await
            .map_err(|e| MigrateError::Database {
                operation: "open a connection for the migrations",
                source: DbErr::Conn(sea_orm_migration::sea_orm::RuntimeErr::SqlxError(
                    std::sync::Arc::new(e),
                )),
            })?;
        sea_orm_migration::sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
    } else {
        db.clone()
    };
    let enforced = session
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA foreign_keys",
        ))
        .await
        .map_err(db_err("read the foreign key setting"))?
        .and_then(|row| row.try_get_by_index::<i32>(0).ok())
        == Some(1);
    let set = |on: bool| {
        Statement::from_string(
            DbBackend::Sqlite,
            format!("PRAGMA foreign_keys = {}", if on { "ON" } else { "OFF" }),
        )
    };
    session
        .execute_raw(set(false))
        .await
        .map_err(db_err("turn foreign key enforcement off for the run"))?;
    let locked = Locked {
        session: session.clone(),
        holder_pid: None,
        watcher: None,
        lock_wait: LockWait::default(),
    };
    let outcome = work(&locked).await;
    if enforced {
        let _ = session.execute_raw(set(true)).await;
    }
    if dedicated {
        let _ = session.close_by_ref().await;
    }
    outcome
}

/// Fails a SQLite step whose changes left a row pointing at a missing parent.
async fn foreign_key_violations(transaction: &DatabaseTransaction) -> Result<(), MigrateError> {
    let rows = transaction
        .query_all_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT \"table\", rowid, parent FROM pragma_foreign_key_check",
        ))
        .await
        .map_err(db_err("check the foreign keys"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = rows
        .iter()
        .take(10)
        .map(|row| {
            let table: String = row.try_get_by_index(0).unwrap_or_default();
            let rowid: Option<i64> = row.try_get_by_index(1).unwrap_or_default();
            let parent: String = row.try_get_by_index(2).unwrap_or_default();
            format!("{table} row {} -> {parent}", rowid.unwrap_or_default())
        })
        .collect();
    Err(MigrateError::Database {
        operation: "commit the migration",
        source: DbErr::Migration(format!(
            "{} row(s) would violate foreign keys: {}",
            rows.len(),
            listed.join(", ")
        )),
    })
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
    use service::testing::{TestBackend, TestDatabase};

    #[test]
    fn the_lock_key_is_the_documented_constant() {
        assert_eq!(MIGRATION_LOCK_KEY, 426_561_254_407_358_603);
    }

    /// The session holding the lock is terminated between two steps (as a server restart or
    /// an administrator's `pg_terminate_backend` would): the next step must not run on the
    /// replacement session, which does not hold the lock.
    #[tokio::test]
    async fn a_replaced_lock_session_stops_the_run_before_the_next_step() {
        let db = TestDatabase::new(TestBackend::Postgres).await;
        let conn = sea_orm::Database::connect(db.config().url.expose_secret())
            .await
            .unwrap();
        let admin = conn.clone();
        let mut next_step_ran = false;
        let outcome = with_lock(&conn, Duration::from_secs(5), async |locked| {
            let holder = locked.holder_pid.expect("PostgreSQL runs hold a session");
            let terminated = admin
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_terminate_backend($1, 5000)",
                    [holder.into()],
                ))
                .await
                .unwrap()
                .and_then(|row| row.try_get_by_index::<bool>(0).ok());
            assert_eq!(terminated, Some(true), "the lock session was terminated");
            step(locked, async |_| {
                next_step_ran = true;
                Ok(())
            })
            .await
        })
        .await;
        assert!(
            matches!(outcome, Err(MigrateError::LockLost)),
            "{outcome:?}"
        );
        assert!(!next_step_ran);
        let held = admin
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                 AND ((classid::bigint << 32) | objid::bigint) = $1",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await
            .unwrap()
            .and_then(|row| row.try_get_by_index::<i64>(0).ok());
        assert_eq!(held, Some(0), "the lock went with the terminated session");
    }
}
