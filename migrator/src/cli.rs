//! The migrator's command line: the `migration` crate's `main.rs` calls [`main`] with its
//! [`Project`], so `cargo run -p migration -- <command>` (`cargo migrate <command>`) runs it,
//! and so does `sea-orm-cli migrate <command>`.
//!
//! It accepts everything `sea_orm_migration::cli` does (`-u/--database-url`,
//! `-s/--database-schema`, `-v`, and the subcommands `up -n`, `down -n`, `status`, `fresh`,
//! `refresh`, `reset`, `generate NAME`), so `sea-orm-cli` works unmodified, and adds:
//!
//! * the migration lock, for every command that changes the schema (see [`crate::runner`]);
//! * `up --to VERSION`, `down --to VERSION`, `down --all`;
//! * guards: `fresh`, `refresh`, `reset` and `down --all` refuse to run without `--force` (or
//!   `MIGRATION_FORCE=1`, the way through `sea-orm-cli`, which forwards only `-n` and `-v`), or
//!   a typed `yes` on a terminal, and say what they would drop;
//! * `status --json`, with exit codes a deploy script can gate on (see [`exit_code`]);
//! * `schema`, the catalog snapshot used by the drift check.
//!
//! It never panics on a missing `DATABASE_URL` (it uses the embedded SQLite default and says
//! so), never prints the password, and `generate` writes into the migration crate wherever it
//! is run from.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sea_orm_migration::sea_orm::{ConnectOptions, DatabaseConnection, DbBackend, Statement};

use connection::connect::ConnectError;
use connection::database_url::{UrlSource, sqlite_file};
use sea_orm_migration::sea_orm::ConnectionTrait;
use sea_orm_migration::sea_orm::sea_query::{IndexCreateStatement, TableCreateStatement};

use crate::options::MigratorOptions;
use crate::runner::{self, DownTo, MigrateError, UpTo};
use crate::{MigrationSources, MigrationStatus};

/// What the command line works on: the migration crate and the entities of the model.
#[derive(Debug, Clone, Copy)]
pub struct Project {
    /// The migration crate's folder (`env!("CARGO_MANIFEST_DIR")` in its `main.rs`): where
    /// `generate` and `autogenerate` write.
    pub migration_dir: &'static str,
    /// Every entity's statements, for a backend: the model `check` and `autogenerate` compare
    /// the migrations with (`entity::tables`).
    pub entities: fn(DbBackend) -> Vec<(TableCreateStatement, Vec<IndexCreateStatement>)>,
    /// The names of the declared entity modules (`entity::MODULES`).
    pub entity_modules: &'static [&'static str],
    /// The entity crate's source folder, to name a module file left out of the declared list.
    pub entity_dir: &'static str,
}

/// Exit codes of the migrator, for scripts.
pub mod exit_code {
    /// Done; for `status --json`: every migration applied, none unknown.
    pub const OK: u8 = 0;
    /// The command failed (the reason is on stderr).
    pub const FAILED: u8 = 1;
    /// The arguments were invalid (clap's usage error).
    pub const USAGE: u8 = 2;
    /// `status --json`: migrations are pending.
    pub const PENDING: u8 = 3;
    /// `status --json`: the database records migrations this build does not know.
    pub const UNKNOWN: u8 = 4;
    /// `check`: the entities and the migrations differ (the differences are on stdout).
    pub const DIFFERENT: u8 = 5;
    /// `status --json`: an applied migration's source changed since it was applied.
    pub const CHANGED: u8 = 6;
}

/// The migrator's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "migration",
    version,
    about = "Apply, roll back and inspect the schema migrations"
)]
pub struct Cli {
    /// Log every statement.
    #[arg(short = 'v', long, global = true)]
    pub verbose: bool,

    /// PostgreSQL schema to migrate (default `public`); ignored on SQLite.
    #[arg(short = 's', long, global = true, env = "DATABASE_SCHEMA")]
    pub database_schema: Option<String>,

    /// Database URL [default: `DATABASE_DIRECT_URL`, else `DATABASE_URL`, else the embedded
    /// SQLite file `data/db.sqlite`].
    #[arg(short = 'u', long, global = true)]
    pub database_url: Option<String>,

