//! The syntax of every setting's value, one parser per kind, shared by the service's, the
//! API's and the migrator's settings (clap calls them; their error says what is accepted).
//!
//! * durations: `humantime` (`500ms`, `5s`, `2m`, `1h 30m`), or a bare number of seconds (`30`,
//!   `1.5`);
//! * byte sizes: `bytesize` (`16MiB`, `512KiB`, `1GB`), or a bare number of bytes;
//! * switches: `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).

use std::net::SocketAddr;
use std::time::Duration;

/// What a duration setting accepts.
pub const DURATION_FORM: &str = "expected a duration such as 500ms, 5s, 2m or 30 (seconds)";
/// What a duration setting that can be turned off accepts.
pub const OPTIONAL_DURATION_FORM: &str =
    "expected a duration such as 500ms, 5s, 2m or 30 (seconds), or off";
/// What a byte-size setting accepts.
pub const BYTES_FORM: &str = "expected a size such as 16MiB, 512KiB, 1GB or 1048576 (bytes)";
/// What a switch accepts.
pub const BOOLEAN_FORM: &str = "expected true or false";
/// What a count accepts.
pub const COUNT_FORM: &str = "expected a whole number";
/// What an address setting accepts.
pub const ADDR_FORM: &str = "expected IP:PORT, such as 127.0.0.1:3000 or [::1]:8080";

/// A duration: `humantime`'s syntax, or a bare number of seconds.
///
/// # Errors
///
/// [`DURATION_FORM`].
pub fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = if text.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && text.chars().all(|c| c.is_ascii_digit() || c == '.')
    {
        text.parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    } else {
        humantime::parse_duration(text).ok()
    };
    parsed.ok_or_else(|| DURATION_FORM.to_owned())
}

/// A duration, or `off` (also `none`, `never`) for none.
///
/// # Errors
///
/// [`OPTIONAL_DURATION_FORM`].
pub fn optional_duration(text: &str) -> Result<Option<Duration>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "never" => Ok(None),
        _ => duration(text)
            .map(Some)
            .map_err(|_| OPTIONAL_DURATION_FORM.to_owned()),
    }
}

/// A byte size: `bytesize`'s syntax (`KiB`, `MiB`, `GiB` are powers of 1024; `kB`, `MB`, `GB`
/// powers of 1000), or a bare number of bytes.
///
/// # Errors
///
/// [`BYTES_FORM`].
pub fn bytes(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|size| size.as_u64())
        .map_err(|_| BYTES_FORM.to_owned())
}

/// A switch.
///
/// # Errors
///
/// [`BOOLEAN_FORM`].
pub fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(BOOLEAN_FORM.to_owned()),
    }
}

/// A whole number.
///
/// # Errors
///
/// [`COUNT_FORM`].
pub fn count(text: &str) -> Result<u32, String> {
    text.trim().parse().map_err(|_| COUNT_FORM.to_owned())
}

/// A socket address, `IP:PORT`.
///
/// # Errors
///
/// [`ADDR_FORM`].
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| ADDR_FORM.to_owned())
}

/// Any text that is not blank (names, schemas).
///
/// # Errors
///
/// When `text` is blank.
pub fn text(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_humantime_or_seconds() {
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration(" 5s "), Ok(Duration::from_secs(5)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["abc", "", "-1s", "5 parsecs", "1.2.3", "1e15"] {
            assert_eq!(duration(bad), Err(DURATION_FORM.to_owned()), "{bad}");
        }
        assert_eq!(optional_duration("OFF"), Ok(None));
        assert_eq!(optional_duration("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(
            optional_duration("soon"),
            Err(OPTIONAL_DURATION_FORM.to_owned())
        );
    }

    #[test]
    fn sizes_take_bytesize_or_bytes() {
        assert_eq!(bytes("16MiB"), Ok(16 << 20));
        assert_eq!(bytes("512KiB"), Ok(512 << 10));
        assert_eq!(bytes("1GB"), Ok(1_000_000_000));
        assert_eq!(bytes("1048576"), Ok(1 << 20));
        assert_eq!(bytes("0"), Ok(0));
        for bad in ["lots", "-1MB", "16 parsecs"] {
            assert_eq!(bytes(bad), Err(BYTES_FORM.to_owned()), "{bad}");
        }
    }

    #[test]
    fn switches_counts_and_addresses() {
        assert_eq!(boolean("ON"), Ok(true));
        assert_eq!(boolean("0"), Ok(false));
        assert_eq!(boolean("maybe"), Err(BOOLEAN_FORM.to_owned()));
        assert_eq!(count(" 20 "), Ok(20));
        assert_eq!(count("-1"), Err(COUNT_FORM.to_owned()));
        assert_eq!(socket_addr("[::1]:0").map(|a| a.port()), Ok(0));
        assert_eq!(socket_addr("localhost:3000"), Err(ADDR_FORM.to_owned()));
        assert_eq!(text("  "), Err("must not be empty".to_owned()));
    }
}
