//! Database URLs: checked, and never shown with their password.

use std::fmt;

use connection::database_url::{UrlSource, redact};

use super::ConfigError;

/// A database URL. `Debug` and `Display` show it with the password replaced by `***`; only
/// [`DatabaseUrl::expose_secret`] gives the real one.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    source: UrlSource,
}

impl DatabaseUrl {
    /// Checks and wraps a URL (`postgres://…`, `postgresql://…` or `sqlite:…`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidUrl`] with the reason; the error shows the URL redacted.
    pub fn parse(url: impl Into<String>) -> Result<Self, ConfigError> {
        let url = Self::unchecked(url.into());
        url.check("DATABASE_URL")?;
        Ok(url)
    }

    /// Wraps a URL as given; [`check`](Self::check) says whether it can be used. What the
    /// settings' parser does, so that no parser error ever repeats a URL.
    pub(crate) fn unchecked(url: String) -> Self {
        Self {
            source: UrlSource::Configured(url.trim().to_owned()),
        }
    }

    /// Whether this URL can be used, as the value of `variable`.
    pub(crate) fn check(&self, variable: &str) -> Result<(), ConfigError> {
        connection::connect::check_url(&self.expose_secret()).map_err(|reason| {
            ConfigError::InvalidUrl {
                variable: variable.to_owned(),
                redacted: self.to_string(),
                reason,
            }
        })
    }

    /// The embedded SQLite database used when `DATABASE_URL` is unset (`data/db.sqlite` under
    /// the working directory, created on first use), the same file the migrator uses.
    #[must_use]
    pub fn embedded_default() -> Self {
        Self {
            source: UrlSource::from_option(None),
        }
    }

    /// Whether this is the embedded SQLite default rather than a configured URL.
    #[must_use]
    pub fn is_embedded_default(&self) -> bool {
        matches!(self.source, UrlSource::EmbeddedDefault(_))
    }

    /// Whether the URL points at SQLite.
    #[must_use]
    pub fn is_sqlite(&self) -> bool {
        self.expose_secret().starts_with("sqlite:")
    }

    /// The URL itself, password included. Do not log it.
    #[must_use]
    pub fn expose_secret(&self) -> String {
        self.source.url()
    }

    pub(crate) fn source(&self) -> &UrlSource {
        &self.source
    }

    /// `host:port/database` (no user, no password): how a node is named in health reports and
    /// logs.
    #[must_use]
    pub fn node_name(&self) -> String {
        let url = self.expose_secret();
        match url::Url::parse(&url) {
            Ok(parsed) if !self.is_sqlite() => format!(
                "{}:{}{}",
                parsed.host_str().unwrap_or_default(),
                parsed.port().unwrap_or(5432),
                parsed.path()
            ),
            _ => match connection::hosts::HostList::parse(&url) {
                Ok(Some(list)) => list.node_names(),
                _ => self.to_string(),
            },
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.expose_secret()))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// The settings' parser of one URL: never fails, so that no parser error repeats a password;
/// [`DatabaseConfig::validate`](super::DatabaseConfig::validate) checks it.
pub(crate) fn one(text: &str) -> Result<DatabaseUrl, String> {
    Ok(DatabaseUrl::unchecked(text.to_owned()))
}

/// Comma-separated URLs (`DATABASE_REPLICA_URLS`), as given; blank entries are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlList(pub(crate) Vec<DatabaseUrl>);

/// The settings' parser of a URL list: never fails (see [`one`]).
pub(crate) fn list(text: &str) -> Result<UrlList, String> {
    Ok(UrlList(
        text.split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| DatabaseUrl::unchecked(url.to_owned()))
            .collect(),
    ))
}
