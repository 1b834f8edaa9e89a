//! Read replicas: their pools, which of them may serve reads now, and the probe that decides.
//!
//! Each replica has a task of its own that, every `DB_REPLICA_PROBE_INTERVAL`, asks the replica
//! whether it is a standby and how far it has replayed the WAL, then asks the primary how far
//! its WAL goes. A replica is *in rotation* while it answers, is a standby, and is at most
//! `DB_REPLICA_MAX_LAG` bytes behind. (Lag is measured in WAL bytes, primary insert position
//! minus standby replay position, read in that order so the figure can only overstate it;
//! `now() - pg_last_xact_replay_timestamp()` is not lag: it grows on an idle primary while the
//! standby is fully caught up.) A read that fails on a replica for want of a connection takes
//! it out of rotation at once; only the probe puts it back.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

use super::pool::Pool;
use crate::config::DatabaseUrl;
use crate::error::Error;
use crate::health::{NodeRole, ReplicaReport};
use crate::metrics::{self, PoolMetrics};

/// A position in the primary's write-ahead log (a PostgreSQL LSN, written `16/B374D848`).
///
/// [`DatabaseService::write_position`](crate::DatabaseService::write_position) returns the
/// position after the caller's writes; [`DatabaseService::reader_after`](crate::DatabaseService::reader_after)
/// then reads only from a node that has replayed at least that far, so the caller sees its own
/// writes. Send it to clients as text and parse it back with [`FromStr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalPosition(u64);

impl WalPosition {
    /// The position as a byte offset in the WAL.
    #[must_use]
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for WalPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A text that is not a WAL position (`<hex>/<hex>`, each at most 8 digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a WAL position (expected two hexadecimal numbers such as 16/B374D848)")]
pub struct InvalidWalPosition;

impl FromStr for WalPosition {
    type Err = InvalidWalPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (high, low) = text.trim().split_once('/').ok_or(InvalidWalPosition)?;
        let part = |s: &str| {
            (!s.is_empty() && s.len() <= 8)
                .then(|| u32::from_str_radix(s, 16).ok())
                .flatten()
                .ok_or(InvalidWalPosition)
        };
        Ok(Self((u64::from(part(high)?) << 32) | u64::from(part(low)?)))
    }
}

/// `SELECT` of the primary's WAL insert position, in bytes. The insert position (not the
/// write or flush position) already includes a commit record that `synchronous_commit = off`
/// has not flushed yet, so a reader that waits for it sees that commit.
const PRIMARY_POSITION: &str = "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8";
/// `SELECT` of a node's role, replay position (NULL on a primary) and whether the connection
/// is encrypted (TLS).
const REPLICA_STATE: &str = "SELECT pg_is_in_recovery(), \
     (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::int8, \
     coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)";

/// The primary's current WAL insert position, asked once on `primary`'s fast path (when it
/// is PostgreSQL's pool), and not waited for while the primary is being looked for (see
/// [`super::follow`]): the write before it has its answer, which is better sent without the
/// position than seconds late. For
/// [`DatabaseService::write_position`](crate::DatabaseService::write_position), right after a
/// request's writes.
pub(crate) async fn write_position(primary: &Pool) -> Result<WalPosition, DbErr> {
    if primary.postgres().is_none() {
        return primary_position(&primary.conn).await;
    }
    let row =
        super::fetch_on::<super::One>(primary, PRIMARY_POSITION, Vec::new(), super::Kind::ReadOnce)
            .await?
            .ok_or_else(|| DbErr::RecordNotFound("the primary's WAL position".into()))?;
    let bytes: i64 = super::decode_column(&row, 0)?;
    Ok(WalPosition(u64::try_from(bytes).unwrap_or(0)))
}

/// The primary's current WAL insert position.
pub(crate) async fn primary_position(primary: &DatabaseConnection) -> Result<WalPosition, DbErr> {
    let row = primary
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            PRIMARY_POSITION,
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("the primary's WAL position".into()))?;
    let bytes: i64 = row.try_get_by_index(0)?;
    Ok(WalPosition(u64::try_from(bytes).unwrap_or(0)))
}

/// A node that serves reads, as [`crate::connect::open_replicas`] opens it.
pub(crate) struct ReplicaPool {
    /// `host:port/database`.
    pub(crate) name: String,
    pub(crate) conn: DatabaseConnection,
    pub(crate) url: DatabaseUrl,
    /// One of the hosts of the primary's own URL (`DB_READ_FROM_STANDBYS`): it serves reads
    /// while it is a standby, and being the primary is no fault of it.
    pub(crate) standby_of_primary: bool,
}

