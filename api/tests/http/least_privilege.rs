//! The `api` binary running as an application role (`DB_APP_ROLE`), on a TLS-only
//! `scram-sha-256` server where the migrations ran as the schema's owner: every endpoint
//! works, migrating at start-up is refused naming the role and what it lacks, and a statement
//! the role may not run is a configuration error, not a conflict or an outage.

use reqwest::StatusCode;
use sea_orm::ConnectionTrait as _;
use sea_orm::sqlx::{self, Connection as _, Executor as _};
use serde_json::json;
use service::{DatabaseConfig, DatabaseService, DatabaseUrl, Error, MigratorOptions};
use test_support::TestTlsCluster;

use crate::binary::{Running, TempDir};
use crate::support::client;

const ADMIN_PASSWORD: &str = "adm1n-s3cret";
const OWNER_PASSWORD: &str = "0wner-s3cret";
const APP_PASSWORD: &str = "app-s3cret";

/// A cluster with roles `owner` and `app` and a database `shop` owned by `owner`, migrated by
/// `owner` with `DB_APP_ROLE=app`.
pub(crate) async fn migrated_by_the_owner() -> TestTlsCluster {
    let cluster = TestTlsCluster::start(ADMIN_PASSWORD).await;
    let mut admin = sqlx::PgConnection::connect(&cluster.admin_url("postgres"))
        .await
        .unwrap();
    for sql in [
        format!("CREATE ROLE owner LOGIN PASSWORD '{OWNER_PASSWORD}'"),
        format!("CREATE ROLE app LOGIN PASSWORD '{APP_PASSWORD}'"),
        "CREATE DATABASE shop OWNER owner".to_owned(),
    ] {
        admin
            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .unwrap();
    }
    let owner = owner_service(&cluster).await;
    let options = MigratorOptions {
        app_role: Some("app".to_owned()),
        ..MigratorOptions::default()
    };
    owner.apply_migrations(&options).await.unwrap();
    owner.close().await.unwrap();
    cluster
}

async fn owner_service(cluster: &TestTlsCluster) -> DatabaseService {
    let url = cluster.verified_url("owner", OWNER_PASSWORD, "shop");
    DatabaseService::connect(&DatabaseConfig::new(DatabaseUrl::parse(url).unwrap()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_the_app_role_every_endpoint_works_and_migrating_is_refused() {
    let cluster = migrated_by_the_owner().await;
    let dir = TempDir::new();
    let app_url = cluster.verified_url("app", APP_PASSWORD, "shop");

    let mut api = Running::start(
        &dir.0,
        &[],
        &[("DATABASE_URL", &app_url), ("API_ADDR", "127.0.0.1:0")],
    );
    let addr = api.wait_until_listening();
    let http = client();
    let created = http
        .post(format!("http://{addr}/users"))
        .json(&json!({"email": "Ada@Example.com", "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let read = http.get(format!("http://{addr}{location}")).send().await;
    assert_eq!(read.unwrap().status(), StatusCode::OK);
    let listed = http.get(format!("http://{addr}/users")).send().await;
    assert_eq!(listed.unwrap().status(), StatusCode::OK);
    let patched = http
        .patch(format!("http://{addr}{location}"))
        .json(&json!({"name": "Ada Lovelace"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let deleted = http.delete(format!("http://{addr}{location}")).send().await;
    assert_eq!(deleted.unwrap().status(), StatusCode::NO_CONTENT);
    let health = http.get(format!("http://{addr}/health")).send().await;
    assert_eq!(
        health.unwrap().status(),
        StatusCode::OK,
        "migrations readable"
    );
    api.signal("TERM");
    let (status, _) = api.wait_for_exit();
    assert!(status.success());

    let mut migrating = Running::start(
        &dir.0,
        &["--migrate"],
        &[("DATABASE_URL", &app_url), ("API_ADDR", "127.0.0.1:0")],
    );
    let (status, log) = migrating.wait_for_exit();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("role \"app\" cannot migrate this database: it lacks CREATE on schema public"),
        "{log}"
    );
    assert!(log.contains("the ownership of the tables"), "{log}");
    assert!(!log.contains("s3cret"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privilege_the_app_role_lacks_is_a_configuration_error() {
    let cluster = migrated_by_the_owner().await;
    let url = cluster.verified_url("app", APP_PASSWORD, "shop");
    let app = DatabaseService::connect(&DatabaseConfig::new(DatabaseUrl::parse(url).unwrap()))
        .await
        .unwrap();

    let refused = app
        .connection()
        .execute_unprepared(r#"DELETE FROM "seaql_migrations""#)
        .await
        .unwrap_err();
    let err = Error::from_db("clean up", refused);

    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let message = err.to_string();
    assert!(
        message.contains(
            "lacks a privilege to clean up: permission denied for table seaql_migrations"
        ),
        "{message}"
    );
    assert_eq!(service::metrics::ErrorKind::of(&err).as_str(), "permission");
    app.close().await.unwrap();
}
