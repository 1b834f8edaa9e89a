//! Following the primary of a multi-host `DATABASE_URL` when it moves (a switchover or a
//! failover of an HA formation).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use connection::ErrorKind;
use connection::hosts::{self, HostList};
use sea_orm::{DbErr, RuntimeErr, sqlx};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// The hosts of the primary's URL, and whether a search for the primary is under way.
#[derive(Debug)]
pub(crate) struct Follower {
    list: HostList,
    timeout: Duration,
    searching: AtomicBool,
    /// Told when the pool has been pointed at another host.
    moved: Notify,
}

impl Follower {
    /// A follower for `url`'s hosts, or `None` for a URL with one host.
    pub(crate) fn new(url: &str, timeout: Duration) -> Option<Arc<Self>> {
        let list = HostList::parse(url).ok()??;
        (list.hosts().len() > 1).then(|| {
            Arc::new(Self {
                list,
                timeout,
                searching: AtomicBool::new(false),
                moved: Notify::new(),
            })
        })
    }

    /// After `err` on `pool`: when it says the server went away or turned read-only, looks for
    /// the writable host in the background (one search at a time) and, when it is another,
    /// points the pool's new connections there and closes the idle ones.
    pub(crate) fn after_error(self: &Arc<Self>, pool: &sqlx::PgPool, err: &DbErr) {
        if !means_moved(err) || self.searching.swap(true, Ordering::AcqRel) {
            return;
        }
        let (this, pool, failed_at) = (Arc::clone(self), pool.clone(), Instant::now());
        tokio::spawn(async move {
            this.search(&pool, failed_at).await;
            this.searching.store(false, Ordering::Release);
        });
    }

    /// Completes when the pool is next pointed at another host (only for moves after this
    /// call).
    pub(crate) fn moved(&self) -> Notified<'_> {
        self.moved.notified()
    }

    /// Looks for the writable host every 100 ms for up to a minute after a statement failed at
    /// `failed_at`; a move is counted in the metrics with the time writes were unavailable.
    async fn search(&self, pool: &sqlx::PgPool, failed_at: Instant) {
        let current = pool.connect_options();
        for _ in 0..600 {
            if pool.is_closed() {
                return;
            }
            if let Ok(chosen) = hosts::choose(&self.list, self.timeout).await
                && !chosen.role.read_only
            {
                if chosen.host.host != current.get_host() || chosen.host.port != current.get_port()
                {
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
                    self.moved.notify_waiters();
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
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
