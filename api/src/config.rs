//! The API's configuration: the database's ([`DatabaseConfig`], `DATABASE_URL`, `DB_*`) plus
//! its own, from the environment and the command line.
//!
//! | variable      | default          | meaning |
//! | ------------- | ---------------- | ------- |
//! | `API_ADDR`    | `127.0.0.1:3000` | address to listen on, `IP:PORT` (port `0`: any free port) |
//! | `API_METRICS_ADDR` | unset       | serve `GET /metrics` on this address instead of `API_ADDR` (see below) |
//! | `API_MIGRATE` | `false`          | apply pending migrations at start-up (also `--migrate`) |
//! | `API_REQUEST_TIMEOUT` | `30s`    | a request not answered by then gets 503 (a hung database); also bounds graceful shutdown |
//! | `API_HEALTH_DETAILS` | `false`   | `GET /health` also shows the full report (server version, pool numbers, migration and replica names, the driver's error text); off, it shows status, latency and migration counts only |
//!
//! `GET /metrics` is served on the API's address unless `API_METRICS_ADDR` is set: one port to
//! run, probe and scrape, which suits the default loopback address and a scraper that reaches
//! the API's port anyway. Set it when `API_ADDR` is reachable by clients that should not read
//! the figures (request rates, error rates and pool usage say a lot about a service), to an
//! address only the scraper reaches; the API's address then answers 404 for `/metrics`.
//!
//! Binaries load `.env` before reading it (`service::config::load_dotenv()`); values set in the process
//! environment win over `.env`.

use std::net::SocketAddr;
use std::time::Duration;

use service::DatabaseConfig;

/// Where the API listens when `API_ADDR` is unset.
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";

/// How long a request may take when `API_REQUEST_TIMEOUT` is unset.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The command line's usage text.
pub const USAGE: &str = "\
Usage: api [--migrate]

Serves the HTTP API (GET /health, /users) over the database of DATABASE_URL
(unset: the embedded SQLite file data/db.sqlite). Variables are read from the
environment and from a .env file.

Options:
      --migrate   apply pending migrations before serving (also API_MIGRATE=true)
  -h, --help      print this help

Environment:
  API_ADDR        address to listen on, IP:PORT (default 127.0.0.1:3000)
  API_METRICS_ADDR  serve GET /metrics on this IP:PORT instead of API_ADDR
  API_MIGRATE     true/false: apply pending migrations at start-up (default false)
  API_REQUEST_TIMEOUT  seconds (or 500ms) before a request answers 503 (default 30)
  API_HEALTH_DETAILS   true: GET /health also shows server version, pool numbers
                       and error text (default false: status, latency, migration counts)
  DATABASE_URL    postgres://user:password@host:5432/db or sqlite://path?mode=rwc
  DB_ECHO         true: log every SQL statement
  DB_*            pool settings, see the service crate's DatabaseConfig
  RUST_LOG        log filter (default: info)
";

/// Everything the API needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiConfig {
    /// Address to listen on (`API_ADDR`).
    pub addr: SocketAddr,
    /// Where `GET /metrics` is served when not on `addr` (`API_METRICS_ADDR`).
    pub metrics_addr: Option<SocketAddr>,
    /// Apply pending migrations at start-up (`--migrate` or `API_MIGRATE`).
    pub migrate: bool,
    /// A request not answered within this gets 503 (`API_REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// `GET /health` shows the full report, not only status, latency and migration counts
    /// (`API_HEALTH_DETAILS`, off by default: server version, pool numbers and error text are
    /// for operators, not for whoever can reach the port).
    pub health_details: bool,
    /// The database (`DATABASE_URL`, `DB_*`).
    pub database: DatabaseConfig,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Serve with this configuration.
    Serve(Box<ApiConfig>),
    /// Print the usage text and exit.
    Help,
}

/// A configuration value or argument that cannot be used. Never contains a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An `API_*` variable holds a value that cannot be used.
    #[error("{variable}={value:?} is invalid: {reason}")]
    InvalidValue {
        /// The environment variable.
        variable: &'static str,
        /// The value as given.
        value: String,
        /// What is expected instead.
        reason: &'static str,
    },
    /// A command-line argument this program does not know.
    #[error("unknown argument {0:?} (usage: api [--migrate] [--help])")]
    UnknownArgument(String),
    /// The database configuration (`DATABASE_URL`, `DB_*`) is invalid.
    #[error(transparent)]
    Database(#[from] service::ConfigError),
}

