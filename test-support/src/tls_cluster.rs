//! [`TestTlsCluster`]: a PostgreSQL cluster set up as managed servers are — TLS only,
//! `scram-sha-256` passwords — with a CA made at test time, for tests of TLS and of
//! authentication failures.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::TestCluster;

/// Which certificate the server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerCertificate {
    /// Signed by the cluster's CA, for `127.0.0.1` (not for `localhost`), valid now.
    Valid,
    /// Signed by the cluster's CA, for `127.0.0.1`, expired in 2021.
    Expired,
}

/// A throw-away cluster ([`TestCluster`]) that accepts TCP connections only over TLS
/// (`hostssl`, no `host` lines in `pg_hba.conf`), with these roles:
///
/// * `postgres` (superuser) and every other role not named below: `scram-sha-256`, with the
///   password given to [`start`](Self::start);
/// * [`CERT_USER`](Self::CERT_USER): `cert` authentication — a client certificate whose
///   common name is the role, signed by the cluster's CA ([`client_cert`](Self::client_cert),
///   [`client_key`](Self::client_key));
/// * [`NO_LOGIN`](Self::NO_LOGIN): a role with that password but without `LOGIN`;
/// * [`REJECTED`](Self::REJECTED): a login role that `pg_hba.conf` rejects.
///
/// The CA, the server's certificate (for the IP address `127.0.0.1` only) and the client's
/// are made with `rcgen` when it starts; [`other_ca_file`](Self::other_ca_file) is a CA that
/// signed nothing here. Dropping the handle stops the server and removes every file.
pub struct TestTlsCluster {
    cluster: TestCluster,
    files: PathBuf,
    password: String,
}

impl TestTlsCluster {
    /// The role that logs in with a client certificate (`cert` in `pg_hba.conf`).
    pub const CERT_USER: &'static str = "cert_user";
    /// A role with a password but without `LOGIN`.
    pub const NO_LOGIN: &'static str = "no_login";
    /// A login role that `pg_hba.conf` rejects.
    pub const REJECTED: &'static str = "rejected";

    /// Starts a cluster presenting a valid certificate; `postgres` logs in with `password`.
    ///
    /// # Panics
    ///
    /// When no PostgreSQL installation is found, the server does not start, or the roles
    /// cannot be created.
    pub async fn start(password: &str) -> Self {
        Self::start_with(password, ServerCertificate::Valid).await
    }

    /// Starts a cluster presenting `certificate`.
    ///
    /// # Panics
    ///
    /// As [`start`](Self::start).
    pub async fn start_with(password: &str, certificate: ServerCertificate) -> Self {
        let files = std::env::temp_dir().join(format!("db_test_tls_{}", super::unique_suffix()));
        let made = std::fs::create_dir_all(&files)
            .map_err(|e| format!("cannot create {}: {e}", files.display()))
            .and_then(|()| Certificates::make(certificate));
        let certificates = made.unwrap_or_else(|err| panic!("cannot make the certificates: {err}"));
        let written = certificates.write_client_files(&files);
        written.unwrap_or_else(|err| panic!("cannot write the certificates: {err}"));
        let cluster = TestCluster::try_start_configured(Some(password), |data| {
            certificates.configure_server(data)
        })
        .unwrap_or_else(|err| panic!("cannot start the TLS test cluster: {err}"));
        let tls = Self {
            cluster,
            files,
            password: password.to_owned(),
        };
        tls.create_roles().await;
        tls
    }

    async fn create_roles(&self) {
        use sea_orm::sqlx::{Connection as _, Executor as _};
        // Encrypted, not verified: the server's certificate may be the expired one.
        let url = self.url(
            "127.0.0.1",
            "postgres",
            &self.password,
            "postgres",
            "sslmode=require",
        );
        let mut conn = sea_orm::sqlx::PgConnection::connect(&url)
            .await
            .unwrap_or_else(|err| panic!("cannot connect to the TLS test cluster: {err}"));
        let password = self.password.replace('\'', "''");
        let sql = format!(
            "CREATE ROLE {cert} LOGIN; \
             CREATE ROLE {no_login} NOLOGIN PASSWORD '{password}'; \
             CREATE ROLE {rejected} LOGIN PASSWORD '{password}';",
            cert = Self::CERT_USER,
            no_login = Self::NO_LOGIN,
            rejected = Self::REJECTED,
        );
        conn.execute(sea_orm::sqlx::raw_sql(sea_orm::sqlx::AssertSqlSafe(sql)))
            .await
            .unwrap_or_else(|err| panic!("cannot create the test roles: {err}"));
        let _ = conn.close().await;
    }

    /// The underlying cluster (port, stop, restart).
    #[must_use]
    pub fn cluster(&self) -> &TestCluster {
        &self.cluster
    }

