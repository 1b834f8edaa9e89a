//! `GET /health`: 200 when healthy, 503 when degraded or unhealthy; status, latency and
//! migration counts for everyone, the full report only with `API_HEALTH_DETAILS`; and 503 from
//! the user routes once the pool is gone.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::on_both_backends;
use crate::support::{
    TestServer, assert_retry_after, assert_users_unavailable, id_of, status_and_json,
};
use test_support::{TestBackend, TestDatabase};

on_both_backends!(
    healthy_answers_200_with_status_latency_and_migration_counts_only,
    with_details_the_full_report_is_shown,
    degraded_answers_503_with_the_report,
    unhealthy_answers_503_with_retry_after_and_the_user_routes_503_once_the_pool_is_closed,
);

fn backend_name(backend: TestBackend) -> &'static str {
    match backend {
        TestBackend::Postgres => "postgres",
        TestBackend::Sqlite => "sqlite",
    }
}

/// The names of the body's fields, sorted.
fn fields(body: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = body
        .as_object()
        .unwrap_or_else(|| panic!("an object: {body}"))
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

async fn healthy_answers_200_with_status_latency_and_migration_counts_only(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;

    let (status, report) = status_and_json(server.get("/health").await).await;

    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(fields(&report), ["latency_ms", "migrations", "status"]);
    assert_eq!(report["status"], "healthy");
    assert!(report["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        report["migrations"],
        json!({"applied": 3, "pending": 0, "unknown": 0})
    );
}

async fn with_details_the_full_report_is_shown(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start_with_health_details(db.config()).await;

    let (status, report) = status_and_json(server.get("/health").await).await;

    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        fields(&report),
        ["details", "latency_ms", "migrations", "status"]
    );
    let details = &report["details"];
    assert_eq!(details["status"], "healthy");
    assert_eq!(details["backend"], backend_name(backend));
    assert!(details["server_version"].is_string(), "{report}");
    assert!(details["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(details["migrations"]["applied"], 3);
    assert_eq!(details["migrations"]["pending"], json!([]));
    assert_eq!(details["migrations"]["unknown"], json!([]));
    assert!(details["error"].is_null());
    assert_eq!(details["pool"]["max"], db.config().max_connections);
}

async fn degraded_answers_503_with_the_report(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start_with_health_details(db.config()).await;
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
    assert_eq!(report["migrations"]["unknown"], 1);
    assert_eq!(
        report["details"]["migrations"]["unknown"],
        json!(["m20991231_000000_from_a_newer_build"])
    );
    // Degraded is not down: the user routes still work.
    server.create_user("ada@example.com", "Ada").await;
}

async fn unhealthy_answers_503_with_retry_after_and_the_user_routes_503_once_the_pool_is_closed(
    backend: TestBackend,
) {
    let db = TestDatabase::new(backend).await;
    let server = TestServer::start(db.config()).await;
    let detailed = TestServer::start_with_health_details(db.config()).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    server.service.close().await.unwrap();
    detailed.service.close().await.unwrap();

    let response = server.get("/health").await;
    assert_retry_after(&response);
    let (status, report) = status_and_json(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(fields(&report), ["latency_ms", "migrations", "status"]);
    assert_eq!(report["status"], "unhealthy");
    assert!(report["migrations"].is_null());

    let (status, report) = status_and_json(detailed.get("/health").await).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert!(
        report["details"]["error"]
            .as_str()
            .unwrap()
            .contains("pool is closed"),
        "{report}"
    );

    assert_users_unavailable(&server, id_of(&ada)).await;
}
