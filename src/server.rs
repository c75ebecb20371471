//! `arca server`: builds the store, the vault core and the HTTP server, and runs until SIGTERM
//! or SIGINT (graceful: in-flight requests finish, the store is flushed, keys are zeroized).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::core::clock::SystemClock;
use crate::core::crypto::Key;
use crate::core::roles::RolesSource;
use crate::core::token::generate_token;
use crate::core::Vault;
use crate::http::audit::Audit;
use crate::http::{self, AppState};
use crate::store::sled::SledStore;
use crate::store::Store;

/// Flags of `arca server`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// Development mode: plain HTTP, KV v2 at secret/, initialized and unsealed, root token printed.
    #[arg(long)]
    pub dev: bool,
    /// Production mode: read this TOML config (see config/arca.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "dev")]
    pub config: Option<PathBuf>,
    /// Address to listen on (dev default 127.0.0.1:8200). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory (dev default: a fresh temporary directory).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Fixed root token for dev mode.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ARCA_DEV_ROOT_TOKEN",
        hide_env_values = true
    )]
    pub dev_root_token: Option<String>,
    /// Log format: text (default) or json.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

/// Dev mode keeps its auto-unseal key and root token in the data directory so that a restart
/// with the same `--data-dir` comes back unsealed with the same token. Dev mode only.
#[derive(Serialize, Deserialize)]
struct DevState {
    auto_unseal_key: String,
    root_token: String,
}

const DEV_STATE_FILE: &str = "dev-mode.json";

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = if args.dev {
        Config::dev(&env_var).context("dev configuration")?
    } else {
        let path = args
            .config
            .as_ref()
            .context("arca server needs --dev or --config FILE")?;
        Config::load(path, &env_var)?
    };
    if let Some(l) = &args.listen {
        cfg.listen = l.clone();
    }
    if let Some(f) = &args.log_format {
        cfg.log_format = f.clone();
    }
    init_logging(&cfg);

    // Dev mode without --data-dir: a fresh temporary directory, removed at exit.
    let mut _tmp = None;
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    } else if args.dev {
        let t = tempfile::Builder::new().prefix("arca-dev-").tempdir()?;
        cfg.data_dir = t.path().to_path_buf();
        _tmp = Some(t);
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;

    let store: Arc<SledStore> = Arc::new(
        SledStore::open(&cfg.data_dir.join("store"), cfg.cache_capacity_mb << 20)
            .with_context(|| format!("opening the store in {}", cfg.data_dir.display()))?,
    );
    let alg = cfg.algorithm().context("encryption algorithm")?;

    let dev_state = if args.dev {
        Some(dev_state(
            &cfg.data_dir,
            &store,
            args.dev_root_token.as_deref(),
        )?)
    } else {
        None
    };
    let auto_key = match &dev_state {
        Some(d) => Some(parse_key(&d.auto_unseal_key).context("dev auto-unseal key")?),
        None => load_auto_unseal_key(&cfg)?,
    };
    let dyn_store: Arc<dyn Store> = store.clone();
    // The journal opens before anything is served: every request is recorded, sealed or not.
    let audit_dir = cfg
        .audit
        .dir
        .clone()
        .unwrap_or_else(|| cfg.data_dir.join("audit"));
    let audit = Arc::new(
        Audit::open(&audit_dir, cfg.audit.clone(), dyn_store.clone())
            .with_context(|| format!("opening the audit journal in {}", audit_dir.display()))?,
    );
    let vault = Arc::new(Vault::open(
        dyn_store,
        Arc::new(SystemClock),
        alg,
        auto_key.clone(),
    )?);

    if let Some(d) = &dev_state {
        if !vault.is_initialized() {
            vault.init(1, 1, Some(&d.root_token))?;
        }
        vault
            .auto_unseal()
            .context("dev mode unseal (was this data directory created in production mode?)")?;
    } else if auto_key.is_some() && vault.is_initialized() {
        vault.auto_unseal().context("auto-unseal")?;
    }

    // Rotation: the reconciler runs now and on every wake-up (it skips while sealed).
    let rotation =
        crate::scheduler::start(vault.clone(), &cfg.rotation).context("rotation scheduler")?;
    // Every persisted rotation step becomes a durable audit event.
    let step_audit = audit.clone();
    rotation.set_event_sink(Arc::new(move |action, fields| {
        step_audit.event_blocking(action, fields)
    }));
    audit.sync_keys(&vault);
    let state = actix_web::web::Data::new(AppState {
        vault: vault.clone(),
        limits: cfg.limits.clone(),
        audit: audit.clone(),
    });
    let res = actix_web::rt::System::new().block_on(serve(&cfg, state, dev_state.as_ref()));

    // Graceful end: a last signed checkpoint, keys dropped (zeroized), store flushed.
    audit.journal().close();
    vault.seal();
    store.sync().context("final flush")?;
    tracing::info!("arca stopped");
    res
}

