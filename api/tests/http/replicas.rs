//! The API over a primary and a streaming replica: reads served by the replica, read-your-writes
//! through `X-Read-After` on every request of a concurrent run, and a replica problem that never
//! turns `/health` into a 503.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestServer, id_of, status_and_json};
use test_support::TestReplicaPair;

const READ_AFTER: &str = "x-read-after";

async fn server_on(pair: &TestReplicaPair) -> TestServer {
    let server = TestServer::start(&pair.config()).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.service.reader().replica_name().is_none() {
        assert!(
            Instant::now() < deadline,
            "the replica did not enter rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// `GET path` with `X-Read-After: position`.
async fn get_after(server: &TestServer, path: &str, position: &str) -> (StatusCode, Value) {
    let response = server
        .client
        .get(server.url(path))
        .header(READ_AFTER, position)
        .send()
        .await
        .unwrap();
    status_and_json(response).await
}

fn position_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(READ_AFTER)
        .expect("a write answers with X-Read-After")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_reads_its_own_writes_while_the_replica_is_behind() {
    let pair = TestReplicaPair::start("app").await;
    let server = server_on(&pair).await;

    // 8 clients create 15 users each; every read of a user just created finds it.
    let users = run_clients(&server, |http, base, client| async move {
        let mut users = Vec::new();
        for n in 0..15 {
            let created = http
                .post(format!("{base}/users"))
                .json(&json!({"email": format!("c{client}-{n}@x.io"), "name": "before"}))
                .send()
                .await
                .unwrap();
            assert_eq!(created.status(), StatusCode::CREATED);
            let position = position_of(&created);
            let user: Value = created.json().await.unwrap();
            let path = format!("{base}/users/{}", id_of(&user));
            // Without the header: never a 404 for a user that exists.
            let plain = http.get(&path).send().await.unwrap();
            assert_eq!(plain.status(), StatusCode::OK, "{path}");
            let read = http
                .get(&path)
                .header(READ_AFTER, &position)
                .send()
                .await
                .unwrap();
            assert_eq!(read.status(), StatusCode::OK);
            assert_eq!(read.json::<Value>().await.unwrap(), user);
            users.push(path);
        }
        users
    })
    .await;

    // Once the replica has every user, it stops showing changes: a read of a change must go
    // to the primary, or answer the stale name.
    let caught_up: service::WalPosition = latest(&server).await.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while server
        .service
        .reader_after(caught_up)
        .replica_name()
        .is_none()
    {
        assert!(Instant::now() < deadline, "the replica did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pair.pause_replay().await;
    let users = std::sync::Arc::new(users);
    run_clients(&server, |http, _base, client| {
        let users = users.clone();
        async move {
            for path in &users[client] {
                let patched = http
                    .patch(path)
                    .json(&json!({"name": "after"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(patched.status(), StatusCode::OK);
                let position = position_of(&patched);
                let read = http
                    .get(path)
                    .header(READ_AFTER, &position)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(read.status(), StatusCode::OK);
                let read: Value = read.json().await.unwrap();
                assert_eq!(read["name"], "after", "{path} reads its own write");
                // Without the header the replica answers, as it was.
                let plain: Value = http.get(path).send().await.unwrap().json().await.unwrap();
                assert_eq!(
                    plain["name"], "before",
                    "{path} served by the paused replica"
                );
            }
        }
    })
    .await;

    let (status, body) = get_after(&server, "/users", "nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], READ_AFTER);
    pair.resume_replay().await;
}

/// Runs `client(http, base_url, index)` for 8 clients at once and collects what each returns.
async fn run_clients<F, Fut, T>(server: &TestServer, client: F) -> Vec<T>
where
    F: Fn(reqwest::Client, String, usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..8)
        .map(|index| tokio::spawn(client(server.client.clone(), server.url(""), index)))
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// The position after everything written so far, from a write of its own.
async fn latest(server: &TestServer) -> String {
    let response = server
        .post("/users", &json!({"email": "marker@x.io", "name": "marker"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    position_of(&response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_is_down_leaves_health_degraded_but_200_and_costs_no_request() {
    let pair = TestReplicaPair::start("app").await;
    let server = server_on(&pair).await;
    let user = server.create_user("ada@x.io", "Ada").await;

    pair.standby.stop();
    for _ in 0..20 {
        let (status, body) =
            status_and_json(server.get(&format!("/users/{}", id_of(&user))).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, user);
    }
    let (status, body) = status_and_json(server.get("/health").await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded");

    pair.standby.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = status_and_json(server.get("/health").await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["status"] == "healthy" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not come back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
