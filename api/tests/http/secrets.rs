//! The `api` binary with its password in a secret file, on a TLS-only `scram-sha-256` server:
//! the password is rotated (the role's, then the file) in the middle of a run under load, no
//! request fails, and one `DB_MAX_LIFETIME` later every session of the service logged in with
//! the new password. Neither password is ever in the log, nor in the `Debug` of any
//! configuration.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sea_orm::sqlx::{self, Connection as _, Executor as _};
use serde_json::json;
use service::DatabaseConfig;
use test_support::TestTlsCluster;

use crate::binary::{Running, TempDir};
use crate::support::client;

const ADMIN_PASSWORD: &str = "adm1n-s3cret";
const OLD_PASSWORD: &str = "0ld-s3cret:@/%";
const NEW_PASSWORD: &str = "n3w-s3cret#?&";
const RUN: Duration = Duration::from_secs(20);
const CLIENTS: usize = 8;
const LIFETIME: Duration = Duration::from_secs(4);

async fn admin(cluster: &TestTlsCluster) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&cluster.admin_url("postgres"))
        .await
        .unwrap()
}

async fn run_sql(conn: &mut sqlx::PgConnection, sql: String) {
    conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
        .await
        .unwrap();
}

/// Writes `content` to `path` as a secret store does: a new file renamed over the old one.
fn replace_file(path: &std::path::Path, content: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, content).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_rotated_under_load_fails_no_request_and_replaces_every_session() {
    let cluster = TestTlsCluster::start(ADMIN_PASSWORD).await;
    let mut admin = admin(&cluster).await;
    run_sql(
        &mut admin,
        format!("CREATE ROLE app LOGIN PASSWORD '{OLD_PASSWORD}'"),
    )
    .await;
    run_sql(&mut admin, "CREATE DATABASE rotation OWNER app".to_owned()).await;
    let dir = TempDir::new();
    let password_file = dir.0.join("db-password");
    replace_file(&password_file, &format!("{OLD_PASSWORD}\n"));
    // No password in the URL: it comes from the file.
    let url = cluster.verified_url("app", "", "rotation");
    let lifetime = format!("{}s", LIFETIME.as_secs());
    let password_path = password_file.display().to_string();
    let mut api = Running::start(
        &dir.0,
        &["--migrate"],
        &[
            ("DATABASE_URL", &url),
            ("DATABASE_PASSWORD_FILE", &password_path),
            ("DB_MAX_LIFETIME", &lifetime),
            ("DB_MAX_CONNECTIONS", "8"),
            ("DB_APPLICATION_NAME", "rotation-test"),
            ("API_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "debug"),
        ],
    );
    let addr = api.wait_until_listening();

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client_no| {
            let (ok, failed) = (ok.clone(), failed.clone());
            tokio::spawn(async move {
                let http = client();
                let mut n = 0;
                while started.elapsed() < RUN {
                    n += 1;
                    let created = http
                        .post(format!("http://{addr}/users"))
                        .json(&json!({"email": format!("c{client_no}-{n}@x.io"), "name": "R"}))
                        .send()
                        .await;
                    let location = match created {
                        Ok(r) if r.status() == StatusCode::CREATED => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            r.headers()[reqwest::header::LOCATION]
                                .to_str()
                                .unwrap()
                                .to_owned()
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            failed.lock().unwrap().push(format!("POST {status} {body}"));
                            continue;
                        }
                        Err(err) => {
                            failed.lock().unwrap().push(format!("POST {err}"));
                            continue;
                        }
                    };
                    match http.get(format!("http://{addr}{location}")).send().await {
                        Ok(r) if r.status() == StatusCode::OK => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            failed.lock().unwrap().push(format!("GET {status} {body}"));
                        }
                        Err(err) => failed.lock().unwrap().push(format!("GET {err}")),
                    }
                }
            })
        })
        .collect();

    // The midpoint: the role's password, then the file.
    tokio::time::sleep(RUN / 2).await;
    run_sql(
        &mut admin,
        format!("ALTER ROLE app PASSWORD '{NEW_PASSWORD}'"),
    )
    .await;
    let rotated_at: String = sqlx::query_scalar("SELECT now()::text")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    replace_file(&password_file, &format!("{NEW_PASSWORD}\n"));
    let rotated_after = started.elapsed();
    for client in clients {
        client.await.unwrap();
    }
    let elapsed = started.elapsed();

    let (sessions, old_sessions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE backend_start <= $1::timestamptz) \
         FROM pg_stat_activity WHERE usename = 'app' AND application_name = 'rotation-test'",
    )
    .bind(&rotated_at)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let failures = failed.lock().unwrap().clone();
    eprintln!(
        "rotation: {} requests in {:.1} s by {CLIENTS} clients, {} failed; rotated at {:.1} s; \
         DB_MAX_LIFETIME {lifetime}; {} sessions at the end, {old_sessions} older than the \
         rotation",
        ok.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        failures.len(),
        rotated_after.as_secs_f64(),
        sessions,
    );
    api.signal("TERM");
    let (_, log) = api.wait_for_exit();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .take(50)
        .collect();
    assert!(
        failures.is_empty(),
        "failed requests: {failures:?}\n{}",
        warnings.join("\n")
    );
    assert!(ok.load(Ordering::Relaxed) > 100, "the load ran");
    assert!(elapsed - rotated_after > LIFETIME, "one lifetime passed");
    assert!(sessions > 0, "the service has sessions");
    assert_eq!(
        old_sessions, 0,
        "every session logged in after the rotation"
    );

    // The old password no longer works (the rotation was real).
    let old = sqlx::PgConnection::connect(&cluster.verified_url("app", OLD_PASSWORD, "rotation"));
    assert!(old.await.is_err());

    assert!(
        log.contains("the password in DATABASE_PASSWORD_FILE changed"),
        "{log}"
    );
    for secret in [OLD_PASSWORD, NEW_PASSWORD, "0ld-s3cret", "n3w-s3cret"] {
        assert!(!log.contains(secret), "the log shows a password");
    }
}

