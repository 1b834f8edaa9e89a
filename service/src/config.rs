//! Configuration: where the database is and how the pool behaves.
//!
//! Read from the environment with [`DatabaseConfig::from_env`] (every variable optional, each
//! with the default below) or built in code with [`DatabaseConfig::new`]:
//!
//! | variable              | default                          | meaning |
//! | --------------------- | -------------------------------- | ------- |
//! | `DATABASE_URL`        | embedded SQLite `data/db.sqlite` | `postgres://user:password@host:5432/db` or `sqlite://path?mode=rwc` |
//! | `DB_ECHO`             | `false`                          | log every statement (target `sqlx::query`, level `INFO`) |
//! | `DB_MAX_CONNECTIONS`  | `10`                             | pool size limit |
//! | `DB_MIN_CONNECTIONS`  | `0`                              | connections kept open when idle |
//! | `DB_CONNECT_TIMEOUT`  | `5s`                             | one connection attempt |
//! | `DB_ACQUIRE_TIMEOUT`  | `5s`                             | waiting for a free pooled connection; past it callers get `Unavailable` |
//! | `DB_IDLE_TIMEOUT`     | `10m`                            | close connections idle this long (`off` to keep them) |
//! | `DB_MAX_LIFETIME`     | `30m`                            | recycle connections this old (`off` to keep them) |
//! | `DB_PING_AFTER_IDLE`  | `30s`                            | ping a pooled connection before handing it out if it sat idle this long (`0`: on every checkout, `off`: never) |
//! | `DB_CONNECTION_HOLD`  | `10ms`                           | the repositories' PostgreSQL fast path keeps a connection between statements this long, skipping the release round trip (`off`: give it back after each) |
//! | `DB_CONNECT_DEADLINE` | `30s`                            | how long [`DatabaseService::connect`](crate::DatabaseService::connect) keeps retrying while the server starts |
//! | `DB_HEALTH_TIMEOUT`   | `2s`                             | upper bound of [`DatabaseService::health`](crate::DatabaseService::health) |
//! | `DB_APPLICATION_NAME` | the executable's name            | `application_name` in `pg_stat_activity` |
//! | `DB_STATEMENT_TIMEOUT`| `off`                            | PostgreSQL cancels any statement running longer (server side) |
//! | `DATABASE_SCHEMA`     | `public`                         | PostgreSQL schema (search path), as for the migrator |
//! | `DATABASE_REPLICA_URLS` | none                           | read replicas (PostgreSQL streaming standbys), comma-separated URLs |
//! | `DB_REPLICA_MAX_LAG`  | `16MB`                           | a replica further behind the primary's WAL than this serves no reads (`kB`, `MB`, `GB` or bytes) |
//! | `DB_REPLICA_PROBE_INTERVAL` | `500ms`                    | how often each replica's state and lag are checked |
//! | `DATABASE_DIRECT_URL` | `DATABASE_URL`                   | the server itself, bypassing a connection pooler: what `apply_migrations` (and the migrator) use |
//!
//! Durations are written `500ms`, `5s`, `2m`, or a bare number of seconds (`1.5`), and may be
//! at most a day.
//!
//! The password never leaves [`DatabaseUrl`]: its `Debug` and `Display` redact it, and so does
//! every error and log line of this crate.

use std::fmt;
use std::time::Duration;

pub use connection::database_url::load_dotenv;
use connection::database_url::{UrlSource, redact};

/// A database URL. `Debug` and `Display` show it with the password replaced by `***`; only
/// [`DatabaseUrl::expose_secret`] gives the real one.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    source: UrlSource,
}

impl DatabaseUrl {
    /// Checks and wraps a URL (`postgres://…`, `postgresql://…` or `sqlite:…`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] with the reason; the error shows the URL redacted.
    pub fn parse(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::parse_setting("DATABASE_URL", url.into())
    }

