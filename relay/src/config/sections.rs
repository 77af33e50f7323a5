//! The sections of the configuration file and their defaults.

use super::duration;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The PLC directory used when none is configured.
pub const DEFAULT_PLC_URL: &str = "https://plc.directory";

/// `[web]`: the web UI and the OAuth client it signs members in with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Origin of the UI and the OAuth `client_id` (`https://relay.example.com`); empty: the
    /// atproto loopback client (development).
    pub public_url: String,
    /// DIDs allowed into `/admin`.
    pub operator_dids: Vec<String>,
    /// Serve the UI from this Trunk build (`dist/`; relative paths are from the working
    /// directory), e.g. while developing it. Unset: the UI built into the binary, or else
    /// `dist/` in the working directory.
    pub dist_dir: Option<PathBuf>,
    /// A sign-in session ends after this long without use.
    #[serde(deserialize_with = "duration")]
    pub session_idle: Duration,
    /// Sign-in sessions one member may hold at once (the oldest goes).
    pub sessions_per_member: usize,
    /// Sign-ins in progress at once (each holds a PKCE verifier and a DPoP key for 10 minutes).
    pub max_pending_signins: usize,
    /// An access token this close to expiry is refreshed before use.
    #[serde(deserialize_with = "duration")]
    pub token_refresh_margin: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self {
            public_url: String::new(),
            operator_dids: Vec::new(),
            dist_dir: None,
            session_idle: Duration::from_secs(7 * 86_400),
            sessions_per_member: 10,
            max_pending_signins: 10_000,
            token_refresh_margin: Duration::from_secs(30),
        }
    }
}

/// `[atproto]`: resolving handles and DIDs (members, operators, report issuers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AtprotoConfig {
    /// The PLC directory for `did:plc`.
    pub plc_url: String,
    /// Allow `http://` and private addresses for PDSes, authorization servers, the PLC directory
    /// and did:web hosts (development and tests: a PDS on localhost).
    pub allow_private_endpoints: bool,
}

impl Default for AtprotoConfig {
    fn default() -> Self {
        Self {
            plc_url: DEFAULT_PLC_URL.into(),
            allow_private_endpoints: false,
        }
    }
}

/// `[kafka]`: the event bus to an external rules engine (Osprey). Off while `brokers` is empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`; empty: no Kafka.
    pub brokers: String,
    /// Where every event is published, in Osprey's action format.
    pub events_topic: String,
    /// Where verdicts are read from; empty: publish only.
    pub results_topic: String,
    /// Consumer group of the results reader.
    pub group_id: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            events_topic: "osprey.actions_input".into(),
            results_topic: "osprey.execution_results".into(),
            group_id: "atmos-relay".into(),
        }
    }
}

/// `[rules]`: the embedded rules engine (BEHAVIOUR §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub enabled: bool,
    /// Rule files (TOML); empty: the built-in rules (`relay/rules/default.toml`).
    pub files: Vec<PathBuf>,
    /// How often the engine looks for new events when it has caught up.
    #[serde(deserialize_with = "duration")]
    pub poll_interval: Duration,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            files: Vec::new(),
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// `[server]`: identity of this relay and where its state lives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// EHLO name, VERP/SRS host, TLS name.
    pub hostname: String,
    /// Pool DKIM `d=`, VERP domain, operator aliases.
    pub operator_domain: String,
    /// SQLite database, keys, TLS material.
    pub data_dir: PathBuf,
    /// How long shutdown waits for sessions and deliveries in flight.
    #[serde(deserialize_with = "duration")]
    pub shutdown_deadline: Duration,
    /// Sending domains one member may hold.
    pub max_domains_per_member: u32,
    /// Largest size of the database (queue included) in bytes; 0 = no limit; absent: half the
    /// space free on `data_dir`'s file system at start. When reached, submissions get
    /// `451 4.3.1 queue full` until delivery frees space.
    pub max_queue_bytes: Option<u64>,
    /// Share of `max_queue_bytes` (percent) that forwarded inbound mail may fill, so strangers
    /// mailing member domains cannot fill the queue members send through.
    pub forward_queue_share: u8,
    /// Where mail to the operator aliases (`postmaster@`, `abuse@`, `fbl@`, `support@`,
    /// `hostmaster@`) is forwarded; empty: it is accepted and logged.
    pub operator_forward_to: String,
    /// Name the client's IP address in the `Received` field the relay adds at submission
    /// (off by default: a member's office or home address is theirs to keep).
    pub trace_client_address: bool,
    /// A domain an already active member adds waits for an operator's approval before it
    /// sends (`false`: usable at once, as the member's first domain is upon approval).
    pub review_added_domains: bool,
    /// How often a member's rotated keys are looked for in DNS (they sign once seen there),
    /// and keys retired past their overlap are pruned.
    #[serde(deserialize_with = "duration")]
    pub key_rollover_interval: Duration,
}

