//! Following the primary of a multi-host `DATABASE_URL` when it moves (a switchover or a
//! failover of an HA formation).
//!
//! Two things tell the [`Follower`] that the primary may have moved: a statement that failed
//! the way statements fail on a primary that went away ([`means_moved`]), and a checkout that
//! has waited [`SLOW_CHECKOUT`] (sqlx retries failing new connections without a word). Either
//! starts a search for the writable host, one at a time; when the search finds another host,
//! the pool is pointed there and checkouts still waiting start over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use connection::ErrorKind;
use connection::hosts::{self, HostList};
use sea_orm::{DbErr, RuntimeErr, sqlx};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::held::HeldConnections;
use crate::secrets::CredentialWatch;

/// How long a checkout of a multi-host pool waits before the follower checks that the primary
/// is still where the pool connects (see [`Follower::checkout_slow`]).
pub(crate) const SLOW_CHECKOUT: Duration = Duration::from_millis(250);

/// The hosts of the primary's URL, and whether a search for the primary is under way.
pub(crate) struct Follower {
    list: HostList,
    timeout: Duration,
    searching: AtomicBool,
    /// When a slow checkout last started a search.
    last_slow_search: Mutex<Option<Instant>>,
    /// Told when the pool has been pointed at another host.
    moved: Notify,
    /// Set once a search has found no writable host, until it ends.
    lost: AtomicBool,
    /// Told when `lost` is set.
    lost_now: Notify,
    /// The pool's password file, whose password (rotated or not) the probes log in with.
    credentials: Option<Arc<CredentialWatch>>,
    /// The pool's held connections, closed when the pool is pointed elsewhere.
    held: Option<Arc<HeldConnections>>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("hosts", &self.list)
            .field("searching", &self.searching)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// A follower for `url`'s hosts, or `None` for a URL with one host; the pool's password
    /// file and held connections, when it has them.
    pub(crate) fn new(
        url: &str,
        timeout: Duration,
        credentials: &Option<Arc<CredentialWatch>>,
        held: &Option<Arc<HeldConnections>>,
    ) -> Option<Arc<Self>> {
        let list = HostList::parse(url).ok()??;
        (list.hosts().len() > 1).then(|| {
            Arc::new(Self {
                list,
                timeout,
                searching: AtomicBool::new(false),
                last_slow_search: Mutex::new(None),
                moved: Notify::new(),
                lost: AtomicBool::new(false),
                lost_now: Notify::new(),
                credentials: credentials.clone(),
                held: held.clone(),
            })
        })
    }

    /// After `err` on `pool`: when it says the server went away or turned read-only, looks for
    /// the writable host in the background (one search at a time) and, when it is another,
    /// points the pool's new connections there and closes the idle ones.
    pub(crate) fn after_error(self: &Arc<Self>, pool: &sqlx::PgPool, err: &DbErr) {
        if means_moved(err) && self.search_from(pool, Instant::now()) {
            tracing::debug!(error = %err, "looking for the primary after an error");
        }
    }

