//! Configuration: where the database is and how the pool behaves.
//!
//! [`DatabaseConfig`] is read from environment variables with [`DatabaseConfig::from_env`]
//! (every variable optional) or built in code with [`DatabaseConfig::new`]. Its variables,
//! their defaults and meanings are defined once, as clap arguments (`settings.rs`), and listed
//! by [`DatabaseConfig::variables`]; the README's configuration table is checked against that
//! list by a test. Values use one syntax everywhere ([`syntax`]): durations `500ms`, `5s`,
//! `2m` or a bare number of seconds, sizes `16MiB` or bytes, switches `true`/`false`. A bad
//! value is a [`ConfigError`] naming the variable and the accepted form.
//!
//! `from_env` reads the process environment and, beneath it, a `.env` file in the working
//! directory or a parent (the process environment wins; an unreadable `.env` is an error).
//!
//! The password never leaves [`DatabaseUrl`]: its `Debug` and `Display` redact it, and so does
//! every error and log line of this crate.

mod environment;
mod settings;
mod url;

/// The syntax of every value (the `settings` crate).
pub use ::settings as syntax;

use std::time::Duration;

use clap::{Args, Command};

pub use connection::database_url::load_dotenv;
pub use environment::{Environment, Variable, parse, variables};
pub use url::DatabaseUrl;

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
    /// PostgreSQL cancels statements running longer than this (`None`: never). Migrations run
    /// on a session of their own, which this does not limit.
    pub statement_timeout: Option<Duration>,
    /// PostgreSQL ends a session whose transaction has been idle longer than this (its locks
    /// released, the transaction rolled back), so a transaction leaked by a bug cannot hold
    /// row locks for ever (`None`: never). Five minutes by default.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// PostgreSQL schema to use (the search path); `None` means the server's default
    /// (`public`). Ignored on SQLite.
    pub schema: Option<String>,
    /// Read replicas of the PostgreSQL primary (streaming standbys). Reads made through
    /// [`DatabaseService::reader`](crate::DatabaseService::reader) go to one of them while it
    /// is reachable and within [`replica_max_lag`](Self::replica_max_lag); everything else goes
    /// to `url`.
    pub replica_urls: Vec<DatabaseUrl>,
    /// Whether the hosts of a multi-host `url` (as an HA manager such as pg_auto_failover
    /// prints it) serve reads as replicas do: the standbys among them, with the same lag
    /// bound and read-your-writes as [`replica_urls`](Self::replica_urls). Their roles are
    /// probed continually, so after a failover the promoted host leaves the readers and the
    /// old primary joins them once it follows again.
    pub read_from_standbys: bool,
    /// A replica whose replay position is more than this many bytes of WAL behind the
    /// primary's is taken out of rotation until it catches up.
    pub replica_max_lag: u64,
    /// How often each replica's reachability, role and lag are checked.
    pub replica_probe_interval: Duration,
    /// The server itself when `url` points at a connection pooler: migrations
    /// ([`DatabaseService::apply_migrations`](crate::DatabaseService::apply_migrations)) hold a
    /// session-level lock, which only a direct connection keeps. `None`: `url`.
    pub direct_url: Option<DatabaseUrl>,
    /// A secret file (`DATABASE_URL_FILE`, …) that could not be used, reported by
    /// [`validate`](Self::validate).
    file_error: Option<ConfigError>,
}

impl DatabaseConfig {
    /// A configuration for `url` with every other setting at its default.
    #[must_use]
    pub fn new(url: DatabaseUrl) -> Self {
        let defaults =
            environment::parse(Self::command(), std::iter::empty(), |_| None).and_then(|matches| {
                <Self as clap::FromArgMatches>::from_arg_matches(&matches).map_err(|err| {
                    ConfigError::CommandLine {
                        kind: err.kind(),
                        message: err.render().to_string(),
                    }
                })
            });
        #[allow(clippy::expect_used)] // the definition's own defaults; a unit test parses them
        let defaults = defaults.expect("the settings' defaults parse");
        Self { url, ..defaults }
    }