/// `[smtp]`: the submission and inbound listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub submission_listen: SocketAddr,
    pub inbound_listen: SocketAddr,
    /// Advertised SIZE; larger messages get 552 5.3.4.
    pub max_message_size: usize,
    pub max_recipients: usize,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Inbound transactions one client address may start per minute...
    pub inbound_rate_per_minute: u32,
    /// ...and at once.
    pub inbound_rate_burst: u32,
    /// Messages forwarded to one member domain (replies) per minute, from all clients.
    pub forward_rate_per_domain: u32,
    /// Concurrent sessions per listener; more are answered `421 4.7.0` and closed.
    pub max_sessions: usize,
    /// Concurrent sessions per client address (IPv4 /32, IPv6 /64), as Postfix's
    /// `smtpd_client_connection_count_limit`.
    pub max_sessions_per_client: usize,
    /// Longest time one command line may take to arrive, however it trickles in.
    #[serde(deserialize_with = "duration")]
    pub command_timeout: Duration,
    /// Longest time a whole DATA transfer may take.
    #[serde(deserialize_with = "duration")]
    pub data_timeout: Duration,
    /// Longest time a reply may wait for the client to read it.
    #[serde(deserialize_with = "duration")]
    pub write_timeout: Duration,
    /// Transactions (MAIL commands) one session may start; the next is answered `421 4.7.0`
    /// and the session closes, so a client reconnects and authenticates again.
    pub max_transactions_per_session: u32,
    /// Longest life of one session: a MAIL after it is answered `421 4.4.2` and the session
    /// closes (a session authenticated before a suspension or a new key cannot live for ever).
    #[serde(deserialize_with = "duration")]
    pub max_session_lifetime: Duration,
}

/// `[http]`: the HTTP listener (API, admin, XRPC, web UI).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Concurrent HTTP connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Concurrent connections per client address (IPv4 /32, IPv6 /64); more are closed.
    pub max_connections_per_client: usize,
    /// Longest time a request's headers (and, with `tls`, the handshake) may take to arrive.
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
    /// Serve HTTPS with the `[tls]` certificate instead of plain HTTP (when no proxy in front
    /// terminates TLS).
    pub tls: bool,
    /// Reverse proxies (CIDRs) whose `X-Forwarded-For` names the client. From a peer in this
    /// list the client is the right-most address of the header that is not itself a trusted
    /// proxy; from any other peer the header is ignored. Empty: the socket peer is the client.
    pub trusted_proxies: Vec<crate::connections::Cidr>,
}

/// `[tls]`: certificate for STARTTLS; both empty means a self-signed one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the files are checked for a renewal (SIGHUP reloads at once).
    #[serde(deserialize_with = "duration")]
    pub watch_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            watch_interval: Duration::from_secs(60),
        }
    }
}

/// `[dns]`: resolvers for MX/TXT lookups.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Empty: the system resolver. Entries are `ip` or `ip:port`.
    pub nameservers: Vec<String>,
}