    /// Server on which `check` and `autogenerate` create their scratch databases (PostgreSQL;
    /// default: the server of the database URL).
    #[arg(
        long,
        global = true,
        env = "SHADOW_DATABASE_URL",
        hide_env_values = true
    )]
    pub shadow_database_url: Option<String>,

    /// The settings of the run (lock waits, batches, allow-changed).
    #[command(flatten)]
    pub options: MigratorOptions,

    /// What to do (default: `up`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Lifts the guard of a destructive command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct Force {
    /// Run without asking. Through sea-orm-cli, set MIGRATION_FORCE=1 instead.
    #[arg(long, env = "MIGRATION_FORCE", value_parser = clap::builder::FalseyValueParser::new())]
    pub force: bool,
}

/// The migrator's subcommands.
#[derive(Debug, Subcommand, Clone, PartialEq, Eq)]
pub enum Command {
    /// Write a new, empty migration file into this crate and register it in `lib.rs`.
    Generate {
        /// Name of the new migration, e.g. `create_post_table`.
        migration_name: String,
        /// Time-stamp the file name in UTC (the default).
        #[arg(long, default_value_t = true, conflicts_with = "local_time")]
        universal_time: bool,
        /// Time-stamp the file name in local time.
        #[arg(long)]
        local_time: bool,
    },
    /// Compare the entities with the migrations and write a migration for the difference
    /// (`alembic revision --autogenerate`).
    Autogenerate {
        /// Name of the new migration, e.g. `add_user_bio`.
        migration_name: String,
    },
    /// Exit 0 when the entities and the migrations agree, 5 with the list of differences
    /// otherwise (`alembic check`).
    Check,
    /// Drop every table, then apply all migrations (needs --force).
    Fresh {
        #[command(flatten)]
        force: Force,
    },
    /// Roll back all applied migrations, then apply all migrations (needs --force).
    Refresh {
        #[command(flatten)]
        force: Force,
    },
    /// Roll back all applied migrations and drop the migrations table (needs --force).
    Reset {
        #[command(flatten)]
        force: Force,
    },
    /// List every migration as applied or pending, and any unknown to this build.
    Status {
        /// Print one JSON document; exit 0 when up to date, 3 when migrations are pending,
        /// 4 when the database has migrations this build does not know.
        #[arg(long)]
        json: bool,
    },
    /// Apply pending migrations.
    Up {
        /// Print the SQL instead of running it (the database is only read).
        #[arg(long)]
        sql: bool,
        /// Apply only the next N pending migrations.
        #[arg(short = 'n', long, conflicts_with = "to")]
        num: Option<u32>,
        /// Apply pending migrations up to and including VERSION.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// Roll back applied migrations (one unless told otherwise).
    Down {
        /// Roll back the last N applied migrations.
        #[arg(short = 'n', long, default_value_t = 1, conflicts_with_all = ["to", "all"])]
        num: u32,
        /// Roll back every migration applied after VERSION (VERSION stays applied).
        #[arg(long, value_name = "VERSION", conflicts_with = "all")]
        to: Option<String>,
        /// Roll back every applied migration (needs --force).
        #[arg(long)]
        all: bool,
        /// Print the SQL instead of running it (the database is only read).
        #[arg(long, conflicts_with = "all")]
        sql: bool,
        #[command(flatten)]
        force: Force,
    },
    /// Print the schema (tables, columns, constraints, indexes, triggers, functions) in a
    /// stable order: the snapshot `scripts/schema-drift` compares with `migration/schema.txt`.
    Schema,
}

/// Errors of a migrator run, each saying what was being attempted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The SQLite file's folder could not be created.
    #[error("cannot create the folder for the SQLite database {path}: {source}")]
    PrepareSqlite {
        /// The database file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The database could not be reached.
    #[error(transparent)]
    Connect(ConnectError),
    /// A migration command failed.
    #[error("`{command}` failed: {source}")]
    Migrate {
        /// The command.
        command: &'static str,
        /// The cause.
        source: MigrateError,
    },
    /// A destructive command was not confirmed.
    #[error(
        "refusing to run `{command}` without --force: it {plan}. Pass --force to go ahead{}",
        if command.starts_with("down") { String::new() } else {
            format!(" (through sea-orm-cli, which does not forward --force: \
                     MIGRATION_FORCE=1 sea-orm-cli migrate {command})")
        }
    )]
    NotConfirmed {
        /// The command.
        command: &'static str,
        /// What it would do.
        plan: String,
    },
    /// `.env` exists but cannot be used.
    #[error("{0}")]
    DotEnv(String),
    /// A secret file (`DATABASE_URL_FILE`, …) cannot be used, or is set together with its
    /// variable (the message names the variable and path, never the content).
    #[error("{0}")]
    SecretFile(String),
    /// `generate` failed.
    #[error("cannot generate the migration: {0}")]
    Generate(String),
    /// `up --sql` or `down --sql` could not write the script.
    #[error("cannot write the SQL offline: {0}")]
    Offline(String),
    /// `autogenerate` cannot write a migration for the difference (nothing was written).
    #[error("autogenerate wrote nothing: {0}")]
    Refused(String),
    /// `check` or `autogenerate` could not compare.
    #[error("cannot compare the entities with the migrations: {0}")]
    Autogenerate(String),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Entry point of the `migration` binary: loads `.env`, parses the arguments (a bad value is a
/// usage error naming its variable), runs, and turns the outcome into an exit status (errors
/// go to stderr, one line).
#[must_use]
pub fn main<M: MigrationSources + 'static>(project: &Project) -> ExitCode {
    // `.env` first, so `DATABASE_URL` (and `DATABASE_DIRECT_URL`) from it are seen.
    let dotenv = connection::database_url::load_dotenv();
    let cli = Cli::parse();
    let default_filter = if cli.verbose {
        "debug"
    } else {
        "migration=info,migrator=info,sea_orm_migration=info"
    };
    connection::init_tracing(default_filter, cli.verbose);
    let outcome = match dotenv {
        Ok(()) => run::<M>(cli, project),
        Err(message) => Err(CliError::DotEnv(message)),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Printed directly, not through `tracing`: a `RUST_LOG` filter must not hide it.
            report_error(&err);
            ExitCode::from(exit_code::FAILED)
        }
    }
}

