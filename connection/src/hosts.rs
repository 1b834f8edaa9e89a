//! Multi-host PostgreSQL URLs, as libpq reads them, and finding the host to use.
//!
//! HA managers (pg_auto_failover, Patroni) hand their users one URL naming every node,
//! `postgres://h1:p1,h2:p2/db?target_session_attrs=read-write`, or the same with
//! `?host=h1,h2&port=p1,p2`. sqlx takes one host, so [`HostList`] splits such a URL into
//! single-host URLs sqlx can parse, and [`choose`] tries the hosts in order and keeps the first
//! whose session matches `target_session_attrs` (the PostgreSQL documentation's
//! connection-string section defines the values). A URL with one host and no
//! `target_session_attrs` is left exactly as it is.

use std::fmt;
use std::time::Duration;

use sea_orm::{DbErr, RuntimeErr, sqlx};

use crate::connect::{ConnectError, ConnectFailure, password};
use crate::database_url::redact;

/// The host name standing in for the host list in the single-host template of a multi-host
/// URL (`.invalid` never resolves).
const PLACEHOLDER: &str = "multi-host.invalid";

/// Which sessions are acceptable (`target_session_attrs`), as libpq defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetSessionAttrs {
    /// Any server that accepts the connection (the default).
    #[default]
    Any,
    /// A session that accepts writes by default (`transaction_read_only` is off).
    ReadWrite,
    /// A session that refuses writes by default (`transaction_read_only` is on).
    ReadOnly,
    /// A server not in recovery.
    Primary,
    /// A server in recovery (a hot standby).
    Standby,
    /// A standby if any host is one, otherwise any server.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// Parses a `target_session_attrs` value.
    ///
    /// # Errors
    ///
    /// The reason, naming the accepted values.
    pub fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            other => {
                return Err(format!(
                    "invalid target_session_attrs `{other}` (use any, read-write, read-only, \
                     primary, standby or prefer-standby)"
                ));
            }
        })
    }

    /// The value as written in a URL.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }

    /// Whether a session on a server in `role` is acceptable (for `prefer-standby`: in the
    /// first pass, which looks for a standby).
    #[must_use]
    pub fn accepts(self, role: ServerRole) -> bool {
        match self {
            Self::Any => true,
            Self::ReadWrite => !role.read_only,
            Self::ReadOnly => role.read_only,
            Self::Primary => !role.in_recovery,
            Self::Standby | Self::PreferStandby => role.in_recovery,
        }
    }
}

impl fmt::Display for TargetSessionAttrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a server said about itself when a session was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRole {
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// `transaction_read_only` of a new session: on for a standby, or with
    /// `default_transaction_read_only`.
    pub read_only: bool,
}

impl fmt::Display for ServerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.in_recovery, self.read_only) {
            (true, _) => "a standby",
            (false, true) => "a primary with read-only sessions",
            (false, false) => "a primary",
        })
    }
}

/// One host of a URL: a name or address and a port, or a Unix socket folder (starting with
/// `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host {
    /// The host name, IP address (IPv6 without brackets) or socket folder.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The hosts of a PostgreSQL URL, the sessions wanted there, and a single-host URL for each.
/// `Debug` shows hosts and `target_session_attrs` only (the URL may hold a password).
#[derive(Clone)]
pub struct HostList {
    hosts: Vec<Host>,
    attrs: TargetSessionAttrs,
    /// The URL without its hosts, ports and `target_session_attrs`, on [`PLACEHOLDER`].
    template: url::Url,
}

impl fmt::Debug for HostList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostList")
            .field("hosts", &self.hosts)
            .field("target_session_attrs", &self.attrs)
            .finish_non_exhaustive()
    }
}

