//! Benchmark peer: raw sqlx over a `PgPool`, written as sqlx's documentation teaches
//! (`query_as` with cached prepared statements, the pool's defaults).
//!
//! `peer-sqlx <workload>`; `BENCH_*` as every implementation (`bench/README.md`), and
//! `SQLX_TEST_BEFORE_ACQUIRE` [1]: 1 = sqlx's default, ping every connection on checkout;
//! 0 = no ping (the `sqlx-noping` row).

use std::str::FromStr;
use std::time::Duration;

use bench_harness::{BoxErr, Cfg, PAGE_SIZE, emit, env_or};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::{Postgres, QueryBuilder};

const WORKLOADS: [&str; 6] = [
    "point-select",
    "page",
    "insert-one",
    "bulk-insert",
    "lowercase",
    "health",
];

/// All five columns, decoded into typed fields.
type User = (i32, String, String, DateTime<Utc>, DateTime<Utc>);

const SELECT_BY_ID: &str =
    r#"SELECT id, email, name, created_at, updated_at FROM "user" WHERE id = $1"#;
const SELECT_PAGE: &str = r#"SELECT id, email, name, created_at, updated_at FROM "user" WHERE id > $1 ORDER BY id LIMIT $2"#;
const INSERT_ONE: &str = r#"INSERT INTO "user" (email, name) VALUES ($1, $2) RETURNING id"#;
const LOWERCASE: &str = r#"UPDATE "user" SET email = lower(email)"#;
/// PostgreSQL's limit on bind parameters per statement, over 2 binds per row.
const BULK_BATCH: usize = 65_535 / 2;

async fn connect(cfg: &Cfg, ping: bool) -> Result<PgPool, BoxErr> {
    let opts = PgConnectOptions::from_str(&cfg.url)?.ssl_mode(PgSslMode::from_str(&cfg.sslmode)?);
    let pool = PgPoolOptions::new()
        .max_connections(cfg.p)
        .min_connections(cfg.p)
        .acquire_timeout(Duration::from_secs(60))
        .test_before_acquire(ping)
        .connect_with(opts)
        .await?;
    // Warm: hold all P connections at once, then give them back.
    let mut held = Vec::with_capacity(cfg.p as usize);
    for _ in 0..cfg.p {
        held.push(pool.acquire().await?);
    }
    for conn in &mut held {
        sqlx::query("SELECT 1").execute(&mut **conn).await?;
    }
    drop(held);
    Ok(pool)
}

async fn run(workload: &str) -> Result<(), BoxErr> {
    let ping = env_or::<u8>("SQLX_TEST_BEFORE_ACQUIRE", 1)? != 0;
    let cfg = Cfg::from_env(if ping { "sqlx" } else { "sqlx-noping" })?;
    let pool = connect(&cfg, ping).await?;
    let mut m = match workload {
        "point-select" => {
            let (pool, n) = (pool.clone(), cfg.n);
            bench_harness::run_concurrent(&cfg, cfg.point_ops, move |_| {
                let pool = pool.clone();
                async move {
                    let id = i32::try_from(bench_harness::random_id(n))?;
                    let u: User = sqlx::query_as(SELECT_BY_ID)
                        .bind(id)
                        .fetch_one(&pool)
                        .await?;
                    std::hint::black_box(u);
                    Ok::<_, BoxErr>(())
                }
            })
            .await?
        }
        "page" => {
            let (pool, c) = (pool.clone(), cfg.clone());
            bench_harness::run_concurrent(&cfg, cfg.point_ops, move |_| {
                let (pool, after) = (pool.clone(), c.random_after());
                async move {
                    let rows: Vec<User> = sqlx::query_as(SELECT_PAGE)
                        .bind(i32::try_from(after)?)
                        .bind(PAGE_SIZE as i64)
                        .fetch_all(&pool)
                        .await?;
                    std::hint::black_box(rows);
                    Ok::<_, BoxErr>(())
                }
            })
            .await?
        }
        "insert-one" => {
            let pool = pool.clone();
            bench_harness::run_concurrent(&cfg, cfg.insert_ops, move |i| {
                let pool = pool.clone();
                async move {
                    let id: i32 = sqlx::query_scalar(INSERT_ONE)
                        .bind(format!("user{i}@bench.example"))
                        .bind(format!("User {i}"))
                        .fetch_one(&pool)
                        .await?;
                    std::hint::black_box(id);
                    Ok::<_, BoxErr>(())
                }
            })
            .await?
        }
        "bulk-insert" => {
            // Input built before the clock starts, as in every implementation.
            let rows: Vec<(String, String)> = (0..cfg.bulk_rows)
                .map(|i| (format!("bulk{i}@bench.example"), format!("Bulk User {i}")))
                .collect();
            bench_harness::time_one(async {
                let mut tx = pool.begin().await?;
                for chunk in rows.chunks(BULK_BATCH) {
                    let mut qb =
                        QueryBuilder::<Postgres>::new(r#"INSERT INTO "user" (email, name) "#);
                    qb.push_values(chunk, |mut b, (email, name)| {
                        b.push_bind(email.as_str()).push_bind(name.as_str());
                    });
                    qb.build().persistent(false).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(rows.len() as u64)
            })
            .await?
        }
        "lowercase" => {
            let m = bench_harness::time_one(async {
                Ok::<_, sqlx::Error>(sqlx::query(LOWERCASE).execute(&pool).await?.rows_affected())
            })
            .await?;
            if m.ops != cfg.lower_rows {
                return Err(
                    format!("lowercase changed {} rows of {}", m.ops, cfg.lower_rows).into(),
                );
            }
            m
        }
        "health" => {
            bench_harness::run_sequential(cfg.health_ops, || async {
                let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&pool).await?;
                std::hint::black_box(one);
                Ok::<_, sqlx::Error>(())
            })
            .await?
        }
        other => return Err(format!("unknown workload {other:?}").into()),
    };
    m.extra
        .insert("checkout_ping".into(), ping.to_string().into());
    emit(&cfg, workload, m);
    pool.close().await;
    Ok(())
}

#[tokio::main]
async fn main() {
    let workload = bench_harness::workload_arg("peer-sqlx", &WORKLOADS);
    if let Err(err) = run(&workload).await {
        bench_harness::fail("peer-sqlx", &workload, &err);
    }
}
