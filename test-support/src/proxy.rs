//! [`FaultProxy`]: a TCP proxy in front of the test server, to make a database come up late, go
//! away, or stop answering, without touching the shared server.

use service::config::{DatabaseConfig, DatabaseUrl};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Pass connections through to the server.
    Forward,
    /// Close the listening socket (connection refused) and every open connection.
    Refuse,
    /// Accept and keep connections, never answering.
    Blackhole,
}

/// A TCP proxy on a loopback port in front of a PostgreSQL server, for tests of outages:
/// connect through it ([`config_for`](Self::config_for)), then make the "server" refuse
/// connections, hang, or come back, while the real server keeps running for other tests.
///
/// ```no_run
/// # async fn example() {
/// use test_support::{FaultProxy, TestBackend, TestDatabase};
///
/// let db = TestDatabase::new(TestBackend::Postgres).await;
/// let proxy = FaultProxy::start(db.config()).await;
/// let service = service::DatabaseService::connect(&proxy.config_for(db.config())).await.unwrap();
/// proxy.refuse(); // the database is gone
/// assert!(!service.is_ready().await);
/// proxy.forward(); // and back
/// # }
/// ```
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// A proxy in front of the PostgreSQL server of `config`, forwarding from the start.
    ///
    /// # Panics
    ///
    /// When `config` is not a PostgreSQL URL with a host, or no loopback port is free.
    pub async fn start(config: &DatabaseConfig) -> Self {
        let url = url::Url::parse(&config.url.expose_secret()).expect("a PostgreSQL URL");
        let host = url.host_str().expect("a PostgreSQL URL with a host");
        let upstream = format!("{host}:{}", url.port().unwrap_or(5432));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port");
        let port = listener.local_addr().expect("a bound port").port();
        let (mode, watcher) = watch::channel(Mode::Forward);
        let task = tokio::spawn(accept_loop(Some(listener), port, upstream, watcher));
        Self { port, mode, task }
    }

    /// `config` pointed at this proxy instead of the server.
    ///
    /// # Panics
    ///
    /// When `config` is not a PostgreSQL URL.
    #[must_use]
    pub fn config_for(&self, config: &DatabaseConfig) -> DatabaseConfig {
        let mut url = url::Url::parse(&config.url.expose_secret()).expect("a PostgreSQL URL");
        url.set_host(Some("127.0.0.1"))
            .expect("a URL that has a host");
        url.set_port(Some(self.port))
            .expect("a URL that has a port");
        let mut proxied = config.clone();
        proxied.url = DatabaseUrl::parse(url.to_string()).expect("the proxied URL");
        proxied
    }

    /// Forward new connections (again). Connections held by [`blackhole`](Self::blackhole) are
    /// cut, as a recovered network would reset them.
    pub fn forward(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// The server "went away": open connections are cut, new ones refused.
    pub fn refuse(&self) {
        self.mode.send_replace(Mode::Refuse);
    }

    /// The server hangs: open connections stay open but nothing is answered.
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    mut listener: Option<TcpListener>,
    port: u16,
    upstream: String,
    mut mode: watch::Receiver<Mode>,
) {
    loop {
        let current = *mode.borrow_and_update();
        match (current, &listener) {
            (Mode::Refuse, Some(_)) => listener = None,
            (Mode::Refuse, None) => {}
            (_, None) => match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(reopened) => listener = Some(reopened),
                Err(_) => return,
            },
            (_, Some(_)) => {}
        }
        let Some(open) = &listener else {
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = open.accept() => {
                let Ok((client, _)) = accepted else { return };
                tokio::spawn(serve(client, upstream.clone(), mode.clone()));
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn serve(mut client: TcpStream, upstream: String, mut mode: watch::Receiver<Mode>) {
    if *mode.borrow_and_update() == Mode::Forward {
        let Ok(mut server) = TcpStream::connect(&upstream).await else {
            return;
        };
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
            _ = mode.wait_for(|m| *m != Mode::Forward) => {}
        }
    }
    // Blackholed: hold the client's socket without answering until the mode changes, then cut
    // it (a hung connection never comes back to life; the client has to reconnect).
    let _ = mode.wait_for(|m| *m != Mode::Blackhole).await;
}