/// The replicas of one service and the primary they follow.
pub(crate) struct ReplicaSet {
    primary: DatabaseConnection,
    nodes: Vec<Arc<Replica>>,
    max_lag: u64,
    /// Round-robin cursor of [`choose`](Self::choose).
    next: AtomicUsize,
    /// The primary's WAL insert position at the latest probe.
    primary_position: AtomicU64,
    closed: AtomicBool,
}

/// One replica: its pool (metrics labelled with its name) and what the latest probe (or
/// failed read) found.
pub struct Replica {
    pub(crate) name: String,
    pub(crate) pool: Pool,
    /// See [`ReplicaPool::standby_of_primary`].
    standby_of_primary: bool,
    in_rotation: AtomicBool,
    /// WAL bytes replayed at the latest probe.
    replayed: AtomicU64,
    state: Mutex<ProbeState>,
}

/// What the latest probe found, for health reports and for logging changes once.
#[derive(Debug, Clone, Default)]
struct ProbeState {
    role: Option<NodeRole>,
    lag: Option<u64>,
    /// Whether the probe's connection is encrypted (TLS).
    encrypted: Option<bool>,
    /// Why the replica is out of rotation.
    problem: Option<String>,
}

impl ReplicaSet {
    /// A set of `replicas` (name and lazily connecting pool) following `primary`; every replica
    /// starts out of rotation until its first probe. Their fast-path connections are held for
    /// `hold` when set.
    pub(crate) fn new(
        primary: DatabaseConnection,
        replicas: Vec<ReplicaPool>,
        max_lag: u64,
        hold: Option<Duration>,
    ) -> Arc<Self> {
        Arc::new(Self {
            primary,
            nodes: replicas
                .into_iter()
                .map(|node| {
                    Arc::new(Replica {
                        pool: Pool::new(node.conn, PoolMetrics::named(&node.name), hold)
                            .with_credentials_of(&node.url),
                        name: node.name,
                        standby_of_primary: node.standby_of_primary,
                        in_rotation: AtomicBool::new(false),
                        replayed: AtomicU64::new(0),
                        state: Mutex::new(ProbeState {
                            problem: Some("not probed yet".into()),
                            ..ProbeState::default()
                        }),
                    })
                })
                .collect(),
            max_lag,
            next: AtomicUsize::new(0),
            primary_position: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// Starts one probe task per replica. Each stops once the set is dropped or closed.
    pub(crate) fn spawn_probes(self: &Arc<Self>, interval: Duration, timeout: Duration) {
        for index in 0..self.nodes.len() {
            let set: Weak<Self> = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    let Some(live) = set.upgrade().filter(|s| !s.closed.load(Ordering::Relaxed))
                    else {
                        break;
                    };
                    live.probe(index, timeout).await;
                    drop(live);
                    tokio::time::sleep(interval).await;
                }
            });
        }
    }

    /// Records each replica pool's usage ([`PoolMetrics::sample`]).
    pub(crate) fn record_pool_metrics(&self) {
        for node in &self.nodes {
            node.pool.record_usage();
        }
    }

    /// A replica in rotation that has replayed at least `after` (any, when `None`), taking
    /// turns; `None` when there is none (the caller reads from the primary).
    pub(crate) fn choose(&self, after: Option<WalPosition>) -> Option<Arc<Replica>> {
        let count = self.nodes.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .map(|offset| &self.nodes[(start + offset) % count])
            .find(|node| {
                node.in_rotation.load(Ordering::Relaxed)
                    && after.is_none_or(|p| node.replayed.load(Ordering::Relaxed) >= p.0)
            })
            .cloned()
    }

    /// Probes every replica now, concurrently, and reports each as found.
    pub(crate) async fn check_all(&self, timeout: Duration) -> Vec<ReplicaReport> {
        let checks = (0..self.nodes.len()).map(|index| self.probe(index, timeout));
        futures_util::future::join_all(checks).await
    }

