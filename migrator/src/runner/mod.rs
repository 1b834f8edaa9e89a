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

mod postgres;
mod privileges;
mod sqlite;

use std::time::{Duration, Instant};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DatabaseConnection, DatabaseExecutor, DatabaseTransaction};

use crate::checksum::{Checksums, MigrationSources};
use crate::options::MigratorOptions;
use crate::{MigrationStatus, options};

pub use postgres::{Blockers, MIGRATION_LOCK_KEY, Postgres, backoff, describe_blockers};
pub use sqlite::Sqlite;

/// The gauge set after each migration this process applies or rolls back: how long it took, in
/// seconds, labelled `direction` (`up` or `down`); recorded through the `metrics` facade, so it
/// goes wherever the process installed a recorder (nowhere in the CLI).
pub const LAST_DURATION_METRIC: &str = "db_migration_last_duration_seconds";

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
    /// The session's role cannot run migrations (PostgreSQL): it is not the schema's owner
    /// (an application role, `DB_APP_ROLE`, used by mistake).
    #[error(
        "role {role:?} cannot migrate this database: it lacks {}. Run the migrations as the \
         role that owns the schema (DATABASE_DIRECT_URL, or the migrator's -u); DB_APP_ROLE \
         then grants this role what the service needs",
        .lacks.join(", and ")
    )]
    NotPermitted {
        /// The session's role.
        role: String,
        /// What it lacks, one privilege each.
        lacks: Vec<String>,
    },
    /// The application role (`DB_APP_ROLE`) cannot be granted its privileges.
    #[error("DB_APP_ROLE={role}: {reason}")]
    AppRole {
        /// The role.
        role: String,
        /// Why not.
        reason: String,
    },
    /// A database error outside any one migration (reading the status, the lock, dropping).
    #[error("cannot {operation}: {source}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The database's error.
        source: DbErr,
    },
}

/// Where one step of a run executes: the locked session (PostgreSQL), or an immediate
/// transaction (SQLite).
#[derive(Clone, Copy)]
pub enum Session<'a> {
    /// The run's own connection.
    Connection(&'a DatabaseConnection),
    /// A transaction of the step.
    Transaction(&'a DatabaseTransaction),
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connection(_) => "Session::Connection",
            Self::Transaction(_) => "Session::Transaction",
        })
    }
}

impl<'a> Session<'a> {
    /// The executor SeaORM's migrator and the statements take.
    #[must_use]
    pub fn exec(self) -> DatabaseExecutor<'a> {
        match self {
            Self::Connection(c) => c.into(),
            Self::Transaction(t) => t.into(),
        }
    }
}

/// One backend's way of running migrations one migrator at a time (as sqlx's `Migrate` is
/// per driver): [`Postgres`] holds an advisory lock on a session of its own, [`Sqlite`] runs
/// each step in an immediate transaction. The runner's loop, retries and targets are the same
/// for both.
// Used with the two concrete backends only, whose futures are `Send` (a comparison runs the
// runner in a spawned task), so the trait names no auto-trait bounds.
#[allow(async_fn_in_trait)]
pub trait Backend: Sized {
    /// Opens the run's session for `db` (taking the lock where there is one).
    async fn open(db: &DatabaseConnection, options: &MigratorOptions)
    -> Result<Self, MigrateError>;

    /// The run's connection, for work outside a step.
    fn connection(&self) -> &DatabaseConnection;

    /// Runs one step of the run: re-reading the status and applying or rolling back one
    /// migration, atomically with respect to other migrators.
    async fn step<T>(
        &self,
        work: impl AsyncFnOnce(Session<'_>) -> Result<T, MigrateError>,
    ) -> Result<T, MigrateError>;

    /// Starts watching what blocks the session, for the error after the last retry.
    fn watch_blockers(&self) -> Option<Blockers> {
        None
    }

    /// Whether a failed step's error is a lock timeout worth trying again after a pause.
    fn is_lock_timeout(&self, _err: &DbErr) -> bool {
        false
    }

    /// Releases the lock and the session.
    async fn close(self);
}

/// Runs `$body` with `$run` bound to the backend of `$db` opened for a run (the lock taken),
/// with the options as the data migrations' [`options::current`], and closes it on every exit
/// path.
macro_rules! on_backend {
    ($db:expr, $options:expr, |$run:ident| $body:expr) => {{
        let (db, options): (&DatabaseConnection, &MigratorOptions) = ($db, $options);
        options::scope(options.clone(), async {
            if db.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
                privileges::check(db).await?;
                let backend = Postgres::open(db, options).await?;
                let $run = &backend;
                let outcome = $body;
                backend.close().await;
                outcome
            } else {
                let backend = Sqlite::open(db, options).await?;
                let $run = &backend;
                let outcome = $body;
                backend.close().await;
                outcome
            }
        })
        .await
    }};
}

