//! `db-bench`: this project's implementation of the benchmark harness contract
//! (`../shared/bench/README.md`), for `run.sh --impl seaorm=target/release/db-bench`.
//!
//! Usage: `db-bench <workload>`, workload one of
//! `point-select | insert-one | bulk-insert | lowercase | health`. The harness prepares the
//! table first; this binary runs and times the workload through the project's public API and
//! prints exactly one JSON line on stdout (logs go to stderr). Exit status 2: workload not
//! supported.
//!
//! | workload     | what runs                                                                |
//! | ------------ | ------------------------------------------------------------------------ |
//! | point-select | `service::user::get_as` (the repository's pre-rendered `SELECT … WHERE id = $1`) |
//! | insert-one   | `service::user::create_as` (validation, normalisation, `INSERT … RETURNING`) |
//! | bulk-insert  | `service::user::create_many` on the service's pool (`COPY` on PostgreSQL) |
//! | lowercase    | `migration::data::lowercase_emails`, the data migration's own code       |
//! | health       | `DatabaseService::health()`, the full report                             |
//!
//! The pool is the service's: `DatabaseService::connect` with `DatabaseConfig` defaults except
//! `max_connections = min_connections = BENCH_P`, so the checkout-ping policy is the
//! service's default (ping only connections idle for 30 s or more). Every line says so in the
//! extra key `checkout_ping`.
//!
//! The harness's table has `id BIGSERIAL` (`int8`) where this project's schema has `SERIAL`
//! (`int4`, `entity::user::Model::id: i32`). sqlx refuses to decode `int8` into `i32`, so the
//! two workloads that read rows back decode them into [`BenchUser`] (the same five columns,
//! `id: i64`) through the repository's `get_as`/`create_as`, which run exactly the statements
//! and code of `get`/`create`. See `docs/PERFORMANCE.md`.
//!
//! `DB_BENCH_VARIANT` (not set by the harness) selects a slower path, to measure what a tuning
//! bought (`docs/PERFORMANCE.md`); the line then carries `"variant"`:
//! * `per-call-render`: point-select and insert-one build and render their statement with
//!   SeaORM/SeaQuery on every call (`Entity::find_by_id(id).into_model().one(db)`, and
//!   `Query::insert()…returning(…)` decoded with `find_by_statement`), as SeaORM's
//!   documentation teaches, instead of the repository's statements rendered once;
//! * `seaorm-query-path`: point-select and insert-one run the same statements, rendered once,
//!   through SeaORM's generic query execution (`Model::find_by_statement(stmt).one(db)`), which
//!   is what `get`/`create` do in a transaction or on SQLite, instead of the sqlx path they
//!   take on the pool;
//! * `pool-executor`: point-select and insert-one take that sqlx path, but with `&PgPool` as
//!   the executor instead of a connection the repository checks out itself;
//! * `insert`: bulk-insert calls `create_many` inside a transaction, which takes the chunked
//!   multi-row `INSERT` path instead of `COPY`.
//!
//! `DB_BENCH_METRICS=prometheus` (not set by the harness) installs the Prometheus recorder the
//! `api` crate installs (`metrics-exporter-prometheus`, [`service::metrics::DURATION_BUCKETS`],
//! upkeep every 5 s), so every figure the data layer records is kept, as in a deployed
//! service; unset or `off`, no recorder is installed and recording does nothing. The line
//! carries `"metrics":"prometheus"` or `"metrics":"off"`.
//!
//! Environment (defaults in brackets), as every implementation reads it:
//! `BENCH_DATABASE_URL` [postgres://bench:bench@127.0.0.1:5432/bench], `BENCH_SSLMODE`
//! [disable], `BENCH_N` [10000], `BENCH_C` [8], `BENCH_P` [8], `BENCH_POINT_OPS` [100000],
//! `BENCH_INSERT_OPS` [20000], `BENCH_BULK_ROWS` [100000], `BENCH_LOWER_ROWS` [200000],
//! `BENCH_HEALTH_OPS` [10000], `BENCH_IMPL_NAME` [seaorm].

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use sea_orm::entity::prelude::DateTimeWithTimeZone;
use sea_orm::{
    ActiveValue, DbBackend, EntityTrait, FromQueryResult, QueryResult, Statement, TransactionTrait,
    Value, sqlx,
};
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::seaql_migrations;
use service::user::{self, NewUser};
use service::{DatabaseConfig, DatabaseService, DatabaseUrl, HealthStatus};

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// The pool policy every line reports (the service's default).
const CHECKOUT_PING: &str = "idle>=30s";