/// Runs one migrator command and returns its exit code.
///
/// # Errors
///
/// A [`CliError`] naming what failed.
pub fn run<M: MigrationSources + 'static>(cli: Cli, project: &Project) -> Result<u8, CliError> {
    let command = cli.command.clone().unwrap_or(Command::Up {
        sql: false,
        num: None,
        to: None,
    });
    if let Command::Generate {
        migration_name,
        local_time,
        ..
    } = &command
    {
        sea_orm_cli::run_migrate_generate(project.migration_dir, migration_name, !local_time)
            .map_err(|err| CliError::Generate(err.to_string()))?;
        indent_registration(std::path::Path::new(project.migration_dir))
            .map_err(CliError::Generate)?;
        return Ok(exit_code::OK);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    if matches!(command, Command::Check | Command::Autogenerate { .. }) {
        return runtime.block_on(model_first::<M>(&cli, &command, project));
    }
    runtime.block_on(async {
        let db = connect(&cli).await?;
        let outcome = match &command {
            Command::Up { sql: true, .. } | Command::Down { sql: true, .. } => {
                offline::<M>(&cli, &db, &command).await
            }
            _ => execute::<M>(&db, &command, &cli.options).await,
        };
        let _ = db.close().await;
        outcome
    })
}

/// The database to migrate: `-u`, else `DATABASE_DIRECT_URL` (the server itself, when
/// `DATABASE_URL` points at a connection pooler: the migration lock needs a session of its
/// own), else `DATABASE_URL`, else the embedded SQLite file. (`sea-orm-cli migrate -u URL`
/// passes its URL as `DATABASE_URL`.) The one place the migrator resolves its URL.
///
/// Each URL may come from a secret file instead (`DATABASE_DIRECT_URL_FILE`,
/// `DATABASE_URL_FILE`; both a variable and its file is an error), and a PostgreSQL URL
/// without a password takes the one in `DATABASE_PASSWORD_FILE`.
fn database_url(cli: &Cli) -> Result<UrlSource, CliError> {
    use connection::secrets;
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|url: &String| !url.trim().is_empty())
    };
    let from = |name: &str| -> Result<Option<String>, CliError> {
        let file_variable = format!("{name}_FILE");
        match (env(name), env(&file_variable)) {
            (Some(_), Some(_)) => Err(CliError::SecretFile(secrets::both_set(name))),
            (None, Some(path)) => secrets::read(&file_variable, std::path::Path::new(&path))
                .map(Some)
                .map_err(CliError::SecretFile),
            (value, None) => Ok(value),
        }
    };
    let url = match cli.database_url.clone() {
        Some(url) => Some(url),
        None => match from("DATABASE_DIRECT_URL")? {
            Some(url) => Some(url),
            None => from("DATABASE_URL")?,
        },
    };
    let url = match (url, env("DATABASE_PASSWORD_FILE")) {
        (Some(url), Some(path)) if secrets::wants_password(&url) => {
            let password = secrets::read("DATABASE_PASSWORD_FILE", std::path::Path::new(&path))
                .map_err(CliError::SecretFile)?;
            Some(secrets::with_password(&url, &password).unwrap_or(url))
        }
        (url, _) => url,
    };
    Ok(UrlSource::from_option(url))
}