fn db_err(operation: &'static str) -> impl FnOnce(DbErr) -> MigrateError {
    move |source| MigrateError::Database { operation, source }
}

/// Applies pending migrations of `M` up to `target`, holding the migration lock, and returns
/// the names of those it applied. `db` may be any connection (a service's pool): on PostgreSQL
/// a dedicated session is opened for the run. An applied migration whose source changed stops
/// the run unless `options.allow_changed`.
///
/// # Errors
///
/// [`MigrateError`] naming the failing migration, an unknown target, unknown applied
/// migrations, or a lock timeout.
pub async fn up<M: MigrationSources>(
    db: &DatabaseConnection,
    target: UpTo,
    options: &MigratorOptions,
) -> Result<Vec<String>, MigrateError> {
    on_backend!(db, options, |run| async {
        let applied = up_locked::<M, _>(run, &target, options).await?;
        grant_app_role(run.connection(), options).await?;
        Ok(applied)
    }
    .await)
}

/// Grants `DB_APP_ROLE` its privileges after a run that applied migrations (PostgreSQL; on
/// SQLite there are no roles).
async fn grant_app_role(
    db: &DatabaseConnection,
    options: &MigratorOptions,
) -> Result<(), MigrateError> {
    match &options.app_role {
        Some(role)
            if db.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres =>
        {
            privileges::grant(db, role).await
        }
        _ => Ok(()),
    }
}

/// Rolls back applied migrations of `M` down to `target`, holding the migration lock, and
/// returns the names of those rolled back, newest first.
///
/// # Errors
///
/// As for [`up`]; [`MigrateError::NotApplied`] when the target is not applied.
pub async fn down<M: MigrationSources>(
    db: &DatabaseConnection,
    target: DownTo,
    options: &MigratorOptions,
) -> Result<Vec<String>, MigrateError> {
    on_backend!(db, options, |run| down_locked::<M, _>(
        run, &target, options
    )
    .await)
}

/// Rolls back every applied migration, then applies them all again (`refresh`), under one hold
/// of the lock.
///
/// # Errors
///
/// As for [`up`] and [`down`].
pub async fn refresh<M: MigrationSources>(
    db: &DatabaseConnection,
    options: &MigratorOptions,
) -> Result<(), MigrateError> {
    on_backend!(db, options, |run| {
        match down_locked::<M, _>(run, &DownTo::Nothing, options).await {
            Ok(_) => match up_locked::<M, _>(run, &UpTo::Latest, options).await {
                Ok(_) => grant_app_role(run.connection(), options).await,
                Err(err) => Err(err),
            },
            Err(err) => Err(err),
        }
    })
}

/// Rolls back every applied migration and drops the migrations table (`reset`).
///
/// # Errors
///
/// As for [`down`].
pub async fn reset<M: MigrationSources>(
    db: &DatabaseConnection,
    options: &MigratorOptions,
) -> Result<(), MigrateError> {
    on_backend!(db, options, |run| {
        async {
            down_locked::<M, _>(run, &DownTo::Nothing, options).await?;
            crate::checksum::drop_table(run.connection())
                .await
                .map_err(db_err("drop the checksum table"))?;
            M::uninstall(run.connection())
                .await
                .map_err(db_err("drop the migrations table"))
        }
        .await
    })
}

