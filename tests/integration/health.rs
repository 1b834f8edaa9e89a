//! `DatabaseService::health` and `is_ready`: healthy, degraded, unhealthy, within the timeout.

use std::time::{Duration, Instant};

use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use service::{DatabaseService, HealthStatus};

use crate::on_both_backends;
use test_support::{FaultProxy, TestBackend, TestDatabase};

on_both_backends!(
    healthy_when_every_migration_is_applied,
    degraded_while_a_migration_is_pending,
    degraded_when_the_database_has_an_unknown_migration,
    degraded_before_anything_is_migrated,
    unhealthy_once_the_pool_is_closed,
);

async fn healthy_when_every_migration_is_applied(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;

    let report = db.service().health().await;

    assert_eq!(report.status, HealthStatus::Healthy, "{report:?}");
    let migrations = report.migrations.as_ref().unwrap();
    assert_eq!(migrations.applied, 3);
    assert!(migrations.pending.is_empty() && migrations.unknown.is_empty());
    assert!(report.error.is_none());
    assert!(report.server_version.is_some());
    assert_eq!(report.pool.max, 5);
    assert!(report.pool.size >= 1 && report.pool.idle <= report.pool.size);
    assert!(report.latency_ms > 0.0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["status"], "healthy");
    assert_eq!(
        json["backend"],
        match backend {
            TestBackend::Postgres => "postgres",
            TestBackend::Sqlite => "sqlite",
        }
    );
    assert!(db.service().is_ready().await);
}

async fn degraded_while_a_migration_is_pending(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    Migrator::down(db.connection(), Some(1)).await.unwrap();

    let report = db.service().health().await;

    assert_eq!(report.status, HealthStatus::Degraded);
    let migrations = report.migrations.unwrap();
    assert_eq!(migrations.applied, 2);
    assert_eq!(
        migrations.pending,
        ["m20261127_000003_create_user_email_lower_index"]
    );
}

async fn degraded_when_the_database_has_an_unknown_migration(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    db.connection()
        .execute_unprepared(
            "INSERT INTO seaql_migrations (version, applied_at) \
             VALUES ('m20991231_000000_from_a_newer_build', 0)",
        )
        .await
        .unwrap();

    let report = db.service().health().await;

    assert_eq!(report.status, HealthStatus::Degraded);
    let migrations = report.migrations.unwrap();
    assert_eq!(migrations.unknown, ["m20991231_000000_from_a_newer_build"]);
    assert_eq!(migrations.applied, 3);
}

async fn degraded_before_anything_is_migrated(backend: TestBackend) {
    let db = TestDatabase::empty(backend).await;

    let report = db.service().health().await;

    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.migrations.unwrap().pending.len(), 3);
}

async fn unhealthy_once_the_pool_is_closed(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let service = DatabaseService::connect(db.config()).await.unwrap();
    service.close().await.unwrap();

    let report = service.health().await;

    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(report.migrations.is_none());
    assert!(report.error.unwrap().contains("pool is closed"));
}

#[tokio::test]
async fn unhealthy_within_the_timeout_when_the_server_stops_answering() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    let mut config = proxy.config_for(db.config());
    config.health_timeout = Duration::from_millis(500);
    let service = DatabaseService::connect(&config).await.unwrap();
    assert_eq!(service.health().await.status, HealthStatus::Healthy);

    proxy.blackhole();
    let started = Instant::now();
    let report = service.health().await;
    let elapsed = started.elapsed();

    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(report.error.unwrap().contains("no answer within"));
    assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    assert!(!service.is_ready().await);
}

#[tokio::test]
async fn unhealthy_when_the_server_is_gone_and_healthy_again_when_it_is_back() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    let service = DatabaseService::connect(&proxy.config_for(db.config()))
        .await
        .unwrap();

    proxy.refuse();
    let started = Instant::now();
    let report = service.health().await;

    assert_eq!(report.status, HealthStatus::Unhealthy, "{report:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let error = report.error.unwrap();
    assert!(!error.contains("postgres://"), "{error}");

    proxy.forward();
    let mut status = HealthStatus::Unhealthy;
    for _ in 0..20 {
        status = service.health().await.status;
        if status == HealthStatus::Healthy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, HealthStatus::Healthy);
}
