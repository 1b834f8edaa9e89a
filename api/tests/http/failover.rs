//! The `api` binary on a real pg_auto_failover formation, with `DATABASE_URL` exactly as
//! `pg_autoctl show uri` prints it: eight clients post users through a planned switchover and
//! then through a SIGKILL of the primary, beside a libpq client (`psql`, which picks the
//! writable host of the same URL by itself) measured in the same run. Writes resume within
//! the libpq client's gap (plus 0.5 s, plus 1 s after the kill); every `201` is in the new
//! primary's table exactly once; nothing is answered `500`, nothing `409` (the service never
//! retries a write behind its client's back); reads from the standbys keep answering.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::binary::{Running, TempDir};
use crate::support::{client, status_and_json};
use test_support::{AdminSession, FORMATION_DATABASE, TestFormation};

/// What one request got, and when.
#[derive(Debug, Clone)]
struct Answer {
    sent: Instant,
    at: Instant,
    /// When it came, on the clock of the service's log.
    wall: SystemTime,
    status: StatusCode,
    /// The created user's id (a `201`).
    id: Option<i64>,
    /// A `503` saying the write may have been applied (the connection was lost after it was
    /// sent).
    outcome_unknown: bool,
}

/// Every answer of a run, shared by its clients.
type Answers = Arc<Mutex<Vec<Answer>>>;

/// The longest time between two successive writes among `times` within `from..=to` (the last
/// write before `from` counts as the start); times and result in seconds on one clock.
fn longest_gap(times: &[f64], from: f64, to: f64) -> f64 {
    let mut times: Vec<f64> = times.iter().copied().filter(|t| *t <= to).collect();
    times.sort_unstable_by(f64::total_cmp);
    let start = times.iter().rposition(|t| *t <= from).unwrap_or(0);
    times[start..]
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .fold(0.0, f64::max)
}

/// The arrival times of the answers with `status`, in seconds since `base`.
fn successes(answers: &Answers, status: StatusCode, base: Instant) -> Vec<f64> {
    answers
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.status == status)
        .map(|a| (a.at - base).as_secs_f64())
        .collect()
}

/// The server's clock now, in seconds since the epoch.
async fn server_now(url: &str) -> f64 {
    server_times(url, "SELECT extract(epoch FROM clock_timestamp())").await[0]
}

/// The one `float8`-able column of `sql`'s rows, on the node at `url`.
async fn server_times(url: &str, sql: &str) -> Vec<f64> {
    let db = sea_orm::Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT CAST(t AS float8) FROM ({sql}) AS q(t)"),
        ))
        .await
        .unwrap();
    db.close().await.unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index::<f64>(0).unwrap())
        .collect()
}

/// `psql` inserting a row at a time into `libpq_probe`, a new connection each (libpq chooses
/// the host by `target_session_attrs=read-write`), until `stop`; the times of its successes.
fn libpq_client(uri: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Instant>> {
    std::thread::spawn(move || {
        let mut done = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let inserted = Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-d",
                    &uri,
                    "-c",
                    "INSERT INTO libpq_probe DEFAULT VALUES",
                ])
                .env("PGUSER", "postgres")
                .env("PGCONNECT_TIMEOUT", "2")
                .output()
                .is_ok_and(|out| out.status.success());
            if inserted {
                done.push(Instant::now());
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        done
    })
}