/// Drops every table (and, on PostgreSQL, every type) of the schema, then applies every
/// migration (`fresh`).
///
/// # Errors
///
/// As for [`up`].
pub async fn fresh<M: MigrationSources>(
    db: &DatabaseConnection,
    options: &MigratorOptions,
) -> Result<(), MigrateError> {
    on_backend!(db, options, |run| {
        async {
            M::fresh(run.connection())
                .await
                .map_err(db_err("drop everything and re-apply the migrations"))?;
            let applied = M::migrations()
                .iter()
                .map(|m| m.name().to_owned())
                .collect::<Vec<_>>();
            crate::checksum::record(run.connection(), &Checksums::of::<M>(), &applied, true)
                .await
                .map_err(db_err("record the migrations' checksums"))?;
            grant_app_role(run.connection(), options).await
        }
        .await
    })
}

/// How many of the pending migrations `target` means (`status.pending` in the order `up`
/// applies them). The one resolution of an `up` target, for the runner and offline SQL.
///
/// # Errors
///
/// [`MigrateError::NoSuchMigration`] for a version this build does not have.
pub fn resolve_up(status: &MigrationStatus, target: &UpTo) -> Result<usize, MigrateError> {
    Ok(match target {
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
    })
}

/// How many of the `applied` migrations (oldest first) `target` rolls back. The one
/// resolution of a `down` target, for the runner and offline SQL.
///
/// # Errors
///
/// [`MigrateError::NotApplied`] for a pending version, [`MigrateError::NoSuchMigration`] for
/// one this build does not have.
pub fn resolve_down(
    status: &MigrationStatus,
    applied: &[String],
    target: &DownTo,
) -> Result<usize, MigrateError> {
    Ok(match target {
        DownTo::Steps(n) => applied.len().min(*n as usize),
        DownTo::Nothing => applied.len(),
        DownTo::Version(version) => match applied.iter().position(|a| a == version) {
            Some(i) => applied.len() - i - 1,
            None if status.pending.contains(version) => {
                return Err(MigrateError::NotApplied(version.clone()));
            }
            None => return Err(MigrateError::NoSuchMigration(version.clone())),
        },
    })
}

/// Which way a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

async fn up_locked<M: MigrationSources, B: Backend>(
    run: &B,
    target: &UpTo,
    options: &MigratorOptions,
) -> Result<Vec<String>, MigrateError> {
    let checksums = Checksums::of::<M>();
    let status = run
        .step(async |session| {
            let status = checked_status::<M>(session).await?;
            adopt_checksums(session, &status, &checksums, options.allow_changed).await?;
            Ok(status)
        })
        .await?;
    let count = resolve_up(&status, target)?;
    if count == 0 {
        tracing::info!("No pending migrations to apply");
    }
    let names: Vec<String> = status.pending.into_iter().take(count).collect();
    migrate_each::<M, B>(run, Direction::Up, names, &checksums, options).await
}

async fn down_locked<M: MigrationSources, B: Backend>(
    run: &B,
    target: &DownTo,
    options: &MigratorOptions,
) -> Result<Vec<String>, MigrateError> {
    let status = run
        .step(async |session| checked_status::<M>(session).await)
        .await?;
    let applied = applied_in_code_order::<M>(&status);
    let count = resolve_down(&status, &applied, target)?;
    if count == 0 {
        tracing::info!("No migrations to roll back");
    }
    let names: Vec<String> = applied.into_iter().rev().take(count).collect();
    migrate_each::<M, B>(run, Direction::Down, names, &Checksums::of::<M>(), options).await
}

/// Refuses (or, allowed, warns about) applied migrations edited since they were applied; a
/// database migrated before checksums were kept adopts this build's as its baseline, and one
/// that recorded a superseded source gets the current.
async fn adopt_checksums(
    session: Session<'_>,
    status: &MigrationStatus,
    checksums: &Checksums,
    allow_changed: bool,
) -> Result<(), MigrateError> {
    let applied: Vec<String> = status.applied.iter().map(|a| a.version.clone()).collect();
    let recorded = crate::checksum::recorded(&session.exec())
        .await
        .map_err(db_err("read the migrations' checksums"))?;
    let edited = checksums.changed(applied.iter().map(String::as_str), &recorded);
    if !edited.is_empty() {
        if !allow_changed {
            return Err(MigrateError::Changed(edited));
        }
        tracing::warn!(
            "Going on although these applied migrations changed since they were applied: {}",
            edited.join(", ")
        );
    }
    let superseded: Vec<String> = applied
        .iter()
        .filter(|v| {
            recorded.get(*v).is_some_and(|r| {
                Some(r.as_str()) != checksums.current(v) && checksums.accepts(v, r)
            })
        })
        .cloned()
        .collect();
    if applied.iter().any(|v| !recorded.contains_key(v)) || !superseded.is_empty() {
        let record = db_err("record the migrations' checksums");
        crate::checksum::record(&session.exec(), checksums, &applied, false)
            .await
            .map_err(record)?;
        crate::checksum::record(&session.exec(), checksums, &superseded, true)
            .await
            .map_err(db_err("record the migrations' checksums"))?;
    }
    Ok(())
}