impl HostList {
    /// Reads the hosts of `url`: `None` when it is not a PostgreSQL URL.
    ///
    /// Hosts are taken from the URL's authority (`h1:p1,h2:p2`, `[::1]:5432`), or from the
    /// query's `host=h1,h2` (which overrides them, as in libpq); ports from the authority or
    /// from `port=p1,p2` (one port for every host, or one per host). A host without a port gets
    /// 5432.
    ///
    /// # Errors
    ///
    /// Why the URL cannot be used; the reason never contains the URL.
    pub fn parse(url: &str) -> Result<Option<Self>, String> {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Ok(None);
        };
        if scheme != "postgres" && scheme != "postgresql" {
            return Ok(None);
        }
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (rest, None),
        };
        let (before_query, query) = match rest.split_once('?') {
            Some((before, query)) => (before, query),
            None => (rest, ""),
        };
        let (authority, path) = match before_query.find('/') {
            Some(slash) => before_query.split_at(slash),
            None => (before_query, ""),
        };
        let (userinfo, host_text) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };

        let mut query_hosts = None;
        let mut query_ports = None;
        let mut attrs = TargetSessionAttrs::Any;
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match key.as_ref() {
                "host" => query_hosts = Some(value.into_owned()),
                "port" => query_ports = Some(value.into_owned()),
                "target_session_attrs" => attrs = TargetSessionAttrs::parse(&value)?,
                _ => {
                    kept.append_pair(&key, &value);
                }
            }
        }
        let kept = kept.finish();

        let mut hosts = match &query_hosts {
            Some(list) => list
                .split(',')
                .map(|host| Host {
                    host: host.trim().to_owned(),
                    port: 5432,
                })
                .collect(),
            None => authority_hosts(host_text)?,
        };
        if let Some(ports) = &query_ports {
            let ports = ports
                .split(',')
                .map(|port| parse_port(port.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            match ports.len() {
                1 => hosts.iter_mut().for_each(|host| host.port = ports[0]),
                n if n == hosts.len() => hosts
                    .iter_mut()
                    .zip(ports)
                    .for_each(|(host, port)| host.port = port),
                n => {
                    return Err(format!(
                        "the URL names {} hosts but {n} ports (give one port, or one per host)",
                        hosts.len()
                    ));
                }
            }
        }
        for host in &mut hosts {
            if host.host.is_empty() {
                "localhost".clone_into(&mut host.host);
            }
        }

        let mut template = format!("{scheme}://");
        if let Some(userinfo) = userinfo {
            template.push_str(userinfo);
            template.push('@');
        }
        template.push_str(PLACEHOLDER);
        template.push_str(path);
        if !kept.is_empty() {
            template.push('?');
            template.push_str(&kept);
        }
        if let Some(fragment) = fragment {
            template.push('#');
            template.push_str(fragment);
        }
        let template = url::Url::parse(&template).map_err(|e| format!("not a URL ({e})"))?;
        Ok(Some(Self {
            hosts,
            attrs,
            template,
        }))
    }

    /// The hosts, in the order they are tried.
    #[must_use]
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The sessions wanted (`target_session_attrs`).
    #[must_use]
    pub fn target_session_attrs(&self) -> TargetSessionAttrs {
        self.attrs
    }

    /// Whether the URL needs choosing a host: more than one host, or a `target_session_attrs`
    /// other than `any`. Otherwise the URL is used exactly as given.
    #[must_use]
    pub fn needs_choosing(&self) -> bool {
        self.hosts.len() > 1 || self.attrs != TargetSessionAttrs::Any
    }

    /// A URL sqlx can parse for host `index` (user, password, database and every other
    /// parameter as given; no `target_session_attrs`).
    ///
    /// # Panics
    ///
    /// When `index` is out of range.
    #[must_use]
    pub fn url_for(&self, index: usize) -> String {
        let host = &self.hosts[index];
        let mut url = self.template.clone();
        if host.host.starts_with('/') {
            url.query_pairs_mut().append_pair("host", &host.host);
        } else {
            let name = if host.host.contains(':') {
                format!("[{}]", host.host)
            } else {
                host.host.clone()
            };
            // Fails only for a host name that is not one, which connecting reports.
            let _ = url.set_host(Some(&name));
        }
        let _ = url.set_port(Some(host.port));
        url.to_string()
    }

    /// The same hosts, logging in with `password` (a rotated one) instead of the URL's.
    #[must_use]
    pub fn with_password(&self, password: &str) -> Self {
        let mut list = self.clone();
        // Fails only for a URL that cannot have a password, which parsing has refused.
        let _ = list.template.set_password(Some(password));
        list
    }

    /// The URL with its password and secret parameters replaced by `***`, hosts listed.
    #[must_use]
    pub fn redacted(&self) -> String {
        let mut shown = self.template.clone();
        if self.attrs != TargetSessionAttrs::Any {
            shown
                .query_pairs_mut()
                .append_pair("target_session_attrs", self.attrs.as_str());
        }
        let hosts = self.host_list();
        redact(shown.as_str()).replacen(PLACEHOLDER, &hosts, 1)
    }

    /// `h1:p1,h2:p2`.
    fn host_list(&self) -> String {
        self.hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `h1:p1,h2:p2/database`: how the URL's nodes are named in health reports and logs.
    #[must_use]
    pub fn node_names(&self) -> String {
        let hosts = self.host_list();
        format!("{hosts}{}", self.template.path())
    }
}

/// The hosts of a URL's authority: `h1:p1,h2,[::1]:p3`.
fn authority_hosts(text: &str) -> Result<Vec<Host>, String> {
    text.split(',')
        .map(|entry| {
            let (host, port) = if let Some(bracketed) = entry.strip_prefix('[') {
                let (host, after) = bracketed
                    .split_once(']')
                    .ok_or("an IPv6 host is missing its `]`")?;
                (host, after.strip_prefix(':'))
            } else {
                match entry.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (entry, None),
                }
            };
            let host = percent_encoding::percent_decode_str(host)
                .decode_utf8()
                .map_err(|_| "a host name is not UTF-8")?
                .into_owned();
            let port = match port {
                Some(port) if !port.is_empty() => parse_port(port)?,
                _ => 5432,
            };
            Ok(Host { host, port })
        })
        .collect()
}