    /// After a checkout of `pool` has waited [`SLOW_CHECKOUT`] (started at `since`): looks for
    /// the writable host as [`after_error`](Self::after_error) does, at most once per
    /// [`SLOW_CHECKOUT`].
    ///
    /// This is how the follower learns that new connections fail: sqlx retries a connection
    /// the server refuses, or one that our session set-up rejects because the server is a
    /// standby, silently until `DB_ACQUIRE_TIMEOUT`. Without it, a primary that went away
    /// while none of its connections was running a statement (they were idle, and died
    /// quietly) is noticed only when a checkout times out, seconds after its successor
    /// accepts writes. A healthy pool that is merely busy costs at most one probe connection
    /// per host every [`SLOW_CHECKOUT`] while checkouts wait that long.
    pub(crate) fn checkout_slow(self: &Arc<Self>, pool: &sqlx::PgPool, since: Instant) {
        let mut last = self
            .last_slow_search
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < SLOW_CHECKOUT) {
            return;
        }
        *last = Some(Instant::now());
        drop(last);
        if self.search_from(pool, since) {
            tracing::debug!(
                waited_ms = since.elapsed().as_millis(),
                "looking for the primary after a slow checkout"
            );
        }
    }

    /// Starts a search unless one is under way (whether it did); writes failed from
    /// `failed_at`.
    fn search_from(self: &Arc<Self>, pool: &sqlx::PgPool, failed_at: Instant) -> bool {
        if self.searching.swap(true, Ordering::AcqRel) {
            return false;
        }
        let (this, pool) = (Arc::clone(self), pool.clone());
        tokio::spawn(async move {
            this.search(&pool, failed_at).await;
            this.lost.store(false, Ordering::Release);
            this.searching.store(false, Ordering::Release);
        });
        true
    }

    /// Whether a search under way has found no writable host (the primary is down, or no
    /// longer writable, and no other has taken over yet), until the search ends.
    pub(crate) fn primary_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Completes when a search next finds no writable host (see
    /// [`primary_lost`](Self::primary_lost)).
    pub(crate) fn losing(&self) -> Notified<'_> {
        self.lost_now.notified()
    }

    /// Completes when the pool is next pointed at another host (only for moves after this
    /// call).
    pub(crate) fn moved(&self) -> Notified<'_> {
        self.moved.notified()
    }

    /// Looks for the writable host every 100 ms for up to a minute; writes failed (or a checkout
    /// began to wait) at `failed_at`. A move is counted in the metrics with the time writes
    /// were unavailable.
    async fn search(&self, pool: &sqlx::PgPool, failed_at: Instant) {
        for _ in 0..600 {
            if pool.is_closed() {
                return;
            }
            let rotated = self.credentials.as_ref().and_then(|watch| watch.password());
            let list = match &rotated {
                Some(password) => &self.list.with_password(password),
                None => &self.list,
            };
            let found = hosts::choose(list, self.timeout).await;
            if let Err(err) = &found {
                tracing::debug!(%err, "no writable host yet");
            }
            let Some(chosen) = found.ok().filter(|chosen| !chosen.role.read_only) else {
                if !self.lost.swap(true, Ordering::AcqRel) {
                    self.lost_now.notify_waiters();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Read now: a rotated password may have been set since the search began.
            let current = pool.connect_options();
            if chosen.host.host == current.get_host() && chosen.host.port == current.get_port() {
                tracing::debug!(primary = %chosen.host, "the primary has not moved");
                return;
            }
            let gap = failed_at.elapsed();
            tracing::warn!(
                primary = %chosen.host,
                writes_unavailable_ms = gap.as_millis(),
                "the primary moved; following it"
            );
            crate::metrics::record_failover(gap);
            let options = (*current)
                .clone()
                .host(&chosen.host.host)
                .port(chosen.host.port);
            pool.set_connect_options(options);
            for _ in 0..pool.num_idle() {
                match pool.try_acquire() {
                    Some(mut conn) => conn.close_on_drop(),
                    None => break,
                }
            }
            if let Some(held) = &self.held {
                held.close_all();
            }
            self.moved.notify_waiters();
            return;
        }
    }
}

/// Whether `err` says the server behind the connection went away, is shutting down, or is
/// read-only: what a primary that moved looks like.
pub(crate) fn means_moved(err: &DbErr) -> bool {
    let sqlx_err = match err {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        DbErr::ConnectionAcquire(_) => return true,
        _ => return false,
    };
    match &**sqlx_err {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Configuration(_) => true,
        sqlx::Error::Database(_) => matches!(
            connection::classify(err),
            ErrorKind::ReadOnly
                | ErrorKind::SessionEnded
                | ErrorKind::ServerStarting
                | ErrorKind::ConnectionFailed
        ),
        _ => false,
    }
}
