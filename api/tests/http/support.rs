//! A running server and a client for it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use api::Application;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use service::{DatabaseConfig, DatabaseService};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The API served on a free loopback port over its own pool, as the binary serves it.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// A clone of the server's service: closing it closes the server's pool.
    pub service: DatabaseService,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Connects a new pool with `config` and serves it on `127.0.0.1:0`.
    pub async fn start(config: &DatabaseConfig) -> Self {
        Self::start_with(config, api::config::DEFAULT_REQUEST_TIMEOUT, false).await
    }

    /// Like [`start`](Self::start), answering 503 to requests slower than `limit`.
    pub async fn start_with_request_timeout(config: &DatabaseConfig, limit: Duration) -> Self {
        Self::start_with(config, limit, false).await
    }

    /// Like [`start`](Self::start), with the full report at `GET /health`.
    pub async fn start_with_health_details(config: &DatabaseConfig) -> Self {
        Self::start_with(config, api::config::DEFAULT_REQUEST_TIMEOUT, true).await
    }

    async fn start_with(config: &DatabaseConfig, limit: Duration, health_details: bool) -> Self {
        let service = DatabaseService::connect(config)
            .await
            .expect("the server connects to the test database");
        let app = Application::bind("127.0.0.1:0".parse().unwrap(), service.clone())
            .await
            .expect("a free loopback port")
            .with_request_timeout(limit)
            .with_health_details(health_details);
        let addr = app.local_addr();
        assert_ne!(addr.port(), 0);
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until(async {
            let _ = signal.await;
        }));
        Self {
            addr,
            client: client(),
            service,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.client.delete(self.url(path)).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// A request with this exact body and `Content-Type`.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: &'static str,
    ) -> Response {
        self.client
            .request(method, self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a user through the API, asserting the 201.
    pub async fn create_user(&self, email: &str, name: &str) -> Value {
        let response = self
            .post("/users", &json!({"email": email, "name": name}))
            .await;
        let (status, body) = status_and_json(response).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Signals shutdown and waits for the server to finish (in-flight requests answered, pool
    /// closed).
    pub async fn stop(&mut self) -> io::Result<()> {
        self.signal_shutdown();
        self.wait().await
    }

    pub fn signal_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    pub fn has_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    pub async fn wait(&mut self) -> io::Result<()> {
        let task = self.task.take().expect("the server is running");
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("the server stops within 20 s")
            .expect("the server task does not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A client for the loopback server: no proxy from the environment, no connection reuse
/// surprises, and a bound on every request so a hang fails the test instead of stalling it.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub async fn status_and_json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "{status} {text}"
    );
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, body)
}

/// Asserts a JSON error body: the status, `field`, and that `error` contains `needle`.
pub async fn assert_error(
    response: Response,
    status: StatusCode,
    field: Option<&str>,
    needle: &str,
) -> Value {
    let (actual, body) = status_and_json(response).await;
    assert_eq!(actual, status, "{body}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"));
    assert!(error.contains(needle), "{error:?} lacks {needle:?}");
    assert_eq!(body["field"].as_str(), field, "{body}");
    assert_no_internals(&body);
    body
}

/// No SQL, no connection URL, no driver detail.
pub fn assert_no_internals(body: &Value) {
    let text = body.to_string().to_lowercase();
    for leak in [
        "select ",
        "insert ",
        "update \"",
        "delete from",
        "postgres://",
        "sqlite:",
        "sqlx",
        "db_test_",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {body}");
    }
}

/// The user's id from a user body.
pub fn id_of(user: &Value) -> i64 {
    user["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {user}"))
}

/// Every user route answers 503 with `Retry-After: 1` and exactly the generic body: nothing of
/// the cause (no address, no driver text) leaks out.
pub async fn assert_users_unavailable(server: &TestServer, id: i64) {
    assert_users_unavailable_at(&server.client, &server.url(""), id).await;
}

/// [`assert_users_unavailable`] for the API at `base` (`http://host:port`).
pub async fn assert_users_unavailable_at(client: &reqwest::Client, base: &str, id: i64) {
    let path = format!("{base}/users/{id}");
    let grace = json!({"email": "grace@example.com", "name": "Grace"});
    for request in [
        client.get(&path),
        client.get(format!("{base}/users?limit=10")),
        client.post(format!("{base}/users")).json(&grace),
        client.patch(&path).json(&json!({"name": "Ada L."})),
        client.delete(&path),
    ] {
        assert_unavailable(request.send().await.unwrap()).await;
    }
}

/// A 503 with `Retry-After: 1` and exactly the generic body.
pub async fn assert_unavailable(response: Response) {
    assert_503_saying(response, api::error::UNAVAILABLE_MESSAGE).await;
}

/// A `503` saying the write may have been applied (the connection was lost after it was sent).
pub async fn assert_outcome_unknown(response: Response) {
    assert_503_saying(response, api::error::COMMIT_UNKNOWN_MESSAGE).await;
}

/// A 503 with `Retry-After: 1` whose body is exactly `{"error": message}`.
async fn assert_503_saying(response: Response, message: &str) {
    assert_retry_after(&response);
    let body = assert_error(response, StatusCode::SERVICE_UNAVAILABLE, None, message).await;
    assert_eq!(body, json!({ "error": message }));
}

/// The response says when to come back: `Retry-After: 1`.
pub fn assert_retry_after(response: &Response) {
    let retry_after = response.headers().get(reqwest::header::RETRY_AFTER);
    assert_eq!(
        retry_after.map(|v| v.to_str().unwrap()),
        Some("1"),
        "{} {}",
        response.status(),
        response.url()
    );
}