#[test]
fn no_configuration_shows_a_password_in_debug() {
    let dir = TempDir::new();
    let password_file = dir.0.join("password");
    let url_file = dir.0.join("url");
    std::fs::write(&password_file, "f1le-s3cret\n").unwrap();
    std::fs::write(&url_file, "postgres://app:url-s3cret@db/app\n").unwrap();
    let (password_path, url_path) = (
        password_file.display().to_string(),
        url_file.display().to_string(),
    );
    let vars = [
        ("DATABASE_URL_FILE", url_path.as_str()),
        (
            "DATABASE_DIRECT_URL",
            "postgres://owner:d1rect-s3cret@db/app",
        ),
        ("DATABASE_REPLICA_URLS", "postgres://app@replica/app"),
        ("DATABASE_PASSWORD_FILE", password_path.as_str()),
    ];
    let lookup = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let config = DatabaseConfig::from_lookup(lookup).unwrap();
    let api = match api::Invocation::from_lookup(std::iter::empty(), lookup).unwrap() {
        api::Invocation::Serve(config) => config,
        api::Invocation::Print(text) => panic!("{text}"),
    };
    let shown = [
        format!("{config:?}"),
        format!("{api:?}"),
        format!("{:?}", service::MigratorOptions::default()),
        format!("{:?}", config.url),
        config.url.to_string(),
    ];
    for text in shown {
        for secret in ["f1le-s3cret", "url-s3cret", "d1rect-s3cret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    // The secrets did arrive where they are needed.
    assert!(config.url.expose_secret().contains("url-s3cret"));
    assert!(
        config.replica_urls[0]
            .expose_secret()
            .contains("f1le-s3cret")
    );
}
