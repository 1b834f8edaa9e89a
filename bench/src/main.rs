//! `db-bench`: this project's implementation of the benchmark contract (`bench/README.md`),
//! run by `bench/run` as the `db` implementation.
//!
//! Usage: `db-bench <workload>`. `bench/run` prepares the table first; this binary runs and
//! times the workload through the project's public API and prints exactly one JSON line on
//! stdout (logs go to stderr). Exit status 2: workload not supported.
//!
//! | workload     | what runs                                                                |
//! | ------------ | ------------------------------------------------------------------------ |
//! | point-select | `service::user::get` on the `DatabaseService` (the primary executor)   |
//! | page         | `service::user::list` (50 rows after a random id)                       |
//! | insert-one   | `service::user::create` (validation, normalisation, `INSERT … RETURNING`) |
//! | bulk-insert  | `service::user::create_many` on the service's pool (`COPY`)             |
//! | lowercase    | `migration::data::lowercase_emails`, the data migration's own code      |
//! | health       | `DatabaseService::health()`, the full report                            |
//! | writers      | `BENCH_C` writers `user::update` random rows while the lowercase migration runs, batched (`BENCH_MIGRATION=batched`, the migration's code) or as one `UPDATE` in one transaction (`single`); the line carries the writers' latency over time |
//!
//! The pool is the service's: `DatabaseService::connect` with `DatabaseConfig` defaults except
//! `max_connections = min_connections = BENCH_P`, so the checkout-ping policy is the service's
//! default (ping only connections idle for 30 s or more); every line says so in
//! `checkout_ping`.
//!
//! `DB_BENCH_METRICS=prometheus` installs the Prometheus recorder the `api` crate installs, so
//! every figure the data layer records is kept, as in a deployed service; unset or `off`,
//! recording does nothing. `BENCH_REPLICA_URL`: a streaming standby; point-select then reads
//! through `DatabaseService::reader()` (`bench/scale.sh`).
//!
//! Every use of the service's API is in the [`product`] module.

use std::time::{Duration, Instant};

use bench_harness::{BoxErr, Cfg, Measured, emit, env_or};
use serde_json::json;

mod product;

const WORKLOADS: [&str; 7] = [
    "point-select",
    "page",
    "insert-one",
    "bulk-insert",
    "lowercase",
    "health",
    "writers",
];

/// `BENCH_MIGRATION` of the writers workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// The migration's own code: keyset batches, each in its own transaction.
    Batched,
    /// One `UPDATE` over the table in one transaction, as the migration was first written.
    Single,
}

async fn point_select(cfg: &Cfg, db: &product::Db) -> Result<Measured, BoxErr> {
    let (db, n) = (db.clone(), cfg.n);
    bench_harness::run_concurrent(cfg, cfg.point_ops, move |_| {
        let db = db.clone();
        async move { db.get(i32::try_from(bench_harness::random_id(n))?).await }
    })
    .await
}

async fn page(cfg: &Cfg, db: &product::Db) -> Result<Measured, BoxErr> {
    let (db, c) = (db.clone(), cfg.clone());
    bench_harness::run_concurrent(cfg, cfg.point_ops, move |_| {
        let (db, after) = (db.clone(), c.random_after());
        async move { db.page(i32::try_from(after)?).await }
    })
    .await
}

async fn insert_one(cfg: &Cfg, db: &product::Db) -> Result<Measured, BoxErr> {
    let db = db.clone();
    bench_harness::run_concurrent(cfg, cfg.insert_ops, move |i| {
        let db = db.clone();
        async move {
            db.create(format!("user{i}@bench.example"), format!("User {i}"))
                .await
        }
    })
    .await
}

async fn bulk_insert(cfg: &Cfg, db: &product::Db) -> Result<Measured, BoxErr> {
    // Input built before the clock starts, as in every implementation.
    let rows = product::new_users(cfg.bulk_rows);
    let m = bench_harness::time_one(db.create_many(&rows)).await?;
    if m.ops != cfg.bulk_rows {
        return Err(format!("create_many inserted {} rows of {}", m.ops, cfg.bulk_rows).into());
    }
    Ok(m)
}

async fn lowercase(cfg: &Cfg, db: &product::Db) -> Result<Measured, BoxErr> {
    let m = bench_harness::time_one(db.lowercase(Migration::Batched)).await?;
    if m.ops != cfg.lower_rows {
        return Err(format!("lowercase changed {} rows of {}", m.ops, cfg.lower_rows).into());
    }
    Ok(m)
}

async fn health(cfg: &Cfg, db: &product::Db) -> Result<Measured, BoxErr> {
    db.record_migrations_as_applied().await?;
    let mut m = bench_harness::run_sequential(cfg.health_ops, || db.health()).await?;
    m.extra.insert("report".into(), "healthy".into());
    Ok(m)
}

/// Lead-in and tail of the writers workload around the migration.
const WRITERS_MARGIN: Duration = Duration::from_millis(500);
/// Width of one point of the writers' timeline.
const BUCKET_MS: u64 = 50;

