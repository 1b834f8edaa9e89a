//! Connections to a server set up as managed ones are (TLS only, `scram-sha-256`, a CA made at
//! test time: `TestTlsCluster`): `sslmode=verify-full` works, a client certificate is accepted
//! where `pg_hba.conf` says `cert`, and every way the connection can be refused — TLS or
//! authentication — is named, in one line without the password, by the service at start-up
//! and by the migrator alike.

use std::process::{Command, Stdio};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use service::TlsFailure;
use service::{ConnectFailure, DatabaseConfig, DatabaseService, DatabaseUrl, Error};
use test_support::{ServerCertificate, TestTlsCluster};

const PASSWORD: &str = "s3cret/pw@x:y%";

/// What `DatabaseService::connect` says for `url` (which must fail).
async fn service_refusal(url: &str) -> (ConnectFailure, String) {
    let mut config = DatabaseConfig::new(DatabaseUrl::parse(url).unwrap());
    config.connect_deadline = Duration::from_millis(300);
    match DatabaseService::connect(&config).await {
        Err(Error::Connect(err)) => {
            let message = err.to_string();
            (err.failure, message)
        }
        other => panic!("{url}: expected a connection failure, got {other:?}"),
    }
}

/// The one error line of `migration status` against `url` (which must fail).
fn migrator_refusal(url: &str) -> String {
    let mut command = Command::new(crate::migrator_cli::migrator_binary());
    for variable in migrator::options::environment() {
        command.env_remove(&variable.name);
    }
    let output = command
        .args(["-u", url, "status"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{url}: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    errors[0].to_owned()
}

async fn is_encrypted(service: &DatabaseService) -> bool {
    let row = service
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<bool>(0).unwrap()
}

#[tokio::test]
async fn verify_full_connects_encrypted_and_a_client_certificate_is_accepted() {
    let cluster = TestTlsCluster::start(PASSWORD).await;

    let verified = DatabaseConfig::new(
        DatabaseUrl::parse(cluster.verified_url("postgres", PASSWORD, "postgres")).unwrap(),
    );
    let service = DatabaseService::connect(&verified).await.unwrap();
    assert!(is_encrypted(&service).await);
    assert_eq!(
        service.health().await.encrypted,
        Some(true),
        "the health report says so"
    );
    service.close().await.unwrap();

    // `require` encrypts without checking the certificate (as libpq does without sslrootcert).
    let required = cluster.url(
        "127.0.0.1",
        "postgres",
        PASSWORD,
        "postgres",
        "sslmode=require",
    );
    let service =
        DatabaseService::connect(&DatabaseConfig::new(DatabaseUrl::parse(required).unwrap()))
            .await
            .unwrap();
    assert!(is_encrypted(&service).await);
    service.close().await.unwrap();

    let with_certificate = cluster.url(
        "127.0.0.1",
        TestTlsCluster::CERT_USER,
        "",
        "postgres",
        &format!(
            "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
            cluster.ca_file().display(),
            cluster.client_cert().display(),
            cluster.client_key().display()
        ),
    );
    let service = DatabaseService::connect(&DatabaseConfig::new(
        DatabaseUrl::parse(with_certificate).unwrap(),
    ))
    .await
    .unwrap();
    let user = service
        .connection()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_user::text",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert_eq!(user, TestTlsCluster::CERT_USER);
    service.close().await.unwrap();
}

#[tokio::test]
async fn every_tls_and_authentication_refusal_is_named_by_the_service_and_the_migrator() {
    let cluster = TestTlsCluster::start(PASSWORD).await;
    let ca = cluster.ca_file().display().to_string();
    let other_ca = cluster.other_ca_file().display().to_string();
    let verify = |ca: &str| format!("sslmode=verify-full&sslrootcert={ca}");
    let url = |host: &str, user: &str, password: &str, database: &str, query: &str| {
        cluster.url(host, user, password, database, query)
    };
    let cases: Vec<(&str, String, ConnectFailure, &str)> = vec![
        (
            "plaintext at a TLS-only server",
            url(
                "127.0.0.1",
                "postgres",
                PASSWORD,
                "postgres",
                "sslmode=disable",
            ),
            ConnectFailure::EncryptionRequired,
            "encrypted connection (TLS)",
        ),
        (
            "a CA that did not sign the server's certificate",
            url(
                "127.0.0.1",
                "postgres",
                PASSWORD,
                "postgres",
                &verify(&other_ca),
            ),
            ConnectFailure::Tls(TlsFailure::UnknownIssuer),
            "not signed by a CA this client trusts",
        ),
        (
            "sslmode=require with sslrootcert checks the CA, as libpq does",
            url(
                "127.0.0.1",
                "postgres",
                PASSWORD,
                "postgres",
                &format!("sslmode=require&sslrootcert={other_ca}"),
            ),
            ConnectFailure::Tls(TlsFailure::UnknownIssuer),
            "not signed by a CA this client trusts",
        ),
        (
            "a host name the certificate does not list",
            url("localhost", "postgres", PASSWORD, "postgres", &verify(&ca)),
            ConnectFailure::Tls(TlsFailure::HostNameMismatch),
            "not valid for the host name",
        ),
        (
            "a wrong password",
            url(
                "127.0.0.1",
                "postgres",
                "wrong-s3cret",
                "postgres",
                &verify(&ca),
            ),
            ConnectFailure::Authentication,
            "password authentication failed",
        ),
        (
            "a role without LOGIN",
            url(
                "127.0.0.1",
                TestTlsCluster::NO_LOGIN,
                PASSWORD,
                "postgres",
                &verify(&ca),
            ),
            ConnectFailure::LoginNotPermitted,
            "not permitted to log in",
        ),
        (
            "a role pg_hba.conf rejects",
            url(
                "127.0.0.1",
                TestTlsCluster::REJECTED,
                PASSWORD,
                "postgres",
                &verify(&ca),
            ),
            ConnectFailure::NotAllowed,
            "pg_hba.conf allows no connection",
        ),
        (
            "the certificate role without its certificate",
            url(
                "127.0.0.1",
                TestTlsCluster::CERT_USER,
                "",
                "postgres",
                &verify(&ca),
            ),
            ConnectFailure::NotAllowed,
            "pg_hba.conf allows no connection",
        ),
        (
            "no such database",
            url(
                "127.0.0.1",
                "postgres",
                PASSWORD,
                "no_such_db",
                &verify(&ca),
            ),
            ConnectFailure::UnknownDatabase,
            "database does not exist",
        ),
    ];
    for (case, url, expected, words) in cases {
        let (failure, message) = service_refusal(&url).await;
        assert_eq!(failure, expected, "{case}: {message}");
        assert!(message.contains(words), "{case}: {message}");
        assert!(!message.contains("s3cret"), "{case}: {message}");
        assert!(!message.contains('\n'), "{case}: one line: {message}");
        let line = migrator_refusal(&url);
        assert!(line.contains(words), "{case}, migrator: {line}");
    }
    // The plaintext attempt names TLS, and does not send the user to the password.
    let plaintext = url(
        "127.0.0.1",
        "postgres",
        PASSWORD,
        "postgres",
        "sslmode=disable",
    );
    let (_, message) = service_refusal(&plaintext).await;
    assert!(!message.contains("password"), "{message}");
    assert!(!migrator_refusal(&plaintext).contains("password"));
}

#[tokio::test]
async fn an_expired_server_certificate_is_named() {
    let cluster = TestTlsCluster::start_with(PASSWORD, ServerCertificate::Expired).await;

    let url = cluster.verified_url("postgres", PASSWORD, "postgres");
    let (failure, message) = service_refusal(&url).await;

    assert_eq!(
        failure,
        ConnectFailure::Tls(TlsFailure::Expired),
        "{message}"
    );
    assert!(
        message.contains("TLS failed: the server's certificate has expired"),
        "{message}"
    );
    assert!(migrator_refusal(&url).contains("has expired"));
}

#[tokio::test]
async fn the_migrator_reads_its_url_and_password_from_files_and_refuses_both_forms() {
    let cluster = TestTlsCluster::start(PASSWORD).await;
    let dir = std::env::temp_dir().join(format!("tls_secret_files_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (url_file, password_file) = (dir.join("url"), dir.join("password"));
    std::fs::write(&url_file, cluster.admin_url("postgres")).unwrap();
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let migrator = |vars: &[(&str, &str)]| {
        let mut command = Command::new(crate::migrator_cli::migrator_binary());
        for variable in migrator::options::environment() {
            command.env_remove(&variable.name);
        }
        command
            .args(["status"])
            .envs(vars.iter().copied())
            .stdin(Stdio::null());
        command.output().unwrap()
    };
    let url_path = url_file.display().to_string();
    let password_path = password_file.display().to_string();
    let without_password = cluster.verified_url("postgres", "", "postgres");

    let from_url_file = migrator(&[("DATABASE_URL_FILE", &url_path)]);
    let with_password_file = migrator(&[
        ("DATABASE_URL", &without_password),
        ("DATABASE_PASSWORD_FILE", &password_path),
    ]);
    let both = migrator(&[
        ("DATABASE_URL", &without_password),
        ("DATABASE_URL_FILE", &url_path),
    ]);

    for output in [&from_url_file, &with_password_file] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL and DATABASE_URL_FILE are both set"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn the_health_report_says_when_the_connection_is_not_encrypted() {
    let db = test_support::TestDatabase::new(test_support::TestBackend::Postgres).await;
    let url = db.config().url.expose_secret();
    let separator = if url.contains('?') { '&' } else { '?' };
    let plain = DatabaseConfig::new(
        DatabaseUrl::parse(format!("{url}{separator}sslmode=disable")).unwrap(),
    );

    let service = DatabaseService::connect(&plain).await.unwrap();

    assert_eq!(service.health().await.encrypted, Some(false));
    let json = serde_json::to_value(service.health().await).unwrap();
    assert_eq!(json["encrypted"], serde_json::json!(false));
    service.close().await.unwrap();
}

/// Several statements whose new connections were refused together, as a rotated password
/// makes them: the first to read the new password from the file runs again with it, and so
/// does every other one at once (none waits for the file to change a second time, none fails).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_refused_together_after_a_rotation_all_run_with_the_new_password() {
    let cluster = TestTlsCluster::start(PASSWORD).await;
    let admin = sea_orm::Database::connect(cluster.admin_url("postgres"))
        .await
        .unwrap();
    admin
        .execute_unprepared("CREATE ROLE rotated LOGIN PASSWORD 'first-pw'")
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tls_rotation_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, "first-pw\n").unwrap();
    let (url, password_path) = (
        cluster.verified_url("rotated", "", "postgres"),
        password_file.display().to_string(),
    );
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_PASSWORD_FILE", password_path.as_str()),
        ("DB_MAX_CONNECTIONS", "8"),
        // Every connection is retired on its next checkout: the statements below need new ones.
        ("DB_MAX_LIFETIME", "1s"),
    ];
    let config = DatabaseConfig::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    let service = DatabaseService::connect(&config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    admin
        .execute_unprepared("ALTER ROLE rotated PASSWORD 'second-pw'")
        .await
        .unwrap();
    // The statements start before the file changes, so each new connection is refused first.
    let started = std::time::Instant::now();
    let statements: Vec<_> = (0..8)
        .map(|n| {
            let service = service.clone();
            tokio::spawn(async move {
                let sql = format!("SELECT {n}, pg_sleep(0.2)");
                service
                    .reader()
                    .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let staged = dir.join("password.new");
    std::fs::write(&staged, "second-pw\n").unwrap();
    std::fs::rename(&staged, &password_file).unwrap();
    for statement in statements {
        statement.await.unwrap().unwrap();
    }
    let took = started.elapsed();
    // REFUSAL_WAIT is 2 s: a statement that waited for the file to change again took longer.
    assert!(
        took < Duration::from_millis(1800),
        "the statements took {took:?}"
    );
    service.close().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