/// `up --sql`, `down --sql`: print what would run (see [`crate::offline`]).
async fn offline<M: MigrationSources>(
    cli: &Cli,
    db: &DatabaseConnection,
    command: &Command,
) -> Result<u8, CliError> {
    let status = read_status::<M>(db).await?;
    let failed = |source| CliError::Migrate {
        command: "offline",
        source,
    };
    if !status.unknown.is_empty() {
        return Err(failed(MigrateError::UnknownApplied {
            versions: status.unknown.iter().map(|u| u.version.clone()).collect(),
        }));
    }
    let direction = match command {
        Command::Up { num, to, .. } => crate::offline::Direction::Up(
            runner::resolve_up(&status, &up_target(*num, to)).map_err(failed)?,
        ),
        Command::Down { num, to, .. } => {
            let applied: Vec<String> = status.applied.iter().map(|a| a.version.clone()).collect();
            let target = match to {
                Some(version) => DownTo::Version(version.clone()),
                None => DownTo::Steps(*num),
            };
            crate::offline::Direction::Down(
                runner::resolve_down(&status, &applied, &target).map_err(failed)?,
            )
        }
        _ => return Ok(exit_code::OK),
    };
    let script = crate::offline::script::<M>(
        &database_url(cli)?.url(),
        cli.shadow_database_url.as_deref(),
        &status,
        direction,
    )
    .await
    .map_err(CliError::Offline)?;
    print_stdout(&script);
    Ok(exit_code::OK)
}

/// `check` and `autogenerate`: compare on scratch databases of the URL's backend.
async fn model_first<M: MigrationSources + 'static>(
    cli: &Cli,
    command: &Command,
    project: &Project,
) -> Result<u8, CliError> {
    let url = database_url(cli)?.url();
    crate::autogen::model::check_declared(project.entity_modules, project.entity_dir)
        .map_err(CliError::Autogenerate)?;
    let comparison =
        crate::autogen::compare::<M>(&url, cli.shadow_database_url.as_deref(), project.entities)
            .await
            .map_err(CliError::Autogenerate)?;
    let backend = match comparison.backend {
        DbBackend::Postgres => "PostgreSQL",
        _ => "SQLite",
    };
    match command {
        Command::Autogenerate { migration_name } => {
            if comparison.changes.is_empty() {
                print_stdout(&format!(
                    "The entities and the migrations agree ({backend}): nothing written. For a \
                     data migration, `generate {migration_name}` writes an empty one.\n"
                ));
                return Ok(exit_code::OK);
            }
            // Indexes on existing tables go to a migration of their own, outside a
            // transaction, so they are built without blocking writes (`emit::split`).
            let (ordinary, online) = crate::autogen::emit::split(&comparison.changes);
            let mut files = Vec::new();
            if !ordinary.is_empty() {
                files.push((migration_name.clone(), ordinary));
            }
            if !online.is_empty() {
                let name = if files.is_empty() {
                    migration_name.clone()
                } else {
                    format!("{migration_name}_indexes")
                };
                files.push((name, online));
            }
            // Every file is written only once all of them could be: a refusal leaves nothing.
            let mut emitted_files = Vec::new();
            for (name, changes) in &files {
                let emitted = crate::autogen::emit::migration(
                    name,
                    changes,
                    &comparison.model,
                    comparison.backend,
                    &comparison.enums,
                )
                .map_err(CliError::Refused)?;
                emitted_files.push((name, emitted));
            }
            let mut out = String::new();
            let mut destructive = false;
            for (name, emitted) in emitted_files {
                let path = crate::autogen::write(
                    std::path::Path::new(project.migration_dir),
                    name,
                    &emitted.source,
                )
                .map_err(CliError::Generate)?;
                out.push_str(&format!(
                    "Wrote {} (compared on {backend}):\n",
                    path.display()
                ));
                for line in &emitted.summary {
                    out.push_str(&format!("  {line}\n"));
                }
                destructive |= emitted.summary.iter().any(|l| l.starts_with("DESTRUCTIVE"));
            }
            if files.len() > 1 {
                out.push_str(
                    "The indexes on existing tables are in a migration of their own: it is not a \
                     transaction, so PostgreSQL builds them CONCURRENTLY while writes go on.\n",
                );
            }
            if destructive {
                out.push_str(
                    "Destructive steps are marked `REVIEW (destructive)` in the file: read them \
                     before applying.\n",
                );
            }
            out.push_str("Review the file, then `cargo migrate up`.\n");
            print_stdout(&out);
            Ok(exit_code::OK)
        }
        _ => {
            if comparison.changes.is_empty() {
                print_stdout(&format!(
                    "The entities and the migrations agree ({backend}).\n"
                ));
                return Ok(exit_code::OK);
            }
            let mut out = format!(
                "The entities and the migrations differ ({backend}), {} difference(s):\n",
                comparison.changes.len()
            );
            for change in &comparison.changes {
                out.push_str(&format!("  {change}\n"));
            }
            out.push_str("Write a migration for them with `cargo migrate autogenerate NAME`.\n");
            print_stdout(&out);
            Ok(exit_code::DIFFERENT)
        }
    }
}