    fn parse_setting(variable: &'static str, url: String) -> Result<Self, ConfigError> {
        connection::connect::check_url(&url).map_err(|reason| ConfigError::InvalidUrl {
            variable,
            redacted: redact(&url),
            reason,
        })?;
        Ok(Self {
            source: UrlSource::Configured(url),
        })
    }

    /// The embedded SQLite database used when `DATABASE_URL` is unset (`data/db.sqlite` under
    /// the working directory, created on first use), the same file the migrator uses.
    #[must_use]
    pub fn embedded_default() -> Self {
        Self {
            source: UrlSource::from_option(None),
        }
    }

    /// Whether this is the embedded SQLite default rather than a configured URL.
    #[must_use]
    pub fn is_embedded_default(&self) -> bool {
        matches!(self.source, UrlSource::EmbeddedDefault(_))
    }

    /// Whether the URL points at SQLite.
    #[must_use]
    pub fn is_sqlite(&self) -> bool {
        self.expose_secret().starts_with("sqlite:")
    }

    /// The URL itself, password included. Do not log it.
    #[must_use]
    pub fn expose_secret(&self) -> String {
        self.source.url()
    }

    pub(crate) fn source(&self) -> &UrlSource {
        &self.source
    }

    /// `host:port/database` (no user, no password): how a node is named in health reports and
    /// logs.
    #[must_use]
    pub fn node_name(&self) -> String {
        let url = self.expose_secret();
        match url::Url::parse(&url) {
            Ok(parsed) if !self.is_sqlite() => format!(
                "{}:{}{}",
                parsed.host_str().unwrap_or_default(),
                parsed.port().unwrap_or(5432),
                parsed.path()
            ),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.expose_secret()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// Everything [`DatabaseService::connect`](crate::DatabaseService::connect) needs. The fields
/// are public so code can adjust a configuration read from the environment; see the module
/// documentation for the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DatabaseConfig {
    /// Where the database is.
    pub url: DatabaseUrl,
    /// Log every statement through `tracing`.
    pub echo: bool,
    /// Pool size limit.
    pub max_connections: u32,
    /// Connections kept open when idle.
    pub min_connections: u32,
    /// Time allowed for one connection attempt.
    pub connect_timeout: Duration,
    /// Time a caller waits for a free pooled connection before getting `Unavailable`.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this long (`None`: never).
    pub max_lifetime: Option<Duration>,
    /// A pooled connection that has been idle at least this long is pinged before it is handed
    /// out, and replaced if the ping fails (a server restart, or a proxy or firewall that
    /// dropped the quiet connection). `Some(Duration::ZERO)` pings on every checkout, one
    /// extra round trip per query; `None` never pings.
    pub ping_after_idle: Option<Duration>,
    /// How long the repositories' PostgreSQL fast path keeps a pooled connection between its
    /// statements before giving it back (sqlx pings every connection given back: one more
    /// round trip per statement); `None` gives it back after every statement. Callers waiting
    /// on the pool wait at most about twice this for a held connection.
    pub connection_hold: Option<Duration>,
    /// How long `connect` retries, with exponential backoff, while the server is starting.
    pub connect_deadline: Duration,
    /// Upper bound of one `health()` call.
    pub health_timeout: Duration,
    /// `application_name` reported to PostgreSQL.
    pub application_name: String,
    /// PostgreSQL cancels statements running longer than this (`None`: never). Note that
    /// `apply_migrations` runs on the same settings: leave room for slow migrations.
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL schema to use (the search path); `None` means the server's default
    /// (`public`). Ignored on SQLite.
    pub schema: Option<String>,
    /// Read replicas of the PostgreSQL primary (streaming standbys). Reads made through
    /// [`DatabaseService::reader`](crate::DatabaseService::reader) go to one of them while it
    /// is reachable and within [`replica_max_lag`](Self::replica_max_lag); everything else goes
    /// to `url`.
    pub replica_urls: Vec<DatabaseUrl>,
    /// A replica whose replay position is more than this many bytes of WAL behind the
    /// primary's is taken out of rotation until it catches up.
    pub replica_max_lag: u64,
    /// How often each replica's reachability, role and lag are checked.
    pub replica_probe_interval: Duration,
    /// The server itself when `url` points at a connection pooler: migrations
    /// ([`DatabaseService::apply_migrations`](crate::DatabaseService::apply_migrations)) hold a
    /// session-level lock, which only a direct connection keeps. `None`: `url`.
    pub direct_url: Option<DatabaseUrl>,
}

impl DatabaseConfig {
    /// A configuration for `url` with every other setting at its default.
    #[must_use]
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            url,
            echo: false,
            max_connections: 10,
            min_connections: 0,
            connect_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            ping_after_idle: Some(Duration::from_secs(30)),
            connection_hold: Some(Duration::from_millis(10)),
            connect_deadline: Duration::from_secs(30),
            health_timeout: Duration::from_secs(2),
            application_name: default_application_name(),
            statement_timeout: None,
            schema: None,
            replica_urls: Vec::new(),
            replica_max_lag: 16 * 1024 * 1024,
            replica_probe_interval: Duration::from_millis(500),
            direct_url: None,
        }
    }

