//! `atmos dev`: everything on loopback with embedded defaults, a demo member, and delivery
//! captured to files, so a newcomer sends a first message in a minute.

pub mod capture;
pub mod ui;
pub mod zone;

use crate::config::Config;
use crate::members;
use crate::server::{self, Listening, ServeError};
use crate::store::members as member_rows;
use crate::store::{Store, StoreError};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The demo member's DID (valid did:plc syntax, not registered anywhere).
pub const DEMO_DID: &str = "did:plc:atmosdemoaaaaaaaaaaaaaaa";
/// The demo member's sending domain.
pub const DEMO_DOMAIN: &str = "demo.localhost";

/// Options of `atmos dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub data_dir: Option<PathBuf>,
    pub submission_listen: SocketAddr,
    pub inbound_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub ui: Ui,
    /// The UI built into the binary: served when there is no source checkout to build from.
    pub ui_bundle: Option<Arc<dyn crate::http::ui_bundle::UiBundle>>,
}

/// Where the web UI comes from.
#[derive(Debug, Clone)]
pub enum Ui {
    /// Built from the source checkout when missing or stale.
    Build,
    /// A build already made.
    Dir(PathBuf),
    /// No UI.
    None,
}

/// What dev mode prints once it is ready (one JSON line, then a human summary).
#[derive(Debug, Serialize)]
pub struct DevReady {
    pub submission: SocketAddr,
    pub inbound: SocketAddr,
    pub http: SocketAddr,
    pub did: &'static str,
    pub api_key: String,
    pub domain: &'static str,
    pub captured_dir: PathBuf,
    pub data_dir: PathBuf,
}

/// Why dev mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot create a data directory: {0}")]
    TempDir(std::io::Error),
    #[error("capture sink: {0}")]
    Capture(std::io::Error),
    #[error("demo member: {0}")]
    Member(#[from] members::MemberError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("dev DNS zone: {0}")]
    Zone(String),
}

