//! What the data layer records for operators: pool usage, query latency and errors, replica
//! lag, migrations — through the [`metrics`] facade.
//!
//! This crate only records. The application decides where the figures go by installing one
//! recorder for the process at start-up (`metrics-exporter-prometheus`, as the `api` crate
//! does, or an OpenTelemetry or StatsD bridge); until one is installed, recording is a
//! thread-local check and an atomic load per figure. Call [`describe`] after installing it, so
//! the exposition carries each metric's help text and unit. Every record goes to the recorder
//! in effect where it is made (the process's, or one set with
//! [`metrics::with_local_recorder`]); the keys are built once per operation and per pool.
//!
//! Names and labels follow Prometheus' conventions: base units in the name (`_seconds`,
//! `_bytes`), `_total` on counters, and labels from small fixed sets — an operation's name, a
//! backend, an error kind, a pool's role or a replica's `host:port/database` — never an email,
//! an id, a statement's text or a password.
//!
//! | metric | type | labels | what it is |
//! | ------ | ---- | ------ | ---------- |
//! | [`QUERY_DURATION`] | histogram | `operation`, `backend` | time of a repository call that reached the database (`user.get`, `user.create`, …), whatever its outcome; calls refused by validation are not timed |
//! | [`QUERY_ERRORS`] | counter | `operation`, `backend`, `kind` | repository calls that failed, by [`ErrorKind`] |
//! | [`POOL_IN_USE`] | gauge | `pool` | connections checked out, including those the fast path holds between statements |
//! | [`POOL_IDLE`] | gauge | `pool` | connections open and idle in the pool |
//! | [`POOL_MAX`] | gauge | `pool` | the pool's limit (`DB_MAX_CONNECTIONS`) |
//! | [`POOL_ACQUIRE_WAIT`] | histogram | `pool` | time the repositories' PostgreSQL fast path waited for a connection from the pool (see below) |
//! | [`REPLICA_LAG`] | gauge | `replica` | WAL bytes the replica has yet to replay, at its latest probe that reached it |
//! | [`REPLICA_IN_ROTATION`] | gauge | `replica` | 1 while reads may go to the replica, 0 otherwise |
//! | [`MIGRATIONS_APPLIED`], [`MIGRATIONS_PENDING`], [`MIGRATIONS_UNKNOWN`] | gauge | — | this build's migrations applied and pending, and migrations recorded in the database that this build does not know, as of the latest [`health`](crate::DatabaseService::health) |
//! | [`MIGRATION_LAST_DURATION`] | gauge | `direction` (`up`, `down`) | how long the latest migration this process applied (or rolled back) took |
//!
//! `pool` is `primary` for [`DatabaseService::connection`](crate::DatabaseService::connection)'s
//! pool and the replica's `host:port/database` for a read replica's. The pool gauges are
//! sampled every second and whenever [`DatabaseService::record_pool_metrics`](crate::DatabaseService::record_pool_metrics)
//! is called (the `api` crate calls it before rendering a scrape). Each service keeps the keys
//! of its own pools; two services in one process with their own replicas record those apart,
//! but both primaries are `pool="primary"`, so the primary's gauges show the latest sample of
//! either.
//!
//! The acquire wait covers the connections the fast path takes from a pool — `user::get` and
//! `user::create` on the PostgreSQL pool or a [`Reader`](crate::Reader), including a read's
//! second try — and not a connection it re-uses while holding it (`DB_CONNECTION_HOLD`), which
//! waits for nothing. Statements that SeaORM runs (transactions, SQLite, the other repository
//! functions, `health()`) check out inside SeaORM, where no wait can be measured: their waits
//! show only in [`QUERY_DURATION`], and an exhausted pool in the gauges and as
//! `kind="unavailable"` errors.

use std::future::Future;
use std::time::{Duration, Instant};

use metrics::{Key, Label, Level, Metadata, SharedString, Unit};
use sea_orm::DbBackend;