/// Applies (or rolls back) each of `names` in order, each in a step of its own that first
/// checks it is still next (another migrator may have done it), trying a step that timed out
/// on a lock again after a pause, up to `options.lock_retries` times. The one retry loop.
async fn migrate_each<M: MigrationSources, B: Backend>(
    run: &B,
    direction: Direction,
    names: Vec<String>,
    checksums: &Checksums,
    options: &MigratorOptions,
) -> Result<Vec<String>, MigrateError> {
    let mut done = Vec::with_capacity(names.len());
    for name in names {
        let started = Instant::now();
        let mut tries = 0;
        let ran = loop {
            let watch = run.watch_blockers();
            let outcome = run
                .step(async |session| migrate_one::<M>(session, direction, &name, checksums).await)
                .await;
            let blocked_by = watch.and_then(Blockers::stop);
            match outcome {
                Err(MigrateError::Failed { source, .. }) if run.is_lock_timeout(&source) => {
                    tries += 1;
                    let blocked_by = blocked_by.unwrap_or_else(|| {
                        "a session that released its lock before it could be named".to_owned()
                    });
                    if tries > options.lock_retries {
                        return Err(MigrateError::LockWait {
                            migration: name,
                            tries,
                            wait: options.lock_wait,
                            blocked_by,
                        });
                    }
                    let pause = backoff(tries);
                    tracing::warn!(
                        "{name}: no lock within {} ms (blocked by {blocked_by}); nothing \
                         applied, trying again in {} ms ({tries}/{})",
                        options.lock_wait.as_millis(),
                        pause.as_millis(),
                        options.lock_retries
                    );
                    tokio::time::sleep(pause).await;
                }
                other => break other?,
            }
        };
        if ran {
            metrics::gauge!(LAST_DURATION_METRIC, "direction" => direction.name())
                .set(started.elapsed());
            done.push(name);
        }
    }
    Ok(done)
}

/// One migration, one way, if it is still the next one; whether it ran.
async fn migrate_one<M: MigrationSources>(
    session: Session<'_>,
    direction: Direction,
    name: &str,
    checksums: &Checksums,
) -> Result<bool, MigrateError> {
    // Read again inside the step: on SQLite another migrator may have done it.
    let now = checked_status::<M>(session).await?;
    let next = match direction {
        Direction::Up => now.pending.first().cloned(),
        Direction::Down => applied_in_code_order::<M>(&now).last().cloned(),
    };
    if next.as_deref() != Some(name) {
        return Ok(false);
    }
    let failed = |source| MigrateError::Failed {
        migration: name.to_owned(),
        direction: direction.name(),
        source,
    };
    let names = [name.to_owned()];
    match direction {
        Direction::Up => {
            M::up(session.exec(), Some(1)).await.map_err(failed)?;
            crate::checksum::record(&session.exec(), checksums, &names, true)
                .await
                .map_err(db_err("record the migration's checksum"))?;
        }
        Direction::Down => {
            M::down(session.exec(), Some(1)).await.map_err(failed)?;
            crate::checksum::forget(&session.exec(), &names)
                .await
                .map_err(db_err("forget the migration's checksum"))?;
        }
    }
    Ok(true)
}

/// The applied migrations in the code's order (the order `down` undoes them in reverse).
fn applied_in_code_order<M: MigratorTrait>(status: &MigrationStatus) -> Vec<String> {
    M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .filter(|name| status.applied.iter().any(|a| &a.version == name))
        .collect()
}

async fn checked_status<M: MigrationSources>(
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
