//! Where the database is: `DATABASE_URL`, or the embedded SQLite default.
//!
//! Shared by the migrator and the `service` crate, so both always open the same database.

use std::path::{Path, PathBuf};

/// The embedded SQLite database used when `DATABASE_URL` is unset, relative to the working
/// directory (the repository root when run through `cargo`).
pub const DEFAULT_SQLITE_PATH: &str = "data/db.sqlite";

/// Where a database URL came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// `DATABASE_URL` (or the `-u` flag), as given.
    Configured(String),
    /// Nothing was configured: the embedded SQLite file at this path.
    EmbeddedDefault(PathBuf),
}

impl UrlSource {
    /// Reads `DATABASE_URL`; unset or empty means the embedded SQLite default.
    #[must_use]
    pub fn from_env() -> Self {
        Self::from_option(std::env::var("DATABASE_URL").ok())
    }

    /// `Some(non-empty url)` means configured; anything else means the embedded default.
    #[must_use]
    pub fn from_option(url: Option<String>) -> Self {
        match url {
            Some(url) if !url.trim().is_empty() => Self::Configured(url),
            _ => Self::EmbeddedDefault(PathBuf::from(DEFAULT_SQLITE_PATH)),
        }
    }

    /// The URL to connect to. The embedded default is opened with `mode=rwc` (create it when
    /// missing).
    #[must_use]
    pub fn url(&self) -> String {
        match self {
            Self::Configured(url) => url.clone(),
            Self::EmbeddedDefault(path) => format!("sqlite://{}?mode=rwc", path.display()),
        }
    }

    /// Logs which database is used: a warning naming the file when it is the embedded SQLite
    /// default (nothing configured, so probably not what a deployment wants), the URL
    /// (password redacted) otherwise.
    pub fn announce(&self) {
        match self {
            Self::EmbeddedDefault(path) => {
                let shown = std::path::absolute(path).unwrap_or_else(|_| path.clone());
                tracing::warn!(
                    "DATABASE_URL is not set: using the embedded SQLite database {}",
                    shown.display()
                );
            }
            Self::Configured(url) => tracing::info!("Connecting to {}", redact(url)),
        }
    }

    /// Creates the folder of a SQLite database file when it is missing (sqlx creates the file
    /// with `mode=rwc`, but not its folder). Does nothing for other databases and for
    /// in-memory SQLite.
    ///
    /// # Errors
    ///
    /// The I/O error from creating the folder.
    pub fn prepare(&self) -> std::io::Result<()> {
        match sqlite_file(&self.url()) {
            Some(path) => match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }
}

/// Loads `.env` from the working directory (or a parent) into the environment, if there is
/// one. A `.env` that cannot be read or parsed is an error — silently ignoring it would mean
/// running against the embedded default instead of the database the user configured — and the
/// error never repeats the offending line (it may hold a password).
///
/// # Errors
///
/// Why `.env` could not be used.
pub fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(_, index)) => Err(format!(
            "cannot parse .env at character {index} (the line is not shown: it may hold a password)"
        )),
        Err(dotenvy::Error::Io(err)) => Err(format!("cannot read .env: {err}")),
        Err(_) => Err("cannot use .env: a variable in it is invalid".to_owned()),
    }
}

/// The file behind a `sqlite:` URL, or `None` for other schemes and in-memory databases.
#[must_use]
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(Path::new(path).to_path_buf())
}

/// Query parameters whose values are shown as given; every other value is replaced by `***`
/// (libpq and sqlx accept the password as `?password=…`, and other parameters may hold
/// secrets too, e.g. `sslpassword`).
const SHOWN_QUERY_PARAMETERS: &[&str] = &[
    "sslmode",
    // Paths of certificate files, not their content: shown, to tell which CA was used.
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "connect_timeout",
    "mode",
    "options",
    "statement-cache-capacity",
    "target_session_attrs",
];

/// The URL with its password replaced by `***` (and any query value that might be a secret),
/// safe for logs and errors. A URL that cannot be parsed is reduced to its scheme, since any
/// part of it might be a secret.
#[must_use]
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Only fails for URLs that cannot have a password, which this one has.
                let _ = parsed.set_password(Some("***"));
            }
            if parsed.query().is_some() {
                let pairs: Vec<(String, String)> = parsed
                    .query_pairs()
                    .map(|(key, value)| {
                        let shown = SHOWN_QUERY_PARAMETERS.contains(&key.as_ref());
                        let value = if shown {
                            value.into_owned()
                        } else {
                            "***".to_owned()
                        };
                        (key.into_owned(), value)
                    })
                    .collect();
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            parsed.to_string()
        }
        Err(_) => match crate::hosts::HostList::parse(url) {
            Ok(Some(list)) => list.redacted(),
            _ => redact_unparseable(url),
        },
    }
}

/// What is shown of a URL that cannot be parsed: its scheme.
fn redact_unparseable(url: &str) -> String {
    match url.split_once(':') {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            format!("{scheme}:<unparseable URL>")
        }
        _ => "<unparseable URL>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_or_blank_means_embedded_default() {
        assert_eq!(
            UrlSource::from_option(None),
            UrlSource::EmbeddedDefault(PathBuf::from(DEFAULT_SQLITE_PATH))
        );
        assert_eq!(
            UrlSource::from_option(Some("  ".into())),
            UrlSource::EmbeddedDefault(PathBuf::from(DEFAULT_SQLITE_PATH))
        );
        assert_eq!(
            UrlSource::from_option(None).url(),
            "sqlite://data/db.sqlite?mode=rwc"
        );
    }

    #[test]
    fn sqlite_file_is_found_in_its_url_forms() {
        assert_eq!(
            sqlite_file("sqlite://data/db.sqlite?mode=rwc"),
            Some(PathBuf::from("data/db.sqlite"))
        );
        assert_eq!(
            sqlite_file("sqlite:///tmp/x.db"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://localhost/db"), None);
    }

    #[test]
    fn redact_hides_the_password_and_keeps_the_rest() {
        let redacted = redact("postgres://app:s3cr%21t@db.internal:5432/app?sslmode=require");
        assert_eq!(
            redacted,
            "postgres://app:***@db.internal:5432/app?sslmode=require"
        );
        assert_eq!(
            redact("postgres://app@localhost/app"),
            "postgres://app@localhost/app"
        );
    }

    #[test]
    fn redact_hides_a_password_given_as_a_query_parameter() {
        let redacted =
            redact("postgres://app@db/app?sslmode=disable&password=hunter2&sslpassword=x9");
        assert!(
            !redacted.contains("hunter2") && !redacted.contains("x9"),
            "{redacted}"
        );
        assert_eq!(
            redacted,
            "postgres://app@db/app?sslmode=disable&password=***&sslpassword=***"
        );
    }

    #[test]
    fn redact_never_echoes_an_unparseable_url() {
        let redacted = redact("postgres://app:hunter2@[bad-host/app");
        assert!(!redacted.contains("hunter2"), "{redacted}");
        assert_eq!(redacted, "postgres:<unparseable URL>");
        assert_eq!(redact("hunter2"), "<unparseable URL>");
    }
}
