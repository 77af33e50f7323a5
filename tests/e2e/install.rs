//! The install block of docs/OPERATIONS.md, run as written, rooted in a temp dir: the installed
//! binary, started from another directory, serves working pages (the UI is inside it).
//! Skipped, and asserted to be exactly these: the clone and the peer install (the suite runs in
//! a checkout whose peers tests/run installed), the two builds (tests/run ran `trunk build
//! --release` before cargo built this suite's `atmos`, which embeds `dist/` in debug builds the
//! same way as in release), and `useradd` (it would change this machine).

use atmos_tests::peers::self_signed;
use atmos_tests::relay::atmos_bin;
use atmos_tests::workspace_root;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The shell lines of the "Install from source" block, without their comments.
fn install_block() -> Vec<String> {
    let doc = std::fs::read_to_string(workspace_root().join("docs/OPERATIONS.md"))
        .expect("docs/OPERATIONS.md");
    let section = doc
        .split("## Install from source")
        .nth(1)
        .expect("an install section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    block
        .lines()
        .map(|l| match l.find("  #") {
            Some(i) => l[..i].trim_end().to_string(),
            None => l.trim_end().to_string(),
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// GET `path` as a browser would: (status, content type, body).
fn get(addr: &str, path: &str) -> (u16, String, Vec<u8>) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-H",
            "Accept: text/html",
            "-o",
            "-",
            "-w",
            "\n%{http_code} %{content_type}",
        ])
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl");
    let mut body = out.stdout;
    let at = body.iter().rposition(|b| *b == b'\n').expect("status line");
    let tail = String::from_utf8_lossy(&body[at + 1..]).into_owned();
    body.truncate(at);
    let (code, kind) = tail.split_once(' ').unwrap_or((&tail, ""));
    (code.parse().unwrap_or(0), kind.to_string(), body)
}

#[test]
fn the_documented_install_serves_its_pages() {
    let root = tempfile::tempdir().expect("tempdir");
    let rooted = |line: &str| {
        let r = root.path().display().to_string();
        line.replace("target/release/atmos", &atmos_bin().display().to_string())
            .replace(" -o atmos -g atmos", "")
            .replace("/usr/local/bin", &format!("{r}/usr/local/bin"))
            .replace("/var/lib/atmos", &format!("{r}/var/lib/atmos"))
            .replace("/etc/atmos", &format!("{r}/etc/atmos"))
    };
    std::fs::create_dir_all(root.path().join("usr/local/bin")).expect("bin dir");
    let mut skipped = Vec::new();
    for line in install_block() {
        if line.starts_with("git clone")
            || line == "bash tests/install-peers"
            || line == "trunk build --release"
            || line == "cargo build --release --bin atmos"
            || line.starts_with("useradd ")
        {
            skipped.push(line);
            continue;
        }
        let status = Command::new("sh")
            .args(["-ec", &rooted(&line)])
            .current_dir(workspace_root())
            .status()
            .expect("sh");
        assert!(status.success(), "install step failed: {line}");
    }
    assert_eq!(skipped.len(), 5, "the install block changed: {skipped:?}");

    // The operator's edits: this machine's paths (the same rooting) and a certificate where
    // certbot would have put one.
    let config = root.path().join("etc/atmos/atmos.toml");
    let text = std::fs::read_to_string(&config).expect("installed config");
    std::fs::write(&config, rooted(&text)).expect("edit config");
    let (cert, key) = self_signed(root.path(), "smtp.example.com");
    let elsewhere = tempfile::tempdir().expect("another working directory");
    let mut relay = Command::new(root.path().join("usr/local/bin/atmos"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(elsewhere.path())
        .env("ATMOS_SMTP_SUBMISSION_LISTEN", "127.0.0.1:0")
        .env("ATMOS_SMTP_INBOUND_LISTEN", "127.0.0.1:0")
        .env("ATMOS_HTTP_LISTEN", "127.0.0.1:0")
        .env("ATMOS_TLS_CERT_FILE", &cert)
        .env("ATMOS_TLS_KEY_FILE", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the installed atmos");
    let stdout = relay.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(Ok(line)) = BufReader::new(stdout).lines().next() {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60));
    let line = match line {
        Ok(l) => l,
        Err(_) => {
            let _ = relay.kill();
            panic!("the installed relay did not start");
        }
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("listening line");
    let http = v["listening"]["http"].as_str().expect("http").to_string();

    let (status, kind, page) = get(&http, "/enroll");
    let page = String::from_utf8_lossy(&page).into_owned();
    assert_eq!(status, 200, "{page}");
    assert!(kind.starts_with("text/html"), "{kind}");
    let asset = |ext: &str| {
        page.split('"')
            .find(|s| s.starts_with('/') && s.ends_with(ext))
            .unwrap_or_else(|| panic!("the page names no {ext}: {page}"))
            .to_string()
    };
    let (status, kind, script) = get(&http, &asset(".js"));
    assert_eq!((status, kind.as_str()), (200, "text/javascript"));
    assert!(script.len() > 1000);
    let (status, kind, wasm) = get(&http, &asset("_bg.wasm"));
    assert_eq!((status, kind.as_str()), (200, "application/wasm"));
    assert_eq!(&wasm[..4], b"\0asm", "a WebAssembly module");
    // Written once under the data directory, nothing in the working directory.
    assert!(root.path().join("var/lib/atmos/ui").is_dir());
    assert_eq!(std::fs::read_dir(elsewhere.path()).expect("cwd").count(), 0);
    let _ = relay.kill();
    let _ = relay.wait();
}