use crate::database::backend_name;
use crate::error::{Error, Result};
use crate::health::MigrationsReport;

/// `db_query_duration_seconds`.
pub const QUERY_DURATION: &str = "db_query_duration_seconds";
/// `db_query_errors_total`.
pub const QUERY_ERRORS: &str = "db_query_errors_total";
/// `db_pool_connections_in_use`.
pub const POOL_IN_USE: &str = "db_pool_connections_in_use";
/// `db_pool_connections_idle`.
pub const POOL_IDLE: &str = "db_pool_connections_idle";
/// `db_pool_connections_max`.
pub const POOL_MAX: &str = "db_pool_connections_max";
/// `db_pool_acquire_wait_seconds`.
pub const POOL_ACQUIRE_WAIT: &str = "db_pool_acquire_wait_seconds";
/// `db_replica_lag_bytes`.
pub const REPLICA_LAG: &str = "db_replica_lag_bytes";
/// `db_replica_in_rotation`.
pub const REPLICA_IN_ROTATION: &str = "db_replica_in_rotation";
/// `db_failovers_total`.
pub const FAILOVERS: &str = "db_failovers_total";
/// `db_failover_write_gap_seconds`.
pub const FAILOVER_WRITE_GAP: &str = "db_failover_write_gap_seconds";
/// `db_migrations_applied`.
pub const MIGRATIONS_APPLIED: &str = "db_migrations_applied";
/// `db_migrations_pending`.
pub const MIGRATIONS_PENDING: &str = "db_migrations_pending";
/// `db_migrations_unknown`.
pub const MIGRATIONS_UNKNOWN: &str = "db_migrations_unknown";
/// `db_migration_last_duration_seconds` (recorded by the migrator, `migrator::runner`).
pub const MIGRATION_LAST_DURATION: &str = migrator::runner::LAST_DURATION_METRIC;

/// Bucket bounds, in seconds, that suit this crate's histograms: a point select on loopback
/// takes about 50 µs, an acquire that times out `DB_ACQUIRE_TIMEOUT` (5 s). Give them to your
/// exporter for the `_seconds` histograms (Prometheus' default buckets start at 5 ms).
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Registers every metric's help text and unit with the installed recorder (a Prometheus
/// exporter prints them as `# HELP`). Call it once, after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        QUERY_DURATION,
        Unit::Seconds,
        "Time of a repository call that reached the database, by operation and backend."
    );
    describe_counter!(
        QUERY_ERRORS,
        Unit::Count,
        "Repository calls that failed, by operation, backend and kind (not_found, conflict, \
         validation, unavailable, commit_unknown, contention, permission, database, cancelled)."
    );
    describe_gauge!(
        POOL_IN_USE,
        Unit::Count,
        "Connections checked out of the pool, including those held between fast-path statements."
    );
    describe_gauge!(
        POOL_IDLE,
        Unit::Count,
        "Connections open and idle in the pool."
    );
    describe_gauge!(POOL_MAX, Unit::Count, "The pool's connection limit.");
    describe_histogram!(
        POOL_ACQUIRE_WAIT,
        Unit::Seconds,
        "Time the PostgreSQL fast path waited for a pooled connection."
    );
    describe_gauge!(
        REPLICA_LAG,
        Unit::Bytes,
        "WAL bytes the replica has yet to replay, at its latest probe."
    );
    describe_gauge!(
        REPLICA_IN_ROTATION,
        "1 while reads may go to the replica, 0 while it is out of rotation."
    );
    describe_counter!(
        FAILOVERS,
        Unit::Count,
        "Times the primary's pool followed the writable host of a multi-host DATABASE_URL to \
         another host (a switchover or a failover)."
    );
    describe_histogram!(
        FAILOVER_WRITE_GAP,
        Unit::Seconds,
        "For each failover followed: from the first failed statement on the old primary to the \
         pool pointing at the new one (writes were unavailable meanwhile)."
    );
    describe_gauge!(
        MIGRATIONS_APPLIED,
        Unit::Count,
        "This build's migrations applied in the database, at the latest health check."
    );
    describe_gauge!(
        MIGRATIONS_PENDING,
        Unit::Count,
        "This build's migrations not applied yet, at the latest health check."
    );
    describe_gauge!(
        MIGRATIONS_UNKNOWN,
        Unit::Count,
        "Migrations recorded in the database that this build does not know, at the latest \
         health check."
    );
    describe_gauge!(
        MIGRATION_LAST_DURATION,
        Unit::Seconds,
        "How long the latest migration this process applied or rolled back took."
    );
}