    /// The loopback port the server listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.cluster.port()
    }

    /// The CA that signed the server's and the client's certificates (PEM).
    #[must_use]
    pub fn ca_file(&self) -> PathBuf {
        self.files.join("ca.crt")
    }

    /// A CA that signed nothing this server presents (PEM).
    #[must_use]
    pub fn other_ca_file(&self) -> PathBuf {
        self.files.join("other-ca.crt")
    }

    /// The client certificate of [`CERT_USER`](Self::CERT_USER) (PEM).
    #[must_use]
    pub fn client_cert(&self) -> PathBuf {
        self.files.join("client.crt")
    }

    /// The key of [`client_cert`](Self::client_cert) (PEM, PKCS #8).
    #[must_use]
    pub fn client_key(&self) -> PathBuf {
        self.files.join("client.key")
    }

    /// `postgres://user:password@host:port/database?query` (the password percent-encoded; an
    /// empty one is left out).
    #[must_use]
    pub fn url(
        &self,
        host: &str,
        user: &str,
        password: &str,
        database: &str,
        query: &str,
    ) -> String {
        let encoded: String =
            url::form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>();
        let credentials = if password.is_empty() {
            user.to_owned()
        } else {
            format!("{user}:{encoded}")
        };
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        format!(
            "postgres://{credentials}@{host}:{}/{database}{query}",
            self.port()
        )
    }

    /// The URL of `database` as `user` with `password` at `127.0.0.1`, with
    /// `sslmode=verify-full` and the cluster's CA: what works.
    #[must_use]
    pub fn verified_url(&self, user: &str, password: &str, database: &str) -> String {
        self.url(
            "127.0.0.1",
            user,
            password,
            database,
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                self.ca_file().display()
            ),
        )
    }

    /// The superuser's verified URL of `database` ([`verified_url`](Self::verified_url)).
    #[must_use]
    pub fn admin_url(&self, database: &str) -> String {
        self.verified_url("postgres", &self.password, database)
    }
}

impl std::fmt::Debug for TestTlsCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestTlsCluster")
            .field("cluster", &self.cluster)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Drop for TestTlsCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files);
    }
}

/// The PEM files of a TLS cluster.
struct Certificates {
    ca: String,
    other_ca: String,
    server: String,
    server_key: String,
    client: String,
    client_key: String,
}

impl Certificates {
    fn make(server_certificate: ServerCertificate) -> Result<Self, String> {
        let fail = |e: rcgen::Error| e.to_string();
        let ca = ca("db test CA").map_err(fail)?;
        let other_ca = ca_certificate("another CA").map_err(fail)?;

        let server_key = KeyPair::generate().map_err(fail)?;
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).map_err(fail)?;
        server
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if server_certificate == ServerCertificate::Expired {
            server.not_before = rcgen::date_time_ymd(2020, 1, 1);
            server.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let server = server.signed_by(&server_key, &ca).map_err(fail)?;

        let client_key = KeyPair::generate().map_err(fail)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        client
            .distinguished_name
            .push(DnType::CommonName, TestTlsCluster::CERT_USER);
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &ca).map_err(fail)?;

        Ok(Self {
            ca: ca.pem(),
            other_ca,
            server: server.pem(),
            server_key: server_key.serialize_pem(),
            client: client.pem(),
            client_key: client_key.serialize_pem(),
        })
    }

    fn write_client_files(&self, dir: &Path) -> Result<(), String> {
        for (name, content) in [
            ("ca.crt", &self.ca),
            ("other-ca.crt", &self.other_ca),
            ("client.crt", &self.client),
            ("client.key", &self.client_key),
        ] {
            write(&dir.join(name), content)?;
        }
        Ok(())
    }

    /// Writes the server's files into its data folder and turns TLS on; `pg_hba.conf` accepts
    /// TCP connections only over TLS.
    fn configure_server(&self, data: &Path) -> Result<(), String> {
        write(&data.join("ca.crt"), &self.ca)?;
        write(&data.join("server.crt"), &self.server)?;
        write(&data.join("server.key"), &self.server_key)?;
        let conf = data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).map_err(|e| e.to_string())?;
        settings.push_str(
            "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             ssl_ca_file = 'ca.crt'\n",
        );
        write(&conf, &settings)?;
        let hba = format!(
            "local all all trust\n\
             hostssl all {cert} 127.0.0.1/32 cert\n\
             hostssl all {rejected} 127.0.0.1/32 reject\n\
             hostssl all all 127.0.0.1/32 scram-sha-256\n\
             hostssl all all ::1/128 scram-sha-256\n",
            cert = TestTlsCluster::CERT_USER,
            rejected = TestTlsCluster::REJECTED,
        );
        write(&data.join("pg_hba.conf"), &hba)
    }
}

fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    CertifiedIssuer::self_signed(ca_params(name)?, KeyPair::generate()?)
}

fn ca_certificate(name: &str) -> Result<String, rcgen::Error> {
    Ok(ca(name)?.pem())
}

/// Writes `content` to `path`, readable by its owner only (PostgreSQL refuses a key file that
/// others can read).
fn write(path: &Path, content: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("{}: {e}", path.display()))
}