/// What the point-select and insert-one workloads decode each row into: the harness's table
/// has a `bigint` id, the product's model an `i32` one (see the crate documentation).
#[derive(Debug, FromQueryResult)]
#[allow(dead_code)] // read only through `black_box`
struct BenchUser {
    id: i64,
    email: String,
    name: String,
    created_at: DateTimeWithTimeZone,
    updated_at: DateTimeWithTimeZone,
}

struct Cfg {
    url: String,
    sslmode: String,
    n: u64,
    c: usize,
    p: u32,
    point_ops: u64,
    insert_ops: u64,
    bulk_rows: u64,
    lower_rows: u64,
    health_ops: u64,
    impl_name: String,
    variant: Variant,
    /// `DB_BENCH_METRICS=prometheus`: record the data layer's metrics (see the crate
    /// documentation).
    metrics: bool,
    /// `BENCH_REPLICA_URL`: a streaming standby of the server; point-select then reads
    /// through `DatabaseService::reader()` (this project's own setting, for `bench/scale.sh`).
    replica_url: Option<String>,
}

/// `DB_BENCH_VARIANT`: the repository's path, or a slower one kept for comparison.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Product,
    PerCallRender,
    SeaormQueryPath,
    PoolExecutor,
    Insert,
}

impl Variant {
    fn from_env() -> Result<Self, BoxErr> {
        match std::env::var("DB_BENCH_VARIANT").as_deref() {
            Err(_) | Ok("") => Ok(Self::Product),
            Ok("per-call-render") => Ok(Self::PerCallRender),
            Ok("seaorm-query-path") => Ok(Self::SeaormQueryPath),
            Ok("pool-executor") => Ok(Self::PoolExecutor),
            Ok("insert") => Ok(Self::Insert),
            Ok(other) => Err(format!(
                "DB_BENCH_VARIANT={other:?}: per-call-render, seaorm-query-path, pool-executor \
                 or insert"
            )
            .into()),
        }
    }

    fn name(self) -> Option<&'static str> {
        match self {
            Self::Product => None,
            Self::PerCallRender => Some("per-call-render"),
            Self::SeaormQueryPath => Some("seaorm-query-path"),
            Self::PoolExecutor => Some("pool-executor"),
            Self::Insert => Some("insert"),
        }
    }
}

fn env_or<T: FromStr>(key: &str, default: T) -> Result<T, BoxErr> {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map_err(|_| format!("{key}={v:?} is not a valid value").into()),
        _ => Ok(default),
    }
}

impl Cfg {
    fn from_env() -> Result<Self, BoxErr> {
        Ok(Self {
            url: env_or(
                "BENCH_DATABASE_URL",
                "postgres://bench:bench@127.0.0.1:5432/bench".to_owned(),
            )?,
            sslmode: env_or("BENCH_SSLMODE", "disable".to_owned())?,
            n: env_or("BENCH_N", 10_000)?,
            c: env_or("BENCH_C", 8)?,
            p: env_or("BENCH_P", 8)?,
            point_ops: env_or("BENCH_POINT_OPS", 100_000)?,
            insert_ops: env_or("BENCH_INSERT_OPS", 20_000)?,
            bulk_rows: env_or("BENCH_BULK_ROWS", 100_000)?,
            lower_rows: env_or("BENCH_LOWER_ROWS", 200_000)?,
            health_ops: env_or("BENCH_HEALTH_OPS", 10_000)?,
            impl_name: env_or("BENCH_IMPL_NAME", "seaorm".to_owned())?,
            variant: Variant::from_env()?,
            metrics: match std::env::var("DB_BENCH_METRICS").as_deref() {
                Err(_) | Ok("" | "off") => false,
                Ok("prometheus") => true,
                Ok(other) => {
                    return Err(format!("DB_BENCH_METRICS={other:?}: prometheus or off").into());
                }
            },
            replica_url: std::env::var("BENCH_REPLICA_URL")
                .ok()
                .filter(|url| !url.is_empty()),
        })
    }

