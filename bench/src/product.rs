//! Every call `db-bench` makes into this project's crates, in one place.

use std::time::{Duration, Instant};

use bench_harness::{BoxErr, Cfg, PAGE_SIZE};
use sea_orm::{ActiveValue, ConnectionTrait, EntityTrait, TransactionTrait, sqlx};
use sea_orm_migration::{MigratorTrait, seaql_migrations};
use service::user::{self, NewUser, UserChanges};
use service::{DatabaseConfig, DatabaseService, DatabaseUrl, HealthStatus};

use crate::Migration;

/// The pool policy every line reports (the service's default).
pub const CHECKOUT_PING: &str = "idle>=30s";

/// The service, as an application opens it.
#[derive(Debug, Clone)]
pub struct Db(DatabaseService);

/// `n` users for the bulk insert.
#[must_use]
pub fn new_users(n: u64) -> Vec<NewUser> {
    (0..n)
        .map(|i| NewUser {
            email: format!("bulk{i}@bench.example"),
            name: format!("Bulk User {i}"),
        })
        .collect()
}

fn with_sslmode(cfg: &Cfg, url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}sslmode={}", cfg.sslmode)
}

impl Db {
    /// `DatabaseService::connect` with a pool of `pool` connections (and `replica` as its
    /// read replica), warmed.
    pub async fn connect(cfg: &Cfg, pool: u32, replica: Option<&str>) -> Result<Self, BoxErr> {
        let mut config = DatabaseConfig::new(DatabaseUrl::parse(cfg.url_with_sslmode())?);
        config.max_connections = pool;
        config.min_connections = pool;
        if let Some(replica) = replica {
            config.replica_urls = vec![DatabaseUrl::parse(with_sslmode(cfg, replica))?];
        }
        let service = DatabaseService::connect(&config).await?;
        if replica.is_some() {
            let started = Instant::now();
            while service.reader().replica_name().is_none() {
                if started.elapsed() > Duration::from_secs(10) {
                    return Err("the replica did not enter rotation within 10 s".into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for _ in 0..10 {
                user::get(&service.reader(), 1).await?;
            }
        }
        // Hold every connection at once so all are open, then give them back.
        let pg = service.connection().get_postgres_connection_pool();
        let mut held = Vec::with_capacity(pool as usize);
        for _ in 0..pool {
            held.push(pg.acquire().await?);
        }
        for conn in &mut held {
            sqlx::query("SELECT 1").execute(&mut **conn).await?;
        }
        drop(held);
        Ok(Self(service))
    }

    /// `user::get` (through `reader()` when a replica is configured).
    pub async fn get(&self, id: i32) -> Result<(), BoxErr> {
        let row = if self.0.reader().replica_name().is_some() {
            user::get(&self.0.reader(), id).await?
        } else {
            user::get(&self.0, id).await?
        };
        std::hint::black_box(row);
        Ok(())
    }

    /// `user::list`: one page of 50 after `after`.
    pub async fn page(&self, after: i32) -> Result<(), BoxErr> {
        let page = user::list(&self.0, PAGE_SIZE, Some(after)).await?;
        if page.users.len() as u64 != PAGE_SIZE {
            return Err(format!("a page after {after} had {} rows", page.users.len()).into());
        }
        std::hint::black_box(page);
        Ok(())
    }

    /// `user::create`.
    pub async fn create(&self, email: String, name: String) -> Result<(), BoxErr> {
        let row = user::create(&self.0, NewUser { email, name }).await?;
        std::hint::black_box(row);
        Ok(())
    }

    /// `user::create_many` on the pool (COPY).
    pub async fn create_many(&self, rows: &[NewUser]) -> Result<u64, BoxErr> {
        Ok(user::create_many(&self.0, rows).await?)
    }

    /// `user::update` of the name.
    pub async fn rename(&self, id: i32, name: String) -> Result<(), BoxErr> {
        let changes = UserChanges {
            name: Some(name),
            ..Default::default()
        };
        std::hint::black_box(user::update(&self.0, id, changes).await?);
        Ok(())
    }

    /// The lowercase data migration: its own code, or one `UPDATE` in one transaction.
    pub async fn lowercase(&self, how: Migration) -> Result<u64, BoxErr> {
        let conn = self.0.connection();
        match how {
            Migration::Batched => Ok(migration::data::lowercase_emails(conn).await?),
            Migration::Single => {
                let tx = conn.begin().await?;
                let done = tx
                    .execute_unprepared(
                        r#"UPDATE "user" SET email = lower(email) WHERE email <> lower(email)"#,
                    )
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }
    }

    /// `DatabaseService::health()`, which must be healthy.
    pub async fn health(&self) -> Result<(), BoxErr> {
        let report = self.0.health().await;
        if report.status != HealthStatus::Healthy {
            return Err(format!("health() reported {report:?}").into());
        }
        std::hint::black_box(report);
        Ok(())
    }

    /// Makes the bench database look migrated to `health()`: the migrations table exists
    /// (created by the migrator itself) and lists this build's migrations, so the report is the
    /// production one rather than the "nothing migrated yet" error. The `"user"` table is left
    /// alone.
    pub async fn record_migrations_as_applied(&self) -> Result<(), BoxErr> {
        let conn = self.0.connection();
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

    /// Closes the pools.
    pub async fn close(self) -> Result<(), BoxErr> {
        Ok(self.0.close().await?)
    }
}

/// Installs the Prometheus recorder as the `api` crate does, and folds its histograms every
/// 5 s on a thread of its own, as the API's upkeep task does.
pub fn install_metrics_recorder() -> Result<(), BoxErr> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            service::metrics::DURATION_BUCKETS,
        )?
        .install_recorder()?;
    service::metrics::describe();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            handle.run_upkeep();
        }
    });
    Ok(())
}
