//! The clap definition of [`DatabaseConfig`]: one argument per setting, each with its
//! environment variable, default (written as the variable would be) and help. Everything that
//! reads the service's configuration — [`DatabaseConfig::from_env`], the API's command line
//! (which flattens it), [`DatabaseConfig::variables`] and the README's table through its test —
//! reads this one definition.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Args, Command, FromArgMatches};

use super::syntax;
use super::url::{self, DatabaseUrl, UrlList};
use super::{ConfigError, DatabaseConfig, default_application_name};

#[derive(Debug, Clone, Args)]
#[group(id = "database")]
pub(super) struct Settings {
    /// `postgres://user:password@host:5432/db` or `sqlite://path?mode=rwc` [default: the embedded SQLite file data/db.sqlite]
    #[arg(long = "database-url", env = "DATABASE_URL", value_name = "URL", hide_env_values = true, value_parser = url::one)]
    url: Option<DatabaseUrl>,
    /// Log every statement through `tracing` (target `sqlx::query`, level INFO)
    #[arg(long = "db-echo", env = "DB_ECHO", value_name = "BOOL", default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = syntax::boolean)]
    echo: bool,
    /// Pool size limit
    #[arg(long = "db-max-connections", env = "DB_MAX_CONNECTIONS", value_name = "N", default_value = "10", value_parser = syntax::count)]
    max_connections: u32,
    /// Connections kept open when idle
    #[arg(long = "db-min-connections", env = "DB_MIN_CONNECTIONS", value_name = "N", default_value = "0", value_parser = syntax::count)]
    min_connections: u32,
    /// Time allowed for one connection attempt
    #[arg(long = "db-connect-timeout", env = "DB_CONNECT_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = syntax::duration)]
    connect_timeout: Duration,
    /// Wait for a free pooled connection, then `Error::Unavailable`
    #[arg(long = "db-acquire-timeout", env = "DB_ACQUIRE_TIMEOUT", value_name = "DURATION", default_value = "5s", value_parser = syntax::duration)]
    acquire_timeout: Duration,
    /// Close connections idle this long (`off`: never)
    #[arg(long = "db-idle-timeout", env = "DB_IDLE_TIMEOUT", value_name = "DURATION", default_value = "10m", value_parser = syntax::optional_duration)]
    idle_timeout: ::std::option::Option<Duration>,
    /// Recycle connections this old (`off`: never)
    #[arg(long = "db-max-lifetime", env = "DB_MAX_LIFETIME", value_name = "DURATION", default_value = "30m", value_parser = syntax::optional_duration)]
    max_lifetime: ::std::option::Option<Duration>,
    /// Ping a pooled connection before handing it out if it sat idle this long (`0`: on every checkout, `off`: never)
    #[arg(long = "db-ping-after-idle", env = "DB_PING_AFTER_IDLE", value_name = "DURATION", default_value = "30s", value_parser = syntax::optional_duration)]
    ping_after_idle: ::std::option::Option<Duration>,
    /// The repositories' PostgreSQL fast path keeps its connection between statements this long instead of giving it back after each (`off`: give it back)
    #[arg(long = "db-connection-hold", env = "DB_CONNECTION_HOLD", value_name = "DURATION", default_value = "10ms", value_parser = syntax::optional_duration)]
    connection_hold: ::std::option::Option<Duration>,
    /// How long `DatabaseService::connect` retries while the server starts
    #[arg(long = "db-connect-deadline", env = "DB_CONNECT_DEADLINE", value_name = "DURATION", default_value = "30s", value_parser = syntax::duration)]
    connect_deadline: Duration,
    /// Upper bound of `DatabaseService::health`
    #[arg(long = "db-health-timeout", env = "DB_HEALTH_TIMEOUT", value_name = "DURATION", default_value = "2s", value_parser = syntax::duration)]
    health_timeout: Duration,
    /// `application_name` in `pg_stat_activity` [default: the executable's name]
    #[arg(long = "db-application-name", env = "DB_APPLICATION_NAME", value_name = "NAME", value_parser = syntax::text)]
    application_name: Option<String>,
    /// PostgreSQL cancels a statement running longer (server side; migrations, on a session of their own, are not limited)
    #[arg(long = "db-statement-timeout", env = "DB_STATEMENT_TIMEOUT", value_name = "DURATION", default_value = "off", value_parser = syntax::optional_duration)]
    statement_timeout: ::std::option::Option<Duration>,
    /// PostgreSQL ends a session whose transaction sits idle this long, releasing its locks (a leaked transaction; `off`: never)
    #[arg(long = "db-idle-in-transaction-timeout", env = "DB_IDLE_IN_TRANSACTION_TIMEOUT", value_name = "DURATION", default_value = "5m", value_parser = syntax::optional_duration)]
    idle_in_transaction_timeout: ::std::option::Option<Duration>,
    /// PostgreSQL schema (search path), as for the migrator [default: the server's search path]
    #[arg(long = "database-schema", env = "DATABASE_SCHEMA", value_name = "SCHEMA", value_parser = syntax::text)]
    schema: Option<String>,
    /// Read replicas (streaming standbys of the primary), comma-separated URLs [default: none]
    #[arg(long = "database-replica-urls", env = "DATABASE_REPLICA_URLS", value_name = "URLS", hide_env_values = true, value_parser = url::list)]
    replica_urls: Option<UrlList>,
    /// Reads go to the standbys among DATABASE_URL's hosts (a multi-host URL), as to replicas
    #[arg(long = "db-read-from-standbys", env = "DB_READ_FROM_STANDBYS", value_name = "BOOL", default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = syntax::boolean)]
    read_from_standbys: bool,
    /// A replica more WAL than this behind the primary serves no reads
    #[arg(long = "db-replica-max-lag", env = "DB_REPLICA_MAX_LAG", value_name = "SIZE", default_value = "16MiB", value_parser = syntax::bytes)]
    replica_max_lag: u64,
    /// How often each replica's role and lag are checked
    #[arg(long = "db-replica-probe-interval", env = "DB_REPLICA_PROBE_INTERVAL", value_name = "DURATION", default_value = "500ms", value_parser = syntax::duration)]
    replica_probe_interval: Duration,
    /// The server itself when `DATABASE_URL` is a connection pooler: what the migrator and `apply_migrations` use [default: DATABASE_URL]
    #[arg(long = "database-direct-url", env = "DATABASE_DIRECT_URL", value_name = "URL", hide_env_values = true, value_parser = url::one)]
    direct_url: Option<DatabaseUrl>,
    /// A file holding DATABASE_URL (a Docker or Kubernetes secret), read at start-up and again for new connections; not together with DATABASE_URL
    #[arg(
        long = "database-url-file",
        env = "DATABASE_URL_FILE",
        value_name = "PATH"
    )]
    url_file: Option<PathBuf>,
    /// A file holding DATABASE_DIRECT_URL, as DATABASE_URL_FILE
    #[arg(
        long = "database-direct-url-file",
        env = "DATABASE_DIRECT_URL_FILE",
        value_name = "PATH"
    )]
    direct_url_file: Option<PathBuf>,
    /// A file holding DATABASE_REPLICA_URLS (comma- or line-separated), as DATABASE_URL_FILE
    #[arg(
        long = "database-replica-urls-file",
        env = "DATABASE_REPLICA_URLS_FILE",
        value_name = "PATH"
    )]
    replica_urls_file: Option<PathBuf>,
    /// A file holding the password of every PostgreSQL URL that has none, read at start-up and again for new connections
    #[arg(
        long = "database-password-file",
        env = "DATABASE_PASSWORD_FILE",
        value_name = "PATH"
    )]
    password_file: Option<PathBuf>,
}

