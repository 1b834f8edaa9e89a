//! The migrator's command line: `cargo run -p migration -- <command>`, which is also what
//! `sea-orm-cli migrate <command>` runs.
//!
//! It accepts everything `sea_orm_migration::cli` does (`-u/--database-url`,
//! `-s/--database-schema`, `-v`, and the subcommands `up -n`, `down -n`, `status`, `fresh`,
//! `refresh`, `reset`, `generate NAME`), so `sea-orm-cli` works unmodified. Unlike SeaORM's
//! stock CLI it never panics on a missing `DATABASE_URL` (it uses the embedded SQLite default
//! and says so), never prints the password, and `generate` writes into this crate wherever it is
//! run from.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sea_orm_migration::sea_orm::{ConnectOptions, DatabaseConnection, DbErr};

use crate::database_url::{UrlSource, redact};
use crate::{MigrationStatus, Migrator, MigratorTrait};

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

    /// Database URL; unset means the embedded SQLite file `data/db.sqlite`.
    #[arg(
        short = 'u',
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// What to do (default: `up`).
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// Drop every table, then apply all migrations.
    Fresh,
    /// Roll back all applied migrations, then apply all migrations.
    Refresh,
    /// Roll back all applied migrations.
    Reset,
    /// List every migration as applied or pending, and any unknown to this code.
    Status,
    /// Apply pending migrations.
    Up {
        /// Apply only the next N pending migrations.
        #[arg(short = 'n', long)]
        num: Option<u32>,
    },
    /// Print the schema (tables, columns, constraints, indexes, triggers, functions) in a
    /// stable order: the snapshot `scripts/schema-drift` compares with `migration/schema.txt`.
    Schema,
    /// Roll back applied migrations (one unless told otherwise).
    Down {
        /// Roll back the last N applied migrations.
        #[arg(short = 'n', long, default_value_t = 1)]
        num: u32,
    },
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
    Connect(crate::connect::ConnectError),
    /// A migration command failed.
    #[error("`{command}` failed: {source}")]
    Migrate {
        /// The command.
        command: &'static str,
        /// The cause.
        source: DbErr,
    },
    /// `generate` failed.
    #[error("cannot generate the migration: {0}")]
    Generate(String),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// Entry point of the `migration` binary: loads `.env`, parses the arguments, runs, and turns
/// the outcome into an exit status (errors go to stderr).
#[must_use]
pub fn main() -> ExitCode {
    // `.env` first, so `DATABASE_URL` from it is seen by the argument parser.
    let _ = dotenvy::dotenv();
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one migrator command.
///
/// # Errors
///
/// A [`CliError`] naming what failed.
pub fn run(cli: Cli) -> Result<(), CliError> {
    let command = cli.command.clone().unwrap_or(Command::Up { num: None });
    if let Command::Generate {
        migration_name,
        local_time,
        ..
    } = &command
    {
        return sea_orm_cli::run_migrate_generate(
            env!("CARGO_MANIFEST_DIR"),
            migration_name,
            !local_time,
        )
        .map_err(|err| CliError::Generate(err.to_string()));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    runtime.block_on(async {
        let db = connect(&cli).await?;
        let outcome = execute(&db, &command).await;
        let _ = db.close().await;
        outcome
    })
}

async fn connect(cli: &Cli) -> Result<DatabaseConnection, CliError> {
    let source = UrlSource::from_option(cli.database_url.clone());
    let url = source.url();
    match &source {
        UrlSource::EmbeddedDefault(path) => {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            tracing::warn!(
                "DATABASE_URL is not set: using the embedded SQLite database {}",
                shown.display()
            );
        }
        UrlSource::Configured(url) => tracing::info!("Connecting to {}", redact(url)),
    }
    source.prepare().map_err(|source| CliError::PrepareSqlite {
        path: crate::database_url::sqlite_file(&url)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source,
    })?;

    let mut options = ConnectOptions::new(url.clone());
    options
        // Migrations run one after another; one connection is all the migrator needs.
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(cli.verbose)
        .sqlx_logging_level(tracing::log::LevelFilter::Debug)
        .set_schema_search_path(
            cli.database_schema
                .clone()
                .unwrap_or_else(|| "public".into()),
        );
    crate::connect::connect(options)
        .await
        .map_err(CliError::Connect)
}

async fn execute(db: &DatabaseConnection, command: &Command) -> Result<(), CliError> {
    let failed = |command: &'static str| move |source| CliError::Migrate { command, source };
    match command {
        Command::Up { num } => Migrator::up(db, *num).await.map_err(failed("up")),
        Command::Down { num } => Migrator::down(db, Some(*num)).await.map_err(failed("down")),
        Command::Fresh => Migrator::fresh(db).await.map_err(failed("fresh")),
        Command::Refresh => Migrator::refresh(db).await.map_err(failed("refresh")),
        Command::Reset => Migrator::reset(db).await.map_err(failed("reset")),
        Command::Status => {
            let status = crate::status::<Migrator, _>(db)
                .await
                .map_err(failed("status"))?;
            print_status(&status);
            Ok(())
        }
        Command::Schema => {
            let dump = crate::schema_dump(db).await.map_err(failed("schema"))?;
            print_stdout(&dump);
            Ok(())
        }
        Command::Generate { .. } => Ok(()),
    }
}

#[allow(clippy::print_stdout)] // the status listing is the command's output
fn print_status(status: &MigrationStatus) {
    for applied in &status.applied {
        println!("applied  {}", applied.version);
    }
    for pending in &status.pending {
        println!("pending  {pending}");
    }
    for unknown in &status.unknown {
        println!(
            "unknown  {}  (recorded in the database, missing from this code)",
            unknown.version
        );
    }
}

#[allow(clippy::print_stdout)] // the dump is the command's output
fn print_stdout(text: &str) {
    print!("{text}");
}

fn init_tracing(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose {
        "debug"
    } else {
        "migration=info,sea_orm_migration=info"
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose)
        .without_time()
        .try_init();
}