/// Runs dev mode until `shutdown`.
pub async fn run(opts: DevOptions, shutdown: CancellationToken) -> Result<(), DevError> {
    // A temporary directory lives as long as this function.
    let (data_dir, _temp) = match opts.data_dir {
        Some(dir) => (dir, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("atmos-dev-")
                .tempdir()
                .map_err(DevError::TempDir)?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let captured_dir = data_dir.join("captured");
    std::fs::create_dir_all(&captured_dir).map_err(DevError::Capture)?;
    let sink = capture::start(
        "127.0.0.1:0".parse().expect("loopback"),
        captured_dir.clone(),
        shutdown.clone(),
    )
    .await
    .map_err(DevError::Capture)?;

    let mut config = Config::default();
    config.server.hostname = "atmos.localhost".into();
    config.server.operator_domain = "atmos.localhost".into();
    config.server.data_dir = data_dir.clone();
    config.server.shutdown_deadline = std::time::Duration::from_secs(5);
    config.smtp.submission_listen = opts.submission_listen;
    config.smtp.inbound_listen = opts.inbound_listen;
    config.http.listen = opts.http_listen;
    config.delivery.smarthost = sink.to_string();
    config.delivery.allow_private_destinations = true;
    config.delivery.retry_base = std::time::Duration::from_secs(5);
    // Delivery goes to the smarthost. Names under localhost. come from the embedded zone (the
    // demo domain's DKIM records, and what the wizard publishes); every other name is
    // forwarded, so real handles resolve.
    let zone = zone::DevZone::start().await.map_err(DevError::Zone)?;
    config.dns.nameservers = vec![zone.addr.to_string()];
    // A PDS on this machine (a local test PDS) is allowed.
    config.atproto.allow_private_endpoints = true;
    // `None`: served at /enroll on the HTTP listener; else why not.
    let page = None;
    let ui_note: Option<String> = match (&opts.ui, ui::workspace()) {
        (Ui::None, _) => Some("(off)".to_string()),
        (Ui::Dir(dir), _) => {
            config.web.dist_dir = Some(dir.clone());
            page
        }
        (Ui::Build, Some(root)) => match ui::ensure_built(&root) {
            Ok(dist) => {
                config.web.dist_dir = Some(dist);
                page
            }
            Err(e) => Some(format!("(not built: {e})")),
        },
        (Ui::Build, None) if opts.ui_bundle.is_some() => page,
        (Ui::Build, None) => Some("(no source checkout: pass --ui-dir with a UI build)".into()),
    };

    let api_key = demo_member(&config)?;
    publish_demo_records(&config, &zone).await?;
    let zone_addr = zone.addr;
    let ready = move |l: Listening| {
        let info = DevReady {
            submission: l.submission,
            inbound: l.inbound,
            http: l.http,
            did: DEMO_DID,
            api_key,
            domain: DEMO_DOMAIN,
            captured_dir: captured_dir.clone(),
            data_dir: data_dir.clone(),
        };
        println!("{}", serde_json::to_string(&info).unwrap_or_default());
        println!(
            "\nAtmosphere Mail dev relay is running.\n\
             Submission (STARTTLS + AUTH): {sub}\n\
             Inbound MX (bounces, complaints, replies): {mx}\n\
             HTTP API: http://{http}/v1/send\n\
             Labels: http://{http}/xrpc/com.atproto.label.queryLabels?uriPatterns=*\n\
             Web UI (sign in with your atproto handle): {ui}\n\
             Dev DNS zone (*.localhost): {zone}\n\
             Username: {did}\nPassword: {key}\n\
             Mail is captured, not sent: {cap}\n\n\
             Send a first message:\n  swaks --server {sub} --tls --auth PLAIN \\\n    --auth-user {did} --auth-password {key} \\\n    --from hello@{dom} --to you@example.com\n",
            sub = info.submission,
            mx = info.inbound,
            http = info.http,
            did = info.did,
            key = info.api_key,
            cap = info.captured_dir.display(),
            dom = info.domain,
            ui = ui_note
                .clone()
                .unwrap_or_else(|| format!("http://{}/enroll", info.http)),
            zone = zone_addr,
        );
    };
    let extras = server::Extras {
        // The binary's own UI only when nothing else was chosen (not with `--no-ui`).
        ui_bundle: opts
            .ui_bundle
            .clone()
            .filter(|_| matches!(opts.ui, Ui::Build) && config.web.dist_dir.is_none()),
        dev_zone: Some(zone),
        attestations: vec![(DEMO_DID.to_string(), demo_attestation(&config)?)],
    };
    server::serve_with(config, extras, shutdown, ready).await?;
    Ok(())
}

/// Puts the demo domain's ownership and DKIM records into the dev zone, so the labeler
/// verifies the demo member as it would a real one.
async fn publish_demo_records(config: &Config, zone: &zone::DevZone) -> Result<(), DevError> {
    let store = Store::open(&config.server.data_dir)?;
    let keys = store.with(|c| crate::store::dkim_keys::active(c, DEMO_DOMAIN))?;
    let records: Vec<(String, String)> =
        crate::records::member(config, DEMO_DID, DEMO_DOMAIN, &keys)
            .into_iter()
            .filter(|r| r.kind == "TXT")
            .map(|r| (r.name, r.value))
            .collect();
    zone.publish(&records).await;
    Ok(())
}

/// The attestation the demo member would publish: its domain, both selectors, relay member.
fn demo_attestation(config: &Config) -> Result<atmos_lexicons::Attestation, DevError> {
    let store = Store::open(&config.server.data_dir)?;
    let keys = store.with(|c| crate::store::dkim_keys::active(c, DEMO_DOMAIN))?;
    let selectors = keys.iter().map(|k| k.selector.clone()).collect();
    Ok(atmos_lexicons::Attestation::new(
        DEMO_DOMAIN,
        selectors,
        Some(true),
    ))
}

/// Makes sure the demo member exists and is active, with a fresh key to print.
fn demo_member(config: &Config) -> Result<String, DevError> {
    let store = Store::open(&config.server.data_dir)?;
    let secrets = crate::secrets::Secrets::load(&config.server.data_dir, None)
        .map_err(|e| members::MemberError::Keys(e.into()))?;
    let existing = store.with(|c| member_rows::get(c, DEMO_DID))?;
    if existing.is_none() {
        let added = members::add(
            &store,
            config,
            &secrets,
            DEMO_DID,
            DEMO_DOMAIN,
            Some("demo.localhost"),
            true,
            "dev",
        )?;
        if let Some(key) = added.api_key {
            return Ok(key);
        }
    }
    // The key is shown only once, so a restarted dev relay issues a new one.
    let key = crate::auth::generate_api_key();
    let hash = crate::auth::hash_api_key(&key).map_err(members::MemberError::Hash)?;
    store.with(|c| member_rows::set_api_key_hash(c, DEMO_DID, &hash))?;
    Ok(key)
}
