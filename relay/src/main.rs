//! The `atmos` binary: the CLI edge (BEHAVIOUR §14). Exit codes: 0 ok, 1 runtime error, 2 usage or
//! configuration error naming the bad key.

use anyhow::Context;
use atmos_relay::config::Config;
use atmos_relay::members::{self, Transition};
use atmos_relay::secrets::{self, Secrets};
use atmos_relay::store::Store;
use atmos_relay::store::members::MemberState;
use atmos_relay::{dev, operator, server};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "atmos",
    version,
    about = "Atmosphere Mail: a cooperative email relay for atproto identities"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run everything the configuration enables.
    Serve {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
    },
    /// Run on loopback with embedded defaults, a demo member and captured delivery.
    Dev {
        /// Keep state here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Submission listener address.
        #[arg(long, default_value = "127.0.0.1:1587")]
        submission_listen: std::net::SocketAddr,
        /// Inbound MX listener address.
        #[arg(long, default_value = "127.0.0.1:2525")]
        inbound_listen: std::net::SocketAddr,
        /// HTTP listener address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_listen: std::net::SocketAddr,
        /// Serve the UI from this build instead of building it from the checkout.
        #[arg(long)]
        ui_dir: Option<PathBuf>,
        /// Do not build or serve the web UI.
        #[arg(long)]
        no_ui: bool,
    },
    /// Manage members.
    Member {
        #[command(subcommand)]
        command: MemberCmd,
    },
    /// The operator's pool-domain DKIM keys.
    Operator {
        #[command(subcommand)]
        command: OperatorCmd,
    },
    /// The co-located atproto labeler.
    Labeler {
        #[command(subcommand)]
        command: LabelerCmd,
    },
    /// The rules engine.
    Rules {
        #[command(subcommand)]
        command: RulesCmd,
    },
    /// A consistent copy of the stores and the KEK file, taken while the relay runs. Restore by
    /// copying the files into an empty data_dir before `atmos serve`.
    Backup {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
        /// A new (or empty) directory.
        dest: PathBuf,
    },
    /// The confidential OAuth client (`[web] public_url`).
    Oauth {
        #[command(subcommand)]
        command: OauthCmd,
    },
}

#[derive(Subcommand)]
enum OauthCmd {
    /// Publish a next client key at /oauth/jwks.json (it does not sign yet). Once authorization
    /// servers have had time to see it (their JWKS caches; a day is ample), run again with
    /// --promote: it signs from then on and the old key is no longer published.
    RotateKey {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        promote: bool,
    },
}

#[derive(Subcommand)]
enum RulesCmd {
    /// Check rule files and run their test fixtures (no files: the built-in rules). Prints JSON;
    /// exits 1 when a fixture fails, 2 when a file is invalid.
    Test { files: Vec<std::path::PathBuf> },
}