    /// Reads the process environment (see the module documentation). A `.env` file is not read
    /// here; binaries load it first (`dotenvy::dotenv()`), as the migrator does.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable and its value (a URL is shown
    /// redacted).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests, or
    /// configuration kept elsewhere).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable and its value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let url = match get("DATABASE_URL") {
            Some(url) => DatabaseUrl::parse(url)?,
            None => DatabaseUrl::embedded_default(),
        };
        let mut config = Self::new(url);
        if let Some(value) = get("DB_ECHO") {
            config.echo = parse_bool("DB_ECHO", &value)?;
        }
        if let Some(value) = get("DB_MAX_CONNECTIONS") {
            config.max_connections = parse_count("DB_MAX_CONNECTIONS", &value)?;
        }
        if let Some(value) = get("DB_MIN_CONNECTIONS") {
            config.min_connections = parse_count("DB_MIN_CONNECTIONS", &value)?;
        }
        if let Some(value) = get("DB_CONNECT_TIMEOUT") {
            config.connect_timeout = parse_duration("DB_CONNECT_TIMEOUT", &value)?;
        }
        if let Some(value) = get("DB_ACQUIRE_TIMEOUT") {
            config.acquire_timeout = parse_duration("DB_ACQUIRE_TIMEOUT", &value)?;
        }
        if let Some(value) = get("DB_IDLE_TIMEOUT") {
            config.idle_timeout = parse_optional_duration("DB_IDLE_TIMEOUT", &value)?;
        }
        if let Some(value) = get("DB_MAX_LIFETIME") {
            config.max_lifetime = parse_optional_duration("DB_MAX_LIFETIME", &value)?;
        }
        if let Some(value) = get("DB_PING_AFTER_IDLE") {
            config.ping_after_idle = match value.trim().to_ascii_lowercase().as_str() {
                "off" | "none" | "never" => None,
                _ => Some(parse_duration("DB_PING_AFTER_IDLE", &value)?),
            };
        }
        if let Some(value) = get("DB_CONNECTION_HOLD") {
            config.connection_hold = parse_optional_duration("DB_CONNECTION_HOLD", &value)?;
        }
        if let Some(value) = get("DB_CONNECT_DEADLINE") {
            config.connect_deadline = parse_duration("DB_CONNECT_DEADLINE", &value)?;
        }
        if let Some(value) = get("DB_HEALTH_TIMEOUT") {
            config.health_timeout = parse_duration("DB_HEALTH_TIMEOUT", &value)?;
        }
        if let Some(value) = get("DB_APPLICATION_NAME") {
            config.application_name = value;
        }
        if let Some(value) = get("DB_STATEMENT_TIMEOUT") {
            config.statement_timeout = parse_optional_duration("DB_STATEMENT_TIMEOUT", &value)?;
        }
        if let Some(value) = get("DATABASE_SCHEMA") {
            config.schema = Some(value);
        }
        if let Some(value) = get("DATABASE_REPLICA_URLS") {
            config.replica_urls = value
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(|url| DatabaseUrl::parse_setting("DATABASE_REPLICA_URLS", url.to_owned()))
                .collect::<Result<_, _>>()?;
        }
        if let Some(value) = get("DB_REPLICA_MAX_LAG") {
            config.replica_max_lag = parse_bytes("DB_REPLICA_MAX_LAG", &value)?;
        }
        if let Some(value) = get("DB_REPLICA_PROBE_INTERVAL") {
            config.replica_probe_interval = parse_duration("DB_REPLICA_PROBE_INTERVAL", &value)?;
        }
        if let Some(value) = get("DATABASE_DIRECT_URL") {
            config.direct_url = Some(DatabaseUrl::parse_setting("DATABASE_DIRECT_URL", value)?);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against each other (`from_env` does this; call it after changing
    /// fields in code).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a zero pool size or timeout, or a minimum above the
    /// maximum.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(invalid("DB_MAX_CONNECTIONS", "0", "must be at least 1"));
        }
        if self.min_connections > self.max_connections {
            return Err(invalid(
                "DB_MIN_CONNECTIONS",
                &self.min_connections.to_string(),
                &format!("exceeds DB_MAX_CONNECTIONS ({})", self.max_connections),
            ));
        }
        for (variable, value) in [
            ("DB_CONNECT_TIMEOUT", self.connect_timeout),
            ("DB_ACQUIRE_TIMEOUT", self.acquire_timeout),
            ("DB_HEALTH_TIMEOUT", self.health_timeout),
            ("DB_REPLICA_PROBE_INTERVAL", self.replica_probe_interval),
        ] {
            if value.is_zero() {
                return Err(invalid(variable, "0", "must be longer than zero"));
            }
        }
        for (variable, value) in [
            ("DB_CONNECT_TIMEOUT", Some(self.connect_timeout)),
            ("DB_ACQUIRE_TIMEOUT", Some(self.acquire_timeout)),
            ("DB_HEALTH_TIMEOUT", Some(self.health_timeout)),
            ("DB_CONNECT_DEADLINE", Some(self.connect_deadline)),
            ("DB_IDLE_TIMEOUT", self.idle_timeout),
            ("DB_MAX_LIFETIME", self.max_lifetime),
            ("DB_PING_AFTER_IDLE", self.ping_after_idle),
            ("DB_CONNECTION_HOLD", self.connection_hold),
            ("DB_STATEMENT_TIMEOUT", self.statement_timeout),
            (
                "DB_REPLICA_PROBE_INTERVAL",
                Some(self.replica_probe_interval),
            ),
        ] {
            // Far beyond any sensible setting, and the pool adds these to `Instant`s, which
            // would overflow.
            if value.is_some_and(|v| v > MAX_DURATION) {
                return Err(invalid(
                    variable,
                    &format!("{}s", value.map_or(0, |v| v.as_secs())),
                    "must be at most a day",
                ));
            }
        }
        if self.schema.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(invalid("DATABASE_SCHEMA", "", "must not be empty"));
        }
        // Replicas and a direct URL are PostgreSQL notions: they must point at the same kind of
        // server as the primary.
        let postgres = !self.url.is_sqlite();
        if let Some(replica) = self
            .replica_urls
            .iter()
            .find(|url| url.is_sqlite() || !postgres)
        {
            return Err(ConfigError::InvalidUrl {
                variable: "DATABASE_REPLICA_URLS",
                redacted: replica.to_string(),
                reason: "read replicas need a PostgreSQL DATABASE_URL and PostgreSQL replicas"
                    .into(),
            });
        }
        if let Some(direct) = self
            .direct_url
            .as_ref()
            .filter(|url| url.is_sqlite() == postgres)
        {
            return Err(ConfigError::InvalidUrl {
                variable: "DATABASE_DIRECT_URL",
                redacted: direct.to_string(),
                reason: "must point at the same kind of database as DATABASE_URL".into(),
            });
        }
        Ok(())
    }
}

