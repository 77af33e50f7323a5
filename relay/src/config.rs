//! Configuration: one TOML file plus `ATMOS_<SECTION>_<KEY>` environment overrides (SPEC §14).
//!
//! The key names of SPEC §14 are a contract; keys added here never rename them. Secrets (the admin
//! token, the key-encryption key) never come from this file.

use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variables with the `ATMOS_` prefix that are not configuration keys.
const RESERVED_ENV: &[&str] = &[
    "ATMOS_LOG",
    "ATMOS_CONFIG",
    "ATMOS_KEY_ENCRYPTION_KEY",
    "ATMOS_LABELER_SIGNING_KEY",
];

/// A configuration problem, naming the offending key; the CLI exits 2 on it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

/// The whole relay configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub smtp: SmtpConfig,
    pub http: HttpConfig,
    pub tls: TlsConfig,
    pub dns: DnsConfig,
    pub delivery: DeliveryConfig,
    pub limits: LimitsConfig,
    pub labeler: LabelerConfig,
    pub rules: RulesConfig,
    pub kafka: KafkaConfig,
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

/// `[rules]`: the embedded rules engine (SPEC §8).
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
    /// Longest time a request's headers may take to arrive.
    #[serde(deserialize_with = "duration")]
    pub header_timeout: Duration,
}

/// `[tls]`: certificate for STARTTLS; both empty means a self-signed one.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// When set (`host:port`), all mail goes there instead of the recipients' MX (dev capture).
    pub smarthost: String,
    /// Deliver to loopback, RFC 1918, link-local and unique-local addresses found in MX or
    /// A/AAAA answers. Off: a member cannot point the relay at the operator's own network.
    /// (`atmos dev` and the test harness turn it on.)
    pub allow_private_destinations: bool,
}

/// `[limits]`: member caps and the relay-wide cap (SPEC §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub hourly: u32,
    pub daily: u32,
    pub global_per_minute: u32,
}

/// `[labeler]`: the co-located atproto labeler (SPEC §9).
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
    /// PLC directory used to resolve `did:plc` issuers of service-auth tokens.
    pub plc_url: String,
    /// Jetstream subscribe URL (`wss://…/subscribe`); empty: no Jetstream consumer.
    pub jetstream_url: String,
    pub jetstream_compress: bool,
    /// Jetstream's zstd dictionary, needed when `jetstream_compress` is on.
    pub jetstream_zstd_dictionary: PathBuf,
    /// Concurrent `subscribeLabels` WebSockets; more are refused with 503.
    pub max_subscribers: usize,
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
            plc_url: "https://plc.directory".into(),
            jetstream_url: String::new(),
            jetstream_compress: false,
            jetstream_zstd_dictionary: PathBuf::new(),
            max_subscribers: 1000,
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

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
}