/// Eight clients posting users with addresses of their own, until `stop`. A `503` is not
/// retried (its email is never sent again): any `409` would be the service's own retry.
fn writers(
    base: &str,
    answers: &Answers,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..8)
        .map(|client_no| {
            let (base, answers, stop, http) =
                (base.to_owned(), answers.clone(), stop.clone(), client());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let started = Instant::now();
                    let sent = http
                        .post(format!("{base}/users"))
                        .json(&json!({"email": format!("w{client_no}-{n}@x.io"), "name": "W"}))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    let Ok(response) = sent else { continue };
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    answers.lock().unwrap().push(Answer {
                        sent: started,
                        at: Instant::now(),
                        wall: SystemTime::now(),
                        status,
                        id: body["id"].as_i64(),
                        outcome_unknown: body["error"]
                            .as_str()
                            .is_some_and(|e| e.contains("may or may not have been applied")),
                    });
                    if status != StatusCode::CREATED {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect()
}

/// One client reading an existing user again and again, until `stop`.
fn reader(
    base: &str,
    id: i64,
    answers: &Answers,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let (url, answers, stop, http) = (
        format!("{base}/users/{id}"),
        answers.clone(),
        stop.clone(),
        client(),
    );
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            let Ok(response) = http.get(&url).timeout(Duration::from_secs(30)).send().await else {
                continue;
            };
            answers.lock().unwrap().push(Answer {
                sent,
                at: Instant::now(),
                wall: SystemTime::now(),
                status: response.status(),
                id: None,
                outcome_unknown: false,
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// The formation's database on the node at `port`, as the superuser.
fn as_superuser(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{FORMATION_DATABASE}")
}

/// The integer `sql` returns on the node at `url`.
async fn count(url: &str, sql: &str) -> i64 {
    AdminSession::connect(url).await.count(sql).await
}

/// Waits until both the API's writers (a request sent after `since`) and the libpq client
/// have succeeded (at most 90 s), then 2 s more.
async fn wait_for_writes_after(answers: &Answers, libpq_rows: &str, since: Instant) {
    let deadline = since + Duration::from_secs(90);
    loop {
        let api = answers
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.status == StatusCode::CREATED && a.sent > since);
        let libpq = count(
            libpq_rows,
            "SELECT count(*) FROM libpq_probe WHERE at > clock_timestamp() - interval '1 second'",
        )
        .await
            > 0;
        if api && libpq {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes did not resume within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_switchover_and_a_killed_primary_no_acknowledged_write_is_lost() {
    let formation = tokio::task::spawn_blocking(TestFormation::start)
        .await
        .unwrap();
    let uri = formation.uri();
    let first = formation.primary_port().unwrap();
    AdminSession::connect(&as_superuser(first))
        .await
        .execute(
            "CREATE TABLE libpq_probe \
             (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
        )
        .await;

    let dir = TempDir::new();
    let mut api = Running::start(
        &dir.0,
        &["--migrate"],
        &[
            // As printed: no user in it, so libpq and sqlx take PGUSER.
            ("DATABASE_URL", &uri),
            ("PGUSER", "postgres"),
            ("DB_READ_FROM_STANDBYS", "true"),
            ("DB_MAX_CONNECTIONS", "8"),
            ("API_ADDR", "127.0.0.1:0"),
            ("API_HEALTH_DETAILS", "true"),
            ("RUST_LOG", "warn,api=info,service::routing::follow=debug"),
        ],
    );
    let api_url = format!("http://{}", api.wait_until_listening());
    let http = client();
    let seeded = http
        .post(format!("{api_url}/users"))
        .json(&json!({"email": "reader@x.io", "name": "R"}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), StatusCode::CREATED);
    let seeded: Value = seeded.json().await.unwrap();

    let base = Instant::now();
    let (writes, reads) = (Answers::default(), Answers::default());
    let stop = Arc::new(AtomicBool::new(false));
    let libpq = libpq_client(uri.clone(), stop.clone());
    let mut clients = writers(&api_url, &writes, &stop);
    clients.push(reader(
        &api_url,
        seeded["id"].as_i64().unwrap(),
        &reads,
        &stop,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A planned switchover. (Each event's start and end on the client's clock and the
    // servers', which are the same machine's.)
    let server_switch_started = server_now(&as_superuser(first)).await;
    let switch_started = Instant::now();
    let formation = tokio::task::spawn_blocking(move || {
        formation.switchover();
        formation
    })
    .await
    .unwrap();
    let second = formation.primary_port().unwrap();
    assert_ne!(second, first);
    wait_for_writes_after(&writes, &as_superuser(second), switch_started).await;
    let switch_ended = Instant::now();
    let server_switch_ended = server_now(&as_superuser(second)).await;

    // The details name the new primary, and the old one as a standby that serves reads.
    let (status, health) =
        status_and_json(http.get(format!("{api_url}/health")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(
        health["details"]["primary"],
        format!("127.0.0.1:{second}/appdb"),
        "{health}"
    );
    let nodes = health["details"]["replicas"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let node = |port: u16| {
        nodes
            .iter()
            .find(|n| n["name"] == format!("127.0.0.1:{port}/appdb"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(node(second)["role"], "primary", "{health}");
    assert_eq!(node(second)["in_rotation"], false, "{health}");
    assert_eq!(node(first)["role"], "standby", "{health}");
    assert!(node(first)["lag_bytes"].is_u64(), "{health}");

    // The primary dies.
    let server_kill_started = server_now(&as_superuser(second)).await;
    let (killed, formation) = tokio::task::spawn_blocking(move || {
        let mut formation = formation;
        (formation.kill_primary(), formation)
    })
    .await
    .unwrap();
    assert_eq!(killed, second);
    let kill_started = Instant::now();
    let third = {
        let formation = &formation;
        tokio::task::block_in_place(|| formation.wait_for_primary_other_than(killed))
    };
    wait_for_writes_after(&writes, &as_superuser(third), kill_started).await;
    let kill_ended = Instant::now();
    let server_kill_ended = server_now(&as_superuser(third)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let libpq = tokio::task::spawn_blocking(move || libpq.join().unwrap())
        .await
        .unwrap();

    // The gaps as the clients saw them: between two successes' arrivals.
    let secs = |t: Instant| (t - base).as_secs_f64();
    let libpq: Vec<f64> = libpq.into_iter().map(secs).collect();
    let api_writes = successes(&writes, StatusCode::CREATED, base);
    let (switch, kill) = (
        (secs(switch_started), secs(switch_ended)),
        (secs(kill_started), secs(kill_ended)),
    );
    let (api_switch, libpq_switch) = (
        longest_gap(&api_writes, switch.0, switch.1),
        longest_gap(&libpq, switch.0, switch.1),
    );
    let (api_kill, libpq_kill) = (
        longest_gap(&api_writes, kill.0, kill.1),
        longest_gap(&libpq, kill.0, kill.1),
    );
    let answers = writes.lock().unwrap().clone();
    let count = |status: StatusCode| answers.iter().filter(|a| a.status == status).count();
    let ids: Vec<String> = answers
        .iter()
        .filter_map(|a| a.id)
        .map(|id| id.to_string())
        .collect();
    assert_eq!(ids.len(), count(StatusCode::CREATED));
    // The same gaps on the server's clock, between two acknowledged commits: an answer that
    // arrives late (a 201 whose `X-Read-After` waited for the dead primary) cannot split them.
    let new_primary = as_superuser(third);
    let api_commits = server_times(
        &new_primary,
        &format!(
            r#"SELECT extract(epoch FROM created_at) FROM "user" WHERE id IN ({})"#,
            ids.join(",")
        ),
    )
    .await;
    let libpq_commits = server_times(
        &new_primary,
        "SELECT extract(epoch FROM at) FROM libpq_probe",
    )
    .await;
    let server_switch = (server_switch_started, server_switch_ended);
    let server_kill = (server_kill_started, server_kill_ended);
    let (api_switch_commits, libpq_switch_commits) = (
        longest_gap(&api_commits, server_switch.0, server_switch.1),
        longest_gap(&libpq_commits, server_switch.0, server_switch.1),
    );
    let (api_kill_commits, libpq_kill_commits) = (
        longest_gap(&api_commits, server_kill.0, server_kill.1),
        longest_gap(&libpq_commits, server_kill.0, server_kill.1),
    );
    // How long after its commit the latest 201 came (both clocks are this machine's): the
    // answer to a committed write is not held back by the outage that follows it.
    let answered_after_commit = server_times(
        &new_primary,
        &format!(
            r#"SELECT max(a.t - extract(epoch FROM u.created_at)) FROM (VALUES {}) AS a(id, t) JOIN "user" AS u USING (id)"#,
            answers
                .iter()
                .filter_map(|a| {
                    let at = a.wall.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
                    Some(format!("({}, {at:.6})", a.id?))
                })
                .collect::<Vec<_>>()
                .join(",")
        ),
    )
    .await[0];
    let read_answers = reads.lock().unwrap().clone();
    let read_switch = longest_gap(&successes(&reads, StatusCode::OK, base), switch.0, switch.1);
    eprintln!(
        "write gaps, API against libpq, between answers (between commits): switchover \
         {api_switch:.2} s against {libpq_switch:.2} s ({api_switch_commits:.2} s against \
         {libpq_switch_commits:.2} s); SIGKILL {api_kill:.2} s against {libpq_kill:.2} s \
         ({api_kill_commits:.2} s against {libpq_kill_commits:.2} s); longest read gap in the \
         switchover {read_switch:.3} s; latest 201 {answered_after_commit:.3} s after its \
         commit; {} created, {} answered 503 ({} of them: may have been \
         applied), {} reads",
        count(StatusCode::CREATED),
        count(StatusCode::SERVICE_UNAVAILABLE),
        answers.iter().filter(|a| a.outcome_unknown).count(),
        read_answers.len()
    );

    // What the service reported, then its log (which a failed bound below shows).
    let metrics = http
        .get(format!("{api_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    api.signal("TERM");
    let (status, log) = api.wait_for_exit();
    assert!(status.success(), "{status}\n{log}");
    assert!(!log.contains(" 500 "), "{log}");

    let unexpected: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != StatusCode::CREATED && a.status != StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(unexpected.is_empty(), "only 201 and 503: {unexpected:?}");
    for (what, api, libpq, margin, window) in [
        ("switchover, answers", api_switch, libpq_switch, 0.5, switch),
        (
            "switchover, commits",
            api_switch_commits,
            libpq_switch_commits,
            0.5,
            switch,
        ),
        ("SIGKILL, answers", api_kill, libpq_kill, 1.0, kill),
        (
            "SIGKILL, commits",
            api_kill_commits,
            libpq_kill_commits,
            1.0,
            kill,
        ),
    ] {
        assert!(
            api <= libpq + margin,
            "{what}: {api:.2} s through the API against libpq's {libpq:.2} s\n{}",
            explain(&answers, base, window, &log)
        );
    }

    assert!(
        answered_after_commit < 1.0,
        "a 201 came {answered_after_commit:.2} s after its commit\n{}",
        explain(&answers, base, (switch.0, kill.1), &log)
    );

    // Every acknowledged user is in the new primary's table, once.
    let new_primary = AdminSession::connect(&new_primary).await;
    let in_list = format!(r#"FROM "user" WHERE id IN ({})"#, ids.join(","));
    let found = new_primary
        .count(&format!("SELECT count(*) {in_list}"))
        .await;
    let distinct_emails = new_primary
        .count(&format!("SELECT count(DISTINCT email) {in_list}"))
        .await;
    assert_eq!(
        (found, distinct_emails),
        (ids.len() as i64, ids.len() as i64)
    );

    // Reads kept answering through the switchover: never a 500, and never as long without
    // an answer as writes were.
    assert!(
        read_answers
            .iter()
            .all(|a| a.status == StatusCode::OK || a.status == StatusCode::SERVICE_UNAVAILABLE),
        "{read_answers:?}"
    );
    assert!(
        read_switch < api_switch,
        "reads {read_switch:.3} s, writes {api_switch:.2} s"
    );

    let sample = |name: &str| {
        metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    // The two moves followed; the time they record lies within the gaps between commits.
    assert_eq!(sample("db_failovers_total"), 2.0, "{metrics}");
    assert_eq!(sample("db_failover_write_gap_seconds_count"), 2.0);
    let recorded = sample("db_failover_write_gap_seconds_sum");
    assert!(
        recorded > 0.0 && recorded <= api_switch_commits + api_kill_commits + 0.5,
        "{recorded} s recorded, gaps {api_switch_commits:.2} s and {api_kill_commits:.2} s"
    );
}

/// For a gap that broke its bound: the answers within `window` (seconds since `base`) that
/// were not a prompt `201`, on the clock of the service's log, and the log's warnings and
/// the follower's lines.
fn explain(answers: &[Answer], base: Instant, window: (f64, f64), log: &str) -> String {
    let clock = |t: SystemTime| {
        let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since_epoch.as_secs() % 86_400;
        format!(
            "{:02}:{:02}:{:02}.{:06}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            since_epoch.subsec_micros()
        )
    };
    let mut lines = vec!["answers in the window, other than a 201 within 250 ms:".to_owned()];
    lines.extend(
        answers
            .iter()
            .filter(|a| {
                let (sent, at) = ((a.sent - base).as_secs_f64(), (a.at - base).as_secs_f64());
                at >= window.0
                    && sent <= window.1
                    && (a.status != StatusCode::CREATED || a.at - a.sent > SLOW_ANSWER)
            })
            .take(100)
            .map(|a| {
                format!(
                    "  answered {} after {} ms: {}",
                    clock(a.wall),
                    (a.at - a.sent).as_millis(),
                    a.status
                )
            }),
    );
    lines.push("the service's warnings and the follower's lines:".to_owned());
    lines.extend(
        log.lines()
            .filter(|l| l.contains(" WARN ") || l.contains("routing::follow"))
            .take(200)
            .map(|l| format!("  {l}")),
    );
    lines.join("\n")
}

/// An answer slower than this is shown when a bound fails.
const SLOW_ANSWER: Duration = Duration::from_millis(250);