/// A configuration value that cannot be used. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A variable holds a value that cannot be used.
    #[error("{variable}={value:?} is invalid: {reason}")]
    InvalidValue {
        /// The environment variable (or the setting it stands for).
        variable: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A database URL (`DATABASE_URL`, `DATABASE_REPLICA_URLS`, `DATABASE_DIRECT_URL`) cannot
    /// be used.
    #[error("{variable}={redacted} is invalid: {reason}")]
    InvalidUrl {
        /// The environment variable (or the setting it stands for).
        variable: &'static str,
        /// The URL with its password replaced by `***`.
        redacted: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The longest duration any setting accepts.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

fn invalid(variable: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        variable,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, "expected true or false")),
    }
}

fn parse_count(variable: &'static str, value: &str) -> Result<u32, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, "expected a whole number"))
}

fn parse_duration(variable: &'static str, value: &str) -> Result<Duration, ConfigError> {
    let text = value.trim();
    let (number, unit_secs) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let reason = "expected a duration such as 500ms, 5s, 2m or 1.5";
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, reason))?;
    if !number.is_finite() || number < 0.0 {
        return Err(invalid(variable, value, reason));
    }
    Duration::try_from_secs_f64(number * unit_secs).map_err(|_| invalid(variable, value, reason))
}

/// `16MB`, `512kB`, `1GB` (powers of 1024, as PostgreSQL writes sizes) or a number of bytes.
fn parse_bytes(variable: &'static str, value: &str) -> Result<u64, ConfigError> {
    let text = value.trim();
    let upper = text.to_ascii_uppercase();
    let (number, unit) = [
        ("KB", 1u64 << 10),
        ("MB", 1 << 20),
        ("GB", 1 << 30),
        ("B", 1),
    ]
    .into_iter()
    .find_map(|(suffix, unit)| upper.strip_suffix(suffix).map(|n| (n.trim(), unit)))
    .unwrap_or((upper.as_str(), 1));
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .ok_or_else(|| {
            invalid(
                variable,
                value,
                "expected a size such as 16MB, 512kB or 1048576",
            )
        })
}

