//! Graceful shutdown: no new connections, in-flight requests answered, then the pool closed.

use std::time::Duration;

use reqwest::StatusCode;
use service::HealthStatus;

use crate::on_both_backends;
use crate::support::{TestServer, client, status_and_json};
use test_support::{FaultProxy, TestBackend, TestDatabase};

on_both_backends!(shutdown_stops_serving_and_closes_the_pool);

async fn shutdown_stops_serving_and_closes_the_pool(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let mut server = TestServer::start(db.config()).await;
    server.create_user("ada@example.com", "Ada").await;
    assert_eq!(server.service.health().await.status, HealthStatus::Healthy);

    server.stop().await.unwrap();

    let report = server.service.health().await;
    assert_eq!(report.status, HealthStatus::Unhealthy);
    assert!(report.error.unwrap().contains("pool is closed"));
    assert!(client().get(server.url("/health")).send().await.is_err());
    // The data is in the database, not only in the server.
    let (_, page) = status_and_json(TestServer::start(db.config()).await.get("/users").await).await;
    assert_eq!(page["users"][0]["email"], "ada@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_shutdown_is_answered_before_the_pool_closes() {
    let db = TestDatabase::new(TestBackend::Postgres).await;
    let proxy = FaultProxy::start(db.config()).await;
    let mut config = proxy.config_for(db.config());
    config.acquire_timeout = Duration::from_secs(2);
    config.connect_timeout = Duration::from_secs(2);
    let mut server = TestServer::start(&config).await;
    server.create_user("ada@example.com", "Ada").await;
    // Let the connection settle back into the pool (sqlx checks it on release): then it is one
    // idle pooled connection, which the next query takes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The database stops answering: the next query waits on that connection.
    proxy.blackhole();
    let in_flight = tokio::spawn({
        let request = server.client.get(server.url("/users"));
        async move { request.send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !in_flight.is_finished(),
        "the request waits for the database"
    );

    server.signal_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;

    assert!(!server.has_finished(), "the server waits for the request");
    assert!(
        client().get(server.url("/health")).send().await.is_err(),
        "no new connections once shutting down"
    );
    // The database fails the query: the request is answered (503), then the server stops.
    proxy.refuse();
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    server.wait().await.unwrap();
    let report = server.service.health().await;
    assert!(
        report
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("pool is closed"),
        "{report:?}"
    );
}
