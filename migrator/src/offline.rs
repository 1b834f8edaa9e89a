//! Offline mode (Alembic's `--sql`, Prisma's `migrate diff --script`): `up --sql` and
//! `down --sql` print the SQL the migrations would run on the database of the URL, without
//! changing it.
//!
//! The database is only read (which migrations are applied). A scratch database of the same
//! backend (see [`crate::autogen::shadow`]) is brought to the same point by applying those
//! migrations, then the requested ones run there for real while every statement they send is
//! recorded (SeaORM's metric callback); the recording is the script: one transaction per
//! migration (but for those that are not one on PostgreSQL), with its row in
//! `seaql_migrations` and its checksum. Reads are left out. What a
//! data migration does depends on rows, and the scratch database has none: the script holds
//! the statements it ran there (for the lowercase migration, its `UPDATE`), not what it would
//! decide on real rows.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use sea_orm_migration::sea_orm::{DatabaseConnection, DbBackend};

use crate::MigrationStatus;
use crate::autogen::shadow::Shadow;

/// Which way, and how many migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Apply this many pending migrations.
    Up(usize),
    /// Roll back this many applied migrations.
    Down(usize),
}

/// The script for `direction` on a database whose migrations are `status`.
///
/// # Errors
///
/// A message naming what failed.
pub async fn script<M: crate::MigrationSources>(
    url: &str,
    shadow_url: Option<&str>,
    status: &MigrationStatus,
    direction: Direction,
) -> Result<String, String> {
    let all: Vec<String> = M::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let applied: Vec<String> = status.applied.iter().map(|a| a.version.clone()).collect();
    if all[..applied.len().min(all.len())] != applied[..] {
        return Err(format!(
            "offline mode needs the applied migrations to be the first ones of this build, in \
             order; this database has {}",
            applied.join(", ")
        ));
    }
    let shadow = Shadow::open(url, shadow_url).await?;
    let mut scratch = shadow.migrated.clone();
    let outcome = record::<M>(&mut scratch, &applied, &all, direction).await;
    drop(scratch);
    shadow.close().await;
    outcome
}

async fn record<M: crate::MigrationSources>(
    scratch: &mut DatabaseConnection,
    applied: &[String],
    all: &[String],
    direction: Direction,
) -> Result<String, String> {
    let checksums = crate::checksum::Checksums::of::<M>();
    let failed = |what: &str| {
        let what = what.to_owned();
        move |e: sea_orm_migration::DbErr| format!("cannot {what} on the scratch database: {e}")
    };
    let backend = scratch.get_database_backend();
    let recording = Arc::new(AtomicBool::new(false));
    let statements: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (recording, statements) = (recording.clone(), statements.clone());
        scratch.set_metric_callback(move |info| {
            if !recording.load(Ordering::Relaxed) || info.failed {
                return;
            }
            let sql = info.statement.to_string();
            let head = sql.trim_start().to_ascii_uppercase();
            if head.starts_with("SELECT") || head.starts_with("SHOW") || head.starts_with("PRAGMA")
            {
                return;
            }
            if let Ok(mut list) = statements.lock() {
                list.push(sql);
            }
        });
    }
    if backend == DbBackend::Sqlite {
        // As the migrator runs SQLite migrations (see `crate::runner`): a table rebuild
        // (`crate::alter`) needs foreign key enforcement off. One connection: it stays off.
        use sea_orm_migration::sea_orm::ConnectionTrait as _;
        scratch
            .execute_unprepared("PRAGMA foreign_keys = OFF")
            .await
            .map_err(failed("turn foreign key enforcement off"))?;
    }
    if !applied.is_empty() {
        M::up(
            &*scratch,
            Some(u32::try_from(applied.len()).unwrap_or(u32::MAX)),
        )
        .await
        .map_err(failed("apply the applied migrations"))?;
        crate::checksum::record(&*scratch, &checksums, applied, true)
            .await
            .map_err(failed("record checksums"))?;
    }
    let names: Vec<String> = match direction {
        Direction::Up(n) => all[applied.len()..].iter().take(n).cloned().collect(),
        Direction::Down(n) => applied.iter().rev().take(n).cloned().collect(),
    };
    let mut out = String::new();
    out.push_str(&format!(
        "-- cargo migrate {} --sql: {} migration(s) for {}, generated offline.\n",
        if matches!(direction, Direction::Up(_)) {
            "up"
        } else {
            "down"
        },
        names.len(),
        if backend == DbBackend::Postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        },
    ));
    if backend == DbBackend::Sqlite {
        // As the migrator runs SQLite migrations (see `crate::runner`): a rebuilt table that
        // others reference must not cascade.
        out.push_str("PRAGMA foreign_keys = OFF;\n");
    }
    recording.store(true, Ordering::Relaxed);
    // SeaORM creates its migrations table `IF NOT EXISTS` before every migration: once is enough.
    let mut idempotent = std::collections::BTreeSet::new();
    for name in &names {
        if let Ok(mut list) = statements.lock() {
            list.clear();
        }
        match direction {
            Direction::Up(_) => {
                M::up(&*scratch, Some(1)).await.map_err(failed(name))?;
                crate::checksum::record(&*scratch, &checksums, std::slice::from_ref(name), true)
                    .await
                    .map_err(failed(name))?;
            }
            Direction::Down(_) => {
                M::down(&*scratch, Some(1)).await.map_err(failed(name))?;
                crate::checksum::forget(&*scratch, std::slice::from_ref(name))
                    .await
                    .map_err(failed(name))?;
            }
        }
        // A migration that is not a transaction on PostgreSQL (a concurrent index, batches)
        // is not one in the script either.
        let transactional = backend != DbBackend::Postgres
            || M::migrations()
                .iter()
                .find(|m| m.name() == name)
                .is_none_or(|m| m.use_transaction() != Some(false));
        out.push_str(&format!("\n-- {name}\n"));
        if transactional {
            out.push_str("BEGIN;\n");
        }
        if let Ok(list) = statements.lock() {
            for statement in list.iter() {
                if statement.contains(" IF NOT EXISTS ") && !idempotent.insert(statement.clone()) {
                    continue;
                }
                out.push_str(statement.trim_end().trim_end_matches(';'));
                out.push_str(";\n");
            }
        }
        if transactional {
            out.push_str("COMMIT;\n");
        }
    }
    recording.store(false, Ordering::Relaxed);
    Ok(out)
}
