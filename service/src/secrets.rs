//! Passwords rotated without a restart: a pool whose URL (or password) comes from a secret file
//! (`DATABASE_URL_FILE`, `DATABASE_PASSWORD_FILE`, …) reads the file again, and new
//! connections log in with what it holds now.
//!
//! sqlx opens a pool's connections with the options the pool holds, which can be replaced
//! ([`sqlx::Pool::set_connect_options`]) but not computed per connection. So the file is read
//! every [`POLL_INTERVAL`], and at once when the server refuses a new connection's password:
//! a statement whose connection was refused that way waits (at most [`REFUSAL_WAIT`]) for the
//! file to change, and runs once more with the new password. The statement was never sent, so
//! this holds for writes too. Connections already open stay as they are until
//! `DB_MAX_LIFETIME` (or `DB_IDLE_TIMEOUT`) retires them.
//!
//! Rotating a password: change the role's password first (`ALTER ROLE … PASSWORD …`), then
//! write the file (atomically: write a new file and rename it over the old one, as Kubernetes
//! does). The old sessions go on; new ones use the new password from the moment the file
//! holds it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sea_orm::{DatabaseConnection, DatabaseConnectionType, DbErr, sqlx};

use crate::config::DatabaseUrl;

/// How often a secret file is read again.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a statement whose new connection was refused its password waits for the secret
/// file to change.
pub(crate) const REFUSAL_WAIT: Duration = Duration::from_secs(2);

/// The secret file of one pool, and the password the pool's new connections use.
pub(crate) struct CredentialWatch {
    url: DatabaseUrl,
    pool: sqlx::PgPool,
    state: Mutex<State>,
    /// How many times the password changed: a statement refused with the password it
    /// started with runs again at once if it changed since.
    generation: AtomicU64,
}

struct State {
    /// The password new connections use.
    password: Option<String>,
    /// The last reason the file could not be read (logged once, not every poll).
    failing: Option<String>,
}

impl std::fmt::Debug for CredentialWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialWatch")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl CredentialWatch {
    /// Watches the secret file of `url` for the PostgreSQL pool `conn`, reading it every
    /// [`POLL_INTERVAL`] until the pool closes; `None` when `url` has no secret file.
    pub(crate) fn start(url: &DatabaseUrl, conn: &DatabaseConnection) -> Option<Arc<Self>> {
        url.secret_file()?;
        if !matches!(
            conn.inner,
            DatabaseConnectionType::SqlxPostgresPoolConnection(_)
        ) {
            return None;
        }
        let watch = Arc::new(Self {
            pool: conn.get_postgres_connection_pool().clone(),
            state: Mutex::new(State {
                password: connection::connect::password(&url.expose_secret()),
                failing: None,
            }),
            generation: AtomicU64::new(0),
            url: url.clone(),
        });
        let weak: Weak<Self> = Arc::downgrade(&watch);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(POLL_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match weak.upgrade() {
                    Some(watch) if !watch.pool.is_closed() => {
                        watch.refresh();
                    }
                    _ => break,
                }
            }
        });
        Some(watch)
    }

    /// Reads the file; when it holds another password than the pool's, the pool's new
    /// connections use it from now on. Whether it changed.
    pub(crate) fn refresh(&self) -> bool {
        let read = self.url.current_password();
        #[allow(clippy::unwrap_used)] // poisoned only if a holder panicked, which none does
        let mut state = self.state.lock().unwrap();
        match read {
            Ok(Some(password)) => {
                state.failing = None;
                if state.password.as_deref() == Some(password.as_str()) {
                    return false;
                }
                let options = (*self.pool.connect_options()).clone().password(&password);
                self.pool.set_connect_options(options);
                state.password = Some(password);
                self.generation.fetch_add(1, Ordering::AcqRel);
                if let Some((variable, _)) = self.url.secret_file() {
                    tracing::info!(
                        pool = %self.url.node_name(),
                        "the password in {variable} changed: new connections use it"
                    );
                }
                true
            }
            Ok(None) => false,
            Err(reason) => {
                if state.failing.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(
                        pool = %self.url.node_name(),
                        "{reason}; new connections keep the password read before"
                    );
                    state.failing = Some(reason);
                }
                false
            }
        }
    }

    /// The password new connections use now (`None` when the file gave none yet).
    pub(crate) fn password(&self) -> Option<String> {
        #[allow(clippy::unwrap_used)] // poisoned only if a holder panicked, which none does
        self.state.lock().unwrap().password.clone()
    }

    /// How many times the password has changed; read it before a statement, for
    /// [`renewed_after_refusal`](Self::renewed_after_refusal).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// After the server refused a new connection's password, for a statement that started at
    /// [`generation`](Self::generation) `seen`: whether the password changed since (so trying
    /// again may succeed). When it has not, reads the file at once and, while it holds the
    /// same password, again every 50 ms for up to [`REFUSAL_WAIT`]. (Several statements
    /// refused together: the first reads the new password, the others see that it changed.)
    pub(crate) async fn renewed_after_refusal(&self, seen: u64) -> bool {
        let started = Instant::now();
        loop {
            if self.generation() != seen {
                return true;
            }
            if self.refresh() {
                return true;
            }
            if started.elapsed() >= REFUSAL_WAIT {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Whether `err` is the server refusing a new connection's password (`28P01`): the error a
/// rotated password gives until the pool reads the new one.
pub(crate) fn is_password_refusal(err: &DbErr) -> bool {
    connection::classify(err) == connection::ErrorKind::InvalidCredentials
}