async fn connect(cli: &Cli) -> Result<DatabaseConnection, CliError> {
    let source = database_url(cli)?;
    let url = source.url();
    source.announce();
    source.prepare().map_err(|source| CliError::PrepareSqlite {
        path: sqlite_file(&url)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source,
    })?;

    // A multi-host URL (an HA manager's): the host its target_session_attrs asks for.
    let url = connection::hosts::resolve(&url, Duration::from_secs(10))
        .await
        .map_err(CliError::Connect)?;
    let mut options = ConnectOptions::new(url);
    options
        // One session for the whole run, never recycled: the migration lock is held by it.
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(cli.verbose)
        .sqlx_logging_level(tracing::log::LevelFilter::Debug)
        .set_schema_search_path(
            cli.database_schema
                .clone()
                .unwrap_or_else(|| "public".into()),
        );
    connection::connect::connect(options)
        .await
        .map_err(CliError::Connect)
}

async fn execute<M: MigrationSources>(
    db: &DatabaseConnection,
    command: &Command,
    options: &MigratorOptions,
) -> Result<u8, CliError> {
    let failed = |command: &'static str| move |source| CliError::Migrate { command, source };
    match command {
        Command::Up { num, to, .. } => {
            let target = up_target(*num, to);
            runner::up::<M>(db, target, options)
                .await
                .map_err(failed("up"))?;
        }
        Command::Down {
            num,
            to,
            all,
            force,
            ..
        } => {
            let target = match (to, all) {
                (_, true) => {
                    confirm::<M>(db, "down --all", *force).await?;
                    DownTo::Nothing
                }
                (Some(version), false) => DownTo::Version(version.clone()),
                (None, false) => DownTo::Steps(*num),
            };
            runner::down::<M>(db, target, options)
                .await
                .map_err(failed("down"))?;
        }
        Command::Fresh { force } => {
            confirm::<M>(db, "fresh", *force).await?;
            runner::fresh::<M>(db, options)
                .await
                .map_err(failed("fresh"))?;
        }
        Command::Refresh { force } => {
            confirm::<M>(db, "refresh", *force).await?;
            runner::refresh::<M>(db, options)
                .await
                .map_err(failed("refresh"))?;
        }
        Command::Reset { force } => {
            confirm::<M>(db, "reset", *force).await?;
            runner::reset::<M>(db, options)
                .await
                .map_err(failed("reset"))?;
        }
        Command::Status { json } => {
            let status = read_status::<M>(db).await?;
            if *json {
                print_stdout(&status_json(&status));
                return Ok(if !status.unknown.is_empty() {
                    exit_code::UNKNOWN
                } else if !status.changed.is_empty() {
                    exit_code::CHANGED
                } else if !status.pending.is_empty() {
                    exit_code::PENDING
                } else {
                    exit_code::OK
                });
            }
            print_stdout(&status_text(&status));
        }
        Command::Schema => {
            let dump = crate::schema_dump(db)
                .await
                .map_err(|source| CliError::Migrate {
                    command: "schema",
                    source: MigrateError::Database {
                        operation: "read the catalog",
                        source,
                    },
                })?;
            print_stdout(&dump);
        }
        Command::Generate { .. } | Command::Check | Command::Autogenerate { .. } => {}
    }
    Ok(exit_code::OK)
}