impl Config {
    /// Reads `path` (if given), applies `ATMOS_*` overrides from `env`, and validates.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Syntax {
                        path: path.into(),
                        message: e.message().to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        Self::from_table(table)
    }

    /// Deserializes and validates an already merged table.
    pub fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner().to_string();
                // serde names the unknown field in the message; the path points at its section.
                // Depending on the serde path, the unknown field may or may not end the path.
                let key = match unknown_field(&inner) {
                    Some(field) if key == "." => field,
                    Some(field) if key != field && !key.ends_with(&format!(".{field}")) => {
                        format!("{key}.{field}")
                    }
                    _ => key,
                };
                ConfigError::Key {
                    key,
                    message: inner,
                }
            })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| {
            Err(ConfigError::Key {
                key: key.into(),
                message: message.into(),
            })
        };
        if self.server.hostname.trim().is_empty() {
            return bad("server.hostname", "must not be empty");
        }
        if self.server.operator_domain.trim().is_empty() {
            return bad("server.operator_domain", "must not be empty");
        }
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            return bad(
                "tls.cert_file",
                "cert_file and key_file must be set together",
            );
        }
        for ns in &self.dns.nameservers {
            if parse_nameserver(ns).is_none() {
                return bad(
                    "dns.nameservers",
                    &format!("{ns:?} is not an ip or ip:port"),
                );
            }
        }
        if self.smtp.max_message_size < 1024 {
            return bad("smtp.max_message_size", "must be at least 1024");
        }
        if self.smtp.max_recipients == 0 {
            return bad("smtp.max_recipients", "must be at least 1");
        }
        if self.smtp.inbound_rate_per_minute == 0 {
            return bad("smtp.inbound_rate_per_minute", "must be at least 1");
        }
        if self.smtp.inbound_rate_burst == 0 {
            return bad("smtp.inbound_rate_burst", "must be at least 1");
        }
        if !self.kafka.brokers.trim().is_empty() && self.kafka.events_topic.trim().is_empty() {
            return bad(
                "kafka.events_topic",
                "must not be empty when brokers are set",
            );
        }
        if let Err(e) = self.operator_forward_to() {
            return bad(
                "server.operator_forward_to",
                &format!("must be an email address or empty: the address {e}"),
            );
        }
        if self.server.forward_queue_share > 100 {
            return bad("server.forward_queue_share", "is a percentage, 0 to 100");
        }
        for (key, v) in [
            ("smtp.max_sessions", self.smtp.max_sessions),
            (
                "smtp.max_sessions_per_client",
                self.smtp.max_sessions_per_client,
            ),
            ("http.max_connections", self.http.max_connections),
            (
                "http.max_connections_per_client",
                self.http.max_connections_per_client,
            ),
            ("labeler.max_subscribers", self.labeler.max_subscribers),
            (
                "smtp.forward_rate_per_domain",
                self.smtp.forward_rate_per_domain as usize,
            ),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.delivery.per_destination_concurrency == 0 || self.delivery.global_concurrency == 0 {
            return bad(
                "delivery.global_concurrency",
                "concurrency limits must be at least 1",
            );
        }
        if !self.delivery.smarthost.is_empty()
            && self.delivery.smarthost.parse::<SocketAddr>().is_err()
        {
            return bad("delivery.smarthost", "must be ip:port");
        }
        Ok(())
    }

    /// `server.operator_forward_to` as a mailbox (`None` when empty).
    pub fn operator_forward_to(
        &self,
    ) -> Result<Option<crate::address::Mailbox>, crate::address::AddressError> {
        match self.server.operator_forward_to.trim() {
            "" => Ok(None),
            a => crate::address::Mailbox::parse(a).map(Some),
        }
    }

    /// Nameservers as socket addresses (port 53 when none is given).
    pub fn nameservers(&self) -> Vec<SocketAddr> {
        self.dns
            .nameservers
            .iter()
            .filter_map(|ns| parse_nameserver(ns))
            .collect()
    }
}

