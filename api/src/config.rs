//! The API's configuration: its own settings (`API_*`, below) plus the database's
//! ([`DatabaseConfig`], `DATABASE_URL`, `DB_*`), one clap definition read from the command line,
//! the environment and `.env` (`api --help` lists them all). The README's configuration table
//! lists every variable; a test checks it against [`ApiConfig::variables`].
//!
//! `GET /metrics` is served on the API's address unless `API_METRICS_ADDR` is set: one port to
//! run, probe and scrape, which suits the default loopback address and a scraper that reaches
//! the API's port anyway. Set it when `API_ADDR` is reachable by clients that should not read
//! the figures (request rates, error rates and pool usage say a lot about a service), to an
//! address only the scraper reaches; the API's address then answers 404 for `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use service::config::{Environment, Variable, syntax};
use service::{DatabaseConfig, MigratorOptions};

pub use service::ConfigError;

/// Where the API listens when `API_ADDR` is unset.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// How long a request may take when `API_REQUEST_TIMEOUT` is unset (its default, `30s`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the API needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "api",
    version,
    about = "Serves the HTTP API (GET /health, /users, /metrics) over the database of DATABASE_URL \
             (unset: the embedded SQLite file data/db.sqlite).\n\n\
             Every setting is also read from its environment variable, and from a .env file in \
             the working directory or a parent: the command line wins, then the environment, \
             then .env. Log filter: RUST_LOG (default: info)."
)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Address to listen on, `IP:PORT` (port `0`: any free port)
    #[arg(long = "addr", env = "API_ADDR", value_name = "IP:PORT", default_value = DEFAULT_ADDR, value_parser = syntax::socket_addr)]
    pub addr: SocketAddr,
    /// Serve `GET /metrics` on this address instead of `API_ADDR` [default: `API_ADDR`]
    #[arg(long = "metrics-addr", env = "API_METRICS_ADDR", value_name = "IP:PORT", value_parser = syntax::socket_addr)]
    pub metrics_addr: Option<SocketAddr>,
    /// Apply pending migrations at start-up
    #[arg(long = "migrate", env = "API_MIGRATE", value_name = "BOOL", default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = syntax::boolean)]
    pub migrate: bool,
    /// A request not answered by then gets 503 (a hung database); also bounds graceful shutdown
    #[arg(long = "request-timeout", env = "API_REQUEST_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = syntax::duration)]
    pub request_timeout: Duration,
    /// `GET /health` also shows the full report (server version, pool numbers, migration and replica names, the driver's error text); off, it shows status, latency and migration counts only
    #[arg(long = "health-details", env = "API_HEALTH_DETAILS", value_name = "BOOL", default_value = "false", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, value_parser = syntax::boolean)]
    pub health_details: bool,
    /// The database (`DATABASE_URL`, `DB_*`).
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// How `--migrate` applies the migrations (`MIGRATION_*`, read as the migrator reads them).
    #[command(flatten, next_help_heading = "Migrations at start-up (with --migrate)")]
    pub migrations: MigratorOptions,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Serve with this configuration.
    Serve(Box<ApiConfig>),
    /// Print this text (`--help`, `--version`) and exit.
    Print(String),
}