    /// Stops the probes and closes the replicas' pools.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        for node in &self.nodes {
            let _ = node.pool.close().await;
        }
    }

    /// Probes replica `index` (role, replay position, then the primary's position), updates
    /// whether it is in rotation, and reports it.
    async fn probe(&self, index: usize, timeout: Duration) -> ReplicaReport {
        let node = &self.nodes[index];
        let started = Instant::now();
        let outcome = tokio::time::timeout(timeout, async {
            let row = node
                .pool
                .conn
                .query_one_raw(Statement::from_string(DbBackend::Postgres, REPLICA_STATE))
                .await?
                .ok_or_else(|| DbErr::RecordNotFound("the replica's state".into()))?;
            let latency = started.elapsed();
            let standby: bool = row.try_get_by_index(0)?;
            let replayed: Option<i64> = row.try_get_by_index(1)?;
            let encrypted: bool = row.try_get_by_index(2)?;
            Ok::<_, DbErr>((latency, standby, replayed, encrypted))
        })
        .await;
        let (latency, state) = match outcome {
            Ok(Ok((latency, standby, replayed, encrypted))) => {
                // Read after the replica's position, so the lag can only be overstated.
                if let Ok(position) = primary_position(&self.primary).await {
                    self.primary_position
                        .fetch_max(position.0, Ordering::Relaxed);
                }
                let replayed = replayed.and_then(|r| u64::try_from(r).ok());
                let lag = replayed.map(|r| {
                    self.primary_position
                        .load(Ordering::Relaxed)
                        .saturating_sub(r)
                });
                node.replayed
                    .store(replayed.unwrap_or(0), Ordering::Relaxed);
                let problem = if !standby && node.standby_of_primary {
                    // The primary among the URL's hosts: it serves writes, not these reads.
                    None
                } else if !standby {
                    Some("not a standby: it accepts writes (promoted?)".to_owned())
                } else if lag.is_some_and(|lag| lag > self.max_lag) {
                    Some(format!(
                        "{} bytes of WAL behind the primary (limit DB_REPLICA_MAX_LAG = {})",
                        lag.unwrap_or_default(),
                        self.max_lag
                    ))
                } else {
                    None
                };
                let role = if standby {
                    NodeRole::Standby
                } else {
                    NodeRole::Primary
                };
                (
                    Some(latency),
                    ProbeState {
                        role: Some(role),
                        lag,
                        encrypted: Some(encrypted),
                        problem,
                    },
                )
            }
            Ok(Err(err)) => (None, unreachable(&Error::from_db("probe a replica", err))),
            Err(_) => (
                None,
                unreachable(&format!("no answer within {} ms", timeout.as_millis())),
            ),
        };
        node.set(state.clone());
        ReplicaReport {
            name: node.name.clone(),
            role: state.role,
            reachable: latency.is_some(),
            in_rotation: node.in_rotation.load(Ordering::Relaxed),
            latency_ms: latency.map(|l| (l.as_secs_f64() * 1_000_000.0).round() / 1000.0),
            lag_bytes: state.lag,
            encrypted: state.encrypted,
            error: state.problem,
        }
    }
}

fn unreachable(why: &dyn fmt::Display) -> ProbeState {
    ProbeState {
        problem: Some(format!("unreachable: {why}")),
        ..ProbeState::default()
    }
}

impl Replica {
    /// Whether reads may go to it now (a reader made earlier checks again before each
    /// query, so it skips a replica that has failed since).
    pub(crate) fn in_rotation(&self) -> bool {
        self.in_rotation.load(Ordering::Relaxed)
    }

    /// A read on this replica failed: when the replica could not be reached, it leaves
    /// rotation until the next probe finds it well.
    pub(crate) fn read_failed(&self, err: &DbErr) {
        let err = Error::from_db("read from a replica", err.clone());
        if err.is_unavailable() {
            self.set(unreachable(&err));
        }
        tracing::warn!(replica = %self.name, error = %err, "read on a replica failed; retried on the primary");
    }

    /// Records a probe's finding (and its metrics); logs when the replica enters or leaves
    /// rotation.
    fn set(&self, state: ProbeState) {
        let usable = state.problem.is_none() && state.role == Some(NodeRole::Standby);
        let was = self.in_rotation.swap(usable, Ordering::Relaxed);
        metrics::record_replica(&self.name, state.lag, usable);
        match (usable, was) {
            (false, true) => {
                let reason = state.problem.as_deref().unwrap_or("it is the primary now");
                tracing::warn!(replica = %self.name, reason = %reason, "replica taken out of rotation");
            }
            (true, false) => tracing::info!(replica = %self.name, "replica in rotation"),
            _ => {}
        }
        if let Ok(mut current) = self.state.lock() {
            *current = state;
        }
    }
}

impl fmt::Debug for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replica")
            .field("name", &self.name)
            .field("in_rotation", &self.in_rotation())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ReplicaSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.nodes.iter().map(|node| &node.name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_positions_read_and_write_as_postgresql_does() {
        let position: WalPosition = "16/B374D848".parse().unwrap();
        assert_eq!(position.bytes(), 0x16_B374_D848);
        assert_eq!(position.to_string(), "16/B374D848");
        assert_eq!("0/0".parse::<WalPosition>().unwrap().bytes(), 0);
        assert!("0/1".parse::<WalPosition>().unwrap() > "0/0".parse().unwrap());
        assert!("1/0".parse::<WalPosition>().unwrap() > "0/FFFFFFFF".parse().unwrap());
        for bad in ["", "16", "16/", "/1", "G/1", "1/123456789", "1/2/3", "-1/2"] {
            assert_eq!(bad.parse::<WalPosition>(), Err(InvalidWalPosition), "{bad}");
        }
    }
}