async fn writers(cfg: &Cfg, db: &product::Db) -> Result<Measured, BoxErr> {
    let migration = match env_or("BENCH_MIGRATION", "batched".to_owned())?.as_str() {
        "batched" => Migration::Batched,
        "single" => Migration::Single,
        other => {
            return Err(format!("BENCH_MIGRATION={other:?}: batched or single").into());
        }
    };
    let rows = i32::try_from(cfg.lower_rows)?;
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..cfg.c)
        .map(|w| {
            let (db, running) = (db.clone(), running.clone());
            tokio::spawn(async move {
                // (start since t0, latency), in µs
                let mut writes: Vec<(u64, u64)> = Vec::new();
                while running.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = fastrand::i32(1..=rows);
                    let started = Instant::now();
                    db.rename(id, format!("writer {w}")).await?;
                    writes.push((
                        started.duration_since(t0).as_micros() as u64,
                        started.elapsed().as_micros() as u64,
                    ));
                }
                Ok::<_, BoxErr>(writes)
            })
        })
        .collect();
    tokio::time::sleep(WRITERS_MARGIN).await;
    let start = t0.elapsed();
    let mut m = bench_harness::time_one(db.lowercase(migration)).await?;
    let end = t0.elapsed();
    tokio::time::sleep(WRITERS_MARGIN).await;
    running.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut writes = Vec::new();
    for task in tasks {
        writes.extend(task.await??);
    }
    writes.sort_unstable();
    let (start_us, end_us) = (start.as_micros() as u64, end.as_micros() as u64);
    // Latencies of the writes that overlapped the migration.
    m.lat_ns = writes
        .iter()
        .filter(|(at, lat)| at + lat >= start_us && *at <= end_us)
        .map(|(_, lat)| lat * 1000)
        .collect();
    // Timeline: per bucket of BUCKET_MS (by when the write started, relative to the
    // migration's start), the writes started and the slowest of them.
    let mut timeline: Vec<(i64, u64, u64)> = Vec::new();
    for (at, lat) in &writes {
        let bucket =
            (*at as i64 - start_us as i64).div_euclid(BUCKET_MS as i64 * 1000) * BUCKET_MS as i64;
        match timeline.last_mut() {
            Some((b, count, worst)) if *b == bucket => {
                *count += 1;
                *worst = (*worst).max(*lat);
            }
            _ => timeline.push((bucket, 1, *lat)),
        }
    }
    let worst = m.lat_ns.iter().max().copied().unwrap_or(0);
    m.extra.extend([
        (
            "migration".to_owned(),
            json!(if migration == Migration::Batched {
                "batched"
            } else {
                "single"
            }),
        ),
        ("writes".to_owned(), json!(m.lat_ns.len())),
        ("writer_max_us".to_owned(), json!(worst / 1000)),
        ("migration_ms".to_owned(), json!((end - start).as_millis())),
        ("bucket_ms".to_owned(), json!(BUCKET_MS)),
        (
            "timeline".to_owned(),
            json!(
                timeline
                    .iter()
                    .map(|(b, n, w)| json!([b, n, w / 1000]))
                    .collect::<Vec<_>>()
            ),
        ),
    ]);
    Ok(m)
}

async fn run(workload: &str) -> Result<(), BoxErr> {
    let cfg = Cfg::from_env("db")?;
    let metrics = match std::env::var("DB_BENCH_METRICS").as_deref() {
        Err(_) | Ok("" | "off") => false,
        Ok("prometheus") => true,
        Ok(other) => return Err(format!("DB_BENCH_METRICS={other:?}: prometheus or off").into()),
    };
    if metrics {
        product::install_metrics_recorder()?;
    }
    let replica = std::env::var("BENCH_REPLICA_URL")
        .ok()
        .filter(|url| !url.is_empty());
    // The writers and the migration share the pool: two connections more than the writers.
    let pool = if workload == "writers" {
        cfg.p.max(u32::try_from(cfg.c)? + 2)
    } else {
        cfg.p
    };
    let db = product::Db::connect(&cfg, pool, replica.as_deref()).await?;
    let mut m = match workload {
        "point-select" => point_select(&cfg, &db).await?,
        "page" => page(&cfg, &db).await?,
        "insert-one" => insert_one(&cfg, &db).await?,
        "bulk-insert" => bulk_insert(&cfg, &db).await?,
        "lowercase" => lowercase(&cfg, &db).await?,
        "health" => health(&cfg, &db).await?,
        "writers" => writers(&cfg, &db).await?,
        other => return Err(format!("unknown workload {other:?}").into()),
    };
    m.extra
        .insert("checkout_ping".into(), product::CHECKOUT_PING.into());
    m.extra.insert(
        "metrics".into(),
        if metrics { "prometheus" } else { "off" }.into(),
    );
    if replica.is_some() {
        m.extra.insert("read_from".into(), "replica".into());
    }
    emit(&cfg, workload, m);
    db.close().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let workload = bench_harness::workload_arg("db-bench", &WORKLOADS);
    if let Err(err) = run(&workload).await {
        bench_harness::fail("db-bench", &workload, &err);
    }
}
