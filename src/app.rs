//! Wiring only: config, listeners, signals, reload, the edge, shutdown.
//!
//! The caller binds (so tests pass listeners on port 0 and their own shutdown
//! token and reload channel, as mini-redis does); `serve_from_file` is what the
//! `serve` command runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::certs::acme::AcmeIssuer;
use crate::certs::local::{self, LocalIssuer};
use crate::certs::manager::{Manager, StatusCounts};
use crate::certs::{Issuer, files};
use crate::config::{self, Config, TlsMode};
use crate::http::{Hooks, NoHooks, Shared};
use crate::metrics::{self, Metrics};
use crate::server::{self, Listener};
use crate::signals;
use crate::sources;
use crate::store::{SledStore, Store};
use crate::tls::shared_challenge::SharedChallenges;
use crate::tls::{CertResolver, EdgeHooks, TlsAcceptor};
use crate::{reload, systemd};

/// Certificates the local CA issues at once (each is a key generation and a signature).
const LOCAL_CONCURRENT_ISSUES: usize = 16;

/// Listening sockets, bound before anything else starts.
pub struct Bound {
    pub http: Vec<TcpListener>,
    pub https: Vec<TcpListener>,
}

impl Bound {
    /// Binds every address in the config (HTTPS only when TLS is on).
    ///
    /// # Errors
    /// The first address that cannot be bound, named.
    pub async fn from_config(config: &Config) -> anyhow::Result<Bound> {
        let mut http = Vec::new();
        for addr in &config.server.http_listen {
            http.push(bind(*addr).await?);
        }
        let mut https = Vec::new();
        if config.tls.mode != TlsMode::Off {
            for addr in &config.server.https_listen {
                https.push(bind(*addr).await?);
            }
        }
        Ok(Bound { http, https })
    }
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .with_context(|| format!("creating a socket for {addr}"))?;
    socket.set_reuseaddr(true).context("setting SO_REUSEADDR")?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    socket
        .listen(1024)
        .with_context(|| format!("listening on {addr}"))
}

/// What `run` needs.
pub struct RunOptions {
    pub config_path: PathBuf,
    pub config: Config,
    pub bound: Bound,
    pub shutdown: CancellationToken,
    /// Each message reloads the config file (SIGHUP in production).
    pub reload: mpsc::Receiver<()>,
}

/// The `serve` command: load, bind, handle signals, run until SIGTERM/SIGINT.
///
/// # Errors
/// A `ConfigError` (exit 78) or a startup failure such as a port in use.
pub async fn serve_from_file(path: &Path) -> anyhow::Result<()> {
    let config = config::load(path)?;
    for w in &config.warnings {
        tracing::warn!(key = %w.key, reason = %w.reason, "config warning");
    }
    let bound = Bound::from_config(&config).await?;
    crate::privileges::drop_root(config.server.user.as_deref(), &config.server.state_dir)?;
    let shutdown = CancellationToken::new();
    let (reload_tx, reload) = mpsc::channel(1);
    signals::spawn(shutdown.clone(), reload_tx).context("installing signal handlers")?;
    run(RunOptions {
        config_path: path.to_owned(),
        config,
        bound,
        shutdown,
        reload,
    })
    .await
}

