//! Configuration: one TOML file plus `ATMOS_<SECTION>_<KEY>` environment overrides (BEHAVIOUR §14).
//!
//! The key names of BEHAVIOUR §14 are a contract; keys added here never rename them. Secrets (the admin
//! token, the key-encryption key) never come from this file.

mod sections;

pub use sections::*;
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
    pub web: WebConfig,
    pub atproto: AtprotoConfig,
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
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
        if let Err(message) = self.public_url() {
            return bad("web.public_url", &message);
        }
        for did in &self.web.operator_dids {
            if atmos_lexicons::did::parse(did).is_err() {
                return bad(
                    "web.operator_dids",
                    &format!("{did:?} is not a did:plc or did:web DID"),
                );
            }
        }
        if !self.atproto.plc_url.starts_with("https://")
            && !self.atproto.plc_url.starts_with("http://")
        {
            return bad("atproto.plc_url", "must be an http(s) URL");
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

    /// Set-ups that run but are probably not what the operator meant, one sentence each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let https = self.web.public_url.trim().starts_with("https://");
        if https
            && self.http.listen.ip().is_loopback()
            && !self.http.tls
            && self.http.trusted_proxies.is_empty()
        {
            out.push(
                "web.public_url is https and http.listen is loopback, so a TLS proxy is in \
                 front, but http.trusted_proxies is empty: every client looks like the proxy, \
                 and one stranger's failed logins throttle everyone. List the proxy, e.g. \
                 trusted_proxies = [\"127.0.0.1/32\", \"::1/128\"]"
                    .into(),
            );
        }
        out
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

    /// `web.public_url` as an origin (`https://host[:port]`, no path), or `None` for the loopback
    /// client of development.
    pub fn public_url(&self) -> Result<Option<String>, String> {
        let url = self.web.public_url.trim().trim_end_matches('/');
        if url.is_empty() {
            return Ok(None);
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or("must start with https:// (or http:// behind a TLS proxy in tests)")?;
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err("must be an origin: scheme and host, no path".into());
        }
        Ok(Some(url.to_string()))
    }

    /// The PLC directory: `[atproto] plc_url`, or the older `[labeler] plc_url` when only that
    /// is set.
    pub fn plc_url(&self) -> String {
        match &self.labeler.plc_url {
            Some(old) if self.atproto.plc_url == sections::DEFAULT_PLC_URL => old.clone(),
            _ => self.atproto.plc_url.clone(),
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
    "web", "atproto",
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
    use std::time::Duration;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().expect("test toml");
        let mut table = table;
        apply_env(
            &mut table,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )?;
        Config::from_table(table)
    }

    /// The example production configuration in docs/deploy/ loads as shipped.
    #[test]
    fn deploy_example_parses() {
        let c = load(include_str!("../../../docs/deploy/atmos.toml"), &[]).expect("deploy example");
        assert_eq!(c.server.hostname, "smtp.example.com");
        assert_eq!(c.tls.watch_interval, std::time::Duration::from_secs(60));
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

/// Every configuration key the documentation names (`[section] key`, `section.key`,
/// `ATMOS_SECTION_KEY`) exists: a renamed key cannot leave the docs behind.
#[cfg(test)]
mod documented_keys {
    use super::*;

    fn docs() -> Vec<(std::path::PathBuf, String)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut out = vec![root.join("README.md")];
        let mut dirs = vec![root.join("docs")];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).expect("docs").flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "md") {
                    out.push(p);
                }
            }
        }
        out.into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("read doc");
                (p, text)
            })
            .collect()
    }

    fn key_at(s: &str) -> &str {
        let end = s
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(s.len());
        &s[..end]
    }

    /// (section, key) pairs named in `text`.
    fn named(text: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for section in SECTIONS {
            for (i, _) in text.match_indices(&format!("[{section}] ")) {
                let key = key_at(&text[i + section.len() + 3..]);
                if !key.is_empty() {
                    found.push((section.to_string(), key.to_string()));
                }
            }
            for (i, _) in text.match_indices(&format!("`{section}.")) {
                let rest = &text[i + section.len() + 2..];
                let key = key_at(rest);
                // `server.rs`, `labeler.sqlite`: files, not keys.
                if !key.is_empty()
                    && rest[key.len()..].starts_with('`')
                    && !["rs", "sqlite", "toml", "md", "json"].contains(&key)
                {
                    found.push((section.to_string(), key.to_string()));
                }
            }
        }
        for (i, _) in text.match_indices("ATMOS_") {
            let name_len = text[i..]
                .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(text.len() - i);
            let name = &text[i..i + name_len];
            if RESERVED_ENV.contains(&name) {
                continue;
            }
            let rest = name["ATMOS_".len()..].to_ascii_lowercase();
            if let Some((section, key)) = rest.split_once('_').filter(|(s, _)| SECTIONS.contains(s))
                && !key.is_empty()
                && !key.contains("<")
            {
                found.push((section.to_string(), key.to_string()));
            }
        }
        found
    }

    #[test]
    fn every_key_the_docs_name_exists() {
        let mut checked = std::collections::BTreeSet::new();
        let mut missing = Vec::new();
        for (path, text) in docs() {
            for (section, key) in named(&text) {
                if !checked.insert((section.clone(), key.clone())) {
                    continue;
                }
                let mut table = toml::Table::new();
                let mut inner = toml::Table::new();
                // A value no key takes: a known key fails on its type, an unknown one on its name.
                inner.insert(key.clone(), toml::Value::Table(toml::Table::new()));
                table.insert(section.clone(), toml::Value::Table(inner));
                if let Err(ConfigError::Key { message, .. }) = Config::from_table(table)
                    && message.contains("unknown field")
                {
                    missing.push(format!("[{section}] {key} (in {})", path.display()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "documented keys the relay does not know: {missing:#?}"
        );
        assert!(
            checked.len() > 50,
            "the scan found only {} keys",
            checked.len()
        );
    }

    #[test]
    fn the_scan_reads_all_three_spellings_and_catches_a_wrong_key() {
        let mut found =
            named("`[web] dist_dir`, `smtp.max_sessions`, ATMOS_HTTP_LISTEN, `server.rs`");
        found.sort();
        let expected: Vec<(String, String)> = [
            ("http", "listen"),
            ("smtp", "max_sessions"),
            ("web", "dist_dir"),
        ]
        .iter()
        .map(|(s, k)| (s.to_string(), k.to_string()))
        .collect();
        assert_eq!(found, expected);
        let mut table = toml::Table::new();
        let mut inner = toml::Table::new();
        inner.insert("ui_dir".into(), toml::Value::Table(toml::Table::new()));
        table.insert("web".into(), toml::Value::Table(inner));
        let err = Config::from_table(table).expect_err("unknown key");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