    /// Reads the process environment and `.env` (see the module documentation).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable and its value (a URL is shown
    /// redacted), or why `.env` cannot be used.
    pub fn from_env() -> Result<Self, ConfigError> {
        let environment = Environment::load()?;
        Self::from_lookup(|name| environment.get(name))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` only (for tests,
    /// or configuration kept elsewhere).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable and its value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let matches = environment::parse(Self::command(), std::iter::empty(), lookup)?;
        let config = <Self as clap::FromArgMatches>::from_arg_matches(&matches).map_err(|err| {
            ConfigError::CommandLine {
                kind: err.kind(),
                message: err.render().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The variables [`from_env`](Self::from_env) reads, with their defaults and meanings.
    #[must_use]
    pub fn variables() -> Vec<Variable> {
        variables(&Self::command())
    }

    /// The settings as a clap command of their own.
    fn command() -> Command {
        Self::augment_args(Command::new("database").no_binary_name(false))
    }

    /// Checks the settings against each other (`from_env` does this; call it after changing
    /// fields in code).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a zero pool size or timeout, or a minimum above the
    /// maximum.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(err) = &self.file_error {
            return Err(err.clone());
        }
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
        self.url.check("DATABASE_URL")?;
        for replica in &self.replica_urls {
            replica.check("DATABASE_REPLICA_URLS")?;
        }
        if let Some(direct) = &self.direct_url {
            direct.check("DATABASE_DIRECT_URL")?;
        }
        if self.read_from_standbys && self.url.each_host().is_empty() {
            return Err(invalid(
                "DB_READ_FROM_STANDBYS",
                "true",
                "needs a PostgreSQL DATABASE_URL naming several hosts \
                 (postgres://host1:port1,host2:port2/db?target_session_attrs=read-write)",
            ));
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
                variable: "DATABASE_REPLICA_URLS".into(),
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
                variable: "DATABASE_DIRECT_URL".into(),
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
        variable: String,
        /// The value as given.
        value: String,
        /// What is wrong with it: the accepted form.
        reason: String,
    },
    /// A database URL (`DATABASE_URL`, `DATABASE_REPLICA_URLS`, `DATABASE_DIRECT_URL`) cannot
    /// be used.
    #[error("{variable}={redacted} is invalid: {reason}")]
    InvalidUrl {
        /// The environment variable (or the setting it stands for).
        variable: String,
        /// The URL with its password replaced by `***`.
        redacted: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A secret file (`DATABASE_URL_FILE`, `DATABASE_PASSWORD_FILE`, …) cannot be used, or is
    /// set together with its variable. The message names the variable and the path, never the
    /// file's content.
    #[error("{0}")]
    SecretFile(String),
    /// A `.env` file exists but cannot be used.
    #[error("{0}")]
    DotEnv(String),
    /// A binary's command line cannot be used, or asks for help: clap's message (the help
    /// itself for [`ErrorKind::DisplayHelp`](clap::error::ErrorKind::DisplayHelp)).
    #[error("{message}")]
    CommandLine {
        /// What clap found.
        kind: clap::error::ErrorKind,
        /// Its message, with the usage line.
        message: String,
    },
}

/// The longest duration any setting accepts.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

impl DatabaseConfig {
    /// The nodes that serve reads besides the primary: each of
    /// [`replica_urls`](Self::replica_urls), then (with
    /// [`read_from_standbys`](Self::read_from_standbys)) each host of `url`, marked `true`.
    pub(crate) fn read_nodes(&self) -> Vec<(DatabaseUrl, bool)> {
        let standbys = if self.read_from_standbys {
            self.url.each_host()
        } else {
            Vec::new()
        };
        self.replica_urls
            .iter()
            .cloned()
            .map(|url| (url, false))
            .chain(standbys.into_iter().map(|url| (url, true)))
            .collect()
    }
}

fn invalid(variable: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        variable: variable.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
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
        assert_eq!(
            config.idle_in_transaction_timeout,
            Some(Duration::from_secs(300))
        );
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
            ("DB_CONNECT_DEADLINE", "1500ms"),
            ("DB_HEALTH_TIMEOUT", "500ms"),
            ("DB_APPLICATION_NAME", "orders-api"),
            ("DB_STATEMENT_TIMEOUT", "30s"),
            ("DATABASE_SCHEMA", "orders"),
            (
                "DATABASE_REPLICA_URLS",
                "postgres://app:pw@replica1:5432/app, postgres://app:pw@replica2/app",
            ),
            ("DB_REPLICA_MAX_LAG", "512KiB"),
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
        for bad in ["lots", "-1MB", "16 parsecs"] {
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
            config(&[("DB_REPLICA_MAX_LAG", "2GiB")])
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
                variable: "DB_MAX_CONNECTIONS".into(),
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
        let err = config(&[("DB_ACQUIRE_TIMEOUT", "2days")]).unwrap_err();
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

    #[test]
    fn urls_and_passwords_come_from_secret_files_and_never_show() {
        let dir = std::env::temp_dir().join(format!("config_secrets_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url_file = dir.join("url");
        let password_file = dir.join("password");
        std::fs::write(&url_file, "postgres://app:s3cret-url@db:5432/app\n").unwrap();
        std::fs::write(&password_file, "s3cret-p@ss\n").unwrap();
        let url_path = url_file.display().to_string();
        let password_path = password_file.display().to_string();

        let from_file = config(&[("DATABASE_URL_FILE", &url_path)]).unwrap();
        assert_eq!(
            from_file.url.expose_secret(),
            "postgres://app:s3cret-url@db:5432/app"
        );
        let with_password = config(&[
            ("DATABASE_URL", "postgres://app@db:5432/app"),
            (
                "DATABASE_REPLICA_URLS",
                "postgres://app@r1/app,postgres://other:own@r2/app",
            ),
            ("DATABASE_PASSWORD_FILE", &password_path),
        ])
        .unwrap();
        assert_eq!(
            connection::connect::password(&with_password.url.expose_secret()).as_deref(),
            Some("s3cret-p@ss")
        );
        let replicas: Vec<Option<String>> = with_password
            .replica_urls
            .iter()
            .map(|url| connection::connect::password(&url.expose_secret()))
            .collect();
        assert_eq!(
            replicas,
            [Some("s3cret-p@ss".to_owned()), Some("own".to_owned())]
        );
        for shown in [
            format!("{from_file:?}"),
            format!("{with_password:?}"),
            from_file.url.to_string(),
            with_password.url.to_string(),
        ] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }

        let err = config(&[
            ("DATABASE_URL", "postgres://app@db/app"),
            ("DATABASE_URL_FILE", &url_path),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DATABASE_URL and DATABASE_URL_FILE are both set: set one of them"
        );
        let err = config(&[("DATABASE_PASSWORD_FILE", &password_path)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("DATABASE_PASSWORD_FILE is set, but"),
            "{err}"
        );
        let missing = dir.join("missing").display().to_string();
        let err = config(&[("DATABASE_DIRECT_URL_FILE", &missing)]).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "DATABASE_DIRECT_URL_FILE={missing}: cannot read the file"
            )),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn durations_take_units_or_seconds_and_a_bad_one_names_the_variable_and_the_form() {
        let two_minutes = config(&[("DB_CONNECT_TIMEOUT", "2m")]).unwrap();
        assert_eq!(two_minutes.connect_timeout, Duration::from_secs(120));
        let err = config(&[("DB_CONNECT_TIMEOUT", "abc")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "DB_CONNECT_TIMEOUT=\"abc\" is invalid: expected a duration such as 500ms, 5s, 2m or 30 (seconds)"
        );
        let err = config(&[("DB_IDLE_TIMEOUT", "later")]).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("expected a duration such as 500ms, 5s, 2m or 30 (seconds), or off"),
            "{err}"
        );
    }

    #[test]
    fn blank_values_count_as_unset_and_new_has_the_same_defaults() {
        let blank = config(&[("DB_MAX_CONNECTIONS", "  "), ("DATABASE_URL", "")]).unwrap();
        assert_eq!(blank.max_connections, 10);
        assert_eq!(blank, DatabaseConfig::new(DatabaseUrl::embedded_default()));
    }

    #[test]
    fn the_standbys_of_a_multi_host_url_serve_reads_when_asked() {
        let url = "postgres://app:s3cret@db1:6001,db2:6002/app?target_session_attrs=read-write";
        let config = config(&[("DATABASE_URL", url), ("DB_READ_FROM_STANDBYS", "true")]).unwrap();
        let nodes: Vec<(String, bool)> = config
            .read_nodes()
            .iter()
            .map(|(url, standby)| (url.expose_secret(), *standby))
            .collect();
        assert_eq!(
            nodes,
            [
                ("postgres://app:s3cret@db1:6001/app".to_owned(), true),
                ("postgres://app:s3cret@db2:6002/app".to_owned(), true)
            ]
        );
        let off = super::tests::config(&[("DATABASE_URL", url)]).unwrap();
        assert!(off.read_nodes().is_empty());

        let err = super::tests::config(&[
            ("DATABASE_URL", "postgres://app:s3cret@db1/app"),
            ("DB_READ_FROM_STANDBYS", "true"),
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "DB_READ_FROM_STANDBYS=\"true\" is invalid: needs a PostgreSQL DATABASE_URL naming \
             several hosts (postgres://host1:port1,host2:port2/db?target_session_attrs=read-write)"
        );
        assert!(!format!("{err:?}").contains("s3cret"));
    }

    #[test]
    fn variables_list_every_setting_with_its_default() {
        let variables = DatabaseConfig::variables();
        let names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names.len(), 25, "{names:?}");
        let find = |name: &str| variables.iter().find(|v| v.name == name).unwrap();
        assert_eq!(find("DB_CONNECT_TIMEOUT").default.as_deref(), Some("5s"));
        assert_eq!(find("DB_REPLICA_MAX_LAG").default.as_deref(), Some("16MiB"));
        assert_eq!(
            find("DB_APPLICATION_NAME").default.as_deref(),
            Some("the executable's name")
        );
        assert_eq!(
            find("DB_APPLICATION_NAME").meaning,
            "`application_name` in `pg_stat_activity`"
        );
        assert!(variables.iter().all(|v| !v.meaning.is_empty()));
    }
}