/// Serves until `shutdown` fires, then drains and returns.
///
/// # Errors
/// Startup failures (TLS setup, state directory).
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let RunOptions {
        config_path,
        config,
        bound,
        shutdown,
        mut reload,
    } = opts;
    let tls_mode = config.tls.mode;
    let state_dir = config.server.state_dir.clone();
    let acme_config = config.acme.clone();
    let key_type = config.tls.key_type;
    let state_backend = config.state.clone();
    let config = Arc::new(config);
    let (config_tx, config_rx) = watch::channel(config.clone());
    // Domain sources: the file's config plus every source's list, fetched
    // once before anything serves, so the first answers know every domain.
    let publisher = sources::Publisher::new(config_tx, &state_dir);
    publisher.set_base(config).await;
    publisher.fetch_all_once().await;
    publisher.spawn_refreshers(shutdown.clone());

    let resolver = Arc::new(CertResolver::new());
    let metrics = Arc::new(Metrics::new());
    let mut manager_task = None;
    let mut store_for_shutdown: Option<Arc<dyn Store>> = None;
    let mut status_counts: Option<watch::Receiver<StatusCounts>> = None;
    let mut shared_challenges = None;
    let mut store_up: Option<watch::Receiver<bool>> = None;
    match tls_mode {
        TlsMode::Off => {}
        TlsMode::Files => {
            for problem in files::load_into(&config_rx.borrow(), &resolver) {
                tracing::error!(problem = %problem, "certificate file not loaded");
            }
        }
        TlsMode::Acme | TlsMode::Local => {
            let opened = open_store(&state_backend, &state_dir)?;
            let store = opened.store;
            if store.is_shared() {
                shared_challenges = Some(Arc::new(SharedChallenges::new(
                    store.clone(),
                    resolver.clone(),
                )));
            }
            if let Some(up) = opened.up {
                spawn_store_gauge(up.clone(), metrics.clone(), shutdown.clone());
                store_up = Some(up);
            }
            let issuer: Arc<dyn Issuer> = if tls_mode == TlsMode::Local {
                let local = LocalIssuer::open(&store, &state_dir, key_type)?;
                tracing::info!(ca_file = %local::ca_file(&state_dir).display(), "local CA: clients must trust this file");
                Arc::new(local)
            } else {
                Arc::new(
                    AcmeIssuer::new(
                        acme_config.clone(),
                        key_type,
                        store.clone(),
                        resolver.clone(),
                    )
                    .with_metrics(metrics.clone()),
                )
            };
            let mut manager = Manager::new(
                store.clone(),
                resolver.clone(),
                issuer,
                config_rx.clone(),
                state_dir.clone(),
            )
            .with_metrics(metrics.clone());
            if let Some(changes) = opened.changes {
                manager = manager.with_changes(changes);
            }
            manager.deploy_stored();
            status_counts = Some(manager.status_counts());
            // The local CA has no rate limits: only CPU bounds it.
            let (concurrent, per_3h) = if tls_mode == TlsMode::Local {
                (LOCAL_CONCURRENT_ISSUES, u32::MAX)
            } else {
                (
                    acme_config.max_concurrent_orders,
                    acme_config.new_orders_per_3h,
                )
            };
            manager_task = Some(tokio::spawn(manager.run(
                concurrent,
                per_3h,
                shutdown.clone(),
            )));
            store_for_shutdown = Some(store);
        }
    }

    let mut listeners = Vec::new();
    let heartbeat = systemd::Heartbeat::new(bound.http.len() + bound.https.len());
    for tcp in bound.http {
        tracing::info!(listen = %display_addr(&tcp), scheme = "http", "listening");
        listeners.push(Listener { tcp, tls: None });
    }
    if !bound.https.is_empty() {
        let acceptor: Arc<dyn server::Acceptor> = Arc::new(match &shared_challenges {
            Some(shared) => TlsAcceptor::new(resolver.clone())
                .with_metrics(metrics.clone())
                .with_shared_challenges(shared.clone()),
            None => TlsAcceptor::new(resolver.clone()).with_metrics(metrics.clone()),
        });
        for tcp in bound.https {
            tracing::info!(listen = %display_addr(&tcp), scheme = "https", "listening");
            listeners.push(Listener {
                tcp,
                tls: Some(acceptor.clone()),
            });
        }
    }
    let hooks: Arc<dyn Hooks> = if tls_mode == TlsMode::Off {
        Arc::new(NoHooks)
    } else {
        Arc::new(EdgeHooks {
            resolver: resolver.clone(),
            shared: shared_challenges.clone(),
        })
    };
    let metrics_listen = config_rx.borrow().server.metrics_listen;
    if let Some(addr) = metrics_listen {
        let listener = bind(addr).await?;
        tracing::info!(listen = %display_addr(&listener), scheme = "http", "metrics listening");
        let notes_publisher = publisher.clone();
        let notes_store_up = store_up.clone();
        let notes: metrics::ReadyNotes = Arc::new(move || {
            let mut notes: Vec<String> = notes_publisher
                .failing()
                .into_iter()
                .map(|(id, e)| {
                    format!("domain source of provider {id} failing (last good list served): {e}")
                })
                .collect();
            if notes_store_up.as_ref().is_some_and(|up| !*up.borrow()) {
                notes.push(
                    "shared state database unreachable: serving from memory, no orders until it returns"
                        .to_owned(),
                );
            }
            notes
        });
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            config_rx.clone(),
            resolver.clone(),
            notes,
            shutdown.clone(),
        ));
        if tls_mode != TlsMode::Off {
            spawn_certificate_gauges(
                metrics.clone(),
                config_rx.clone(),
                store_for_shutdown.clone(),
                resolver.clone(),
                status_counts.clone(),
                shutdown.clone(),
            );
        }
    }
    let shared = Arc::new(Shared {
        config: config_rx,
        hooks,
        directories: crate::directory::Registry::default(),
        metrics: metrics.clone(),
        heartbeat: heartbeat.clone(),
    });
    systemd::spawn_watchdog(heartbeat, shutdown.clone());

    let status_inputs = StatusInputs {
        resolver: resolver.clone(),
        publisher: publisher.clone(),
        counts: status_counts.clone(),
        store_up: store_up.clone(),
    };
    systemd::ready(&status_inputs.line(&shared.config.borrow()));
    tracing::info!("ready");
    reload::record(&reload::Outcome {
        pid: std::process::id(),
        generation: 0,
        applied: true,
        problems: Vec::new(),
    });
    let reloader = {
        let shutdown = shutdown.clone();
        let reload_metrics = metrics.clone();
        let config_now = shared.config.clone();
        let publisher = publisher.clone();
        let status_inputs = status_inputs.clone();
        let resolver = resolver.clone();
        tokio::spawn(async move {
            let mut generation = 0;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    msg = reload.recv() => match msg {
                        Some(()) => {
                            systemd::reloading();
                            generation += 1;
                            let old = config_now.borrow().clone();
                            let result = match reload::apply(&config_path, &old).await {
                                Ok(new) => {
                                    let domains = new.domains().count();
                                    publisher.set_base(Arc::new(new)).await;
                                    // Sources are read again on SIGHUP too.
                                    publisher.fetch_all_once().await;
                                    tracing::info!(domains, "config reloaded");
                                    Ok(())
                                }
                                Err(problems) => Err(problems),
                            };
                            reload_metrics.reload(result.is_ok());
                            if result.is_ok() && tls_mode == TlsMode::Files {
                                for problem in files::load_into(&config_now.borrow(), &resolver) {
                                    tracing::error!(problem = %problem, "certificate file not reloaded; the old certificate keeps serving");
                                }
                            }
                            reload::record(&reload::Outcome {
                                pid: std::process::id(),
                                generation,
                                applied: result.is_ok(),
                                problems: result.err().unwrap_or_default(),
                            });
                            systemd::ready(&status_inputs.line(&config_now.borrow()));
                        }
                        None => { shutdown.cancelled().await; break; }
                    },
                }
            }
        })
    };
    spawn_status_updates(
        shared.config.clone(),
        status_inputs,
        metrics.clone(),
        shutdown.clone(),
    );
    // STOPPING=1 as soon as shutdown starts, not after the drain; and once
    // more when serving ends, in case that task never ran (an idle server
    // can finish before it is polled).
    let stopping_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let shutdown = shutdown.clone();
        let sent = stopping_sent.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            if !sent.swap(true, std::sync::atomic::Ordering::SeqCst) {
                systemd::stopping();
            }
        });
    }

    server::serve(listeners, shared, shutdown.clone()).await;
    if !stopping_sent.swap(true, std::sync::atomic::Ordering::SeqCst) {
        systemd::stopping();
    }
    reloader.abort();
    if let Some(task) = manager_task {
        let _ = task.await;
    }
    if let Some(store) = store_for_shutdown {
        store.flush().context("flushing the state database")?;
    }
    tracing::info!("stopped");
    Ok(())
}

