//! Two services in one process, each on a database of its own with a read replica and held
//! connections: every row, every pool metric and every held connection lands on the service
//! that made it, and closing one leaves the other serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use service::user::{self, NewUser};
use service::{DatabaseService, Executor};
use test_support::TestReplicaPair;

/// Histogram records by metric and `pool` label (`db_pool_acquire_wait_seconds{pool=…}`).
#[derive(Default)]
struct Recording(Arc<Mutex<HashMap<String, u64>>>);

struct Count(String, Arc<Mutex<HashMap<String, u64>>>);

impl HistogramFn for Count {
    fn record(&self, _: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += 1;
    }
}

impl metrics::Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let pool = key
            .labels()
            .find(|label| label.key() == "pool")
            .map_or("", |label| label.value());
        let name = format!("{}{{pool={pool}}}", key.name());
        Histogram::from_arc(Arc::new(Count(name, self.0.clone())))
    }
}

impl Recording {
    fn waits(&self, pool: &str) -> u64 {
        let key = format!("db_pool_acquire_wait_seconds{{pool={pool}}}");
        self.0.lock().unwrap().get(&key).copied().unwrap_or(0)
    }
}

/// A service on `pair`'s database with its standby as replica, named `app` in
/// `pg_stat_activity`, once the replica is in rotation.
async fn connect(pair: &TestReplicaPair, app: &str) -> DatabaseService {
    let mut config = pair.config();
    config.application_name = app.to_owned();
    assert_eq!(config.connection_hold, Some(Duration::from_millis(10)));
    let service = DatabaseService::connect(&config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while service.reader().replica_name().is_none() {
        assert!(
            Instant::now() < deadline,
            "the replica of {app} never entered rotation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service
}

fn new_user(tag: &str, n: usize) -> NewUser {
    NewUser {
        email: format!("{tag}{n}@x.io"),
        name: tag.to_owned(),
    }
}

/// `(database, application_name, connections)` on the server at `url`, for this test's
/// applications.
async fn sessions(url: &str) -> Vec<(String, String, i64)> {
    let db = Database::connect(url).await.unwrap();
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT datname::text, application_name, count(*) FROM pg_stat_activity \
             WHERE application_name LIKE 'two-%' GROUP BY 1, 2 ORDER BY 1, 2",
        ))
        .await
        .unwrap();
    let _ = db.close().await;
    rows.iter()
        .map(|row| {
            (
                row.try_get_by_index(0).unwrap(),
                row.try_get_by_index(1).unwrap(),
                row.try_get_by_index(2).unwrap(),
            )
        })
        .collect()
}

/// Creates `count` users tagged `tag` on `db` concurrently, reading each back through the
/// primary and through `reads` (a reader, or the service).
async fn traffic(db: &DatabaseService, reads: &impl Executor, tag: &str, count: usize) {
    let work = (0..count).map(|n| async move {
        let created = user::create(db, new_user(tag, n)).await.unwrap();
        assert_eq!(user::get(db, created.id).await.unwrap(), created);
        assert_eq!(user::get(reads, created.id).await.unwrap(), created);
    });
    join_all(work).await;
}

#[tokio::test]
async fn two_services_in_one_process_keep_their_rows_metrics_and_held_connections_apart() {
    let alpha_pair = TestReplicaPair::start("alpha").await;
    let beta_pair = TestReplicaPair::start("beta").await;
    let recording = Recording::default();
    // The runtime of this test is the test's thread: every record lands here.
    let _recorder = metrics::set_default_local_recorder(&recording);
    let alpha = connect(&alpha_pair, "two-alpha").await;
    let beta = connect(&beta_pair, "two-beta").await;
    let (alpha_replica, beta_replica) = (alpha_pair.standby_name(), beta_pair.standby_name());

    // Both at once: alpha reads through its replica, beta only from its primary.
    let alpha_reader = alpha.reader();
    assert_eq!(alpha_reader.replica_name(), Some(alpha_replica.as_str()));
    tokio::join!(
        traffic(&alpha, &alpha_reader, "alpha", 40),
        traffic(&beta, &beta, "beta", 40),
    );
    assert!(
        recording.waits(&alpha_replica) > 0,
        "alpha's replica reads are recorded under its name"
    );
    assert_eq!(
        recording.waits(&beta_replica),
        0,
        "nothing read from beta's replica, so nothing is recorded under its name"
    );
    assert!(recording.waits("primary") > 0);

    // Then both through their replicas: the same ids exist in both databases, and each
    // service answers with its own rows.
    let beta_reader = beta.reader();
    tokio::join!(
        traffic(&alpha, &alpha_reader, "alpha-again", 20),
        traffic(&beta, &beta_reader, "beta-again", 20),
    );
    assert!(recording.waits(&beta_replica) > 0);
    for id in 1..=60 {
        let (alpha_reader, beta_reader) = (alpha.reader(), beta.reader());
        let (from_alpha, from_beta) =
            tokio::join!(user::get(&alpha_reader, id), user::get(&beta_reader, id));
        assert!(from_alpha.unwrap().email.starts_with("alpha"), "id {id}");
        assert!(from_beta.unwrap().email.starts_with("beta"), "id {id}");
    }
    let (alpha_page, beta_page) =
        tokio::join!(user::list(&alpha, 500, None), user::list(&beta, 500, None));
    let (alpha_page, beta_page) = (alpha_page.unwrap(), beta_page.unwrap());
    assert_eq!(alpha_page.users.len(), 60);
    assert_eq!(beta_page.users.len(), 60);
    assert!(alpha_page.users.iter().all(|u| u.name.starts_with("alpha")));
    assert!(beta_page.users.iter().all(|u| u.name.starts_with("beta")));

    // Every connection, held or not, is its own service's: on its own servers, to its own
    // database, never more than its pool allows (4 per node).
    for (pair, app, database) in [
        (&alpha_pair, "two-alpha", "alpha"),
        (&beta_pair, "two-beta", "beta"),
    ] {
        for url in [pair.primary.admin_url(), pair.standby.admin_url()] {
            let found = sessions(&url).await;
            assert!(
                !found.is_empty(),
                "{app} has sessions on {database}'s nodes"
            );
            for (datname, name, count) in found {
                assert_eq!((datname.as_str(), name.as_str()), (database, app));
                assert!(count <= 4, "{app}: {count} sessions on one node");
            }
        }
    }

    // Closing one service stops its held connections only: the other keeps serving on its
    // fast path, replica included.
    alpha.close().await.unwrap();
    assert!(user::get(&alpha, 1).await.unwrap_err().is_unavailable());
    traffic(&beta, &beta.reader(), "beta-after", 20).await;
    let report = beta.health().await;
    assert!(report.can_serve(), "{report:?}");
    assert!(report.pool.size <= 4, "{report:?}");
    assert!(
        report.replicas.iter().all(|replica| replica.in_rotation),
        "{report:?}"
    );
}
