//! A real atproto PDS (`@atproto/pds`) with an in-memory PLC directory (`@did-plc/server`),
//! both from npm (tests/node, installed by tests/install-peers), on loopback ports.

use crate::http::curl;
use crate::{free_port, poll_until};
use serde_json::Value;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A PLC directory and a PDS using it.
pub struct Pds {
    plc: Child,
    pds: Child,
    pub plc_port: u16,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// An account on the PDS.
pub struct Account {
    pub did: String,
    pub handle: String,
    pub password: String,
    pub access_jwt: String,
}

fn node_dir() -> std::path::PathBuf {
    let dir = crate::workspace_root().join("tests/node");
    assert!(
        dir.join("node_modules/@atproto/pds").exists(),
        "tests/node/node_modules missing: run tests/install-peers"
    );
    dir
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// How a PDS is started beyond the defaults.
#[derive(Default)]
pub struct PdsOptions {
    /// Extra `/etc/hosts` lines (address, name) the PDS resolves: it runs in a mount namespace
    /// of its own with that hosts file bound over `/etc/hosts`, as `ip netns exec` does for
    /// `/etc/netns/<name>/hosts`, while sharing the test's network (its loopback).
    pub hosts: Vec<(String, String)>,
    /// A certificate the PDS trusts on top of the system's (`NODE_EXTRA_CA_CERTS`).
    pub extra_ca: Option<std::path::PathBuf>,
}

impl Pds {
    /// Starts PLC, then the PDS; returns once the PDS answers `/xrpc/_health`.
    pub fn start() -> Self {
        Self::start_with(&PdsOptions::default())
    }

    /// [`Pds::start`] with `options`.
    pub fn start_with(options: &PdsOptions) -> Self {
        let node = node_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        let (plc_port, port) = (free_port(), free_port());
        let log = |name: &str| std::fs::File::create(dir.path().join(name)).expect("log");
        let plc = Command::new("node")
            .arg(node.join("node_modules/@did-plc/server/dist/bin.js"))
            .env("PORT", plc_port.to_string())
            .current_dir(&node)
            .stdout(log("plc.log"))
            .stderr(log("plc.err"))
            .spawn()
            .expect("start PLC");
        poll_until(Duration::from_secs(30), "the PLC directory", || {
            std::net::TcpStream::connect(("127.0.0.1", plc_port)).ok()
        });
        let data = dir.path().join("pds");
        std::fs::create_dir_all(data.join("blobs")).expect("PDS data dir");
        let mut pds = if options.hosts.is_empty() {
            let mut c = Command::new("node");
            c.arg(node.join("pds.mjs"));
            c
        } else {
            let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
            for (addr, name) in &options.hosts {
                hosts.push_str(&format!("\n{addr} {name}\n"));
            }
            let file = dir.path().join("hosts");
            std::fs::write(&file, hosts).expect("hosts file");
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(r#"mount --bind "$0" /etc/hosts && exec node "$1""#)
                .arg(&file)
                .arg(node.join("pds.mjs"));
            c
        };
        if let Some(ca) = &options.extra_ca {
            pds.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let pds = pds
            .current_dir(&node)
            .envs([
                ("PDS_HOSTNAME", "localhost".to_string()),
                ("PDS_PORT", port.to_string()),
                ("PDS_DEV_MODE", "true".into()),
                ("PDS_DATA_DIRECTORY", data.display().to_string()),
                (
                    "PDS_BLOBSTORE_DISK_LOCATION",
                    data.join("blobs").display().to_string(),
                ),
                ("PDS_DID_PLC_URL", format!("http://127.0.0.1:{plc_port}")),
                ("PDS_JWT_SECRET", random_hex(16)),
                ("PDS_ADMIN_PASSWORD", random_hex(8)),
                ("PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX", random_hex(32)),
                ("PDS_INVITE_REQUIRED", "false".into()),
                ("PDS_SERVICE_HANDLE_DOMAINS", ".test".into()),
                ("LOG_ENABLED", "false".into()),
            ])
            .stdout(Stdio::null())
            .stderr(log("pds.err"))
            .spawn()
            .expect("start PDS");
        let me = Self {
            plc,
            pds,
            plc_port,
            port,
            dir,
        };
        let healthy = std::time::Instant::now();
        while curl("GET", &format!("{}/xrpc/_health", me.url()), &[], None).0 != 200 {
            assert!(
                healthy.elapsed() < Duration::from_secs(60),
                "the PDS did not become healthy; its log:\n{}",
                me.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:plc_port` (for `[labeler] plc_url`).
    pub fn plc_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.plc_port)
    }

    /// Creates an account with `handle` (under `.test`).
    pub fn create_account(&self, handle: &str) -> Account {
        let password = random_hex(12);
        let body = serde_json::json!({
            "handle": handle,
            "email": format!("{}@example.com", handle.replace('.', "-")),
            "password": password,
        });
        let (status, v, _) = curl(
            "POST",
            &format!("{}/xrpc/com.atproto.server.createAccount", self.url()),
            &[],
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(status, 200, "createAccount: {v}; PDS log: {}", self.log());
        Account {
            did: v["did"].as_str().expect("did").into(),
            handle: handle.into(),
            password,
            access_jwt: v["accessJwt"].as_str().expect("accessJwt").into(),
        }
    }

    /// A service-auth token from `com.atproto.server.getServiceAuth`.
    pub fn service_auth(&self, account: &Account, aud: &str, lxm: &str) -> String {
        let (status, v, _) = curl(
            "GET",
            &format!(
                "{}/xrpc/com.atproto.server.getServiceAuth?aud={aud}&lxm={lxm}",
                self.url()
            ),
            &[format!("Authorization: Bearer {}", account.access_jwt)],
            None,
        );
        assert_eq!(status, 200, "getServiceAuth: {v}");
        v["token"].as_str().expect("token").into()
    }

    /// A record from the account's repo (`com.atproto.repo.getRecord`), or `None` when absent.
    pub fn get_record(&self, did: &str, collection: &str, rkey: &str) -> Option<Value> {
        let (status, v, _) = curl(
            "GET",
            &format!(
                "{}/xrpc/com.atproto.repo.getRecord?repo={did}&collection={collection}&rkey={rkey}",
                self.url()
            ),
            &[],
            None,
        );
        (status == 200).then_some(v)
    }

    /// Stops the PDS (the PLC directory stays): its accounts' DIDs still resolve, to a PDS that
    /// is down.
    pub fn stop_pds(&self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.pds),
            rustix::process::Signal::KILL,
        );
        crate::poll_until(Duration::from_secs(10), "the PDS to stop", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .is_err()
                .then_some(())
        });
    }

    /// The PDS's log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pds.err")).unwrap_or_default()
    }
}

impl Drop for Pds {
    fn drop(&mut self) {
        for c in [&mut self.pds, &mut self.plc] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Posts `body` to the relay's `createReport` with `token`; returns (status, JSON).
pub fn create_report(http: std::net::SocketAddr, token: &str, body: &Value) -> (u16, Value) {
    let (status, v, _) = curl(
        "POST",
        &format!("http://{http}/xrpc/com.atproto.moderation.createReport"),
        &[format!("Authorization: Bearer {token}")],
        Some(body.to_string().as_bytes()),
    );
    (status, v)
}