fn parse_port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("invalid port `{text}` (a number from 1 to 65535)"))
}

/// The host [`choose`] picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Its position in the URL.
    pub index: usize,
    /// The host.
    pub host: Host,
    /// What the server said about itself.
    pub role: ServerRole,
}

/// What became of one host while choosing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostOutcome {
    /// It answered, in this role, which the URL did not want.
    Unsuitable(ServerRole),
    /// It could not be connected to.
    Failed(ConnectFailure),
}

impl fmt::Display for HostOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsuitable(role) => write!(f, "{role}"),
            Self::Failed(failure) => write!(f, "{failure}"),
        }
    }
}

/// Opens a session on `url` (a single-host URL) and asks the server its role.
///
/// # Errors
///
/// Why the session could not be opened, or the question not answered, within `timeout`
/// (the password removed from any driver text).
pub async fn probe(url: &str, timeout: Duration) -> Result<ServerRole, ConnectFailure> {
    use sqlx::{ConnectOptions as _, Connection as _};
    let secret = password(url);
    let failure = |e: sqlx::Error| {
        let err = DbErr::Conn(RuntimeErr::SqlxError(std::sync::Arc::new(e)));
        ConnectFailure::classify(&err, secret.as_deref())
    };
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(failure)?;
    let options = options.extra_float_digits(None).disable_statement_logging();
    let ask = async {
        let mut conn = options.connect().await.map_err(failure)?;
        let answer = sqlx::query_as::<_, (bool, String)>(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(failure);
        let _ = conn.close().await;
        let (in_recovery, read_only) = answer?;
        Ok(ServerRole {
            in_recovery,
            read_only: read_only == "on",
        })
    };
    tokio::time::timeout(timeout, ask)
        .await
        .unwrap_or(Err(ConnectFailure::TimedOut))
}

/// Tries the hosts of `list` in order, each within `timeout`, and returns the first whose
/// session matches its `target_session_attrs` (for `prefer-standby`: the first standby, or
/// failing that the first host that answered).
///
/// # Errors
///
/// [`ConnectFailure::NoSuitableHost`] with what each host said.
pub async fn choose(list: &HostList, timeout: Duration) -> Result<Chosen, ConnectFailure> {
    let mut outcomes = Vec::with_capacity(list.hosts.len());
    for (index, host) in list.hosts.iter().enumerate() {
        match probe(&list.url_for(index), timeout).await {
            Ok(role) if list.attrs.accepts(role) => {
                return Ok(Chosen {
                    index,
                    host: host.clone(),
                    role,
                });
            }
            Ok(role) => outcomes.push((host.to_string(), HostOutcome::Unsuitable(role))),
            Err(failure) => outcomes.push((host.to_string(), HostOutcome::Failed(failure))),
        }
    }
    if list.attrs == TargetSessionAttrs::PreferStandby {
        let answered = outcomes
            .iter()
            .position(|(_, outcome)| matches!(outcome, HostOutcome::Unsuitable(_)));
        if let Some(index) = answered
            && let HostOutcome::Unsuitable(role) = outcomes[index].1
        {
            return Ok(Chosen {
                index,
                host: list.hosts[index].clone(),
                role,
            });
        }
    }
    Err(ConnectFailure::NoSuitableHost {
        wanted: list.attrs,
        hosts: outcomes,
    })
}

/// The single-host URL to connect to for `url`: `url` itself when it has one host and no
/// `target_session_attrs` (nothing is opened), otherwise the first host that matches (see
/// [`choose`]).
///
/// # Errors
///
/// A [`ConnectError`] naming the URL (redacted) and what each host said.
pub async fn resolve(url: &str, timeout: Duration) -> Result<String, ConnectError> {
    let list = match HostList::parse(url) {
        Ok(Some(list)) if list.needs_choosing() => list,
        Ok(_) => return Ok(url.to_owned()),
        Err(reason) => {
            return Err(ConnectError {
                target: redact(url),
                failure: ConnectFailure::InvalidUrl(reason),
            });
        }
    };
    match choose(&list, timeout).await {
        Ok(chosen) => {
            tracing::debug!(host = %chosen.host, role = %chosen.role, "chose a host of the URL");
            Ok(list.url_for(chosen.index))
        }
        Err(failure) => Err(ConnectError {
            target: list.redacted(),
            failure,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(url: &str) -> HostList {
        HostList::parse(url).unwrap().unwrap()
    }

    fn hosts(url: &str) -> Vec<String> {
        list(url).hosts().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn with_password_logs_in_with_the_rotated_password_on_every_host() {
        let rotated = list("postgres://app:old@h1:5432,h2:5433/db?target_session_attrs=read-write")
            .with_password("n3w/pw");
        assert_eq!(rotated.url_for(0), "postgres://app:n3w%2Fpw@h1:5432/db");
        assert_eq!(rotated.url_for(1), "postgres://app:n3w%2Fpw@h2:5433/db");
        assert_eq!(
            rotated.target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        assert!(!format!("{rotated:?}").contains("n3w"));
    }

    #[test]
    fn hosts_in_the_authority_keep_their_ports() {
        assert_eq!(
            hosts(
                "postgres://127.0.0.1:6001,127.0.0.1:6002/appdb?target_session_attrs=read-write&sslmode=prefer"
            ),
            ["127.0.0.1:6001", "127.0.0.1:6002"]
        );
        assert_eq!(
            hosts("postgresql://u:p@a,b:6000,[::1]:7000,[fe80::1]/db"),
            ["a:5432", "b:6000", "[::1]:7000", "[fe80::1]:5432"]
        );
    }

    #[test]
    fn hosts_and_ports_in_the_query_override_the_authority() {
        assert_eq!(
            hosts("postgres:///db?host=h1,h2&port=6001,6002"),
            ["h1:6001", "h2:6002"]
        );
        assert_eq!(
            hosts("postgres://ignored/db?host=h1,h2&port=6000"),
            ["h1:6000", "h2:6000"]
        );
        assert_eq!(hosts("postgres://a,b/db?port=7000"), ["a:7000", "b:7000"]);
        let err = HostList::parse("postgres:///db?host=a,b,c&port=1,2").unwrap_err();
        assert!(err.contains("3 hosts but 2 ports"), "{err}");
    }

    #[test]
    fn every_target_session_attrs_value_is_read() {
        for value in [
            "any",
            "read-write",
            "read-only",
            "primary",
            "standby",
            "prefer-standby",
        ] {
            let parsed = list(&format!("postgres://a,b/db?target_session_attrs={value}"));
            assert_eq!(parsed.target_session_attrs().as_str(), value);
        }
        let err = HostList::parse("postgres://a/db?target_session_attrs=master").unwrap_err();
        assert!(
            err.contains("invalid target_session_attrs `master`"),
            "{err}"
        );
    }

    #[test]
    fn attrs_accept_sessions_as_libpq_defines_them() {
        let primary = ServerRole {
            in_recovery: false,
            read_only: false,
        };
        let read_only_primary = ServerRole {
            in_recovery: false,
            read_only: true,
        };
        let standby = ServerRole {
            in_recovery: true,
            read_only: true,
        };
        use TargetSessionAttrs::*;
        let accepted = |attrs: TargetSessionAttrs| {
            [primary, read_only_primary, standby].map(|role| attrs.accepts(role))
        };
        assert_eq!(accepted(Any), [true, true, true]);
        assert_eq!(accepted(ReadWrite), [true, false, false]);
        assert_eq!(accepted(ReadOnly), [false, true, true]);
        assert_eq!(accepted(Primary), [true, true, false]);
        assert_eq!(accepted(Standby), [false, false, true]);
        assert_eq!(accepted(PreferStandby), [false, false, true]);
    }

    #[test]
    fn single_host_urls_sqlx_can_parse_are_made_per_host() {
        let parsed = list(
            "postgres://app:s3cret@10.0.0.1:6001,10.0.0.2:6002/appdb?target_session_attrs=read-write&sslmode=prefer&application_name=x",
        );
        assert_eq!(
            parsed.url_for(1),
            "postgres://app:s3cret@10.0.0.2:6002/appdb?sslmode=prefer&application_name=x"
        );
        let options: sqlx::postgres::PgConnectOptions = parsed.url_for(0).parse().unwrap();
        assert_eq!(options.get_host(), "10.0.0.1");
        assert_eq!(options.get_port(), 6001);
        assert_eq!(options.get_database(), Some("appdb"));
        let v6 = list("postgres://u@[::1]:7000,b/db");
        assert_eq!(v6.url_for(0), "postgres://u@[::1]:7000/db");
        let socket = list("postgres://u@/db?host=/var/run/postgresql,b&port=5433");
        let options: sqlx::postgres::PgConnectOptions = socket.url_for(0).parse().unwrap();
        assert_eq!(
            options.get_socket().map(|p| p.display().to_string()),
            Some("/var/run/postgresql".to_owned())
        );
        assert_eq!(options.get_port(), 5433);
    }

    #[test]
    fn a_plain_url_needs_no_choosing() {
        assert!(!list("postgres://u:p@h:5432/db?sslmode=disable").needs_choosing());
        assert!(list("postgres://h/db?target_session_attrs=read-write").needs_choosing());
        assert!(list("postgres://h1,h2/db").needs_choosing());
        assert!(HostList::parse("sqlite::memory:").unwrap().is_none());
        assert!(
            HostList::parse("sqlite://data/db.sqlite")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn secrets_are_redacted_and_hosts_shown() {
        let parsed =
            list("postgres://app:hunter2@a:1,b:2/db?password=x9&target_session_attrs=primary");
        let shown = parsed.redacted();
        assert!(
            !shown.contains("hunter2") && !shown.contains("x9"),
            "{shown}"
        );
        assert_eq!(
            shown,
            "postgres://app:***@a:1,b:2/db?password=***&target_session_attrs=primary"
        );
        assert!(!format!("{parsed:?}").contains("hunter2"));
        assert_eq!(parsed.node_names(), "a:1,b:2/db");
    }

    #[tokio::test]
    async fn a_plain_url_is_resolved_to_itself_without_connecting() {
        let url = "postgres://u:p@127.0.0.1:1/db";
        assert_eq!(resolve(url, Duration::from_millis(10)).await.unwrap(), url);
    }

    #[tokio::test]
    async fn no_reachable_host_names_each_and_hides_the_password() {
        let err = resolve(
            "postgres://u:hunter2@127.0.0.1:1,127.0.0.1:2/db?target_session_attrs=read-write",
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("127.0.0.1:1: connection refused")
                && shown.contains("127.0.0.1:2: connection refused"),
            "{shown}"
        );
        assert!(err.failure.is_transient());
    }
}
