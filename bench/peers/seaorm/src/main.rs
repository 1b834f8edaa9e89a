//! Benchmark peer: plain SeaORM 2.0, as its documentation teaches, over this project's `user`
//! entity: `Database::connect` with `ConnectOptions` (pool defaults, so a ping on every
//! checkout), `find_by_id(..).one`, `ActiveModel::insert` (`RETURNING` the row),
//! `insert_many` in a transaction, `update_many` with a column expression, a keyset page with
//! `filter(..).order_by_asc(..).limit(..)`, and `DatabaseConnection::ping` as the health
//! check.
//!
//! `peer-seaorm <workload>`; `BENCH_*` as every implementation (`bench/README.md`).

use bench_harness::{BoxErr, Cfg, PAGE_SIZE, emit};
use entity::user;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ColumnTrait, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

const WORKLOADS: [&str; 6] = [
    "point-select",
    "page",
    "insert-one",
    "bulk-insert",
    "lowercase",
    "health",
];

/// Rows per `insert_many` (2 binds per row, PostgreSQL's limit of 65 535 binds).
const BULK_BATCH: usize = 65_535 / 2;

async fn connect(cfg: &Cfg) -> Result<DatabaseConnection, BoxErr> {
    let mut options = ConnectOptions::new(cfg.url_with_sslmode());
    options
        .max_connections(cfg.p)
        .min_connections(cfg.p)
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    // Warm: P concurrent statements, so every connection is open before the clock starts.
    let warmers: Vec<_> = (0..cfg.p)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                let tx = db.begin().await?;
                tx.execute_unprepared("SELECT pg_sleep(0.05)").await?;
                tx.commit().await
            })
        })
        .collect();
    for warmer in warmers {
        warmer.await??;
    }
    Ok(db)
}

async fn run(workload: &str) -> Result<(), BoxErr> {
    let cfg = Cfg::from_env("seaorm")?;
    let db = connect(&cfg).await?;
    let m = match workload {
        "point-select" => {
            let (db, n) = (db.clone(), cfg.n);
            bench_harness::run_concurrent(&cfg, cfg.point_ops, move |_| {
                let db = db.clone();
                async move {
                    let id = i32::try_from(bench_harness::random_id(n))?;
                    let u = user::Entity::find_by_id(id)
                        .one(&db)
                        .await?
                        .ok_or("no such user")?;
                    std::hint::black_box(u);
                    Ok::<_, BoxErr>(())
                }
            })
            .await?
        }
        "page" => {
            let (db, c) = (db.clone(), cfg.clone());
            bench_harness::run_concurrent(&cfg, cfg.point_ops, move |_| {
                let (db, after) = (db.clone(), c.random_after());
                async move {
                    let rows = user::Entity::find()
                        .filter(user::Column::Id.gt(i32::try_from(after)?))
                        .order_by_asc(user::Column::Id)
                        .limit(PAGE_SIZE)
                        .all(&db)
                        .await?;
                    std::hint::black_box(rows);
                    Ok::<_, BoxErr>(())
                }
            })
            .await?
        }
        "insert-one" => {
            let db = db.clone();
            bench_harness::run_concurrent(&cfg, cfg.insert_ops, move |i| {
                let db = db.clone();
                async move {
                    let row = user::ActiveModel {
                        email: ActiveValue::Set(format!("user{i}@bench.example")),
                        name: ActiveValue::Set(format!("User {i}")),
                        ..Default::default()
                    }
                    .insert(&db)
                    .await?;
                    std::hint::black_box(row);
                    Ok::<_, DbErr>(())
                }
            })
            .await?
        }
        "bulk-insert" => {
            let rows: Vec<user::ActiveModel> = (0..cfg.bulk_rows)
                .map(|i| user::ActiveModel {
                    email: ActiveValue::Set(format!("bulk{i}@bench.example")),
                    name: ActiveValue::Set(format!("Bulk User {i}")),
                    ..Default::default()
                })
                .collect();
            bench_harness::time_one(async {
                let tx = db.begin().await?;
                for chunk in rows.chunks(BULK_BATCH) {
                    user::Entity::insert_many(chunk.to_vec()).exec(&tx).await?;
                }
                tx.commit().await?;
                Ok::<_, DbErr>(rows.len() as u64)
            })
            .await?
        }
        "lowercase" => {
            bench_harness::time_one(async {
                let done = user::Entity::update_many()
                    .col_expr(user::Column::Email, Expr::cust(r#"lower("email")"#))
                    .exec(&db)
                    .await?;
                Ok::<_, DbErr>(done.rows_affected)
            })
            .await?
        }
        "health" => bench_harness::run_sequential(cfg.health_ops, || db.ping()).await?,
        other => return Err(format!("unknown workload {other:?}").into()),
    };
    emit(&cfg, workload, m);
    db.close().await?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let workload = bench_harness::workload_arg("peer-seaorm", &WORKLOADS);
    if let Err(err) = run(&workload).await {
        bench_harness::fail("peer-seaorm", &workload, &err);
    }
}
