//! The `api` binary itself: configuration from the environment, the embedded SQLite default,
//! `--migrate`, `DB_ECHO`, clean exit on SIGTERM / SIGINT, clear errors for invalid values.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::on_both_backends;
use crate::support::{client, status_and_json};
use test_support::{TestBackend, TestDatabase};

/// A folder of its own to run the binary in (its `data/`, no `.env` above it).
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "api_test_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary, running, with its stderr collected line by line.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

fn command(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    command
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // No variable of the test environment reaches the binary.
    for variable in api::ApiConfig::variables() {
        command.env_remove(variable.name);
    }
    command.env("RUST_LOG", "info");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

impl Running {
    pub(crate) fn start(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> Self {
        let mut child = command(cwd, args, vars).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits (at most 30 s) for a log line containing `needle` and returns it.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; the log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The address from the "listening on http://…" line.
    pub(crate) fn wait_until_listening(&mut self) -> SocketAddr {
        let line = self.wait_for("listening on http://");
        let (_, addr) = line.split_once("listening on http://").unwrap();
        addr.trim().parse().unwrap()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most 20 s) for the process to exit; returns its status and the whole log.
    pub(crate) fn wait_for_exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "still running; log:\n{}",
                self.log.join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // The reader thread ends at EOF: collect the rest.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.log.push(line);
        }
        (status, self.log.join("\n"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (it is expected to exit by itself).
fn run_to_exit(cwd: &Path, args: &[&str], vars: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let output = command(cwd, args, vars).output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

on_both_backends!(the_binary_serves_the_configured_database_until_sigterm);

async fn the_binary_serves_the_configured_database_until_sigterm(backend: TestBackend) {
    let db = TestDatabase::new(backend).await;
    let dir = TempDir::new();
    let url = db.config().url.expose_secret();
    let mut api = Running::start(
        &dir.0,
        &["--migrate"],
        &[("DATABASE_URL", &url), ("API_ADDR", "127.0.0.1:0")],
    );
    let addr = api.wait_until_listening();
    let http = client();

    let response = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    let (status, report) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let response = http
        .post(format!("http://{addr}/users"))
        .json(&json!({"email": "Ada@Example.com", "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let response = http
        .get(format!("http://{addr}{location}"))
        .send()
        .await
        .unwrap();
    let (status, user) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(user["email"], "ada@example.com");
    // The metrics, on the API's address.
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{method="POST",route="/users",status="201"} 1"#),
        "{metrics}"
    );

    api.signal("TERM");
    let (status, log) = api.wait_for_exit();

    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("closing the database pool"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(
        log.contains("method=POST uri=/users") && log.contains("status=201"),
        "request tracing: {log}"
    );
    assert!(!log.contains("password"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_api_metrics_addr_the_metrics_are_served_there_and_not_on_the_api_address() {
    let db = TestDatabase::new(TestBackend::Sqlite).await;
    let dir = TempDir::new();
    let url = db.config().url.expose_secret();
    let mut api = Running::start(
        &dir.0,
        &[],
        &[
            ("DATABASE_URL", &url),
            ("API_ADDR", "127.0.0.1:0"),
            ("API_METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    let addr = api.wait_until_listening();
    let line = api.wait_for("metrics at http://");
    let (_, metrics_url) = line.split_once("metrics at ").unwrap();
    let http = client();

    let response = http
        .get(format!("http://{addr}/users/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "not on the API's address"
    );
    let response = http.get(metrics_url.trim()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = response.text().await.unwrap();
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/users/{id}",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"db_query_errors_total{operation="user.get",backend="sqlite",kind="not_found"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"db_pool_connections_max{pool="primary"} 10"#),
        "{metrics}"
    );

    api.signal("TERM");
    let (status, log) = api.wait_for_exit();
    assert!(status.success(), "{status}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_database_url_it_serves_the_embedded_sqlite_file_migrated_only_when_asked() {
    let dir = TempDir::new();
    let http = client();

    // Not asked to migrate: the fresh file has no schema, /health says so.
    let mut api = Running::start(
        &dir.0,
        &[],
        &[("API_ADDR", "127.0.0.1:0"), ("API_HEALTH_DETAILS", "true")],
    );
    api.wait_for("DATABASE_URL is not set: using the embedded SQLite database");
    api.wait_for("migrations are pending");
    let addr = api.wait_until_listening();
    let response = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    let (status, report) = status_and_json(response).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{report}");
    assert_eq!(report["status"], "degraded");
    assert_eq!(report["details"]["backend"], "sqlite");
    api.signal("INT");
    let (status, log) = api.wait_for_exit();
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("Ctrl-C received"), "{log}");
    assert!(dir.0.join("data/db.sqlite").is_file());

    // Asked through API_MIGRATE: migrated, healthy, usable.
    let mut api = Running::start(
        &dir.0,
        &[],
        &[("API_ADDR", "127.0.0.1:0"), ("API_MIGRATE", "true")],
    );
    api.wait_for("applying pending migrations");
    let addr = api.wait_until_listening();
    let response = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    let (status, report) = status_and_json(response).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let response = http
        .post(format!("http://{addr}/users"))
        .json(&json!({"email": "ada@example.com", "name": "Ada"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    api.signal("TERM");
    let (status, log) = api.wait_for_exit();
    assert!(status.success(), "{status}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_echo_logs_every_statement() {
    let db = TestDatabase::new(TestBackend::Sqlite).await;
    let dir = TempDir::new();
    let url = db.config().url.expose_secret();
    let mut api = Running::start(
        &dir.0,
        &[],
        &[
            ("DATABASE_URL", &url),
            ("API_ADDR", "127.0.0.1:0"),
            ("DB_ECHO", "true"),
        ],
    );
    let addr = api.wait_until_listening();

    let response = client()
        .get(format!("http://{addr}/users?limit=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The statement, logged inside the request's span.
    let line = api.wait_for("uri=/users?limit=7 version=HTTP/1.1}: sqlx::query");
    assert!(line.contains(r#"FROM \"user\""#), "{line}");
    api.signal("TERM");
    let (status, log) = api.wait_for_exit();
    assert!(status.success(), "{status}\n{log}");
}

#[test]
fn invalid_values_and_arguments_exit_non_zero_naming_them() {
    let dir = TempDir::new();
    for (args, vars, expected) in [
        (
            &[][..],
            &[("API_ADDR", "localhost:3000")][..],
            r#"API_ADDR="localhost:3000" is invalid: expected IP:PORT"#,
        ),
        (
            &[],
            &[("API_METRICS_ADDR", "everywhere")],
            r#"API_METRICS_ADDR="everywhere" is invalid: expected IP:PORT"#,
        ),
        (
            &[],
            &[("API_MIGRATE", "maybe")],
            r#"API_MIGRATE="maybe" is invalid: expected true or false"#,
        ),
        (
            &[],
            &[("DB_HEALTH_TIMEOUT", "soon")],
            r#"DB_HEALTH_TIMEOUT="soon" is invalid"#,
        ),
        (
            &[],
            &[("API_REQUEST_TIMEOUT", "abc")],
            r#"API_REQUEST_TIMEOUT="abc" is invalid: expected a duration such as 500ms, 5s, 2m or 30 (seconds)"#,
        ),
        (
            &["--migrat"],
            &[],
            "error: unexpected argument '--migrat' found",
        ),
    ] {
        let (status, _, stderr) = run_to_exit(&dir.0, args, vars);
        assert_eq!(status.code(), Some(2), "{args:?} {vars:?}: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }

    let (status, _, stderr) = run_to_exit(
        &dir.0,
        &[],
        &[("DATABASE_URL", "mysql://app:hunter2@db/app")],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL=mysql://app:***@db/app"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let (status, stdout, _) = run_to_exit(&dir.0, &["--help"], &[]);
    assert!(status.success());
    assert!(stdout.contains("Usage: api [OPTIONS]"), "{stdout}");
    for variable in api::ApiConfig::variables() {
        assert!(
            stdout.contains(&format!("[env: {}", variable.name)),
            "{} is not in the help: {stdout}",
            variable.name
        );
    }
    assert!(
        !dir.0.join("data").exists(),
        "nothing was started, no database created"
    );
}