async fn serve(
    cfg: &Config,
    state: actix_web::web::Data<AppState>,
    dev: Option<&DevState>,
) -> anyhow::Result<()> {
    let limits = cfg.limits.clone();
    let (upkeep_vault, upkeep_audit) = (state.vault.clone(), state.audit.clone());
    let roles = actix_web::web::Data::new(RolesSource::new(&cfg.roles_file));
    let roles_task = roles_watcher(state.vault.clone(), roles.get_ref().clone())?;
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .app_data(roles.clone())
            .configure(http::configure)
    })
    .on_connect(peer_certificates)
    .client_request_timeout(Duration::from_millis(limits.head_timeout_ms))
    .client_disconnect_timeout(Duration::from_secs(2))
    .shutdown_timeout(limits.shutdown_timeout_s);
    // Every request waits for its audit record's fsync (group commit): more workers than
    // cores keep the CPUs busy while requests wait on the disk; too many cost context
    // switches (each worker sleeps and is woken for its own few connections). Measured on
    // 2 cores (wrk, 32 connections): 2, 4 and 8 workers served 33k, 38k and 36k audited
    // reads/s and 12.8k, 12.9k and 11.5k token creates/s.
    let workers = if cfg.workers > 0 {
        cfg.workers
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .saturating_mul(2)
            .max(4)
    };
    server = server.workers(workers);
    let scheme = if cfg.tls_disable { "http" } else { "https" };
    let server = if cfg.tls_disable {
        server
            .bind(&cfg.listen)
            .with_context(|| format!("binding {}", cfg.listen))?
    } else {
        let client_ca =
            (!cfg.tls_client_ca_file.is_empty()).then(|| Path::new(&cfg.tls_client_ca_file));
        let tls = tls_config(
            Path::new(&cfg.tls_cert_file),
            Path::new(&cfg.tls_key_file),
            client_ca,
        )?;
        server
            .bind_rustls_0_23(&cfg.listen, tls)
            .with_context(|| format!("binding {}", cfg.listen))?
    };
    let addr: SocketAddr = *server.addrs().first().context("no listening address")?;
    actix_web::rt::spawn(roles_task);
    // Expired tokens are refused at once; this removes them from the store, at start and
    // every minute.
    spawn_upkeep(
        "token tidy",
        Duration::from_secs(60),
        upkeep_vault.clone(),
        upkeep_audit.clone(),
        |v, a| {
            let tokens = v.token_tidy()?;
            let secret_ids = v.approle_tidy()?;
            if tokens + secret_ids > 0 {
                let mut f = serde_json::Map::new();
                f.insert("path".into(), "auth/token/tidy".into());
                f.insert("tokens_removed".into(), tokens.into());
                f.insert("secret_ids_removed".into(), secret_ids.into());
                a.event_blocking("tidy", f);
            }
            Ok(())
        },
    );
    // The keyring's encryption count: its bound kept ahead in the store, and an AES-256-GCM
    // term replaced at its limit (see `Vault::keyring_maintain`).
    spawn_upkeep(
        "keyring upkeep",
        Duration::from_secs(10),
        upkeep_vault,
        upkeep_audit,
        |v, a| {
            if let crate::core::vault::KeyringUpkeep::Rotated(term) = v.keyring_maintain()? {
                let mut f = serde_json::Map::new();
                f.insert("path".into(), "sys/rotate".into());
                f.insert("term".into(), term.into());
                f.insert(
                    "reason".into(),
                    "AES-256-GCM term reached its encryption limit".into(),
                );
                a.event_blocking("keyring-rotate", f);
            }
            Ok(())
        },
    );
    announce(scheme, addr, cfg, dev)?;
    server.run().await.context("HTTP server")?;
    Ok(())
}

