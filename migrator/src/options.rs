//! The settings of a migration run, parsed once at start-up (clap's derive with `env`) and
//! passed in: nothing reads the environment mid-run.
//!
//! Durations are written as `humantime` reads them (`500ms`, `5s`, `2m`); a bare number means
//! seconds (`5`, `0.5`). A value that does not parse is an error at start-up naming the
//! variable and the accepted form, never a warning with a fallback. [`environment`] lists every
//! variable the migrator reads.
//!
//! A data migration is called by SeaORM without arguments, so the runner makes the options of
//! the run available to it for the duration of the run ([`current`]).

use std::time::Duration;

use clap::Args;
use clap::builder::TypedValueParser;

/// How long a migrator waits for another one to finish, by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// The settings of a migration run.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct MigratorOptions {
    /// How long to wait for another migrator to finish (the PostgreSQL advisory lock).
    #[arg(
        long,
        global = true,
        env = "MIGRATION_LOCK_TIMEOUT",
        value_name = "DURATION",
        default_value = "120s",
        value_parser = DurationParser
    )]
    pub lock_timeout: Duration,

    /// `lock_timeout` of the migration session (PostgreSQL): how long one migration waits for
    /// a table lock before it rolls back and tries again, so the application's queries never
    /// queue behind it for longer.
    #[arg(
        long,
        global = true,
        env = "MIGRATION_LOCK_WAIT",
        value_name = "DURATION",
        default_value = "5s",
        value_parser = DurationParser
    )]
    pub lock_wait: Duration,

    /// How many times a migration that could not get its lock is tried again (0 to 100).
    #[arg(
        long,
        global = true,
        env = "MIGRATION_LOCK_RETRIES",
        value_name = "N",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(0..=100)
    )]
    pub lock_retries: u32,

    /// Rows per batch of a batched data migration (1 to 1000000).
    #[arg(
        long,
        global = true,
        env = "MIGRATION_BATCH_SIZE",
        value_name = "ROWS",
        default_value_t = 5000,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000)
    )]
    pub batch_size: u64,

    /// Pause between two batches of a batched data migration.
    #[arg(
        long,
        global = true,
        env = "MIGRATION_BATCH_PAUSE",
        value_name = "DURATION",
        default_value = "0s",
        value_parser = DurationParser
    )]
    pub batch_pause: Duration,

    /// Go on although an applied migration's source changed since it was applied.
    #[arg(
        long,
        global = true,
        env = "MIGRATION_ALLOW_CHANGED",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub allow_changed: bool,
}

impl Default for MigratorOptions {
    fn default() -> Self {
        Self {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            lock_wait: Duration::from_secs(5),
            lock_retries: 3,
            batch_size: 5000,
            batch_pause: Duration::ZERO,
            allow_changed: false,
        }
    }
}

#[derive(clap::Parser)]
struct FromEnvironment {
    #[command(flatten)]
    options: MigratorOptions,
}

impl MigratorOptions {
    /// The options from the environment alone (a service applying migrations at start-up).
    ///
    /// # Errors
    ///
    /// A variable that does not parse, named with the accepted form.
    pub fn from_env() -> Result<Self, clap::Error> {
        use clap::Parser as _;
        FromEnvironment::try_parse_from(["migrator"]).map(|parsed| parsed.options)
    }

    /// The options of the run in progress: those the runner was given, or the defaults
    /// outside a run (see the module documentation).
    #[must_use]
    pub fn current() -> Self {
        current()
    }
}

tokio::task_local! {
    static CURRENT: MigratorOptions;
}

/// The options of the run in progress, or the defaults outside a run.
#[must_use]
pub fn current() -> MigratorOptions {
    CURRENT.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `work` with `options` as the [`current`] options.
pub async fn scope<T>(options: MigratorOptions, work: impl Future<Output = T>) -> T {
    CURRENT.scope(options, work).await
}

/// One variable the migrator reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// Its name.
    pub name: String,
    /// Its default, if it has one.
    pub default: Option<String>,
    /// What it sets.
    pub meaning: String,
}

