//! `GET /health`: 200 with the report when healthy, 503 with it when degraded or unhealthy; and
//! 503 from the user routes once the pool is gone.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::json;
use service::testing::{TestBackend, TestDatabase};

use crate::on_both_backends;
use crate::support::{TestServer, assert_users_unavailable, id_of, status_and_json};

on_both_backends!(
    healthy_answers_200_with_the_report,
    degraded_answers_503_with_the_report,
    unhealthy_answers_503_and_the_user_routes_503_once_the_pool_is_closed,
);

fn backend_name(backend: TestBackend) -> &'static str {
    match backend {
        TestBackend::Postgres => "postgres",
        TestBackend::Sqlite => "sqlite",
    }
}

async fn healthy_answers_200_with_the_report(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;

    let (status, report) = status_and_json(server.get("/health").await).await;

    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["status"], "healthy");
    assert_eq!(report["backend"], backend_name(backend));
    assert!(report["server_version"].is_string(), "{report}");
    assert!(report["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(report["migrations"]["applied"].as_u64().unwrap() >= 3);
    assert_eq!(report["migrations"]["pending"], json!([]));
    assert_eq!(report["migrations"]["unknown"], json!([]));
    assert!(report["error"].is_null());
    assert_eq!(report["pool"]["max"], db.config().max_connections);
}

async fn degraded_answers_503_with_the_report(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    // A newer build migrated this database.
    db.connection()
        .execute_unprepared(
            "INSERT INTO seaql_migrations (version, applied_at) \
             VALUES ('m20991231_000000_from_a_newer_build', 0)",
        )
        .await
        .unwrap();

    let (status, report) = status_and_json(server.get("/health").await).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "degraded");
    assert_eq!(
        report["migrations"]["unknown"],
        json!(["m20991231_000000_from_a_newer_build"])
    );
    // Degraded is not down: the user routes still work.
    server.create_user("ada@example.com", "Ada").await;
}

async fn unhealthy_answers_503_and_the_user_routes_503_once_the_pool_is_closed(
    backend: TestBackend,
) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    server.service.close().await.unwrap();

    let (status, report) = status_and_json(server.get("/health").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "unhealthy");
    assert!(report["migrations"].is_null());
    assert!(
        report["error"].as_str().unwrap().contains("pool is closed"),
        "{report}"
    );

    assert_users_unavailable(&server, id_of(&ada)).await;
}