#[derive(Subcommand)]
enum LabelerCmd {
    /// Print the `app.bsky.labeler.service` record with the label value definitions.
    ServiceRecord,
    /// Print an `email.atmos.attestation` record for a member to publish in its repository.
    Attestation {
        #[arg(long)]
        domain: String,
        /// DKIM selector (repeat for each).
        #[arg(long = "selector", required = true)]
        selectors: Vec<String>,
        #[arg(long)]
        relay_member: bool,
    },
    /// Print the labeler's DID, signing key and DID document (the key is made on first use).
    Identity {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Print the operator's DNS records as JSON (keys are made on first use).
    Dns {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
    },
    /// Make new dated DKIM keys and sign with them from now on; old records stay listed 48 h.
    RotateDkim {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum MemberCmd {
    /// Enrol a member with a sending domain; prints the API key once.
    Add {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        did: String,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        handle: Option<String>,
        /// Approve at once (skip the pending state).
        #[arg(long)]
        approve: bool,
    },
    /// Set (or with no --address, clear) where bounce notices for a sending domain go.
    ForwardTo {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
        #[arg(long)]
        domain: String,
        #[arg(long)]
        address: Option<String>,
    },
    /// Add or remove an internal label (highly_trusted, burst_warming, ...).
    Label {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
        did: String,
        #[arg(long, conflicts_with = "remove")]
        add: Option<String>,
        #[arg(long)]
        remove: Option<String>,
        /// With --add: the label expires after this long (e.g. 24h).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// A new API key for a member (printed once); the old one stops working at once.
    NewKey {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
        did: String,
    },
    /// Approve a domain an active member added (it cannot send before).
    ApproveDomain {
        #[arg(long, env = "ATMOS_CONFIG")]
        config: PathBuf,
        domain: String,
    },
    /// Approve a pending member.
    Approve(StateArgs),
    /// Suspend a member.
    Suspend(StateArgs),
    /// Reactivate a suspended member.
    Reactivate(StateArgs),
}

#[derive(clap::Args)]
struct StateArgs {
    #[arg(long, env = "ATMOS_CONFIG")]
    config: PathBuf,
    did: String,
    #[arg(long)]
    reason: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    atmos_relay::logging::init();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("atmos: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("atmos: {e:#}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Runtime(e)
    }
}

/// The web UI this binary was compiled beside (Trunk's `dist/`, when it had been built): the
/// binary carries its pages, so an install is one file.
#[derive(rust_embed::RustEmbed, Debug)]
#[folder = "../dist"]
#[allow_missing = true]
struct EmbeddedUi;

impl atmos_relay::http::ui_bundle::UiBundle for EmbeddedUi {
    fn files(&self) -> Vec<(String, std::borrow::Cow<'static, [u8]>)> {
        Self::iter()
            .filter_map(|path| Self::get(&path).map(|f| (path.into_owned(), f.data)))
            .collect()
    }
}

/// The embedded UI, when the build had one.
fn embedded_ui() -> Option<std::sync::Arc<dyn atmos_relay::http::ui_bundle::UiBundle>> {
    EmbeddedUi::get("index.html").map(|_| {
        std::sync::Arc::new(EmbeddedUi)
            as std::sync::Arc<dyn atmos_relay::http::ui_bundle::UiBundle>
    })
}

fn load_config(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(Some(path), std::env::vars()).map_err(|e| Failure::Usage(e.to_string()))
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Cmd::Serve { config } => {
            let config = load_config(&config)?;
            runtime()?.block_on(async {
                let shutdown = shutdown_on_signal();
                let extras = server::Extras {
                    ui_bundle: embedded_ui(),
                    ..Default::default()
                };
                server::serve_with(config, extras, shutdown, |l| {
                    println!("{}", serde_json::json!({ "listening": l }));
                })
                .await
                .context("relay failed")
            })?;
        }
        Cmd::Dev {
            data_dir,
            submission_listen,
            inbound_listen,
            http_listen,
            ui_dir,
            no_ui,
        } => {
            runtime()?.block_on(async {
                let shutdown = shutdown_on_signal();
                dev::run(
                    dev::DevOptions {
                        data_dir,
                        submission_listen,
                        inbound_listen,
                        http_listen,
                        ui: match (no_ui, ui_dir) {
                            (true, _) => dev::Ui::None,
                            (false, Some(dir)) => dev::Ui::Dir(dir),
                            (false, None) => dev::Ui::Build,
                        },
                        ui_bundle: embedded_ui(),
                    },
                    shutdown,
                )
                .await
                .context("dev relay failed")
            })?;
        }
        Cmd::Member { command } => member(command)?,
        Cmd::Backup { config, dest } => {
            let config = load_config(&config)?;
            let copied = atmos_relay::backup::backup(&config.server.data_dir, &dest)
                .map_err(|e| Failure::Runtime(e.into()))?;
            print_json(&serde_json::json!({ "backup": dest, "files": copied }))?;
        }
        Cmd::Oauth {
            command: OauthCmd::RotateKey { config, promote },
        } => {
            let config = load_config(&config)?;
            let (store, secrets) = open_state(&config)?;
            let keys = atmos_relay::oauth::keys::ClientKeys::open(
                std::sync::Arc::new(store),
                std::sync::Arc::new(secrets),
            )
            .context("opening the client keys")?;
            let kid = if promote {
                keys.promote().map_err(|e| Failure::Usage(e.to_string()))?
            } else {
                keys.rotate().context("making the next key")?
            };
            let (signing, _) = keys.signing().context("reading the signing key")?;
            let published = keys.jwks().context("reading the keys")?;
            print_json(&serde_json::json!({
                if promote { "promoted" } else { "next" }: kid,
                "signing": signing,
                "published": published["keys"].as_array().map(|k| k.iter().filter_map(|k| k["kid"].as_str()).collect::<Vec<_>>()),
            }))?;
        }
        Cmd::Operator { command } => operator_cmd(command)?,
        Cmd::Labeler { command } => labeler_cmd(command)?,
        Cmd::Rules {
            command: RulesCmd::Test { files },
        } => {
            let rules = atmos_relay::rules::spec::Rules::load(&files)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            let results = atmos_relay::rules::fixtures::run_all(std::sync::Arc::new(rules));
            let passed = results.iter().all(|r| r.passed);
            print_json(&serde_json::json!({ "passed": passed, "tests": results }))?;
            if !passed {
                return Err(Failure::Runtime(anyhow::anyhow!("rule tests failed")));
            }
        }
    }
    Ok(())
}

/// Opens the store and the key-encryption key of a configuration.
fn open_state(config: &Config) -> Result<(Store, Secrets), Failure> {
    let store = Store::open(&config.server.data_dir).context("opening the store")?;
    let secrets = Secrets::load(
        &config.server.data_dir,
        std::env::var(secrets::KEK_ENV).ok(),
    )
    .context("loading the key-encryption key")?;
    Ok((store, secrets))
}

fn operator_cmd(cmd: OperatorCmd) -> Result<(), Failure> {
    let (path, rotate) = match cmd {
        OperatorCmd::Dns { config } => (config, false),
        OperatorCmd::RotateDkim { config } => (config, true),
    };
    let config = load_config(&path)?;
    let (store, secrets) = open_state(&config)?;
    operator::ensure_keys(&store, &secrets, &config).context("making operator keys")?;
    if rotate {
        let new = operator::rotate(&store, &secrets, &config).context("rotating operator keys")?;
        eprintln!(
            "atmos: new operator selectors: {}",
            new.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let records = operator::dns_records(&store, &config).context("listing records")?;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({ "dns_records": records }))
            .context("printing")?
    );
    Ok(())
}

fn print_json(v: &serde_json::Value) -> Result<(), Failure> {
    println!("{}", serde_json::to_string_pretty(v).context("printing")?);
    Ok(())
}

fn labeler_cmd(cmd: LabelerCmd) -> Result<(), Failure> {
    match cmd {
        LabelerCmd::ServiceRecord => print_json(&atmos_labeler::service_record::record(
            atmos_lexicons::Datetime::now().as_str(),
        )),
        LabelerCmd::Attestation {
            domain,
            selectors,
            relay_member,
        } => {
            let a =
                atmos_lexicons::Attestation::new(&domain, selectors, relay_member.then_some(true));
            a.validate(&a.domain)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            print_json(&serde_json::to_value(&a).context("encoding")?)
        }
        LabelerCmd::Identity { config } => {
            let config = load_config(&config)?;
            let (_, secrets) = open_state(&config)?;
            let identity = atmos_relay::identity::Resolver::from_config(&config)
                .map_err(|e| Failure::Runtime(anyhow::anyhow!(e)))?;
            let labeler = atmos_relay::labeler_host::open(
                &config,
                std::sync::Arc::new(secrets),
                std::sync::Arc::new(identity),
            )
            .context("opening the labeler")?;
            print_json(&serde_json::json!({
                "did": labeler.did(),
                "signingKey": atmos_labeler::identity::multikey(labeler.verifying_key()),
                "didDocument": labeler.did_document(),
            }))
        }
    }
}

fn member(cmd: MemberCmd) -> Result<(), Failure> {
    let usage_or_runtime = |e: members::MemberError| match e {
        members::MemberError::Store(_)
        | members::MemberError::Hash(_)
        | members::MemberError::Keys(_) => Failure::Runtime(anyhow::Error::new(e)),
        other => Failure::Usage(other.to_string()),
    };
    let (args, t) = match cmd {
        MemberCmd::Add {
            config,
            did,
            domain,
            handle,
            approve,
        } => {
            let config = load_config(&config)?;
            let (store, secrets) = open_state(&config)?;
            let added = members::add(
                &store,
                &config,
                &secrets,
                &did,
                &domain,
                handle.as_deref(),
                approve,
                "cli",
            )
            .map_err(usage_or_runtime)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&added).context("printing")?
            );
            return Ok(());
        }
        MemberCmd::ForwardTo {
            config,
            domain,
            address,
        } => {
            let config = load_config(&config)?;
            let address = address
                .as_deref()
                .map(atmos_relay::address::Mailbox::parse)
                .transpose()
                .map_err(|e| Failure::Usage(format!("--address is not a valid address: it {e}")))?;
            let domain = atmos_relay::address::Domain::parse(&domain)
                .map_err(|e| Failure::Usage(format!("--domain {domain:?} {e}")))?;
            let store = Store::open(&config.server.data_dir).context("opening the store")?;
            let owner = store
                .with(|c| {
                    let Some(did) = atmos_relay::store::members::domain_owner(c, domain.as_str())?
                    else {
                        return Ok(None);
                    };
                    atmos_relay::store::members::get(c, &did)
                })
                .context("reading the domain's member")?;
            if let Some(m) = owner.filter(|m| m.state != MemberState::Active)
                && address.is_some()
            {
                return Err(Failure::Usage(format!(
                    "MEMBER_NOT_ACTIVE: {} is {}; forwarding is for active members",
                    m.did,
                    m.state.as_str()
                )));
            }
            let found = store
                .with(|c| {
                    atmos_relay::store::members::set_forward_to(
                        c,
                        domain.as_str(),
                        address.as_ref(),
                    )
                })
                .context("updating the domain")?;
            if !found {
                return Err(Failure::Usage(format!("no sending domain {domain}")));
            }
            println!(
                "{}",
                serde_json::json!({ "domain": domain, "forward_to": address })
            );
            return Ok(());
        }
        MemberCmd::Label {
            config,
            did,
            add,
            remove,
            expires_in,
        } => {
            let config = load_config(&config)?;
            let store = Store::open(&config.server.data_dir).context("opening the store")?;
            let expires_at = match expires_in.as_deref().map(humantime::parse_duration) {
                None => None,
                Some(Ok(d)) => Some(atmos_relay::store::now_ms() + d.as_millis() as i64),
                Some(Err(e)) => return Err(Failure::Usage(format!("--expires-in: {e}"))),
            };
            let (label, adding) = match (add, remove) {
                (Some(l), None) => (l, true),
                (None, Some(l)) => (l, false),
                _ => return Err(Failure::Usage("give --add LABEL or --remove LABEL".into())),
            };
            let changed = members::set_label(&store, &did, &label, adding, expires_at, "cli")
                .map_err(usage_or_runtime)?;
            println!(
                "{}",
                serde_json::json!({ "did": did, "label": label, "added": adding, "changed": changed })
            );
            return Ok(());
        }
        MemberCmd::NewKey { config, did } => {
            let config = load_config(&config)?;
            let store = Store::open(&config.server.data_dir).context("opening the store")?;
            let key = members::new_key(&store, &did, "cli").map_err(usage_or_runtime)?;
            println!("{}", serde_json::json!({ "did": did, "api_key": key }));
            return Ok(());
        }
        MemberCmd::ApproveDomain { config, domain } => {
            let config = load_config(&config)?;
            let store = Store::open(&config.server.data_dir).context("opening the store")?;
            let did = members::approve_domain(&store, &domain, "cli").map_err(usage_or_runtime)?;
            println!(
                "{}",
                serde_json::json!({ "domain": domain.trim().to_ascii_lowercase(), "did": did, "approved": true })
            );
            return Ok(());
        }
        MemberCmd::Approve(a) => (a, Transition::Approve),
        MemberCmd::Suspend(a) => (a, Transition::Suspend),
        MemberCmd::Reactivate(a) => (a, Transition::Reactivate),
    };
    let config = load_config(&args.config)?;
    let store = Store::open(&config.server.data_dir).context("opening the store")?;
    let state = members::transition(&store, &args.did, t, "cli", args.reason.as_deref())
        .map_err(usage_or_runtime)?;
    println!(
        "{}",
        serde_json::json!({ "did": args.did, "state": state.as_str() })
    );
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))
}

/// A token cancelled by SIGTERM or SIGINT.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        t.cancel();
    });
    token
}