/// Runs `job` on a blocking thread at once and then every `every`, while the vault is
/// unsealed; failures are logged as `what`.
fn spawn_upkeep(
    what: &'static str,
    every: Duration,
    vault: Arc<Vault>,
    audit: Arc<Audit>,
    job: fn(&Vault, &Audit) -> Result<(), crate::core::Error>,
) {
    actix_web::rt::spawn(async move {
        let mut tick = actix_web::rt::time::interval(every);
        loop {
            tick.tick().await;
            if vault.is_sealed() {
                continue;
            }
            let (v, a) = (vault.clone(), audit.clone());
            match actix_web::rt::task::spawn_blocking(move || job(&v, &a)).await {
                Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed"),
                Err(e) => tracing::warn!(error = %e, "{what} task failed"),
                Ok(Ok(())) => {}
            }
        }
    });
}

fn announce(
    scheme: &str,
    addr: SocketAddr,
    cfg: &Config,
    dev: Option<&DevState>,
) -> anyhow::Result<()> {
    let url = format!("{scheme}://{addr}");
    let mut out = std::io::stdout().lock();
    match dev {
        Some(d) => {
            writeln!(
                out,
                "arca {} dev server listening on {url}",
                env!("CARGO_PKG_VERSION")
            )?;
            writeln!(out, "WARNING: dev mode is for trying arca out: plain HTTP, and the unseal key and root token")?;
            writeln!(
                out,
                "are kept in {} so a restart comes back unsealed.",
                cfg.data_dir.join(DEV_STATE_FILE).display()
            )?;
            writeln!(out, "Data directory: {}", cfg.data_dir.display())?;
            writeln!(out, "Root Token: {}", d.root_token)?;
            writeln!(out)?;
            writeln!(out, "export ARCA_ADDR='{url}'")?;
            writeln!(out, "export ARCA_TOKEN='{}'", d.root_token)?;
        }
        None => {
            writeln!(
                out,
                "arca {} server listening on {url}",
                env!("CARGO_PKG_VERSION")
            )?;
            writeln!(out, "Data directory: {}", cfg.data_dir.display())?;
            writeln!(out, "The vault starts sealed: `arca operator init` once, then `arca operator unseal` after every start.")?;
            writeln!(out)?;
            writeln!(out, "export ARCA_ADDR='{url}'")?;
        }
    }
    out.flush()?;
    tracing::info!(%addr, scheme, "listening");
    Ok(())
}

fn dev_state(
    dir: &Path,
    store: &SledStore,
    wanted_token: Option<&str>,
) -> anyhow::Result<DevState> {
    let path = dir.join(DEV_STATE_FILE);
    if path.exists() {
        let text = Zeroizing::new(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?,
        );
        let st: DevState =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if wanted_token.is_some_and(|t| t != st.root_token) {
            tracing::warn!("--dev-root-token differs from the root token of this data directory; keeping the existing one");
        }
        return Ok(st);
    }
    if store.get(b"sys/seal-config")?.is_some() {
        // An existing production store: refuse rather than guess.
        bail!(
            "{} holds a vault initialized in production mode; dev mode will not open it",
            dir.display()
        );
    }
    if let Some(t) = wanted_token {
        if t.is_empty() || t.len() > 256 || t.chars().any(|c| c.is_control() || c.is_whitespace()) {
            bail!("--dev-root-token must be 1 to 256 printable characters without spaces");
        }
    }
    let st = DevState {
        auto_unseal_key: hex::encode(Key::generate().expose()),
        root_token: wanted_token
            .map(str::to_string)
            .unwrap_or_else(|| generate_token().to_string()),
    };
    write_private(&path, serde_json::to_string(&st)?.as_bytes())?;
    Ok(st)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

fn parse_key(s: &str) -> anyhow::Result<Key> {
    let s = s.trim();
    let raw = Zeroizing::new(match hex::decode(s) {
        Ok(b) => b,
        Err(_) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .context("auto-unseal key must be 64 hex characters or base64 of 32 bytes")?
        }
    });
    Key::from_slice(&raw).context("auto-unseal key must be exactly 32 bytes")
}

