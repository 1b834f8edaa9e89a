//! Database URLs: checked, and never shown with their password.

use std::fmt;
use std::path::{Path, PathBuf};

use connection::database_url::{UrlSource, redact};

use super::ConfigError;

/// A database URL. `Debug` and `Display` show it with the password replaced by `***`; only
/// [`DatabaseUrl::expose_secret`] gives the real one.
///
/// A URL read from a secret file (`DATABASE_URL_FILE`, …), or given its password by one
/// (`DATABASE_PASSWORD_FILE`), remembers the file: the service reads it again for new
/// connections, so a rotated password takes effect without a restart.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    source: UrlSource,
    secret: Option<SecretFile>,
}

/// The file a URL, or its password, was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SecretFile {
    /// The variable that named it (`DATABASE_URL_FILE`, …).
    variable: &'static str,
    path: PathBuf,
    holds: Holds,
}

/// What a secret file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    /// The whole URL.
    Url,
    /// A list of URLs (`DATABASE_REPLICA_URLS_FILE`); this one is at that index.
    ListItem(usize),
    /// The password alone.
    Password,
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
            secret: None,
        }
    }

    /// The URL held by the secret file `path` (named by `variable`, e.g. `DATABASE_URL_FILE`).
    pub(crate) fn from_file(variable: &'static str, path: &Path) -> Result<Self, String> {
        let mut url = Self::unchecked(connection::secrets::read(variable, path)?);
        url.secret = Some(SecretFile {
            variable,
            path: path.to_owned(),
            holds: Holds::Url,
        });
        Ok(url)
    }

    /// The comma- or line-separated URLs held by the secret file `path`.
    pub(crate) fn list_from_file(variable: &'static str, path: &Path) -> Result<Vec<Self>, String> {
        let text = connection::secrets::read(variable, path)?;
        Ok(split_list(&text)
            .enumerate()
            .map(|(index, url)| {
                let mut url = Self::unchecked(url.to_owned());
                url.secret = Some(SecretFile {
                    variable,
                    path: path.to_owned(),
                    holds: Holds::ListItem(index),
                });
                url
            })
            .collect())
    }

    /// Whether a password file applies to this URL: a PostgreSQL URL without a password.
    pub(crate) fn wants_password(&self) -> bool {
        self.secret.is_none() && connection::secrets::wants_password(&self.expose_secret())
    }

    /// This URL with the password held by the file `path` (`DATABASE_PASSWORD_FILE`).
    pub(crate) fn with_password_file(
        self,
        variable: &'static str,
        path: &Path,
    ) -> Result<Self, String> {
        let password = connection::secrets::read(variable, path)?;
        let url = connection::secrets::with_password(&self.expose_secret(), &password)
            .ok_or_else(|| format!("{variable}: the URL {self} cannot carry a password"))?;
        let mut url = Self::unchecked(url);
        url.secret = Some(SecretFile {
            variable,
            path: path.to_owned(),
            holds: Holds::Password,
        });
        Ok(url)
    }

    /// The secret file this URL (or its password) comes from, and its variable.
    #[must_use]
    pub fn secret_file(&self) -> Option<(&'static str, &Path)> {
        self.secret
            .as_ref()
            .map(|file| (file.variable, file.path.as_path()))
    }

    /// The password as the secret file holds it now (`Ok(None)` without a file, or when the
    /// URL in the file has none).
    ///
    /// # Errors
    ///
    /// Why the file cannot be read (its variable and path; never its content).
    pub fn current_password(&self) -> Result<Option<String>, String> {
        let Some(file) = &self.secret else {
            return Ok(None);
        };
        let text = connection::secrets::read(file.variable, &file.path)?;
        Ok(match file.holds {
            Holds::Password => Some(text),
            Holds::Url => connection::connect::password(&text),
            Holds::ListItem(index) => split_list(&text)
                .nth(index)
                .and_then(connection::connect::password),
        })
    }

    /// This URL with the password its secret file holds now (itself without a file).
    ///
    /// # Errors
    ///
    /// As [`current_password`](Self::current_password).
    pub fn reread(&self) -> Result<Self, String> {
        match self.current_password()? {
            Some(password)
                if Some(&password)
                    != connection::connect::password(&self.expose_secret()).as_ref() =>
            {
                let url = connection::secrets::with_password(&self.expose_secret(), &password)
                    .unwrap_or_else(|| self.expose_secret());
                Ok(Self {
                    source: UrlSource::Configured(url),
                    secret: self.secret.clone(),
                })
            }
            _ => Ok(self.clone()),
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
            secret: None,
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

    /// Each host of a URL naming several, as a URL of its own (without
    /// `target_session_attrs`), remembering the same secret file; empty for a URL naming one.
    pub(crate) fn each_host(&self) -> Vec<Self> {
        if self.is_sqlite() {
            return Vec::new();
        }
        match connection::hosts::HostList::parse(&self.expose_secret()) {
            Ok(Some(list)) if list.hosts().len() > 1 => (0..list.hosts().len())
                .map(|index| Self {
                    source: UrlSource::Configured(list.url_for(index)),
                    secret: self.secret.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
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
        match &self.secret {
            Some(file) => write!(f, "DatabaseUrl({self}, from {})", file.variable),
            None => write!(f, "DatabaseUrl({self})"),
        }
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
        split_list(text)
            .map(|url| DatabaseUrl::unchecked(url.to_owned()))
            .collect(),
    ))
}

/// The URLs of a list: separated by commas or line breaks, blank entries skipped.
fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|url| !url.is_empty())
}