fn parse_optional_duration(
    variable: &'static str,
    value: &str,
) -> Result<Option<Duration>, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "never" => Ok(None),
        _ => parse_duration(variable, value).map(|d| (!d.is_zero()).then_some(d)),
    }
}

fn default_application_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "db".to_owned())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<DatabaseConfig, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        DatabaseConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_set_gives_the_documented_defaults() {
        let config = config(&[]).unwrap();
        assert!(config.url.is_embedded_default());
        assert_eq!(config.url.to_string(), "sqlite://data/db.sqlite?mode=rwc");
        assert!(!config.echo);
        assert_eq!(config.max_connections, 10);
        assert_eq!(config.min_connections, 0);
        assert_eq!(config.connect_timeout, Duration::from_secs(5));
        assert_eq!(config.acquire_timeout, Duration::from_secs(5));
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(600)));
        assert_eq!(config.max_lifetime, Some(Duration::from_secs(1800)));
        assert_eq!(config.ping_after_idle, Some(Duration::from_secs(30)));
        assert_eq!(config.connection_hold, Some(Duration::from_millis(10)));
        assert_eq!(config.connect_deadline, Duration::from_secs(30));
        assert_eq!(config.health_timeout, Duration::from_secs(2));
        assert!(config.replica_urls.is_empty());
        assert_eq!(config.replica_max_lag, 16 * 1024 * 1024);
        assert_eq!(config.replica_probe_interval, Duration::from_millis(500));
        assert_eq!(config.direct_url, None);
    }

    #[test]
    fn every_variable_is_read() {
        let config = config(&[
            ("DATABASE_URL", "postgres://app:pw@db:5432/app"),
            ("DB_ECHO", "true"),
            ("DB_MAX_CONNECTIONS", "20"),
            ("DB_MIN_CONNECTIONS", "2"),
            ("DB_CONNECT_TIMEOUT", "750ms"),
            ("DB_ACQUIRE_TIMEOUT", "3"),
            ("DB_IDLE_TIMEOUT", "off"),
            ("DB_MAX_LIFETIME", "2m"),
            ("DB_PING_AFTER_IDLE", "5s"),
            ("DB_CONNECTION_HOLD", "off"),
            ("DB_CONNECT_DEADLINE", "1.5s"),
            ("DB_HEALTH_TIMEOUT", "500ms"),
            ("DB_APPLICATION_NAME", "orders-api"),
            ("DB_STATEMENT_TIMEOUT", "30s"),
            ("DATABASE_SCHEMA", "orders"),
            (
                "DATABASE_REPLICA_URLS",
                "postgres://app:pw@replica1:5432/app, postgres://app:pw@replica2/app",
            ),
            ("DB_REPLICA_MAX_LAG", "512kB"),
            ("DB_REPLICA_PROBE_INTERVAL", "250ms"),
            (
                "DATABASE_DIRECT_URL",
                "postgres://app:pw@db-direct:5432/app",
            ),
        ])
        .unwrap();
        assert!(!config.url.is_embedded_default());
        assert_eq!(config.url.expose_secret(), "postgres://app:pw@db:5432/app");
        assert!(config.echo);
        assert_eq!(config.max_connections, 20);
        assert_eq!(config.min_connections, 2);
        assert_eq!(config.connect_timeout, Duration::from_millis(750));
        assert_eq!(config.acquire_timeout, Duration::from_secs(3));
        assert_eq!(config.idle_timeout, None);
        assert_eq!(config.max_lifetime, Some(Duration::from_secs(120)));
        assert_eq!(config.ping_after_idle, Some(Duration::from_secs(5)));
        assert_eq!(config.connection_hold, None);
        assert_eq!(config.connect_deadline, Duration::from_millis(1500));
        assert_eq!(config.health_timeout, Duration::from_millis(500));
        assert_eq!(config.application_name, "orders-api");
        assert_eq!(config.statement_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.schema.as_deref(), Some("orders"));
        let replicas: Vec<String> = config
            .replica_urls
            .iter()
            .map(DatabaseUrl::node_name)
            .collect();
        assert_eq!(replicas, ["replica1:5432/app", "replica2:5432/app"]);
        assert_eq!(config.replica_max_lag, 512 * 1024);
        assert_eq!(config.replica_probe_interval, Duration::from_millis(250));
        assert_eq!(
            config.direct_url.map(|url| url.expose_secret()),
            Some("postgres://app:pw@db-direct:5432/app".to_owned())
        );
    }

    #[test]
    fn replica_and_direct_urls_are_checked_and_redacted() {
        let err =
            config(&[("DATABASE_REPLICA_URLS", "postgres://app:s3cret@replica/app")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_REPLICA_URLS=postgres://app:***@replica/app is invalid: read replicas need a PostgreSQL DATABASE_URL and PostgreSQL replicas"
        );
        let err = config(&[
            ("DATABASE_URL", "postgres://app@db/app"),
            (
                "DATABASE_REPLICA_URLS",
                "postgres://app@r1/app,mysql://app:s3cret@r2/app",
            ),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("DATABASE_REPLICA_URLS=mysql://app:***@r2/app is invalid"),
            "{err}"
        );
        let err = config(&[
            ("DATABASE_URL", "postgres://app@db/app"),
            ("DATABASE_DIRECT_URL", "sqlite://other.sqlite"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("DATABASE_DIRECT_URL=sqlite://other.sqlite is invalid"),
            "{err}"
        );
        for bad in ["lots", "-1MB", "16TB", "99999999999999GB"] {
            let err = config(&[("DB_REPLICA_MAX_LAG", bad)]).unwrap_err();
            assert!(err.to_string().starts_with("DB_REPLICA_MAX_LAG="), "{err}");
        }
        assert_eq!(
            config(&[("DB_REPLICA_MAX_LAG", "0")])
                .unwrap()
                .replica_max_lag,
            0
        );
        assert_eq!(
            config(&[("DB_REPLICA_MAX_LAG", "2gb")])
                .unwrap()
                .replica_max_lag,
            2 << 30
        );
    }

    #[test]
    fn the_checkout_ping_can_run_always_or_never() {
        let always = config(&[("DB_PING_AFTER_IDLE", "0")]).unwrap();
        assert_eq!(always.ping_after_idle, Some(Duration::ZERO));
        let never = config(&[("DB_PING_AFTER_IDLE", "off")]).unwrap();
        assert_eq!(never.ping_after_idle, None);
        let err = config(&[("DB_PING_AFTER_IDLE", "soon")]).unwrap_err();
        assert!(err.to_string().starts_with("DB_PING_AFTER_IDLE="), "{err}");
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_value() {
        let err = config(&[("DB_MAX_CONNECTIONS", "lots")]).unwrap_err();
        assert_eq!(
            err,
            ConfigError::InvalidValue {
                variable: "DB_MAX_CONNECTIONS",
                value: "lots".into(),
                reason: "expected a whole number".into(),
            }
        );
        assert_eq!(
            err.to_string(),
            "DB_MAX_CONNECTIONS=\"lots\" is invalid: expected a whole number"
        );
        let err = config(&[("DB_ACQUIRE_TIMEOUT", "-1s")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("DB_ACQUIRE_TIMEOUT=\"-1s\" is invalid"),
            "{err}"
        );
        let err = config(&[("DB_ECHO", "maybe")]).unwrap_err();
        assert!(err.to_string().starts_with("DB_ECHO=\"maybe\""), "{err}");
    }

    #[test]
    fn inconsistent_settings_are_rejected() {
        let err = config(&[("DB_MAX_CONNECTIONS", "2"), ("DB_MIN_CONNECTIONS", "5")]).unwrap_err();
        assert!(
            err.to_string().contains("exceeds DB_MAX_CONNECTIONS (2)"),
            "{err}"
        );
        let err = config(&[("DB_MAX_CONNECTIONS", "0")]).unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = config(&[("DB_HEALTH_TIMEOUT", "0")]).unwrap_err();
        assert!(err.to_string().contains("longer than zero"), "{err}");
        let err = config(&[("DB_ACQUIRE_TIMEOUT", "1e15")]).unwrap_err();
        assert!(err.to_string().contains("at most a day"), "{err}");
        let err = config(&[("DB_MAX_LIFETIME", "100000m")]).unwrap_err();
        assert!(err.to_string().starts_with("DB_MAX_LIFETIME="), "{err}");
    }

    #[test]
    fn the_password_never_appears_in_debug_display_or_errors() {
        let secret = "s3cr3t-Pa55";
        let config = config(&[(
            "DATABASE_URL",
            &format!("postgres://app:{secret}@db.internal:5432/app"),
        )])
        .unwrap();
        let debug = format!("{config:?}");
        let display = config.url.to_string();
        assert!(!debug.contains(secret), "{debug}");
        assert!(!display.contains(secret), "{display}");
        assert!(
            display.contains("postgres://app:***@db.internal:5432/app"),
            "{display}"
        );

        for bad in [
            format!("mysql://app:{secret}@db/app"),
            format!("postgres://app:{secret}@[::1/app"),
            format!("postgres://app:{secret}@/app"),
        ] {
            let err =
                DatabaseConfig::from_lookup(|name| (name == "DATABASE_URL").then(|| bad.clone()))
                    .unwrap_err();
            assert!(!err.to_string().contains(secret), "{err}");
            assert!(!format!("{err:?}").contains(secret), "{err:?}");
            assert!(err.to_string().starts_with("DATABASE_URL="), "{err}");
        }
    }
}
