//! The API through PgBouncer in session mode: served as directly.

use reqwest::StatusCode;
use serde_json::json;
use service::{DatabaseConfig, DatabaseService, DatabaseUrl};

use crate::support::{TestServer, id_of, status_and_json};
use test_support::{PoolMode, TestCluster, TestPgBouncer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_through_a_session_pooler() {
    let cluster = TestCluster::start();
    let admin = sea_orm::Database::connect(cluster.admin_url())
        .await
        .unwrap();
    sea_orm::ConnectionTrait::execute_unprepared(&admin, "CREATE DATABASE app")
        .await
        .unwrap();
    let bouncer = TestPgBouncer::start(cluster.port(), PoolMode::Session, 8);
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(bouncer.url("app")).unwrap());
    config.direct_url = Some(DatabaseUrl::parse(cluster.url("app")).unwrap());
    let migrator = DatabaseService::connect(&config).await.unwrap();
    migrator
        .apply_migrations(&service::MigratorOptions::default())
        .await
        .unwrap();
    migrator.close().await.unwrap();

    let server = TestServer::start(&config).await;
    let (status, _) = status_and_json(server.get("/health").await).await;
    assert_eq!(status, StatusCode::OK);
    for n in 0..20 {
        let user = server.create_user(&format!("u{n}@x.io"), "Pooled").await;
        let (status, read) =
            status_and_json(server.get(&format!("/users/{}", id_of(&user))).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(read, user);
    }
    let conflict = server
        .post("/users", &json!({"email": "U0@x.io", "name": "Again"}))
        .await;
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    let (status, page) = status_and_json(server.get("/users?limit=100").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["users"].as_array().unwrap().len(), 20);
}