fn display_addr(tcp: &TcpListener) -> String {
    tcp.local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

/// How often the certificate gauges are recomputed.
const CERTIFICATE_GAUGES_REFRESH: Duration = Duration::from_secs(30);

/// Keeps `mailconfd_certificates` and `mailconfd_certificate_expiry_seconds`
/// current: from the store's records (ACME, local CA), or from the deployed
/// certificates themselves (files mode).
fn spawn_certificate_gauges(
    metrics: Arc<Metrics>,
    mut config: watch::Receiver<Arc<Config>>,
    store: Option<Arc<dyn Store>>,
    resolver: Arc<CertResolver>,
    mut counts: Option<watch::Receiver<StatusCounts>>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CERTIFICATE_GAUGES_REFRESH);
        let mut valid_before = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                changed = config.changed() => if changed.is_err() { return },
                // A certificate deployed or lost: recompute now, not at the next tick.
                changed = async {
                    match counts.as_mut() {
                        Some(c) => c.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if changed.is_err() {
                        counts = None;
                        continue;
                    }
                    let valid = counts.as_ref().map(|c| c.borrow().certificates_valid);
                    if valid == valid_before {
                        continue;
                    }
                    valid_before = valid;
                }
            }
            let snapshot = config.borrow_and_update().clone();
            let store = store.clone();
            let resolver = resolver.clone();
            // Store reads and certificate parsing: off the async workers.
            let domains = tokio::task::spawn_blocking(move || {
                // The configured CA's certificate (another CA's, still serving
                // after a switch, is not what clients will trust).
                let issuer = crate::certs::issuer_of(&snapshot);
                snapshot
                    .domains()
                    .map(|(d, _)| {
                        let not_after = match &store {
                            Some(store) => {
                                store.cert(d, &issuer).ok().flatten().map(|c| c.not_after)
                            }
                            None => resolver.domain_key(d).and_then(|k| {
                                let leaf = k.cert.first()?;
                                let (_, cert) =
                                    x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
                                Some(cert.validity().not_after.timestamp())
                            }),
                        };
                        (d.to_owned(), not_after)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            if let Ok(domains) = domains {
                metrics.set_certificates(&domains, crate::certs::unix_now());
            }
        }
    });
}

/// How often the `STATUS=` line is refreshed (certificates arrive in the
/// background); it is sent only when it changed.
const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// What the `STATUS=` line is made of.
#[derive(Clone)]
struct StatusInputs {
    resolver: Arc<CertResolver>,
    publisher: Arc<sources::Publisher>,
    counts: Option<watch::Receiver<StatusCounts>>,
    /// A shared state store's reachability.
    store_up: Option<watch::Receiver<bool>>,
}

impl StatusInputs {
    /// The status line, with failing domain sources named.
    fn line(&self, config: &Config) -> String {
        let counts = self.counts.as_ref().map(|c| *c.borrow());
        let mut line = systemd::status_line(config, &self.resolver, counts.as_ref());
        let failing = self.publisher.failing();
        if let Some((id, _)) = failing.first() {
            line.push_str(&format!(
                "; {} domain source(s) failing (provider {id}), serving the last good list",
                failing.len()
            ));
        }
        if self.store_up.as_ref().is_some_and(|up| !*up.borrow()) {
            line.push_str("; shared state database unreachable, serving from memory");
        }
        line
    }
}

/// Keeps `STATUS=` and the issuance queue gauge current: on config changes,
/// on the certificate manager's counts, and every `STATUS_REFRESH`.
fn spawn_status_updates(
    mut config: watch::Receiver<Arc<Config>>,
    inputs: StatusInputs,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut last = String::new();
        let mut tick = tokio::time::interval(STATUS_REFRESH);
        let mut counts = inputs.counts.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
                changed = config.changed() => if changed.is_err() { return },
                changed = async {
                    match counts.as_mut() {
                        Some(c) => c.changed().await,
                        None => std::future::pending().await,
                    }
                } => if changed.is_err() { counts = None },
            }
            if let Some(c) = &counts {
                let queued = i64::try_from(c.borrow().orders_queued).unwrap_or(i64::MAX);
                metrics.issuance_queue_depth.set(queued);
            }
            let line = inputs.line(&config.borrow_and_update());
            if line != last {
                systemd::status(&line);
                last = line;
            }
        }
    });
}

/// The configured state store, and with a shared one its change feed and
/// reachability.
struct OpenedStore {
    store: Arc<dyn Store>,
    changes: Option<tokio::sync::mpsc::Receiver<String>>,
    up: Option<watch::Receiver<bool>>,
}

fn open_store(
    backend: &crate::config::state::StateBackend,
    state_dir: &std::path::Path,
) -> anyhow::Result<OpenedStore> {
    use crate::config::state::StateBackend;
    match backend {
        StateBackend::Sled => Ok(OpenedStore {
            store: Arc::new(SledStore::open(state_dir).context("opening the state database")?),
            changes: None,
            up: None,
        }),
        StateBackend::Postgres(settings) => {
            let store = crate::store::PostgresStore::open(settings, state_dir)
                .context("opening the shared state database")?;
            let changes = store.changes();
            let up = store.up();
            Ok(OpenedStore {
                store: Arc::new(store),
                changes: Some(changes),
                up: Some(up),
            })
        }
    }
}

/// Mirrors the shared store's reachability into `state_store_up`.
fn spawn_store_gauge(
    mut up: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            metrics
                .state_store_up
                .set(i64::from(*up.borrow_and_update()));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = up.changed() => if changed.is_err() { return },
            }
        }
    });
}