/// Why a repository call failed, as the `kind` label of [`QUERY_ERRORS`] says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// [`Error::NotFound`]: `not_found`.
    NotFound,
    /// [`Error::Conflict`]: `conflict`.
    Conflict,
    /// [`Error::Validation`]: `validation`.
    Validation,
    /// [`Error::Unavailable`] (or a transient [`Error::Connect`]): `unavailable`.
    Unavailable,
    /// [`Error::CommitUnknown`]: `commit_unknown` (the connection was lost after a write was
    /// sent).
    CommitUnknown,
    /// [`Error::Contention`]: `contention`.
    Contention,
    /// [`Error::PermissionDenied`]: `permission` (a configuration error).
    Permission,
    /// [`Error::Database`] and anything else: `database`.
    Database,
    /// The caller stopped waiting (its future was dropped, e.g. a request timeout):
    /// `cancelled`.
    Cancelled,
}

impl ErrorKind {
    /// The kind of `err`.
    #[must_use]
    pub fn of(err: &Error) -> Self {
        match err {
            Error::NotFound { .. } => Self::NotFound,
            Error::Conflict { .. } => Self::Conflict,
            Error::Validation { .. } => Self::Validation,
            Error::Contention { .. } => Self::Contention,
            Error::PermissionDenied { .. } => Self::Permission,
            Error::CommitUnknown { .. } => Self::CommitUnknown,
            _ if err.is_unavailable() => Self::Unavailable,
            _ => Self::Database,
        }
    }

    /// The label value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Validation => "validation",
            Self::Unavailable => "unavailable",
            Self::CommitUnknown => "commit_unknown",
            Self::Contention => "contention",
            Self::Permission => "permission",
            Self::Database => "database",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Where the records of this crate say they come from (a recorder may filter on it).
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// Records `value` in the histogram `key` of the recorder in effect.
fn record_histogram(key: &Key, value: Duration) {
    metrics::with_recorder(|recorder| {
        recorder.register_histogram(key, &METADATA).record(value);
    });
}

/// A repository operation as the metrics name it (`user.get`): declare one as a `static`
/// beside the function and run the function's body through [`observe`].
#[derive(Debug)]
pub(crate) struct Operation {
    name: &'static str,
    /// `operation` and `backend` labels for PostgreSQL, SQLite and anything else: built once,
    /// so recording a call allocates nothing.
    labels: [[Label; 2]; 3],
}

impl Operation {
    pub(crate) const fn new(name: &'static str) -> Self {
        const fn labels(name: &'static str, backend: &'static str) -> [Label; 2] {
            [
                Label::from_static_parts("operation", name),
                Label::from_static_parts("backend", backend),
            ]
        }
        Self {
            name,
            labels: [
                labels(name, "postgres"),
                labels(name, "sqlite"),
                labels(name, "other"),
            ],
        }
    }

