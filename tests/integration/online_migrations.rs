//! The lowercase migration and the `lower(email)` index on a big `user` table, with 8 writers
//! going through the repository meanwhile: the writers' latency during the migration, for
//! the migrations as they are (keyset batches, a concurrent index) next to the same run with
//! the single-transaction versions they replaced. PostgreSQL only: on SQLite one writer at a
//! time is the database's own rule.
//!
//! `ONLINE_MIGRATION_ROWS` sets the table size (default 200 000); the figures in
//! `docs/PERFORMANCE.md` come from `ONLINE_MIGRATION_ROWS=1000000 cargo test --release -p db
//! --test integration online_migrations -- --nocapture`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use migration::{
    MigrationName, MigrationTrait, Migrator, MigratorTrait, SchemaManager, async_trait,
};
use migrator::MigratorOptions;
use migrator::runner::{self, UpTo};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend, Statement};
use service::user::{self, UserChanges};
use test_support::{TestBackend, TestDatabase};

/// The lowercase migration as it was: one `UPDATE` in one transaction.
struct OneUpdate;

impl MigrationName for OneUpdate {
    fn name(&self) -> &str {
        "m20261127_000002_lowercase_user_emails"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OneUpdate {
    async fn up(&self, manager: &SchemaManager) -> Result<(), sea_orm::DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE \"user\" SET email = lower(email) WHERE email <> lower(email)",
            )
            .await
            .map(|_| ())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

/// The index migration as it was: a plain `CREATE UNIQUE INDEX` (blocks writes) in a
/// transaction.
struct BlockingIndex;

impl MigrationName for BlockingIndex {
    fn name(&self) -> &str {
        "m20261127_000003_create_user_email_lower_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for BlockingIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), sea_orm::DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX user_email_lower_key ON \"user\" (lower(email))",
            )
            .await
            .map(|_| ())
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

struct SingleTransaction;

impl migrator::MigrationSources for SingleTransaction {}

impl MigratorTrait for SingleTransaction {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut list = Migrator::migrations();
        list.truncate(1);
        list.push(Box::new(OneUpdate));
        list.push(Box::new(BlockingIndex));
        list
    }
}

#[derive(Debug)]
struct Run {
    migration: Duration,
    writes: usize,
    p99: Duration,
    worst: Duration,
}

async fn run<M: migrator::MigrationSources>(rows: u32) -> Run {
    let db = TestDatabase::empty(TestBackend::Postgres).await;
    let url = db.config().url.expose_secret().to_string();
    let conn = db.connection();
    runner::up::<M>(
        conn,
        UpTo::Version("m20261127_000001_create_user_table".into()),
        &MigratorOptions::default(),
    )
    .await
    .unwrap();
    conn.execute_raw(Statement::from_string(
        DbBackend::Postgres,
        format!(
            "INSERT INTO \"user\" (email, name) \
             SELECT 'User' || g || '@Example.COM', 'u' || g FROM generate_series(1, {rows}) g"
        ),
    ))
    .await
    .unwrap();
    conn.execute_unprepared("VACUUM ANALYZE \"user\"")
        .await
        .unwrap();

    let mut options = ConnectOptions::new(url);
    options.max_connections(10).min_connections(8);
    let pool = Database::connect(options).await.unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (pool, running) = (pool.clone(), running.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n: u32 = w;
                while running.load(Ordering::Relaxed) {
                    n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let id = i32::try_from(1 + n % rows).unwrap();
                    let started = Instant::now();
                    user::update(
                        &pool,
                        id,
                        UserChanges {
                            name: Some(format!("writer {w}")),
                            ..Default::default()
                        },
                    )
                    .await
                    .unwrap();
                    latencies.push(started.elapsed());
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    runner::up::<M>(conn, UpTo::Latest, &MigratorOptions::default())
        .await
        .unwrap();
    let migration = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for writer in writers {
        latencies.extend(writer.await.unwrap());
    }
    latencies.sort();
    let lowered: i64 = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM \"user\" WHERE email <> lower(email)",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert_eq!(lowered, 0);
    pool.close().await.unwrap();
    Run {
        migration,
        writes: latencies.len(),
        p99: latencies[latencies.len() * 99 / 100],
        worst: *latencies.last().unwrap(),
    }
}

#[tokio::test]
async fn writers_wait_for_one_batch_at_most_not_for_the_whole_migration() {
    let rows = std::env::var("ONLINE_MIGRATION_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let before = run::<SingleTransaction>(rows).await;
    let after = run::<Migrator>(rows).await;
    for (label, r) in [
        ("single transaction", &before),
        ("batched + concurrent", &after),
    ] {
        println!(
            "{rows} rows, {label}: migration {:.2} s, {} writes by 8 writers, p99 {:.1} ms, \
             worst {:.1} ms",
            r.migration.as_secs_f64(),
            r.writes,
            r.p99.as_secs_f64() * 1000.0,
            r.worst.as_secs_f64() * 1000.0
        );
    }
    assert!(
        after.worst < Duration::from_secs(1),
        "no write waits a second with the batched migrations: {after:?}"
    );
    assert!(
        after.worst < before.worst,
        "the single-transaction migrations block writers longer: {before:?} vs {after:?}"
    );
}