/// `[delivery]`: outbound MX delivery and retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Port used on every MX host (tests point it at a local sink).
    pub mx_port: u16,
    #[serde(deserialize_with = "duration")]
    pub max_queue_lifetime: Duration,
    /// First retry delay; doubles per attempt up to `retry_max`.
    #[serde(deserialize_with = "duration")]
    pub retry_base: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    /// Connections at once to one destination domain.
    pub per_destination_concurrency: usize,
    /// Connections at once in all.
    pub global_concurrency: usize,
    /// Longest wait for any one read or write of a delivery connection.
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Longest one delivery attempt may take in all, however slowly the MX trickles its
    /// replies (a tarpit): then it is deferred and the connection dropped (RFC 5321 §4.5.3.2's
    /// longest wait is 10 min).
    #[serde(deserialize_with = "duration")]
    pub attempt_timeout: Duration,
    /// When set (`host:port`), all mail goes there instead of the recipients' MX (dev capture).
    pub smarthost: String,
    /// Deliver to loopback, RFC 1918, link-local and unique-local addresses found in MX or
    /// A/AAAA answers. Off: a member cannot point the relay at the operator's own network.
    /// (`atmos dev` and the test harness turn it on.)
    pub allow_private_destinations: bool,
}

/// `[limits]`: member caps and the relay-wide cap (BEHAVIOUR §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub hourly: u32,
    pub daily: u32,
    pub global_per_minute: u32,
}

/// `[labeler]`: the co-located atproto labeler (BEHAVIOUR §9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LabelerConfig {
    pub enabled: bool,
    /// Empty: `did:web:<server.hostname>` with a key generated on first start. A `did:plc`
    /// needs its `#atproto_label` key in `ATMOS_LABELER_SIGNING_KEY` (hex) or `signing_key_file`.
    pub did: String,
    /// File holding the hex secp256k1 private key of a configured DID.
    pub signing_key_file: PathBuf,
    /// Public base URL (`#atproto_labeler` endpoint); empty: `https://<server.hostname>`.
    pub endpoint: String,
    #[serde(deserialize_with = "duration")]
    pub reverify_interval: Duration,
    /// First retry of a failed check; doubles up to `retry_max`.
    #[serde(deserialize_with = "duration")]
    pub retry_base: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max: Duration,
    /// Older name of `[atproto] plc_url` (used when only this one is set).
    pub plc_url: Option<String>,
    /// Jetstream subscribe URL (`wss://…/subscribe`); empty: no Jetstream consumer.
    pub jetstream_url: String,
    pub jetstream_compress: bool,
    /// Jetstream's zstd dictionary, needed when `jetstream_compress` is on.
    pub jetstream_zstd_dictionary: PathBuf,
    /// Concurrent `subscribeLabels` WebSockets; more are refused with 503.
    pub max_subscribers: usize,
    /// `createReport`s accepted per minute in all (each issuer 10, each did:web site 20).
    pub reports_per_minute: u32,
}

impl Default for LabelerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            did: String::new(),
            signing_key_file: PathBuf::new(),
            endpoint: String::new(),
            reverify_interval: Duration::from_secs(86_400),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(30),
            plc_url: None,
            jetstream_url: String::new(),
            jetstream_compress: false,
            jetstream_zstd_dictionary: PathBuf::new(),
            max_subscribers: 1000,
            reports_per_minute: 60,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
            operator_domain: "atmos.localhost".into(),
            data_dir: PathBuf::from("/var/lib/atmos"),
            shutdown_deadline: Duration::from_secs(30),
            max_domains_per_member: 2,
            max_queue_bytes: None,
            forward_queue_share: 10,
            operator_forward_to: String::new(),
            trace_client_address: false,
            review_added_domains: true,
            key_rollover_interval: Duration::from_secs(300),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            submission_listen: ([0, 0, 0, 0], 587).into(),
            inbound_listen: ([0, 0, 0, 0], 25).into(),
            max_message_size: 26_214_400,
            max_recipients: 100,
            idle_timeout: Duration::from_secs(60),
            inbound_rate_per_minute: 30,
            inbound_rate_burst: 10,
            forward_rate_per_domain: 60,
            max_sessions: 1000,
            max_sessions_per_client: 50,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(600),
            write_timeout: Duration::from_secs(60),
            max_transactions_per_session: 1000,
            max_session_lifetime: Duration::from_secs(3600),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            max_connections: 1024,
            max_connections_per_client: 64,
            header_timeout: Duration::from_secs(10),
            tls: false,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            mx_port: 25,
            max_queue_lifetime: Duration::from_secs(3 * 86_400),
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            per_destination_concurrency: 20,
            global_concurrency: 200,
            connect_timeout: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(600),
            smarthost: String::new(),
            allow_private_destinations: false,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            hourly: 100,
            daily: 1000,
            global_per_minute: 500,
        }
    }
}
