//! Pooled connections kept between the fast path's statements: one round trip per statement.
//!
//! sqlx 0.9 pings every connection that goes back to its pool (a `Sync` round trip in
//! `return_to_pool`, not configurable), so a statement on a pooled connection costs the client
//! and the server two round trips. Here, a connection checked out for a fast-path statement is
//! not given back after it: it is *held* for the next fast-path statement, for at most
//! `DB_CONNECTION_HOLD` (10 ms) after it left the pool, and then goes back through sqlx's
//! normal path. Everything the pool guarantees still holds:
//!
//! * held connections are checked out of the pool, so its size limit counts them; they are
//!   given back within twice the hold (by the next statement that finishes on one, or by a
//!   sweeper task), so a caller waiting on the pool — SeaORM's path, a transaction, `health()`
//!   — gets one within that time: sqlx serves waiters first in, first out, before the fast
//!   path's own next checkout;
//! * a statement whose future is dropped part-way drops its connection, which goes back
//!   through sqlx's path (that ping drains or closes it), never to the next caller;
//! * a failed statement's connection goes back through sqlx's path too; a read that failed
//!   because its held connection was lost (a server restart, `pg_terminate_backend`) is run
//!   once more on a connection from the pool, a write never is;
//! * `DB_MAX_LIFETIME` and `DB_IDLE_TIMEOUT` apply when the connection goes back, and the pool's
//!   numbers count held connections as in use — which they are, within the hold.
//!
//! The held connections of a pool belong to that pool's state ([`Pool`](super::pool::Pool)),
//! which every executor of the service carries: nothing is looked up per statement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::sqlx::{self, PgPool, Postgres};

use crate::metrics::PoolMetrics;

/// The connections of one pool held between fast-path statements.
pub(crate) struct HeldConnections {
    pool: PgPool,
    hold: Duration,
    idle: Mutex<Vec<Checkout>>,
    sweeping: AtomicBool,
    /// Set when the service closes: connections are given back instead of held.
    stopped: AtomicBool,
}

/// A connection checked out for one statement; dropping it gives it back to the pool.
pub(crate) struct Checkout {
    pub(crate) conn: PoolConnection<Postgres>,
    /// When it left the pool.
    taken: Instant,
}

impl Checkout {
    /// A connection straight from the pool (sqlx's checkout, with its ping policy); the wait
    /// is recorded in `metrics`, also when no connection came.
    pub(crate) async fn from_pool(
        pool: &PgPool,
        metrics: &PoolMetrics,
    ) -> Result<Self, sqlx::Error> {
        let started = Instant::now();
        let conn = pool.acquire().await;
        let taken = Instant::now();
        metrics.acquired(taken - started);
        Ok(Self { conn: conn?, taken })
    }

    /// A connection there already: one of `held`, else an idle one of `pool` (with no ping);
    /// `None` when either would have to wait.
    pub(crate) fn ready(pool: &PgPool, held: Option<&HeldConnections>) -> Option<Self> {
        held.and_then(HeldConnections::pop).or_else(|| {
            pool.try_acquire().map(|conn| Self {
                conn,
                taken: Instant::now(),
            })
        })
    }

    /// A connection from the pool that answers a ping, for a read's second attempt after its
    /// connection was lost: the pool's idle connections may have died the same way (a server
    /// restart, every session terminated). Dead ones are closed; after as many tries as the
    /// pool has connections, a new one has been opened.
    pub(crate) async fn answering(
        pool: &PgPool,
        metrics: &PoolMetrics,
    ) -> Result<Self, sqlx::Error> {
        use sqlx::Connection as _;
        let mut tries = pool.options().get_max_connections();
        loop {
            let mut checkout = Self::from_pool(pool, metrics).await?;
            match checkout.conn.ping().await {
                Ok(()) => return Ok(checkout),
                Err(err) if tries == 0 => return Err(err),
                Err(_) => {
                    checkout.conn.close_on_drop();
                    tries -= 1;
                }
            }
        }
    }
}

impl HeldConnections {
    /// Holds fast-path connections of `pool` for up to `hold` each.
    pub(crate) fn new(pool: &PgPool, hold: Duration) -> Arc<Self> {
        Arc::new(Self {
            pool: pool.clone(),
            hold,
            idle: Mutex::new(Vec::new()),
            sweeping: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    /// Stops holding connections (the pool is closing) and gives back those held.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.release_all();
    }

    /// A held connection if there is one, else one from the pool (its wait recorded in
    /// `metrics`).
    pub(crate) async fn checkout(&self, metrics: &PoolMetrics) -> Result<Checkout, sqlx::Error> {
        match self.pop() {
            Some(checkout) => Ok(checkout),
            None => Checkout::from_pool(&self.pool, metrics).await,
        }
    }

    /// The connection held last, if any.
    fn pop(&self) -> Option<Checkout> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    /// After a statement that succeeded: holds the connection for the next one, or gives it
    /// back to the pool once its hold is over.
    pub(crate) fn done(self: &Arc<Self>, checkout: Checkout) {
        if checkout.taken.elapsed() >= self.hold || self.stopped.load(Ordering::Acquire) {
            return; // dropped: back to the pool
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(checkout);
        self.sweep_soon();
    }

    /// Gives back every held connection now.
    pub(crate) fn release_all(&self) {
        drop(self.take_all());
    }

    /// Closes every held connection now (their sessions must not serve again: read-only).
    pub(crate) fn close_all(&self) {
        for mut checkout in self.take_all() {
            checkout.conn.close_on_drop();
        }
    }

    fn take_all(&self) -> Vec<Checkout> {
        std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts the sweeper unless it runs: every `hold` it gives back the connections whose hold
    /// is over, and it stops once none is held.
    fn sweep_soon(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(this.hold).await;
                let expired: Vec<Checkout> = {
                    let mut idle = this.idle.lock().unwrap_or_else(PoisonError::into_inner);
                    let (expired, kept) = std::mem::take(&mut *idle)
                        .into_iter()
                        .partition(|c| c.taken.elapsed() >= this.hold);
                    *idle = kept;
                    expired
                };
                drop(expired);
                if this.is_empty() {
                    this.sweeping.store(false, Ordering::Release);
                    // A connection held between the check and the store would be missed: look
                    // again, and go on sweeping unless another sweeper took over.
                    if this.is_empty() || this.sweeping.swap(true, Ordering::AcqRel) {
                        break;
                    }
                }
            }
        });
    }

    fn is_empty(&self) -> bool {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }
}
