//! Real peers: Postfix's smtp-sink as the recipient MX, dnsmasq as the DNS server.

use crate::{free_port, free_udp_tcp_port, poll_until, require_program};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running smtp-sink that keeps each message as a file.
pub struct SmtpSink {
    child: Option<Child>,
    /// While a [`SmtpSink::stopped`] sink is down, its port bound but not listening: connections
    /// are refused, and no other test's listener (a relay binding port 0) can take the port. CI
    /// once failed on that: another relay's submission port answered `530` and the relay
    /// bounced mail it had accepted.
    reserved: Option<socket2::Socket>,
    /// The loopback address it listens on (127.0.0.1 unless started with [`SmtpSink::start_at`]).
    pub ip: String,
    pub port: u16,
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl SmtpSink {
    /// Starts smtp-sink on a fresh port with extra flags (e.g. `["-r", "rcpt"]`).
    pub fn start(flags: &[&str]) -> Self {
        Self::start_at("127.0.0.1", free_port(), flags)
    }

    /// Starts smtp-sink on `ip:port`: another MX of the same relay (which dials one port on
    /// every MX host) behaving otherwise, e.g. refusing every recipient.
    pub fn start_at(ip: &str, port: u16, flags: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("mail");
        std::fs::create_dir_all(&dir).expect("mail dir");
        // smtp-sink drops to `nobody`, which must be able to write the dump files.
        set_mode(&dir, 0o777);
        set_mode(temp.path(), 0o755);
        let mut sink = Self {
            child: None,
            reserved: None,
            ip: ip.to_string(),
            port,
            dir,
            _temp: temp,
        };
        sink.restart(flags);
        sink
    }

    /// A sink on a port chosen in advance (nothing listens until `restart`).
    pub fn stopped() -> Self {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("mail");
        std::fs::create_dir_all(&dir).expect("mail dir");
        set_mode(&dir, 0o777);
        set_mode(temp.path(), 0o755);
        let (reserved, port) = reserve_port();
        Self {
            child: None,
            reserved: Some(reserved),
            ip: "127.0.0.1".into(),
            port,
            dir,
            _temp: temp,
        }
    }

    /// (Re)starts on the same port with new flags.
    pub fn restart(&mut self, flags: &[&str]) {
        self.stop();
        require_program("/usr/sbin/smtp-sink", "apt-get install postfix");
        // Let go of the port only now: smtp-sink binds it a few milliseconds later.
        self.reserved = None;
        let template = format!("{}/%H%M%S.", self.dir.display());
        let child = Command::new("/usr/sbin/smtp-sink")
            .args(["-u", "nobody", "-d", &template])
            .args(flags)
            .arg(format!("{}:{}", self.ip, self.port))
            .arg("256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        self.child = Some(child);
        let (ip, port) = (self.ip.clone(), self.port);
        poll_until(Duration::from_secs(10), "smtp-sink to listen", || {
            std::net::TcpStream::connect((ip.as_str(), port)).ok()
        });
    }

    /// Stops the sink (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Messages received since the last call with the same `seen` set (cheap on a full dir).
    pub fn new_messages(&self, seen: &mut std::collections::HashSet<PathBuf>) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| seen.insert(p.clone()))
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Contents of every message received so far.
    pub fn messages(&self) -> Vec<String> {
        read_messages(&self.dir)
    }

    /// The `X-Test-Id` header values of every message received, with their counts.
    pub fn test_ids(&self) -> std::collections::HashMap<String, usize> {
        let mut ids = std::collections::HashMap::new();
        for m in self.messages() {
            if let Some(id) = m.lines().find_map(|l| l.strip_prefix("X-Test-Id: ")) {
                *ids.entry(id.trim().to_string()).or_insert(0) += 1;
            }
        }
        ids
    }

    /// Messages containing `needle`.
    pub fn messages_with(&self, needle: &str) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter(|m| m.contains(needle))
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port held bound without listening (no `SO_REUSEADDR`, so nothing else binds it).
fn reserve_port() -> (socket2::Socket, u16) {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket
        .bind(&SockAddr::from(any))
        .expect("bind a loopback port");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("the bound port");
    (socket, port)
}

/// A running dnsmasq serving fixed records on a loopback port (UDP and TCP).
pub struct Dns {
    child: Child,
    pub port: u16,
    _temp: tempfile::TempDir,
}

impl Dns {
    /// Starts dnsmasq with `lines` of configuration (e.g. `mx-host=...`), authoritative for `domains`.
    pub fn start(domains: &[&str], lines: &[String]) -> Self {
        Self::start_on(free_udp_tcp_port(), domains, lines)
    }

    /// As [`Dns::start`], on a port chosen beforehand (when the relay's config needs it first).
    pub fn start_on(port: u16, domains: &[&str], lines: &[String]) -> Self {
        require_program("/usr/sbin/dnsmasq", "apt-get install dnsmasq-base");
        let temp = tempfile::tempdir().expect("tempdir");
        let mut conf = format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nuser=root\n"
        );
        for d in domains {
            conf.push_str(&format!("local=/{d}/\n"));
        }
        for l in lines {
            conf.push_str(l);
            conf.push('\n');
        }
        let path = temp.path().join("dnsmasq.conf");
        std::fs::write(&path, conf).expect("write dnsmasq.conf");
        let child = Command::new("/usr/sbin/dnsmasq")
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", path.display()))
            .arg("--pid-file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        poll_until(Duration::from_secs(10), "dnsmasq to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self {
            child,
            port,
            _temp: temp,
        }
    }

    /// The standard test zone: `domain` has MX `mx.<domain>` at 127.0.0.1.
    pub fn with_mx(domains: &[&str]) -> Self {
        let mut lines = Vec::new();
        for d in domains {
            lines.push(format!("mx-host={d},mx.{d},10"));
            lines.push(format!("host-record=mx.{d},127.0.0.1"));
        }
        Self::start(domains, &lines)
    }

    /// dnsmasq lines for DNS records as `atmos member add` / `atmos operator dns` print them
    /// (TXT values split into 255-byte strings; MX values `pref host.`).
    pub fn record_lines(records: &[serde_json::Value]) -> Vec<String> {
        records
            .iter()
            .filter_map(|r| {
                let (name, kind, value) = (
                    r["name"].as_str()?,
                    r["type"].as_str()?,
                    r["value"].as_str()?,
                );
                match kind {
                    "TXT" => {
                        let chunks: Vec<String> = value
                            .as_bytes()
                            .chunks(255)
                            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
                            .collect();
                        Some(format!("txt-record={name},{}", chunks.join(",")))
                    }
                    "MX" => {
                        let (pref, host) = value.split_once(' ')?;
                        Some(format!(
                            "mx-host={name},{},{pref}",
                            host.trim_end_matches('.')
                        ))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// `ip:port` for the relay's `[dns] nameservers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// The project's Python (tests/.venv, made by tests/install-peers).
pub fn venv_python() -> PathBuf {
    let p = crate::workspace_root().join("tests/.venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run tests/install-peers",
        p.display()
    );
    p
}

/// A STARTTLS-capable MX (aiosmtpd) that records whether each message came over TLS.
pub struct TlsMx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl TlsMx {
    /// Starts it with a fresh self-signed certificate.
    pub fn start() -> Self {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("mail");
        std::fs::create_dir_all(&dir).expect("mail dir");
        let (cert, key) = self_signed(temp.path(), "mx.rcpt.test");
        let port = free_port();
        let script = crate::workspace_root().join("tests/py/tls_mx.py");
        let mut child = Command::new(venv_python())
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .arg(&cert)
            .arg(&key)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tls_mx.py");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("ready line");
        assert_eq!(line.trim(), "ready", "tls_mx.py did not start");
        Self {
            child,
            port,
            dir,
            _temp: temp,
        }
    }

    /// Messages received since the last call with the same `seen` set (cheap on a full dir).
    pub fn new_messages(&self, seen: &mut std::collections::HashSet<PathBuf>) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| seen.insert(p.clone()))
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .collect()
    }

    /// Contents of every message received so far.
    pub fn messages(&self) -> Vec<String> {
        read_messages(&self.dir)
    }
}

impl Drop for TlsMx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Contents of every file in a mail directory.
fn read_messages(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path()).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// A running Knot DNS server, authoritative for one zone whose records change during a test
/// (`knotc zone-begin/zone-set/zone-unset/zone-commit`), with 1-second TTLs.
pub struct Knot {
    child: Child,
    pub port: u16,
    pub zone: String,
    conf: PathBuf,
    _temp: tempfile::TempDir,
}

impl Knot {
    /// Starts knotd on a fresh loopback port serving `zone` (SOA, NS and `ns` A only).
    pub fn start(zone: &str) -> Self {
        require_program("/usr/sbin/knotd", "apt-get install knot");
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path();
        let port = free_udp_tcp_port();
        // Without its journal directory knotd serves the zone but refuses every change.
        std::fs::create_dir_all(dir.join("db")).expect("knot db dir");
        std::fs::write(
            dir.join(format!("{zone}.zone")),
            format!(
                "$ORIGIN {zone}.\n$TTL 1\n@ SOA ns.{zone}. hostmaster.{zone}. 1 60 60 600 1\n@ NS ns\nns A 127.0.0.1\n"
            ),
        )
        .expect("zone file");
        let conf = dir.join("knot.conf");
        std::fs::write(
            &conf,
            format!(
                "server:\n    listen: 127.0.0.1@{port}\n    rundir: \"{d}\"\n\
                 database:\n    storage: \"{d}/db\"\n\
                 control:\n    listen: \"{d}/knot.sock\"\n\
                 zone:\n  - domain: {zone}\n    storage: \"{d}\"\n    file: \"{zone}.zone\"\n    zonefile-sync: -1\n",
                d = dir.display()
            ),
        )
        .expect("knot.conf");
        let child = Command::new("/usr/sbin/knotd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start knotd");
        let knot = Self {
            child,
            port,
            zone: zone.into(),
            conf,
            _temp: temp,
        };
        poll_until(Duration::from_secs(10), "knotd to serve its zone", || {
            (std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && knot.knotc(&["zone-status", zone]).status.success())
            .then_some(())
        });
        knot
    }

    fn knotc(&self, args: &[&str]) -> std::process::Output {
        Command::new("/usr/sbin/knotc")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("run knotc")
    }

    fn transaction(&self, change: &[&str]) {
        let zone = self.zone.as_str();
        for args in [
            &["zone-begin", zone][..],
            change,
            &["zone-commit", zone][..],
        ] {
            let out = self.knotc(args);
            assert!(
                out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("error"),
                "knotc {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Adds a TXT record at `name` (absolute, inside the zone), split into 255-byte strings.
    pub fn add_txt(&self, name: &str, value: &str) {
        let owner = format!("{}.", name.trim_end_matches('.'));
        let chunks: Vec<String> = value
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        let mut args = vec!["zone-set", self.zone.as_str(), owner.as_str(), "1", "TXT"];
        args.extend(chunks.iter().map(String::as_str));
        self.transaction(&args);
    }

    /// Adds a record of any type (`MX`, `A`…) at `name` with `rdata` (e.g. `["10", "mx.x.test."]`).
    pub fn add(&self, name: &str, kind: &str, rdata: &[&str]) {
        let owner = format!("{}.", name.trim_end_matches('.'));
        let mut args = vec!["zone-set", self.zone.as_str(), owner.as_str(), "1", kind];
        args.extend_from_slice(rdata);
        self.transaction(&args);
    }

    /// Removes every TXT record at `name`.
    pub fn remove_txt(&self, name: &str) {
        let owner = format!("{}.", name.trim_end_matches('.'));
        self.transaction(&["zone-unset", self.zone.as_str(), owner.as_str(), "TXT"]);
    }

    /// `ip:port` for the relay's `[dns] nameservers`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `name` (CN and subjectAltName) made by openssl in `dir`:
/// (certificate, key) PEM paths. A peer trusts it as its own anchor.
pub fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", &format!("/CN={name}")])
        .args(["-addext", &format!("subjectAltName=DNS:{name}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl req failed");
    (cert, key)
}

/// A private nginx (Debian's nginx-light) in front of the relay's HTTP listener, as
/// `docs/deploy` recommends: it appends the client's address to `X-Forwarded-For`.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _temp: tempfile::TempDir,
}

impl Nginx {
    /// Proxies `127.0.0.1:<port>` to `upstream` (`ip:port`).
    pub fn proxy_to(upstream: std::net::SocketAddr) -> Self {
        require_program("/usr/sbin/nginx", "apt-get install nginx-light");
        let temp = tempfile::tempdir().expect("tempdir");
        let t = temp.path().display().to_string();
        let port = free_port();
        let conf = format!(
            "user root;\nworker_processes 1;\nerror_log {t}/error.log;\npid {t}/nginx.pid;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
               fastcgi_temp_path {t}/fcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    location / {{\n\
                 proxy_pass http://{upstream};\n      proxy_set_header Host $host;\n\
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
        );
        let path = temp.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(temp.path())
            .arg("-c")
            .arg(&path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        poll_until(Duration::from_secs(10), "nginx to listen", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Self {
            child,
            port,
            _temp: temp,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master take its worker down with it.
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        );
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::SmtpSink;

    #[test]
    fn a_stopped_sink_keeps_its_port_refused_and_its_own() {
        let mut sink = SmtpSink::stopped();
        let addr = ("127.0.0.1", sink.port);
        assert!(
            std::net::TcpListener::bind(addr).is_err(),
            "another listener took the port of a stopped sink"
        );
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "a stopped sink accepted a connection"
        );
        sink.restart(&[]);
        assert!(
            std::net::TcpStream::connect(addr).is_ok(),
            "the sink is not up"
        );
    }
}
