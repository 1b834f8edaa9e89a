//! Model-first migrations: `cargo migrate check` and `cargo migrate autogenerate NAME`.
//!
//! The entities of the `entity` crate (its declared list) are the model. A comparison builds two scratch databases
//! ([`shadow`]), applies every migration to one and creates the entities' tables in the other
//! ([`model`]), reads both catalogs the same way ([`catalog`]), and plans the difference
//! ([`diff`]). `check` lists it; `autogenerate` writes it as a migration ([`emit`]) that runs
//! on PostgreSQL and SQLite ([`crate::alter`] rebuilds SQLite tables where needed). What
//! entities cannot express is left out by an explicit list ([`ignore`]).

pub mod catalog;
pub mod diff;
pub mod emit;
pub mod ignore;
pub mod model;
pub mod shadow;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sea_orm_migration::SchemaManager;
use sea_orm_migration::sea_orm::DbBackend;

use crate::MigrationSources;
use crate::options::MigratorOptions;
use crate::runner::{self, UpTo};
use diff::Change;
use model::ModelTable;
use shadow::Shadow;

/// The outcome of a comparison.
#[derive(Debug)]
pub struct Comparison {
    /// What the migrations lack, in the order a migration makes it.
    pub changes: Vec<Change>,
    /// The entities' tables.
    pub model: Vec<ModelTable>,
    /// The backend compared on.
    pub backend: DbBackend,
    /// The enum types the migrations leave (PostgreSQL), by name, with their values.
    pub enums: std::collections::BTreeMap<String, Vec<String>>,
}

/// Compares the migrations of `M` with the entities on the backend of `url` (see the module
/// documentation). The scratch databases are dropped on every exit path: success, error,
/// a panic inside the comparison, and Ctrl-C.
///
/// # Errors
///
/// A message saying what failed: the model, a scratch database, a migration.
pub async fn compare<M: MigrationSources + 'static>(
    url: &str,
    shadow_url: Option<&str>,
    entities: model::Entities,
) -> Result<Comparison, String> {
    let backend = if url.starts_with("sqlite:") {
        DbBackend::Sqlite
    } else {
        DbBackend::Postgres
    };
    let model = model::tables(entities, backend)?;
    let shadow = Shadow::open(url, shadow_url).await?;
    let (migrated, model_db, tables) =
        (shadow.migrated.clone(), shadow.model.clone(), model.clone());
    let work = tokio::spawn(async move {
        let options = MigratorOptions {
            lock_timeout: Duration::from_secs(30),
            ..MigratorOptions::default()
        };
        runner::up::<M>(&migrated, UpTo::Latest, &options)
            .await
            .map_err(|e| format!("cannot apply the migrations to the scratch database: {e}"))?;
        let actual = catalog::read(&migrated, ignore::TABLES)
            .await
            .map_err(|e| format!("cannot read the migrated catalog: {e}"))?;
        let skipped = model::create(&SchemaManager::new(&model_db), &tables)
            .await
            .map_err(|e| format!("cannot create the entities' tables: {e}"))?;
        let desired = catalog::read(&model_db, ignore::TABLES)
            .await
            .map_err(|e| format!("cannot read the entities' catalog: {e}"))?;
        Ok::<_, String>((actual, desired, skipped))
    });
    let outcome = tokio::select! {
        joined = work => joined.unwrap_or_else(|e| Err(format!("the comparison failed: {e}"))),
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    shadow.close().await;
    let (actual, desired, skipped) = outcome?;
    // An entity the scratch database could not hold is reported, not compared (and its
    // table, which the migrations may well create, is not a table to drop).
    let mut changes: Vec<Change> = skipped
        .iter()
        .map(|(table, why)| Change::Manual {
            table: table.clone(),
            what: format!(
                "the entity's table cannot be created on {} ({why}), so it is not compared",
                if backend == DbBackend::Postgres {
                    "PostgreSQL"
                } else {
                    "SQLite"
                }
            ),
        })
        .collect();
    changes.extend(
        diff::plan(&actual, &desired, &model)
            .into_iter()
            .filter(|c| !matches!(c, Change::DropTable { table, .. } if skipped.iter().any(|(s, _)| s == table))),
    );
    Ok(Comparison {
        changes,
        model,
        backend,
        enums: actual.enums,
    })
}

/// Writes `source` as a new migration named `name` into the crate at `crate_dir`: the file
/// and its registration in `lib.rs` come from sea-orm-cli's own generator (as `generate`),
/// then the file's body is replaced. Returns the file's path.
///
/// # Errors
///
/// The generator's error, or the file could not be found or written.
pub fn write(crate_dir: &Path, name: &str, source: &str) -> Result<PathBuf, String> {
    let src = crate_dir.join("src");
    let list = || -> Vec<PathBuf> {
        std::fs::read_dir(&src)
            .map(|dir| dir.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    let before = list();
    sea_orm_cli::run_migrate_generate(&crate_dir.to_string_lossy(), name, true)
        .map_err(|e| e.to_string())?;
    crate::cli::indent_registration(crate_dir)?;
    let written = list()
        .into_iter()
        .find(|p| !before.contains(p))
        .ok_or_else(|| "the generator wrote no new file".to_owned())?;
    std::fs::write(&written, source)
        .map_err(|e| format!("cannot write {}: {e}", written.display()))?;
    // As `cargo fmt` would leave it, so that the project's `cargo fmt --check` passes (the
    // written file is already valid without it: no rustfmt, no change).
    let _ = std::process::Command::new("rustfmt")
        .args(["--edition", "2024"])
        .arg(&written)
        .current_dir(crate_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    Ok(written)
}
