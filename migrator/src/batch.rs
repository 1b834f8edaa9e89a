//! Data migrations that keep a big table writable: the table is walked in keyset batches
//! (by its integer key), each batch its own short transaction, so no row stays locked for
//! longer than one batch and no writer waits for the whole migration.
//!
//! A run that dies part-way leaves the batches it committed; the work of each batch must be
//! idempotent (change only the rows that still need it), so running the migration again
//! finishes it, changing nothing twice. Progress (rows walked, total, rows/s, time left) goes
//! to the progress reporter: a line in the log every few seconds, or the migrator's progress
//! bar on a terminal (see [`set_reporter`]).
//!
//! Settings: the run's [`MigratorOptions`](crate::MigratorOptions) (`batch_size`, default
//! 5000 rows, `MIGRATION_BATCH_SIZE`; `batch_pause`, default none, `MIGRATION_BATCH_PAUSE`),
//! which the runner hands to the migrations it runs.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{DbBackend, Statement, TransactionSession, TransactionTrait};

/// Where progress goes.
pub trait Reporter: Send + Sync {
    /// A walk over `total` rows starts.
    fn start(&self, label: &str, total: u64);
    /// `done` of `total` rows walked, `changed` of them changed.
    fn advance(&self, label: &str, done: u64, total: u64, changed: u64);
    /// The walk ended.
    fn finish(&self, label: &str, done: u64, changed: u64, elapsed: Duration);
}

static REPORTER: OnceLock<Box<dyn Reporter>> = OnceLock::new();

/// Sends progress to `reporter` instead of the log, for the rest of the process (the
/// migrator's command line sets a progress bar when stderr is a terminal). Only the first
/// call counts.
pub fn set_reporter(reporter: Box<dyn Reporter>) {
    let _ = REPORTER.set(reporter);
}

/// A line in the log every few seconds.
#[derive(Debug)]
struct LogLines {
    every: Duration,
    started: Instant,
    last: std::sync::Mutex<Option<Instant>>,
}

impl Reporter for LogLines {
    fn start(&self, label: &str, total: u64) {
        tracing::info!("{label}: {total} rows to walk");
    }

    fn advance(&self, label: &str, done: u64, total: u64, changed: u64) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        *last = Some(Instant::now());
        tracing::info!(
            "{}",
            line(label, done, total, changed, self.started.elapsed())
        );
    }

    fn finish(&self, label: &str, done: u64, changed: u64, elapsed: Duration) {
        tracing::info!(
            "{label}: done, {done} rows walked, {changed} changed in {:.1} s",
            elapsed.as_secs_f64()
        );
    }
}

/// `label: 120000/200000 rows (60%), 84000 rows/s, about 1 s left, 119500 changed`.
#[must_use]
pub fn line(label: &str, done: u64, total: u64, changed: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = done as f64 / secs;
    let left = if rate > 0.0 {
        total.saturating_sub(done) as f64 / rate
    } else {
        0.0
    };
    format!(
        "{label}: {done}/{total} rows ({}%), {rate:.0} rows/s, about {left:.0} s left, \
         {changed} changed",
        (done * 100).checked_div(total).unwrap_or(100)
    )
}

/// A keyset walk over `table` by its integer column `key`.
#[derive(Debug, Clone)]
pub struct Batches {
    label: String,
    table: String,
    key: String,
    size: u64,
    pause: Duration,
}

impl Batches {
    /// A walk named `label` (for progress) over `table` by `key`, with the batch size and
    /// pause of the run in progress ([`crate::options::current`]).
    pub fn new(label: &str, table: impl IntoIden, key: impl IntoIden) -> Self {
        let options = crate::options::current();
        let (size, pause) = (options.batch_size, options.batch_pause);
        Self {
            label: label.to_owned(),
            table: table.into_iden().to_string(),
            key: key.into_iden().to_string(),
            size,
            pause,
        }
    }

    /// Rows per batch.
    #[must_use]
    pub fn size(mut self, size: u64) -> Self {
        self.size = Ord::max(size, 1);
        self
    }

    /// Pause between batches.
    #[must_use]
    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }

    /// Walks the table: for each batch, the keys in `(after, upto]`, runs `batch(after, upto)`
    /// in a transaction of its own and commits it. Returns the rows changed.
    ///
    /// An empty table gets one statement over every key, `batch(i64::MIN, i64::MAX)`: it
    /// changes nothing there, and it is the statement `up --sql` prints (offline mode runs the
    /// migrations on an empty scratch database), so the script a DBA applies still does the
    /// work, as one statement over the whole table.
    ///
    /// # Errors
    ///
    /// The first failing batch's error; the batches before it stay committed.
    pub async fn run<C, F>(&self, db: &C, mut batch: F) -> Result<u64, DbErr>
    where
        C: ConnectionTrait + TransactionTrait,
        F: FnMut(i64, i64) -> UpdateStatement,
    {
        let backend = db.get_database_backend();
        let (table, key) = (
            crate::alter::quote(&self.table),
            crate::alter::quote(&self.key),
        );
        let total: i64 = db
            .query_one_raw(Statement::from_string(
                backend,
                format!("SELECT count(*) FROM {table}"),
            ))
            .await?
            .and_then(|r| r.try_get_by_index(0).ok())
            .unwrap_or(0);
        let total = <u64 as TryFrom<i64>>::try_from(total).unwrap_or(0);
        let log = LogLines {
            every: Duration::from_secs(2),
            started: Instant::now(),
            last: std::sync::Mutex::new(None),
        };
        let reporter: &dyn Reporter = REPORTER.get().map_or(&log, |r| r.as_ref());
        reporter.start(&self.label, total);
        let started = Instant::now();
        let next = format!(
            "SELECT CAST(max({key}) AS BIGINT), count(*) FROM (SELECT {key} FROM {table} WHERE {key} > {p} \
             ORDER BY {key} LIMIT {size}) AS batch",
            p = if backend == DbBackend::Postgres {
                "$1"
            } else {
                "?"
            },
            size = self.size
        );
        let (mut after, mut done, mut changed) = (i64::MIN, 0u64, 0u64);
        loop {
            let row = db
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    &next,
                    [after.into()],
                ))
                .await?;
            let (upto, walked): (Option<i64>, i64) = match row {
                Some(row) => (row.try_get_by_index(0)?, row.try_get_by_index(1)?),
                None => (None, 0),
            };
            let Some(upto) = upto else {
                if done == 0 {
                    let transaction = db.begin().await?;
                    let result = transaction.execute(&batch(i64::MIN, i64::MAX)).await?;
                    transaction.commit().await?;
                    changed += result.rows_affected();
                }
                break;
            };
            let transaction = db.begin().await?;
            let result = transaction.execute(&batch(after, upto)).await?;
            transaction.commit().await?;
            changed += result.rows_affected();
            done += <u64 as TryFrom<i64>>::try_from(walked).unwrap_or(0);
            reporter.advance(&self.label, done, Ord::max(total, done), changed);
            after = upto;
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        }
        reporter.finish(&self.label, done, changed, started.elapsed());
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_has_rate_and_time_left() {
        let text = line("lower", 50, 200, 40, Duration::from_secs(1));
        assert_eq!(
            text,
            "lower: 50/200 rows (25%), 50 rows/s, about 3 s left, 40 changed"
        );
    }
}