impl Invocation {
    /// Reads the command line (`args`, without the program name) and the process environment
    /// (through [`DatabaseConfig::from_env`] for the database).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid argument or variable and its value.
    pub fn from_env(args: impl IntoIterator<Item = String>) -> Result<Self, ConfigError> {
        Self::parse(
            args,
            |name| std::env::var(name).ok(),
            DatabaseConfig::from_env,
        )
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first invalid argument or variable and its value.
    pub fn from_lookup(
        args: impl IntoIterator<Item = String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        Self::parse(args, &lookup, || DatabaseConfig::from_lookup(&lookup))
    }

    fn parse(
        args: impl IntoIterator<Item = String>,
        lookup: impl Fn(&str) -> Option<String>,
        database: impl FnOnce() -> Result<DatabaseConfig, service::ConfigError>,
    ) -> Result<Self, ConfigError> {
        let mut migrate_flag = false;
        for arg in args {
            match arg.as_str() {
                "--migrate" => migrate_flag = true,
                "-h" | "--help" => return Ok(Self::Help),
                _ => return Err(ConfigError::UnknownArgument(arg)),
            }
        }
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let addr = match get("API_ADDR") {
            Some(value) => parse_addr("API_ADDR", &value)?,
            None => DEFAULT_ADDR
                .parse()
                .map_err(|_| invalid("API_ADDR", DEFAULT_ADDR, ADDR_REASON))?,
        };
        let metrics_addr = get("API_METRICS_ADDR")
            .map(|value| parse_addr("API_METRICS_ADDR", &value))
            .transpose()?;
        let migrate_env = match get("API_MIGRATE") {
            Some(value) => parse_bool("API_MIGRATE", &value)?,
            None => false,
        };
        let request_timeout = match get("API_REQUEST_TIMEOUT") {
            Some(value) => parse_timeout(&value)?,
            None => DEFAULT_REQUEST_TIMEOUT,
        };
        let health_details = match get("API_HEALTH_DETAILS") {
            Some(value) => parse_bool("API_HEALTH_DETAILS", &value)?,
            None => false,
        };
        Ok(Self::Serve(Box::new(ApiConfig {
            addr,
            metrics_addr,
            migrate: migrate_flag || migrate_env,
            request_timeout,
            health_details,
            database: database()?,
        })))
    }
}

const ADDR_REASON: &str = "expected IP:PORT, such as 127.0.0.1:3000 or [::1]:8080";

fn parse_addr(variable: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| invalid(variable, value, ADDR_REASON))
}

fn parse_timeout(value: &str) -> Result<Duration, ConfigError> {
    const REASON: &str = "expected a duration between 1ms and 1h, such as 30, 30s or 500ms";
    let text = value.trim();
    let (number, scale) = match text.strip_suffix("ms") {
        Some(ms) => (ms, 0.001),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let secs = number
        .trim()
        .parse::<f64>()
        .map_err(|_| invalid("API_REQUEST_TIMEOUT", value, REASON))?
        * scale;
    if !(0.001..=3600.0).contains(&secs) {
        return Err(invalid("API_REQUEST_TIMEOUT", value, REASON));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(invalid(variable, value, "expected true or false")),
    }
}

fn invalid(variable: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::InvalidValue {
        variable,
        value: value.to_owned(),
        reason,
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
        assert_eq!(config.addr.to_string(), "127.0.0.1:3000");
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
    }

    #[test]
    fn arguments_other_than_migrate_and_help_are_refused() {
        assert_eq!(parse(&["--help"], &[]).unwrap(), Invocation::Help);
        assert_eq!(
            parse(&["-h"], &[("API_ADDR", "bad")]).unwrap(),
            Invocation::Help
        );
        let err = parse(&["--migrat"], &[]).unwrap_err();
        assert_eq!(err, ConfigError::UnknownArgument("--migrat".into()));
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
    fn api_request_timeout_is_read_and_checked() {
        assert_eq!(serve(&[], &[]).request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(
            serve(&[], &[("API_REQUEST_TIMEOUT", "500ms")]).request_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(
            serve(&[], &[("API_REQUEST_TIMEOUT", "45")]).request_timeout,
            Duration::from_secs(45)
        );
        for bad in ["0", "soon", "99999"] {
            let err = parse(&[], &[("API_REQUEST_TIMEOUT", bad)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("API_REQUEST_TIMEOUT={bad:?} is invalid")),
                "{err}"
            );
        }
    }
}