/// The URLs as configured directly or through secret files: primary, replicas, direct.
type Urls = (Option<DatabaseUrl>, Vec<DatabaseUrl>, Option<DatabaseUrl>);

impl Settings {
    /// The URLs, each from its variable or its `_FILE`, with the password file applied to
    /// those without a password.
    fn urls(&self) -> Result<Urls, ConfigError> {
        use connection::secrets::both_set;
        let secret = ConfigError::SecretFile;
        let one = |name: &str, value: &Option<DatabaseUrl>, file: &Option<PathBuf>, variable| match (
            value, file,
        ) {
            (Some(_), Some(_)) => Err(secret(both_set(name))),
            (None, Some(path)) => DatabaseUrl::from_file(variable, path)
                .map(Some)
                .map_err(secret),
            (value, None) => Ok(value.clone()),
        };
        let mut url = one(
            "DATABASE_URL",
            &self.url,
            &self.url_file,
            "DATABASE_URL_FILE",
        )?;
        let mut direct = one(
            "DATABASE_DIRECT_URL",
            &self.direct_url,
            &self.direct_url_file,
            "DATABASE_DIRECT_URL_FILE",
        )?;
        let mut replicas = match (&self.replica_urls, &self.replica_urls_file) {
            (Some(_), Some(_)) => return Err(secret(both_set("DATABASE_REPLICA_URLS"))),
            (None, Some(path)) => {
                DatabaseUrl::list_from_file("DATABASE_REPLICA_URLS_FILE", path).map_err(secret)?
            }
            (list, None) => list.clone().map(|list| list.0).unwrap_or_default(),
        };
        if let Some(path) = &self.password_file {
            let mut applied = false;
            let mut apply = |url: &mut DatabaseUrl| -> Result<(), ConfigError> {
                if url.wants_password() {
                    *url = url
                        .clone()
                        .with_password_file("DATABASE_PASSWORD_FILE", path)
                        .map_err(secret)?;
                    applied = true;
                }
                Ok(())
            };
            for url in url
                .iter_mut()
                .chain(direct.iter_mut())
                .chain(replicas.iter_mut())
            {
                apply(url)?;
            }
            if !applied {
                return Err(secret(
                    "DATABASE_PASSWORD_FILE is set, but no PostgreSQL URL without a password is \
                     configured (DATABASE_URL, DATABASE_DIRECT_URL, DATABASE_REPLICA_URLS or \
                     their _FILE variables)"
                        .to_owned(),
                ));
            }
        }
        Ok((url, replicas, direct))
    }
}