fn load_auto_unseal_key(cfg: &Config) -> anyhow::Result<Option<Key>> {
    if let Ok(v) = std::env::var("ARCA_AUTO_UNSEAL_KEY") {
        let v = Zeroizing::new(v);
        if !v.is_empty() {
            return parse_key(&v).map(Some);
        }
    }
    if cfg.auto_unseal_key_file.is_empty() {
        return Ok(None);
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(&cfg.auto_unseal_key_file)
            .with_context(|| format!("reading {}", cfg.auto_unseal_key_file))?,
    );
    parse_key(&text).map(Some)
}

/// The roles file: checked now (a malformed file stops the start) and applied now if the vault
/// is unsealed; the returned task applies it again whenever the vault becomes unsealed (checked
/// every second) and on SIGHUP, logging the outcome. A rejected file changes nothing.
fn roles_watcher(
    vault: Arc<Vault>,
    src: RolesSource,
) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    src.check().context("roles_file")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut unsealed = !vault.is_sealed();
    if unsealed {
        apply_roles(&vault, &src, "start");
    }
    Ok(async move {
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(1));
        loop {
            let trigger = tokio::select! {
                _ = hup.recv() => Some("SIGHUP"),
                _ = tick.tick() => {
                    let now = !vault.is_sealed();
                    let became_unsealed = now && !unsealed;
                    unsealed = now;
                    became_unsealed.then_some("unseal")
                }
            };
            let Some(trigger) = trigger else { continue };
            if vault.is_sealed() {
                tracing::warn!("SIGHUP while sealed: the roles file is applied at the next unseal");
                continue;
            }
            let (v, s) = (vault.clone(), src.clone());
            let done = actix_web::rt::task::spawn_blocking(move || apply_roles(&v, &s, trigger));
            if let Err(e) = done.await {
                tracing::warn!(error = %e, "roles file task failed");
            }
        }
    })
}

fn apply_roles(vault: &Vault, src: &RolesSource, trigger: &str) {
    if src.path.is_none() {
        if trigger == "SIGHUP" {
            tracing::info!("SIGHUP: no roles_file is configured, nothing to reload");
        }
        return;
    }
    match vault.roles_reload(src) {
        Ok(r) => tracing::info!(
            trigger,
            roles = r.roles.len(),
            written = r.written.len(),
            removed = r.removed.len(),
            "roles file applied"
        ),
        Err(e) => tracing::error!(
            trigger,
            error = %e,
            "roles file rejected; the roles in force are unchanged"
        ),
    }
}

/// `on_connect`: hands the client certificate chain that rustls verified to the handlers
/// (`auth/cert/login`), as [`http::cert::PeerCertificates`].
fn peer_certificates(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() {
        if let Some(certs) = tls.get_ref().1.peer_certificates() {
            ext.insert(http::cert::PeerCertificates(
                certs.iter().map(|c| c.clone().into_owned()).collect(),
            ));
        }
    }
}

/// rustls with TLS 1.2 and 1.3 only (rustls implements nothing older). With `client_ca`, a
/// client certificate is requested but not required; one that is presented must chain to
/// that CA and be valid, or the handshake fails.
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> anyhow::Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert)
            .with_context(|| format!("opening tls_cert_file {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("parsing {}", cert.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", cert.display());
    }
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key)
            .with_context(|| format!("opening tls_key_file {}", key.display()))?,
    ))
    .with_context(|| format!("parsing {}", key.display()))?
    .with_context(|| format!("no private key in {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_pemfile::certs(&mut std::io::BufReader::new(
                std::fs::File::open(ca)
                    .with_context(|| format!("opening tls_client_ca_file {}", ca.display()))?,
            )) {
                let c = c.with_context(|| format!("parsing {}", ca.display()))?;
                roots
                    .add(c)
                    .with_context(|| format!("a CA certificate in {}", ca.display()))?;
            }
            if roots.is_empty() {
                bail!("no certificate in tls_client_ca_file {}", ca.display());
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let cfg = builder
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    Ok(cfg)
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log_level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.log_format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}
