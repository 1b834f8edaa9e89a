//! Scratch databases for a comparison: one gets every migration, the other the entities.
//!
//! PostgreSQL: two databases created on the server of `SHADOW_DATABASE_URL` when set (for a
//! role of `DATABASE_URL` that may not create databases), else of `DATABASE_URL`, named
//! `migration_shadow_<pid>_<n>_{migrated,model}`, and dropped (`WITH (FORCE)`) when the
//! comparison ends, however it ends. SQLite: two in-memory databases.

use std::time::Duration;

use sea_orm_migration::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

use connection::database_url::redact;

/// The two scratch databases.
#[derive(Debug)]
pub struct Shadow {
    /// Gets every migration.
    pub migrated: DatabaseConnection,
    /// Gets the entities' tables.
    pub model: DatabaseConnection,
    cleanup: Option<(DatabaseConnection, Vec<String>)>,
}

/// The prefix of the scratch databases' names.
pub const PREFIX: &str = "migration_shadow_";

impl Shadow {
    /// Creates both databases for the backend of `url`.
    ///
    /// # Errors
    ///
    /// A message naming what could not be connected or created (never the password).
    pub async fn open(url: &str, shadow_url: Option<&str>) -> Result<Self, String> {
        if url.starts_with("sqlite:") {
            return Ok(Self {
                migrated: memory().await?,
                model: memory().await?,
                cleanup: None,
            });
        }
        let admin_url = shadow_url.unwrap_or(url);
        let admin = connect(admin_url).await?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let base = format!("{PREFIX}{}_{stamp}", std::process::id());
        let names = [format!("{base}_migrated"), format!("{base}_model")];
        let mut shadow = Self {
            migrated: admin.clone(),
            model: admin.clone(),
            cleanup: Some((admin.clone(), Vec::new())),
        };
        for (i, name) in names.iter().enumerate() {
            admin
                .execute_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("CREATE DATABASE \"{name}\""),
                ))
                .await
                .map_err(|e| {
                    format!(
                        "cannot create the scratch database {name} on {} (the role needs \
                         CREATEDB, or set SHADOW_DATABASE_URL to a server where it has it): {e}",
                        redact(admin_url)
                    )
                })?;
            if let Some((_, created)) = &mut shadow.cleanup {
                created.push(name.clone());
            }
            let mut parsed = url::Url::parse(admin_url)
                .map_err(|e| format!("cannot read the database URL: {e}"))?;
            parsed.set_path(&format!("/{name}"));
            let conn = connect(parsed.as_str()).await?;
            if i == 0 {
                shadow.migrated = conn;
            } else {
                shadow.model = conn;
            }
        }
        Ok(shadow)
    }

    /// Closes and drops the scratch databases.
    pub async fn close(self) {
        let _ = self.migrated.close_by_ref().await;
        let _ = self.model.close_by_ref().await;
        if let Some((admin, names)) = self.cleanup {
            for name in names {
                if let Err(e) = admin
                    .execute_raw(Statement::from_string(
                        DbBackend::Postgres,
                        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                    ))
                    .await
                {
                    tracing::warn!("cannot drop the scratch database {name}: {e}");
                }
            }
            let _ = admin.close().await;
        }
    }
}

async fn connect(url: &str) -> Result<DatabaseConnection, String> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(1)
        .min_connections(0)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    connection::connect::connect(options)
        .await
        .map_err(|e| e.to_string())
}

async fn memory() -> Result<DatabaseConnection, String> {
    // One connection: every connection to `sqlite::memory:` is a database of its own.
    let mut options = ConnectOptions::new("sqlite::memory:");
    options
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .sqlx_logging(false);
    Database::connect(options)
        .await
        .map_err(|e| format!("cannot open an in-memory SQLite database: {e}"))
}