impl From<Settings> for DatabaseConfig {
    fn from(settings: Settings) -> Self {
        // A zero duration turns these off, as `off` does.
        let nonzero = |value: Option<Duration>| value.filter(|d| !d.is_zero());
        // A secret file that cannot be used is reported by `validate`.
        let (urls, file_error) = match settings.urls() {
            Ok(urls) => (urls, None),
            Err(err) => ((None, Vec::new(), None), Some(err)),
        };
        let (url, replica_urls, direct_url) = urls;
        Self {
            url: url.unwrap_or_else(DatabaseUrl::embedded_default),
            echo: settings.echo,
            max_connections: settings.max_connections,
            min_connections: settings.min_connections,
            connect_timeout: settings.connect_timeout,
            acquire_timeout: settings.acquire_timeout,
            idle_timeout: nonzero(settings.idle_timeout),
            max_lifetime: nonzero(settings.max_lifetime),
            ping_after_idle: settings.ping_after_idle,
            connection_hold: nonzero(settings.connection_hold),
            connect_deadline: settings.connect_deadline,
            health_timeout: settings.health_timeout,
            application_name: settings
                .application_name
                .unwrap_or_else(default_application_name),
            statement_timeout: nonzero(settings.statement_timeout),
            idle_in_transaction_timeout: nonzero(settings.idle_in_transaction_timeout),
            schema: settings.schema,
            replica_urls,
            read_from_standbys: settings.read_from_standbys,
            replica_max_lag: settings.replica_max_lag,
            replica_probe_interval: settings.replica_probe_interval,
            direct_url,
            file_error,
        }
    }
}

/// `DatabaseConfig` is read through its clap definition, so a binary's own clap settings can
/// flatten it (`#[command(flatten)] database: DatabaseConfig`). Call
/// [`DatabaseConfig::validate`] after parsing.
impl FromArgMatches for DatabaseConfig {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Settings::from_arg_matches(matches).map(Self::from)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for DatabaseConfig {
    fn augment_args(command: Command) -> Command {
        Settings::augment_args(command)
    }

    fn augment_args_for_update(command: Command) -> Command {
        Settings::augment_args_for_update(command)
    }

    fn group_id() -> Option<clap::Id> {
        Settings::group_id()
    }
}