fn parse_nameserver(ns: &str) -> Option<SocketAddr> {
    ns.parse::<SocketAddr>().ok().or_else(|| {
        ns.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Sections of the file; an env key is `ATMOS_<SECTION>_<KEY>`.
const SECTIONS: &[&str] = &[
    "server", "smtp", "http", "tls", "dns", "delivery", "limits", "labeler", "rules", "kafka",
];

fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("ATMOS_") else {
            continue;
        };
        if RESERVED_ENV.contains(&name.as_str()) {
            continue;
        }
        let rest = rest.to_ascii_lowercase();
        let Some((section, key)) = rest.split_once('_').filter(|(s, _)| SECTIONS.contains(s))
        else {
            return Err(ConfigError::Key {
                key: name,
                message: "unknown environment override (expected ATMOS_<SECTION>_<KEY>)".into(),
            });
        };
        // A value that reads as TOML (numbers, arrays, booleans) keeps its type; anything else is a string.
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(ConfigError::Key {
                key: section.into(),
                message: "must be a table".into(),
            });
        };
        section_table.insert(key.to_string(), parsed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().expect("test toml");
        let mut table = table;
        apply_env(
            &mut table,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        Config::from_table(table)
    }

    #[test]
    fn spec_example_parses() {
        let c = load(
            r#"
[server]
hostname = "smtp.example.com"
operator_domain = "example.com"
data_dir = "/var/lib/atmos"
[smtp]
submission_listen = "0.0.0.0:587"
inbound_listen = "0.0.0.0:25"
max_message_size = 26214400
[http]
listen = "127.0.0.1:8080"
[tls]
cert_file = ""
key_file = ""
[dns]
nameservers = ["127.0.0.1:5353"]
[delivery]
mx_port = 25
max_queue_lifetime = "3d"
[limits]
hourly = 100
daily = 1000
global_per_minute = 500
"#,
            &[],
        )
        .expect("spec example");
        assert_eq!(c.server.hostname, "smtp.example.com");
        assert_eq!(
            c.delivery.max_queue_lifetime,
            Duration::from_secs(3 * 86400)
        );
        assert_eq!(c.nameservers(), vec!["127.0.0.1:5353".parse().unwrap()]);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = load("[smtp]\nsubmision_listen = \"0.0.0.0:587\"\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config key `smtp.submision_listen`:"),
            "{err}"
        );
    }

    #[test]
    fn invalid_value_is_named() {
        let err = load("[delivery]\nmx_port = \"twenty-five\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("delivery.mx_port"), "{err}");
        let err = load("[delivery]\nmax_queue_lifetime = \"soon\"\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("delivery.max_queue_lifetime"),
            "{err}"
        );
    }

    #[test]
    fn env_overrides_with_types() {
        let c = load(
            "[delivery]\nmx_port = 25\n",
            &[
                ("ATMOS_DELIVERY_MX_PORT", "2525"),
                ("ATMOS_SMTP_SUBMISSION_LISTEN", "127.0.0.1:1587"),
                ("ATMOS_DNS_NAMESERVERS", "[\"127.0.0.1:5353\"]"),
                ("ATMOS_LOG", "debug"),
                ("PATH", "/usr/bin"),
            ],
        )
        .expect("env");
        assert_eq!(c.delivery.mx_port, 2525);
        assert_eq!(c.smtp.submission_listen.port(), 1587);
        assert_eq!(c.dns.nameservers.len(), 1);
        let c = load(
            "",
            &[
                ("ATMOS_KAFKA_BROKERS", "127.0.0.1:9092"),
                ("ATMOS_RULES_ENABLED", "false"),
            ],
        )
        .expect("every section takes overrides");
        assert_eq!(
            (c.kafka.brokers.as_str(), c.rules.enabled),
            ("127.0.0.1:9092", false)
        );
    }

    #[test]
    fn unknown_env_is_named() {
        let err = load("", &[("ATMOS_SMTP_NOPE", "1")]).unwrap_err();
        assert!(err.to_string().contains("smtp.nope"), "{err}");
        let err = load("", &[("ATMOS_BOGUS", "1")]).unwrap_err();
        assert!(err.to_string().contains("ATMOS_BOGUS"), "{err}");
    }

    #[test]
    fn inbound_settings_are_checked() {
        let c = load("", &[]).expect("defaults");
        assert_eq!(
            (c.smtp.inbound_rate_per_minute, c.smtp.inbound_rate_burst),
            (30, 10)
        );
        let err = load("[smtp]\ninbound_rate_burst = 0\n", &[]).unwrap_err();
        assert!(err.to_string().contains("smtp.inbound_rate_burst"), "{err}");
        for bad in [
            "nobody",
            "ops@x.test>\\r\\nRSET",
            "ops@x.test\\u0000",
            "o\\nps@x.test",
        ] {
            let err =
                load(&format!("[server]\noperator_forward_to = \"{bad}\"\n"), &[]).unwrap_err();
            assert!(
                err.to_string().contains("server.operator_forward_to"),
                "{bad}: {err}"
            );
        }
        let c = load("[server]\noperator_forward_to = \"ops@example.org\"\n", &[]).expect("ok");
        assert_eq!(c.server.operator_forward_to, "ops@example.org");
    }

    #[test]
    fn half_tls_pair_is_refused() {
        let err = load("[tls]\ncert_file = \"/x.pem\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("tls.cert_file"), "{err}");
    }
}