    /// `BENCH_DATABASE_URL` with `sslmode=BENCH_SSLMODE` appended (libpq style).
    fn url_with_sslmode(&self) -> String {
        self.with_sslmode(&self.url)
    }

    fn with_sslmode(&self, url: &str) -> String {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}sslmode={}", self.sslmode)
    }
}

/// user+sys CPU seconds of this whole process (all threads), from getrusage(RUSAGE_SELF).
fn cpu_seconds() -> Result<f64, BoxErr> {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    let usage = getrusage(UsageWho::RUSAGE_SELF)?;
    let micros = usage.user_time().num_microseconds() + usage.system_time().num_microseconds();
    Ok(micros as f64 / 1e6)
}

/// Nearest-rank percentile (same definition in every implementation).
fn percentile_us(sorted_ns: &[u64], p: f64) -> Option<f64> {
    if sorted_ns.is_empty() {
        return None;
    }
    let rank = ((p * sorted_ns.len() as f64).ceil() as usize).max(1);
    Some(sorted_ns[rank.min(sorted_ns.len()) - 1] as f64 / 1000.0)
}

struct Measured {
    ops: u64,
    secs: f64,
    cpu_s: f64,
    lat_ns: Vec<u64>,
    /// Extra `"key":"value"` pairs for the JSON line.
    extra: Vec<(&'static str, String)>,
}

/// Prints the workload's one JSON line: this line is the program's output.
#[allow(clippy::print_stdout)]
fn emit(cfg: &Cfg, workload: &str, m: Measured) {
    let mut lat = m.lat_ns;
    lat.sort_unstable();
    let num = |v: Option<f64>| v.map_or("null".to_owned(), |x| format!("{x:.1}"));
    let mut extra = format!(r#","checkout_ping":"{CHECKOUT_PING}""#);
    if let Some(variant) = cfg.variant.name() {
        extra.push_str(&format!(r#","variant":"{variant}""#));
    }
    let metrics = if cfg.metrics { "prometheus" } else { "off" };
    extra.push_str(&format!(r#","metrics":"{metrics}""#));
    if cfg.replica_url.is_some() {
        extra.push_str(r#","read_from":"replica""#);
    }
    for (key, value) in &m.extra {
        extra.push_str(&format!(r#","{key}":"{value}""#));
    }
    println!(
        concat!(
            r#"{{"impl":"{}","workload":"{}","ops":{},"secs":{:.6},"ops_per_s":{:.1},"#,
            r#""p50_us":{},"p99_us":{},"cpu_s":{:.6},"cpu_us_per_op":{:.2}{}}}"#
        ),
        cfg.impl_name,
        workload,
        m.ops,
        m.secs,
        m.ops as f64 / m.secs,
        num(percentile_us(&lat, 0.50)),
        num(percentile_us(&lat, 0.99)),
        m.cpu_s,
        m.cpu_s * 1e6 / m.ops as f64,
        extra,
    );
}

/// The service, as an application would open it, with the harness's pool size.
async fn connect(cfg: &Cfg) -> Result<DatabaseService, BoxErr> {
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(cfg.url_with_sslmode())?);
    config.max_connections = cfg.p;
    config.min_connections = cfg.p;
    if let Some(replica) = &cfg.replica_url {
        config.replica_urls = vec![DatabaseUrl::parse(cfg.with_sslmode(replica))?];
    }
    let service = DatabaseService::connect(&config).await?;
    if cfg.replica_url.is_some() {
        let started = Instant::now();
        while service.reader().replica_name().is_none() {
            if started.elapsed().as_secs() > 10 {
                return Err("the replica did not enter rotation within 10 s".into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Warm the replica's pool: P readers at once, a few reads each.
        let warmers: Vec<_> = (0..cfg.p)
            .map(|_| {
                let service = service.clone();
                tokio::spawn(async move {
                    for _ in 0..10 {
                        user::get_as::<BenchUser, _>(&service.reader(), 1).await?;
                    }
                    Ok::<_, service::Error>(())
                })
            })
            .collect();
        for warmer in warmers {
            warmer.await??;
        }
    }
    // Warm the pool: hold all P connections at once so every one is established
    // (min_connections is filled in the background), then give them back.
    let pool = service.connection().get_postgres_connection_pool();
    let mut held = Vec::with_capacity(cfg.p as usize);
    for _ in 0..cfg.p {
        held.push(pool.acquire().await?);
    }
    for conn in &mut held {
        sqlx::query("SELECT 1").execute(&mut **conn).await?;
    }
    drop(held);
    Ok(service)
}

/// Run `total` ops spread over `cfg.c` concurrent tasks; each op gets a global index.
async fn run_concurrent<F, Fut>(cfg: &Cfg, total: u64, op: F) -> Result<Measured, BoxErr>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = service::Result<()>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.c);
    for _ in 0..cfg.c {
        let op = op.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity((total as usize / 8).max(16));
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let s = Instant::now();
                op(i).await?;
                lat.push(s.elapsed().as_nanos() as u64);
            }
            Ok::<_, service::Error>(lat)
        }));
    }
    let mut lat_ns = Vec::with_capacity(total as usize);
    for t in tasks {
        lat_ns.extend(t.await??);
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds()? - cpu0;
    Ok(Measured {
        ops: total,
        secs,
        cpu_s,
        lat_ns,
        extra: Vec::new(),
    })
}

async fn point_select(cfg: &Cfg, db: &DatabaseService) -> Result<Measured, BoxErr> {
    let n = i32::try_from(cfg.n)?;
    let variant = cfg.variant;
    let through_reader = cfg.replica_url.is_some();
    let db = db.clone();
    run_concurrent(cfg, cfg.point_ops, move |_| {
        let db = db.clone();
        async move {
            let id = fastrand::i32(1..=n);
            // (`insert` changes only bulk-insert.)
            let u: BenchUser = if through_reader {
                user::get_as(&db.reader(), id).await?
            } else if matches!(variant, Variant::Product | Variant::Insert) {
                user::get_as(&db, id).await?
            } else {
                select_variant(variant, &db, id)
                    .await?
                    .ok_or(service::Error::NotFound {
                        entity: "user",
                        key: format!("id {id}"),
                    })?
            };
            debug_assert_eq!(u.id, i64::from(id));
            std::hint::black_box(u);
            Ok(())
        }
    })
    .await
}

/// point-select through one of the slower paths kept for comparison: `per-call-render`,
/// `pool-executor`, or else `seaorm-query-path`.
async fn select_variant(
    variant: Variant,
    db: &DatabaseService,
    id: i32,
) -> service::Result<Option<BenchUser>> {
    let read_error = |err| service::Error::from_db("read a user", err);
    match variant {
        Variant::PerCallRender => entity::user::Entity::find_by_id(id)
            .into_model::<BenchUser>()
            .one(db.connection())
            .await
            .map_err(read_error),
        Variant::PoolExecutor => {
            let pool = db.connection().get_postgres_connection_pool();
            let row = sqlx::query(SELECT_BY_ID.as_str())
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|err| read_error(sqlx_error(err)))?;
            row.map(|row| BenchUser::from_query_result(&QueryResult::from(row), ""))
                .transpose()
                .map_err(read_error)
        }
        _ => {
            let statement = Statement::from_sql_and_values(
                DbBackend::Postgres,
                SELECT_BY_ID.as_str(),
                [Value::from(id)],
            );
            BenchUser::find_by_statement(statement)
                .one(db.connection())
                .await
                .map_err(read_error)
        }
    }
}

async fn insert_one(cfg: &Cfg, db: &DatabaseService) -> Result<Measured, BoxErr> {
    let variant = cfg.variant;
    let db = db.clone();
    run_concurrent(cfg, cfg.insert_ops, move |i| {
        let db = db.clone();
        async move {
            let new = NewUser {
                email: format!("user{i}@bench.example"),
                name: format!("User {i}"),
            };
            let u: BenchUser = if variant == Variant::PerCallRender {
                insert_rendered_per_call(&db, new, false).await?
            } else if variant == Variant::SeaormQueryPath {
                insert_rendered_per_call(&db, new, true).await?
            } else if variant == Variant::PoolExecutor {
                insert_on_pool_executor(&db, new).await?
            } else {
                user::create_as(&db, new).await?
            };
            std::hint::black_box(u);
            Ok(())
        }
    })
    .await
}

/// The repository's point-select statement, rendered once (variants `seaorm-query-path` and
/// `pool-executor`).
static SELECT_BY_ID: LazyLock<String> = LazyLock::new(|| {
    use sea_orm::{ColumnTrait, QueryFilter, QueryTrait};
    entity::user::Entity::find()
        .filter(entity::user::Column::Id.eq(0))
        .build(DbBackend::Postgres)
        .sql
});

/// The repository's `INSERT … RETURNING`, rendered once (variants `seaorm-query-path` and
/// `pool-executor`).
static INSERT_RETURNING: LazyLock<String> = LazyLock::new(|| {
    DbBackend::Postgres
        .build(&insert_statement(String::new(), String::new()))
        .sql
});

fn insert_statement(email: String, name: String) -> sea_orm::sea_query::InsertStatement {
    use entity::user::Column;
    use sea_orm::sea_query::Query;
    let mut insert = Query::insert();
    insert
        .into_table(entity::user::Entity)
        .columns([Column::Email, Column::Name])
        .values_panic([email.into(), name.into()])
        .returning(Query::returning().columns([
            Column::Id,
            Column::Email,
            Column::Name,
            Column::CreatedAt,
            Column::UpdatedAt,
        ]));
    insert
}

/// insert-one without the repository's `create_as`: the same validation and the same
/// `INSERT … RETURNING`, run through SeaORM's generic query path, either built and rendered
/// by SeaQuery on every call (`rendered_once == false`) or rendered once.
async fn insert_rendered_per_call(
    db: &DatabaseService,
    new: NewUser,
    rendered_once: bool,
) -> service::Result<BenchUser> {
    let email = user::normalize_email(&new.email)?;
    user::validate_name(&new.name)?;
    let statement = if rendered_once {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            INSERT_RETURNING.as_str(),
            [Value::from(email), Value::from(new.name)],
        )
    } else {
        db.backend().build(&insert_statement(email, new.name))
    };
    BenchUser::find_by_statement(statement)
        .one(db.connection())
        .await
        .map_err(|err| service::Error::from_db("create a user", err))?
        .ok_or(service::Error::NotFound {
            entity: "user",
            key: "the inserted row".to_owned(),
        })
}

/// insert-one as `create_as` did before it checked connections out itself: the same
/// validation and statement, with `&PgPool` as the sqlx executor (variant `pool-executor`).
async fn insert_on_pool_executor(db: &DatabaseService, new: NewUser) -> service::Result<BenchUser> {
    let email = user::normalize_email(&new.email)?;
    user::validate_name(&new.name)?;
    let row = sqlx::query(INSERT_RETURNING.as_str())
        .bind(email)
        .bind(new.name)
        .fetch_one(db.connection().get_postgres_connection_pool())
        .await
        .map_err(|err| service::Error::from_db("create a user", sqlx_error(err)))?;
    BenchUser::from_query_result(&QueryResult::from(row), "")
        .map_err(|err| service::Error::from_db("create a user", err))
}

fn sqlx_error(err: sqlx::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Query(sea_orm::RuntimeErr::SqlxError(Arc::new(err)))
}

async fn bulk_insert(cfg: &Cfg, db: &DatabaseService) -> Result<Measured, BoxErr> {
    // Build the input outside the timed region (every implementation does the same).
    let rows: Vec<NewUser> = (0..cfg.bulk_rows)
        .map(|i| NewUser {
            email: format!("bulk{i}@bench.example"),
            name: format!("Bulk User {i}"),
        })
        .collect();
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let inserted = if cfg.variant == Variant::Insert {
        let tx = db.connection().begin().await?;
        let inserted = user::create_many(&tx, &rows).await?;
        tx.commit().await?;
        inserted
    } else {
        user::create_many(&db, &rows).await?
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds()? - cpu0;
    if inserted != cfg.bulk_rows {
        return Err(format!("create_many inserted {inserted} rows of {}", cfg.bulk_rows).into());
    }
    Ok(Measured {
        ops: inserted,
        secs,
        cpu_s,
        lat_ns: vec![],
        extra: vec![(
            "method",
            if cfg.variant == Variant::Insert {
                "insert"
            } else {
                "copy"
            }
            .to_owned(),
        )],
    })
}

async fn lowercase(cfg: &Cfg, db: &DatabaseService) -> Result<Measured, BoxErr> {
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let changed = migration::data::lowercase_emails(db.connection()).await?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds()? - cpu0;
    if changed != cfg.lower_rows {
        return Err(format!(
            "lowercase changed {changed} rows, expected BENCH_LOWER_ROWS={}",
            cfg.lower_rows
        )
        .into());
    }
    Ok(Measured {
        ops: changed,
        secs,
        cpu_s,
        lat_ns: vec![],
        extra: Vec::new(),
    })
}

/// Makes the bench database look migrated to `health()`: the migrations table exists (created
/// by the migrator itself) and lists this build's migrations, so the report is the production
/// one (`healthy`, three applied) rather than the "nothing migrated yet" error path. The
/// harness's `"user"` table is left alone.
async fn record_migrations_as_applied(db: &DatabaseService) -> Result<(), BoxErr> {
    let conn = db.connection();
    migration::Migrator::install(conn).await?;
    let applied: Vec<String> = seaql_migrations::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    for migration in migration::Migrator::migrations() {
        let version = migration.name().to_owned();
        if !applied.contains(&version) {
            seaql_migrations::Entity::insert(seaql_migrations::ActiveModel {
                version: ActiveValue::Set(version),
                applied_at: ActiveValue::Set(0),
            })
            .exec(conn)
            .await?;
        }
    }
    Ok(())
}

async fn health(cfg: &Cfg, db: &DatabaseService) -> Result<Measured, BoxErr> {
    record_migrations_as_applied(db).await?;
    let first = db.health().await;
    if first.status != HealthStatus::Healthy {
        return Err(format!("health() before the run: {first:?}").into());
    }
    let mut lat_ns = Vec::with_capacity(cfg.health_ops as usize);
    let mut unhealthy = 0_u64;
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    for _ in 0..cfg.health_ops {
        let s = Instant::now();
        let report = db.health().await;
        lat_ns.push(s.elapsed().as_nanos() as u64);
        if report.status != HealthStatus::Healthy {
            unhealthy += 1;
        }
        std::hint::black_box(report);
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds()? - cpu0;
    if unhealthy > 0 {
        return Err(format!(
            "{unhealthy} of {} health reports not healthy",
            cfg.health_ops
        )
        .into());
    }
    Ok(Measured {
        ops: cfg.health_ops,
        secs,
        cpu_s,
        lat_ns,
        extra: vec![("report", "healthy".to_owned())],
    })
}

const WORKLOADS: [&str; 5] = [
    "point-select",
    "insert-one",
    "bulk-insert",
    "lowercase",
    "health",
];

/// Installs the Prometheus recorder as the `api` crate does, and folds its histograms every
/// 5 s on a thread of its own, as the API's upkeep task does.
fn install_metrics_recorder() -> Result<(), BoxErr> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            service::metrics::DURATION_BUCKETS,
        )?
        .install_recorder()?;
    service::metrics::describe();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            handle.run_upkeep();
        }
    });
    Ok(())
}

async fn run(workload: &str) -> Result<(), BoxErr> {
    let cfg = Cfg::from_env()?;
    if cfg.metrics {
        install_metrics_recorder()?;
    }
    let db = connect(&cfg).await?;
    let m = match workload {
        "point-select" => point_select(&cfg, &db).await?,
        "insert-one" => insert_one(&cfg, &db).await?,
        "bulk-insert" => bulk_insert(&cfg, &db).await?,
        "lowercase" => lowercase(&cfg, &db).await?,
        "health" => health(&cfg, &db).await?,
        other => return Err(format!("unknown workload {other:?}").into()),
    };
    emit(&cfg, workload, m);
    db.close().await?;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let workload = std::env::args().nth(1).unwrap_or_default();
    if !WORKLOADS.contains(&workload.as_str()) {
        eprintln!(
            "db-bench: workload {workload:?} not supported (one of: {})",
            WORKLOADS.join(", ")
        );
        std::process::exit(2);
    }
    if let Err(e) = run(&workload).await {
        eprintln!("db-bench {workload}: error: {e}");
        std::process::exit(1);
    }
}
