//! PostgreSQL going away, hanging and coming back while the server runs (through a
//! `FaultProxy`): 503 within the health timeout, 503 from the user routes, and recovery
//! without a restart.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use service::DatabaseConfig;

use crate::support::{TestServer, assert_users_unavailable, id_of, status_and_json};
use test_support::{FaultProxy, TestBackend, TestDatabase};

const HEALTH_TIMEOUT: Duration = Duration::from_millis(500);

/// The test database's configuration through `proxy`, with short timeouts.
fn proxied(db: &TestDatabase, proxy: &FaultProxy) -> DatabaseConfig {
    let mut config = proxy.config_for(db.config());
    config.health_timeout = HEALTH_TIMEOUT;
    config.acquire_timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    config
}

/// `GET /health`, timed.
async fn timed_health(server: &TestServer) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let (status, report) = status_and_json(server.get("/health").await).await;
    (status, report, started.elapsed())
}

/// Polls `/health` until it answers 200 (at most 10 s).
async fn wait_until_healthy(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, report) = status_and_json(server.get("/health").await).await;
        if status == StatusCode::OK {
            assert_eq!(report["status"], "healthy");
            return;
        }
        assert!(Instant::now() < deadline, "still unhealthy: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_answers_503_and_the_server_recovers_when_it_is_back() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    let server = TestServer::start_with_health_details(&proxied(&db, &proxy)).await;
    let ada = server.create_user("ada@example.com", "Ada").await;
    let (status, _, _) = timed_health(&server).await;
    assert_eq!(status, StatusCode::OK);

    proxy.refuse();

    let (status, report, elapsed) = timed_health(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "unhealthy");
    assert!(
        elapsed < HEALTH_TIMEOUT + Duration::from_millis(400),
        "{elapsed:?}"
    );
    let error = report["details"]["error"].as_str().unwrap();
    assert!(!error.contains("postgres://"), "{error}");
    assert_users_unavailable(&server, id_of(&ada)).await;
    // Still down on a second look (the pool does not pretend).
    let (status, _, elapsed) = timed_health(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        elapsed < HEALTH_TIMEOUT + Duration::from_millis(400),
        "{elapsed:?}"
    );

    proxy.forward();

    wait_until_healthy(&server).await;
    let (status, fetched) =
        status_and_json(server.get(&format!("/users/{}", id_of(&ada))).await).await;
    assert_eq!(status, StatusCode::OK, "{fetched}");
    assert_eq!(fetched, ada);
    server.create_user("grace@example.com", "Grace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_503_within_the_timeout_while_the_database_hangs() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    let server = TestServer::start_with_health_details(&proxied(&db, &proxy)).await;
    let (status, _, _) = timed_health(&server).await;
    assert_eq!(status, StatusCode::OK);

    proxy.blackhole();

    let (status, report, elapsed) = timed_health(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "unhealthy");
    assert!(
        report["details"]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within the health timeout (500 ms)"),
        "{report}"
    );
    assert!(elapsed >= HEALTH_TIMEOUT, "{elapsed:?}");
    assert!(
        elapsed < HEALTH_TIMEOUT + Duration::from_millis(400),
        "{elapsed:?}"
    );

    // The hung connections are cut, then the server is back.
    proxy.refuse();
    proxy.forward();
    wait_until_healthy(&server).await;
    server.create_user("ada@example.com", "Ada").await;
}

#[tokio::test]
async fn user_routes_answer_503_within_the_request_timeout_when_the_database_hangs() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    let limit = Duration::from_millis(700);
    let server = TestServer::start_with_request_timeout(&proxied(&db, &proxy), limit).await;
    let id = server.create_user("ada@example.com", "Ada").await["id"].clone();

    proxy.blackhole();
    let started = Instant::now();
    let response = server.get(&format!("/users/{id}")).await;
    let elapsed = started.elapsed();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], api::error::UNAVAILABLE_MESSAGE);
    assert!(
        elapsed >= limit && elapsed < limit + Duration::from_millis(500),
        "{elapsed:?}"
    );

    proxy.forward();
    let mut status = StatusCode::SERVICE_UNAVAILABLE;
    for _ in 0..40 {
        status = server.get(&format!("/users/{id}")).await.status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK, "recovered without a restart");
}