    fn index(backend: DbBackend) -> usize {
        match backend {
            DbBackend::Postgres => 0,
            DbBackend::Sqlite => 1,
            _ => 2,
        }
    }
}

/// Runs `work`, the body of repository operation `operation` on a `backend` database, and
/// records its duration ([`QUERY_DURATION`], unless validation refused it before it reached
/// the database) and its failure ([`QUERY_ERRORS`]), also when the caller drops it unfinished.
pub(crate) async fn observe<T>(
    operation: &'static Operation,
    backend: DbBackend,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let mut observation = Observation {
        operation,
        backend,
        started: Instant::now(),
        finished: false,
    };
    let result = work.await;
    observation.finished = true;
    match &result {
        Ok(_) => observation.record_duration(),
        Err(err) => {
            let kind = ErrorKind::of(err);
            if kind != ErrorKind::Validation {
                observation.record_duration();
            }
            observation.record_error(kind);
        }
    }
    result
}

/// One call of an operation, recorded as cancelled if it is dropped before it finishes.
struct Observation {
    operation: &'static Operation,
    backend: DbBackend,
    started: Instant,
    finished: bool,
}

impl Observation {
    fn record_duration(&self) {
        let labels = &self.operation.labels[Operation::index(self.backend)];
        record_histogram(
            &Key::from_static_parts(QUERY_DURATION, labels),
            self.started.elapsed(),
        );
    }

    fn record_error(&self, kind: ErrorKind) {
        metrics::counter!(
            QUERY_ERRORS,
            "operation" => self.operation.name,
            "backend" => backend_name(self.backend),
            "kind" => kind.as_str(),
        )
        .increment(1);
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        if !self.finished {
            self.record_duration();
            self.record_error(ErrorKind::Cancelled);
        }
    }
}

/// The metric keys of one connection pool (label `pool`), built once; each pool's state keeps
/// its own.
#[derive(Debug)]
pub(crate) struct PoolMetrics {
    in_use: Key,
    idle: Key,
    max: Key,
    wait: Key,
}

/// The `pool="primary"` label.
static PRIMARY_LABELS: [Label; 1] = [Label::from_static_parts("pool", "primary")];

impl PoolMetrics {
    /// The keys of a primary's pool (`pool="primary"`).
    pub(crate) const fn primary() -> Self {
        Self {
            in_use: Key::from_static_parts(POOL_IN_USE, &PRIMARY_LABELS),
            idle: Key::from_static_parts(POOL_IDLE, &PRIMARY_LABELS),
            max: Key::from_static_parts(POOL_MAX, &PRIMARY_LABELS),
            wait: Key::from_static_parts(POOL_ACQUIRE_WAIT, &PRIMARY_LABELS),
        }
    }

    /// The keys of a pool labelled `name` (a replica's `host:port/database`).
    pub(crate) fn named(name: &str) -> Self {
        let name = SharedString::from(name.to_owned());
        let key =
            |metric: &'static str| Key::from_parts(metric, vec![Label::new("pool", name.clone())]);
        Self {
            in_use: key(POOL_IN_USE),
            idle: key(POOL_IDLE),
            max: key(POOL_MAX),
            wait: key(POOL_ACQUIRE_WAIT),
        }
    }

    /// Records a checkout from the pool that waited `waited` (whether or not it got a
    /// connection).
    pub(crate) fn acquired(&self, waited: Duration) {
        record_histogram(&self.wait, waited);
    }