/// Variables the command line resolves itself (the database URL, which has a fallback chain):
/// name, default, meaning.
const RESOLVED_BY_THE_CLI: &[(&str, Option<&str>, &str)] = &[
    (
        "DATABASE_DIRECT_URL",
        Some("DATABASE_URL"),
        "The database to migrate when DATABASE_URL points at a connection pooler (the migration \
         lock needs a session of its own); `-u` overrides it",
    ),
    (
        "DATABASE_URL",
        Some("the embedded SQLite file data/db.sqlite"),
        "The database to migrate when DATABASE_DIRECT_URL is unset",
    ),
    (
        "DATABASE_SCHEMA",
        Some("the server's search path"),
        "PostgreSQL schema to migrate; ignored on SQLite",
    ),
    (
        "SHADOW_DATABASE_URL",
        Some("the server of the database URL"),
        "Server on which `check` and `autogenerate` create their scratch databases",
    ),
    (
        "MIGRATION_FORCE",
        Some("false"),
        "Lifts the guard of fresh, refresh, reset and down --all (the way through sea-orm-cli, \
         which does not forward --force)",
    ),
];

/// Every environment variable the migrator reads, with its default and meaning: those of
/// [`MigratorOptions`] (from their definitions) and those of the command line.
#[must_use]
pub fn environment() -> Vec<Variable> {
    let command = MigratorOptions::augment_args(clap::Command::new("migrator"));
    let mut variables: Vec<Variable> = RESOLVED_BY_THE_CLI
        .iter()
        .map(|(name, default, meaning)| Variable {
            name: (*name).to_owned(),
            default: default.map(str::to_owned),
            meaning: (*meaning).to_owned(),
        })
        .collect();
    for arg in command.get_arguments() {
        let Some(name) = arg.get_env().and_then(|name| name.to_str()) else {
            continue;
        };
        variables.push(Variable {
            name: name.to_owned(),
            default: arg
                .get_default_values()
                .first()
                .map(|value| value.to_string_lossy().into_owned())
                .or_else(|| (!arg.get_action().takes_values()).then(|| "false".to_owned())),
            meaning: arg.get_help().map(ToString::to_string).unwrap_or_default(),
        });
    }
    variables
}

pub use settings::{DURATION_FORM, duration as parse_duration};

/// clap's parser for a duration. Its error carries clap's context (the option and the value),
/// so a caller that maps errors back to variables can name the variable; when the value came
/// from the option's variable, the message names it too.
#[derive(Debug, Clone, Copy)]
struct DurationParser;

impl TypedValueParser for DurationParser {
    type Value = Duration;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Duration, clap::Error> {
        let variable = arg
            .and_then(clap::Arg::get_env)
            .map(|name| name.to_string_lossy().into_owned())
            .filter(|name| std::env::var_os(name).is_some_and(|set| set == value));
        let parse = move |text: &str| {
            parse_duration(text).map_err(|form| match &variable {
                Some(name) => format!("{form} (the value of {name})"),
                None => form,
            })
        };
        parse.parse_ref(cmd, arg, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_humantime_and_a_bare_number_is_seconds() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.3"), Ok(Duration::from_millis(300)));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn the_defaults_are_what_clap_parses_from_nothing() {
        use clap::Parser as _;
        let parsed = FromEnvironment::try_parse_from(["migrator"]).map(|p| p.options);
        // The test process's environment may set none of the variables.
        if environment()
            .iter()
            .all(|v| std::env::var_os(&v.name).is_none())
        {
            assert_eq!(parsed.ok(), Some(MigratorOptions::default()));
        }
    }

    #[test]
    fn a_bad_duration_names_the_option_and_the_form() {
        // Given in the variable, the message names the variable too: tests/integration/
        // migrator_cli.rs runs the binary with `MIGRATION_LOCK_WAIT=abc`.
        use clap::Parser as _;
        let err = FromEnvironment::try_parse_from(["migrator", "--lock-wait", "abc"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--lock-wait"), "{err}");
        assert!(!err.contains("MIGRATION_LOCK_WAIT"), "{err}");
        assert!(err.contains("500ms, 5s, 2m"), "{err}");
    }

    #[test]
    fn every_variable_is_listed_once_with_its_meaning() {
        let variables = environment();
        let mut names: Vec<&str> = variables.iter().map(|v| v.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), variables.len());
        assert!(variables.iter().all(|v| !v.meaning.is_empty()));
        let wait = variables
            .iter()
            .find(|v| v.name == "MIGRATION_LOCK_WAIT")
            .map(|v| v.default.clone());
        assert_eq!(wait, Some(Some("5s".to_owned())));
    }
}