/// Indents the `mod` line sea-orm-cli's generator added at the start of a line inside
/// `migrations! { … }` of the migration crate's `lib.rs` (rustfmt leaves macro bodies alone).
///
/// # Errors
///
/// `lib.rs` could not be read or written.
pub fn indent_registration(migration_dir: &std::path::Path) -> Result<(), String> {
    let path = migration_dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let tidy: String = text
        .split_inclusive('\n')
        .map(|line| {
            let bare = line.starts_with("mod m") && line.trim_end().ends_with(';');
            if bare && text.contains("migrations! {") {
                format!("    {line}")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if tidy != text {
        std::fs::write(&path, tidy).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The `up` target of `-n` and `--to`.
fn up_target(num: Option<u32>, to: &Option<String>) -> UpTo {
    match (num, to) {
        (_, Some(version)) => UpTo::Version(version.clone()),
        (Some(n), None) => UpTo::Steps(n),
        (None, None) => UpTo::Latest,
    }
}

async fn read_status<M: MigrationSources>(
    db: &DatabaseConnection,
) -> Result<MigrationStatus, CliError> {
    crate::status::<M, _>(db)
        .await
        .map_err(|source| CliError::Migrate {
            command: "status",
            source: MigrateError::Database {
                operation: "read the migration status",
                source,
            },
        })
}

/// Lets a destructive command through when forced, or when a person at a terminal types `yes`
/// after reading what it would do.
async fn confirm<M: MigrationSources>(
    db: &DatabaseConnection,
    command: &'static str,
    force: Force,
) -> Result<(), CliError> {
    if force.force {
        return Ok(());
    }
    let plan = describe::<M>(db, command).await?;
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let mut stderr = std::io::stderr();
        let _ = write!(
            stderr,
            "`{command}` {plan}.\nType yes to continue, anything else to stop: "
        );
        let _ = stderr.flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if answer.trim() == "yes" {
            return Ok(());
        }
    }
    Err(CliError::NotConfirmed { command, plan })
}

/// What a destructive command would do to this database, in words.
async fn describe<M: MigrationSources>(
    db: &DatabaseConnection,
    command: &str,
) -> Result<String, CliError> {
    let applied: Vec<String> = read_status::<M>(db)
        .await?
        .applied
        .into_iter()
        .map(|a| a.version)
        .collect();
    let applied = if applied.is_empty() {
        "none are applied".to_owned()
    } else {
        applied.join(", ")
    };
    Ok(match command {
        "fresh" => {
            let tables = tables(db).await.unwrap_or_default();
            format!(
                "drops every table of the database ({}), with all their data, then applies \
                 every migration",
                if tables.is_empty() {
                    "there are none".to_owned()
                } else {
                    tables.join(", ")
                }
            )
        }
        "refresh" => format!(
            "rolls back every applied migration ({applied}), dropping the tables they created \
             with all their data, then applies every migration again"
        ),
        "reset" => format!(
            "rolls back every applied migration ({applied}), dropping the tables they created \
             with all their data, and drops the migrations table"
        ),
        _ => format!(
            "rolls back every applied migration ({applied}), dropping the tables they created \
             with all their data"
        ),
    })
}

async fn tables(db: &DatabaseConnection) -> Result<Vec<String>, sea_orm_migration::DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        }
        _ => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY 1"
        }
    };
    db.query_all_raw(Statement::from_string(backend, sql))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect()
}

fn status_text(status: &MigrationStatus) -> String {
    let mut out = String::new();
    for applied in &status.applied {
        if status.changed.contains(&applied.version) {
            out.push_str(&format!(
                "changed  {}  (applied, then its source was edited: `up` refuses until it is \
                 restored or run with --allow-changed)\n",
                applied.version
            ));
        } else {
            out.push_str(&format!("applied  {}\n", applied.version));
        }
    }
    for pending in &status.pending {
        out.push_str(&format!("pending  {pending}\n"));
    }
    for unknown in &status.unknown {
        out.push_str(&format!(
            "unknown  {}  (recorded in the database, missing from this build)\n",
            unknown.version
        ));
    }
    out
}

fn status_json(status: &MigrationStatus) -> String {
    let document = serde_json::to_string(&crate::status::StatusDocument::from(status))
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    format!("{document}\n")
}

#[allow(clippy::print_stderr)] // the one line that says why the command failed
fn report_error(err: &CliError) {
    eprintln!("error: {err}");
}

#[allow(clippy::print_stdout)] // the listing, JSON document or dump is the command's output
fn print_stdout(text: &str) {
    print!("{text}");
}