    /// Records the pool's usage: `size` connections open, `idle` of them idle, `max` allowed.
    pub(crate) fn sample(&self, size: u32, idle: usize, max: u32) {
        let idle = u32::try_from(idle).unwrap_or(u32::MAX).min(size);
        metrics::with_recorder(|recorder| {
            recorder
                .register_gauge(&self.in_use, &METADATA)
                .set(size - idle);
            recorder.register_gauge(&self.idle, &METADATA).set(idle);
            recorder.register_gauge(&self.max, &METADATA).set(max);
        });
    }
}

/// Records what a replica's latest probe (or failed read) found: its lag when known, and
/// whether it is in rotation.
pub(crate) fn record_replica(name: &str, lag: Option<u64>, in_rotation: bool) {
    if let Some(lag) = lag {
        #[allow(clippy::cast_precision_loss)] // exact below 2^53 bytes of WAL
        metrics::gauge!(REPLICA_LAG, "replica" => name.to_owned()).set(lag as f64);
    }
    metrics::gauge!(REPLICA_IN_ROTATION, "replica" => name.to_owned()).set(if in_rotation {
        1.0
    } else {
        0.0
    });
}

/// Records a failover the primary's pool followed, and how long writes were unavailable.
pub(crate) fn record_failover(write_gap: Duration) {
    metrics::counter!(FAILOVERS).increment(1);
    metrics::histogram!(FAILOVER_WRITE_GAP).record(write_gap);
}

/// Records the migrations a health check found.
pub(crate) fn record_migrations(report: &MigrationsReport) {
    #[allow(clippy::cast_precision_loss)] // counts of migrations
    let count = |n: usize| n as f64;
    metrics::gauge!(MIGRATIONS_APPLIED).set(count(report.applied));
    metrics::gauge!(MIGRATIONS_PENDING).set(count(report.pending.len()));
    metrics::gauge!(MIGRATIONS_UNKNOWN).set(count(report.unknown.len()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_kind_from_the_documented_set() {
        let cases = [
            (
                Error::NotFound {
                    entity: "user",
                    key: "id 1".into(),
                },
                "not_found",
            ),
            (
                Error::Conflict {
                    entity: "user",
                    field: "email",
                },
                "conflict",
            ),
            (
                Error::Validation {
                    field: "email",
                    reason: "x".into(),
                },
                "validation",
            ),
            (
                Error::Unavailable {
                    operation: "read a user",
                    reason: "down".into(),
                },
                "unavailable",
            ),
            (
                Error::Contention {
                    operation: "update a user",
                    reason: "40001".into(),
                },
                "contention",
            ),
            (
                Error::Database {
                    operation: "read a user",
                    source: sea_orm::DbErr::Custom("a bug".into()),
                },
                "database",
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(ErrorKind::of(&err).as_str(), kind, "{err:?}");
        }
    }

    #[test]
    fn operation_labels_name_the_operation_and_the_backend() {
        static GET: Operation = Operation::new("user.get");
        for (backend, name) in [
            (DbBackend::Postgres, "postgres"),
            (DbBackend::Sqlite, "sqlite"),
        ] {
            let labels: Vec<(&str, &str)> = GET.labels[Operation::index(backend)]
                .iter()
                .map(|l| (l.key(), l.value()))
                .collect();
            assert_eq!(labels, [("operation", "user.get"), ("backend", name)]);
        }
    }

    /// A recorder that counts what its histograms record, by key.
    #[derive(Default)]
    struct Counting(std::sync::Mutex<Vec<String>>);

    struct Noted(String, std::sync::Arc<Counting>);

    impl metrics::HistogramFn for Noted {
        fn record(&self, _: f64) {
            self.1.0.lock().unwrap().push(self.0.clone());
        }
    }

    #[derive(Default)]
    struct Recording(std::sync::Arc<Counting>);

    impl metrics::Recorder for Recording {
        fn describe_counter(&self, _: metrics::KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: metrics::KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: metrics::KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> metrics::Counter {
            metrics::Counter::noop()
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> metrics::Histogram {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            metrics::Histogram::from_arc(std::sync::Arc::new(Noted(name, self.0.clone())))
        }
    }

    #[test]
    fn each_pool_records_its_waits_under_its_own_label() {
        let primary = PoolMetrics::primary();
        let replica = PoolMetrics::named("127.0.0.1:5433/app");
        let recording = Recording::default();
        metrics::with_local_recorder(&recording, || {
            primary.acquired(Duration::from_micros(5));
            replica.acquired(Duration::from_micros(7));
            replica.acquired(Duration::from_micros(9));
        });
        let seen = recording.0.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                "db_pool_acquire_wait_seconds{pool=primary}",
                "db_pool_acquire_wait_seconds{pool=127.0.0.1:5433/app}",
                "db_pool_acquire_wait_seconds{pool=127.0.0.1:5433/app}",
            ]
        );
    }
}