impl Invocation {
    /// Reads the command line (`args`, without the program name), the process environment and
    /// `.env`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid variable and its value, or clap's message for
    /// the command line.
    pub fn from_env(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        let environment = Environment::load()?;
        Self::from_lookup(args, |name| environment.get(name))
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` only (for tests).
    ///
    /// # Errors
    ///
    /// As for [`from_env`](Self::from_env).
    pub fn from_lookup(
        args: impl IntoIterator<Item = String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        use clap::error::ErrorKind;
        let matches = match service::config::parse(ApiConfig::command(), args, lookup) {
            Ok(matches) => matches,
            Err(ConfigError::CommandLine {
                kind: ErrorKind::DisplayHelp | ErrorKind::DisplayVersion,
                message,
            }) => return Ok(Self::Print(message)),
            Err(err) => return Err(err),
        };
        let config =
            ApiConfig::from_arg_matches(&matches).map_err(|err| ConfigError::CommandLine {
                kind: err.kind(),
                message: err.render().to_string(),
            })?;
        config.validate()?;
        Ok(Self::Serve(Box::new(config)))
    }
}

impl ApiConfig {
    /// Every variable the API reads — its own (`API_*`), the database's (`DATABASE_URL`,
    /// `DB_*`) and the migrations' (`MIGRATION_*`) — with defaults and meanings.
    #[must_use]
    pub fn variables() -> Vec<Variable> {
        service::config::variables(&Self::command())
    }

    /// Checks the settings against each other (parsing does this).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] for a request timeout of zero or over an hour, or any
    /// error of [`DatabaseConfig::validate`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(3600) {
            return Err(ConfigError::InvalidValue {
                variable: "API_REQUEST_TIMEOUT".into(),
                value: humantime::format_duration(self.request_timeout).to_string(),
                reason: "must be longer than zero and at most 1h".into(),
            });
        }
        self.database.validate()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(args: &[&str], vars: &[(&str, &str)]) -> Result<Invocation, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Invocation::from_lookup(args.iter().map(|a| (*a).to_owned()), |name| {
            vars.get(name).cloned()
        })
    }

    fn serve(args: &[&str], vars: &[(&str, &str)]) -> ApiConfig {
        match parse(args, vars) {
            Ok(Invocation::Serve(config)) => *config,
            other => panic!("expected a configuration, got {other:?}"),
        }
    }

    #[test]
    fn nothing_set_listens_on_the_default_address_on_the_embedded_database() {
        let config = serve(&[], &[]);
        assert_eq!(config.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(config.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert!(!config.migrate);
        assert!(config.database.url.is_embedded_default());
    }

    #[test]
    fn api_addr_and_database_variables_are_read() {
        let config = serve(
            &[],
            &[
                ("API_ADDR", " 0.0.0.0:8080 "),
                ("DATABASE_URL", "postgres://u:p@db:5432/app"),
                ("DB_ECHO", "true"),
            ],
        );
        assert_eq!(config.addr.to_string(), "0.0.0.0:8080");
        assert!(config.database.echo);
        assert!(!config.database.url.is_sqlite());
        let config = serve(&[], &[("API_ADDR", "[::1]:0")]);
        assert_eq!(config.addr.to_string(), "[::1]:0");
    }

    #[test]
    fn the_command_line_wins_over_the_environment() {
        let config = serve(
            &["--addr", "127.0.0.1:9000", "--db-max-connections=3"],
            &[("API_ADDR", "127.0.0.1:8000"), ("DB_MAX_CONNECTIONS", "7")],
        );
        assert_eq!(config.addr.to_string(), "127.0.0.1:9000");
        assert_eq!(config.database.max_connections, 3);
    }

    #[test]
    fn metrics_are_on_the_api_address_unless_api_metrics_addr_is_set() {
        assert_eq!(serve(&[], &[]).metrics_addr, None);
        let config = serve(&[], &[("API_METRICS_ADDR", " 127.0.0.1:9100 ")]);
        assert_eq!(config.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        let err = parse(&[], &[("API_METRICS_ADDR", "9100")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"API_METRICS_ADDR="9100" is invalid: expected IP:PORT, such as 127.0.0.1:3000 or [::1]:8080"#
        );
    }

    #[test]
    fn migrate_comes_from_the_flag_or_the_variable() {
        assert!(serve(&["--migrate"], &[]).migrate);
        assert!(serve(&[], &[("API_MIGRATE", "true")]).migrate);
        assert!(serve(&[], &[("API_MIGRATE", "ON")]).migrate);
        assert!(!serve(&[], &[("API_MIGRATE", "0")]).migrate);
        assert!(!serve(&[], &[("API_MIGRATE", "")]).migrate);
        assert!(serve(&["--migrate"], &[("API_MIGRATE", "false")]).migrate);
        assert!(!serve(&["--migrate=false"], &[("API_MIGRATE", "true")]).migrate);
    }

    #[test]
    fn migrations_at_start_up_take_the_migrator_s_settings() {
        let config = serve(
            &["--migrate"],
            &[
                ("MIGRATION_LOCK_WAIT", "2m"),
                ("MIGRATION_BATCH_SIZE", "100"),
            ],
        );
        assert_eq!(config.migrations.lock_wait, Duration::from_secs(120));
        assert_eq!(config.migrations.batch_size, 100);
        assert_eq!(serve(&[], &[]).migrations, MigratorOptions::default());
        let err = parse(&[], &[("MIGRATION_LOCK_WAIT", "abc")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(r#"MIGRATION_LOCK_WAIT="abc" is invalid"#),
            "{err}"
        );
    }

    #[test]
    fn invalid_values_name_the_variable_and_the_value() {
        let err = parse(&[], &[("API_MIGRATE", "maybe")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"API_MIGRATE="maybe" is invalid: expected true or false"#
        );
        let err = parse(&[], &[("API_ADDR", "localhost")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"API_ADDR="localhost" is invalid: expected IP:PORT, such as 127.0.0.1:3000 or [::1]:8080"#
        );
        let err = parse(&[], &[("DB_ECHO", "loud")]).unwrap_err();
        assert!(
            err.to_string().starts_with(r#"DB_ECHO="loud" is invalid"#),
            "{err}"
        );
    }

    #[test]
    fn an_invalid_database_url_is_shown_without_its_password() {
        let err = parse(&[], &[("DATABASE_URL", "mysql://u:hunter2@db/app")]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = parse(&["--database-url", "mysql://u:hunter2@db/app"], &[]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn help_is_printed_and_unknown_arguments_are_refused() {
        let Ok(Invocation::Print(help)) = parse(&["--help"], &[("API_ADDR", "bad")]) else {
            panic!("no help");
        };
        assert!(help.contains("Usage: api"), "{help}");
        assert!(help.contains("[env: API_REQUEST_TIMEOUT"), "{help}");
        assert!(help.contains("[env: DB_CONNECT_TIMEOUT"), "{help}");
        let err = parse(&["--migrat"], &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::CommandLine { kind, .. } if *kind == clap::error::ErrorKind::UnknownArgument),
            "{err:?}"
        );
        assert!(err.to_string().contains("'--migrat'"), "{err}");
    }

    #[test]
    fn health_details_are_off_unless_asked_for() {
        assert!(!serve(&[], &[]).health_details);
        assert!(serve(&[], &[("API_HEALTH_DETAILS", "true")]).health_details);
        assert!(!serve(&[], &[("API_HEALTH_DETAILS", "off")]).health_details);
        let err = parse(&[], &[("API_HEALTH_DETAILS", "all")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"API_HEALTH_DETAILS="all" is invalid: expected true or false"#
        );
    }

    #[test]
    fn api_request_timeout_takes_the_duration_syntax_of_every_setting() {
        assert_eq!(
            serve(&[], &[("API_REQUEST_TIMEOUT", "500ms")]).request_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(
            serve(&[], &[("API_REQUEST_TIMEOUT", "45")]).request_timeout,
            Duration::from_secs(45)
        );
        assert_eq!(
            serve(&[], &[("API_REQUEST_TIMEOUT", "2m")]).request_timeout,
            Duration::from_secs(120)
        );
        let err = parse(&[], &[("API_REQUEST_TIMEOUT", "abc")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"API_REQUEST_TIMEOUT="abc" is invalid: expected a duration such as 500ms, 5s, 2m or 30 (seconds)"#
        );
        for bad in ["0", "2h"] {
            let err = parse(&[], &[("API_REQUEST_TIMEOUT", bad)]).unwrap_err();
            assert!(err.to_string().starts_with("API_REQUEST_TIMEOUT="), "{err}");
        }
    }

    #[test]
    fn variables_are_the_api_s_the_database_s_and_the_migrations() {
        let names: Vec<String> = ApiConfig::variables().into_iter().map(|v| v.name).collect();
        for name in [
            "API_ADDR",
            "API_REQUEST_TIMEOUT",
            "DATABASE_URL",
            "DB_ECHO",
            "MIGRATION_LOCK_WAIT",
        ] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
        // Five of the API's own, the database's, and the options of a migration run.
        let migration_options =
            <MigratorOptions as clap::Args>::augment_args(clap::Command::new("m"))
                .get_arguments()
                .filter(|arg| arg.get_env().is_some())
                .count();
        assert_eq!(migration_options, 7, "MIGRATION_* and DB_APP_ROLE");
        assert_eq!(
            names.len(),
            5 + DatabaseConfig::variables().len() + migration_options
        );
    }
}
