//! Secrets from files: `NAME_FILE` names a file holding the value of `NAME` (the convention of
//! the `postgres` image's `POSTGRES_PASSWORD_FILE`, and how Docker and Kubernetes hand secrets
//! to a process). The service and the migrator read them the same way; a file's content never
//! appears in an error, only its variable and path.

use std::path::Path;

/// The content of the secret file `path`, named by `variable` in errors: trimmed of the
/// surrounding white space (a trailing newline, as `echo` and editors write).
///
/// # Errors
///
/// Why the file cannot be used (missing, unreadable, empty, not UTF-8), naming `variable` and
/// `path` only.
pub fn read(variable: &str, path: &Path) -> Result<String, String> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|e| format!("{variable}={shown}: cannot read the file ({e})"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{variable}={shown}: the file is not UTF-8 text"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("{variable}={shown}: the file is empty"));
    }
    Ok(text.to_owned())
}

/// The error for a variable set both directly and through its file.
#[must_use]
pub fn both_set(name: &str) -> String {
    format!("{name} and {name}_FILE are both set: set one of them")
}

/// What is percent-encoded in a password: everything but letters, digits and `-._~` (the
/// characters a URL never needs encoded).
const PASSWORD: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `url` with `password` as its password (percent-encoded as a URL needs), or `None` when
/// `url` is no URL that can carry one.
#[must_use]
pub fn with_password(url: &str, password: &str) -> Option<String> {
    let mut parsed = url::Url::parse(url).ok()?;
    let encoded: String = percent_encoding::utf8_percent_encode(password, PASSWORD).collect();
    parsed.set_password(Some(&encoded)).ok()?;
    Some(parsed.to_string())
}

/// Whether `url` is a PostgreSQL URL without a password of its own (neither before the `@`
/// nor as `?password=`): the URLs a password file applies to.
#[must_use]
pub fn wants_password(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|parsed| {
        matches!(parsed.scheme(), "postgres" | "postgresql")
            && crate::connect::password(url).is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_percent_encoded_into_the_url_and_read_back() {
        let url =
            with_password("postgres://app@db:5432/app?sslmode=require", "p@ss:w/rd%").unwrap();
        assert_eq!(
            crate::connect::password(&url).as_deref(),
            Some("p@ss:w/rd%")
        );
        assert!(url.ends_with("@db:5432/app?sslmode=require"), "{url}");
        assert!(wants_password("postgres://app@db/app"));
        assert!(!wants_password("postgres://app:x@db/app"));
        assert!(!wants_password("postgres://app@db/app?password=x"));
        assert!(!wants_password("sqlite://x.db"));
    }

    #[test]
    fn errors_name_the_variable_and_path_never_the_content() {
        let dir = std::env::temp_dir().join(format!("secrets_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "  hunter2\n").unwrap();
        assert_eq!(read("DATABASE_PASSWORD_FILE", &file).unwrap(), "hunter2");
        std::fs::write(&file, "\n").unwrap();
        let err = read("DATABASE_PASSWORD_FILE", &file).unwrap_err();
        assert!(err.starts_with("DATABASE_PASSWORD_FILE="), "{err}");
        assert!(err.ends_with("the file is empty"), "{err}");
        let err = read("DATABASE_URL_FILE", &dir.join("missing")).unwrap_err();
        assert!(err.contains("cannot read the file"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
