//! Issue 10: members enroll themselves, end to end against real peers — a real `@atproto/pds`
//! with an in-memory PLC directory (npm), Knot serving the handles' and domains' records, a
//! person in Debian's chromium (playwright-core) signing in on the PDS's own pages, smtp-sink as
//! the recipients' MX, swaks as the member's mail client and dkimpy checking what arrives.

use atmos_tests::atproto::{Pds, PdsOptions};
use atmos_tests::browser::{Wizard, screenshots};
use atmos_tests::http::{curl, curl_with};
use atmos_tests::peers::{Knot, SmtpSink, self_signed, venv_python};
use atmos_tests::poll_until;
use atmos_tests::relay::Relay;
use serde_json::{Value, json};
use std::process::Command;
use std::time::Duration;

const TOKEN: &str = "enroll-admin-token-0123456789abcdef";

/// Knot serving `test.` (handles, member domains, the operator domain and `rcpt.test`'s MX),
/// smtp-sink as that MX, a PDS with its PLC, and a relay using them all.
struct World {
    pds: Pds,
    knot: Knot,
    sink: SmtpSink,
    relay: Relay,
    public: Option<Public>,
    _certs: tempfile::TempDir,
}

/// Where the confidential relay is: its HTTPS address and certificate.
struct Public {
    ip: String,
    cert: std::path::PathBuf,
}

impl World {
    /// The relay's web origin, as a member's browser knows it.
    fn origin(&self) -> String {
        match &self.public {
            Some(_) => format!("https://{PUBLIC_HOST}"),
            None => format!("http://{}", self.relay.http.expect("http")),
        }
    }

    /// A request to the relay's HTTP listener (over verified TLS for the confidential relay).
    fn curl(
        &self,
        method: &str,
        path: &str,
        headers: &[String],
        body: Option<&[u8]>,
    ) -> (u16, Value, String) {
        let url = format!("{}{path}", self.origin());
        match &self.public {
            Some(p) => {
                let resolve = format!("{PUBLIC_HOST}:443:{}", p.ip);
                let cacert = p.cert.display().to_string();
                curl_with(
                    &["--resolve", &resolve, "--cacert", &cacert],
                    method,
                    &url,
                    headers,
                    body,
                )
            }
            None => curl(method, &url, headers, body),
        }
    }
}

/// How the relay is an OAuth client.
enum Client {
    /// `atmos dev`'s: the atproto loopback client on plain HTTP.
    Loopback,
    /// Production's: `public_url = https://relay.atmos.internal`, served by the relay itself with
    /// HTTPS on port 443 of a loopback address of its own, the PDS resolving the name through a
    /// hosts file of its own and trusting the relay's certificate.
    Confidential,
}

/// The public name of the confidential relay: `.internal` is reserved for private use and never
/// delegated; the PDS refuses `.test`, `.local`, `.example` (as local) and `example.com` (deny
/// list) as client hosts.
const PUBLIC_HOST: &str = "relay.atmos.internal";

fn world(client: Client) -> World {
    let knot = Knot::start("test");
    knot.add("rcpt.test", "MX", &["10", "mx.rcpt.test."]);
    knot.add("mx.rcpt.test", "A", &["127.0.0.1"]);
    let sink = SmtpSink::start(&[]);
    let dist = atmos_tests::workspace_root().join("dist");
    assert!(
        dist.join("index.html").exists(),
        "dist/ missing: tests/run builds the UI (trunk build --release)"
    );
    let certs = tempfile::tempdir().expect("tempdir");
    let (pds, web, public) = match client {
        Client::Loopback => (Pds::start(), String::new(), None),
        Client::Confidential => {
            // A loopback address of its own, so port 443 is free whatever else runs.
            let ip = format!(
                "127.{}.{}.{}",
                100 + rand::random::<u8>() % 100,
                rand::random::<u8>(),
                1 + rand::random::<u8>() % 250
            );
            let (cert, key) = self_signed(certs.path(), PUBLIC_HOST);
            let pds = Pds::start_with(&PdsOptions {
                hosts: vec![(ip.clone(), PUBLIC_HOST.to_string())],
                extra_ca: Some(cert.clone()),
            });
            let web = format!(
                "public_url = \"https://{PUBLIC_HOST}\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                cert.display(),
                key.display()
            );
            (pds, web, Some(Public { ip, cert }))
        }
    };
    let mut relay = Relay::new(
        Some(&knot.address()),
        sink.port,
        &format!(
            "[atproto]\nplc_url = \"{}\"\nallow_private_endpoints = true\n\
             [labeler]\nretry_base = \"1s\"\nretry_max = \"2s\"\n\
             [web]\ndist_dir = \"{}\"\n{web}\n",
            pds.plc_url(),
            dist.display()
        ),
    );
    if let Some(Public { ip, .. }) = &public {
        relay.edit_config(|c| {
            c.replace(
                "[http]\nlisten = \"127.0.0.1:0\"",
                &format!("[http]\nlisten = \"{ip}:443\"\ntls = true"),
            )
        });
    }
    relay.env = vec![("ADMIN_TOKEN".into(), TOKEN.into())];
    relay.start();
    // The operator domain's DKIM keys, so delivered mail verifies.
    for r in relay.dns_records(&["operator", "dns"]) {
        if r["type"] == "TXT" {
            knot.add_txt(
                r["name"].as_str().unwrap_or_default(),
                r["value"].as_str().unwrap_or_default(),
            );
        }
    }
    World {
        pds,
        knot,
        sink,
        relay,
        public,
        _certs: certs,
    }
}

/// The records the relay printed for `domain`'s member, published in Knot.
fn publish_dkim(w: &World, domain: &str) {
    let db = w.relay.db();
    let mut stmt = db
        .prepare("SELECT selector, algorithm, public_key FROM dkim_keys WHERE domain = ?1 AND retired_at IS NULL")
        .expect("prepare");
    let keys: Vec<(String, String, String)> = stmt
        .query_map([domain], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .flatten()
        .collect();
    assert_eq!(keys.len(), 2, "an RSA and an Ed25519 key");
    for (selector, algorithm, p) in keys {
        w.knot.add_txt(
            &format!("{selector}._domainkey.{domain}"),
            &format!("v=DKIM1; k={algorithm}; p={p}"),
        );
    }
    w.knot.add_txt(domain, "v=spf1 a:relay.test -all");
    w.knot.add_txt(
        &format!("_dmarc.{domain}"),
        "v=DMARC1; p=reject; adkim=r; aspf=r; rua=mailto:postmaster@operator.test",
    );
}

/// swaks with `user` and `key`; returns (exit code, output).
fn swaks(w: &World, user: &str, key: &str, from: &str, id: &str) -> (i32, String) {
    let submission = w.relay.submission.expect("submission");
    atmos_tests::client::swaks(
        submission,
        user,
        key,
        from,
        "reader@rcpt.test",
        &[("X-Test-Id", id)],
    )
}

fn labels(w: &World, did: &str) -> Vec<String> {
    let (_, v, _) = w.curl(
        "GET",
        &format!("/xrpc/com.atproto.label.queryLabels?uriPatterns={did}"),
        &[],
        None,
    );
    let mut live: Vec<String> = Vec::new();
    for l in v["labels"].as_array().cloned().unwrap_or_default() {
        let val = l["val"].as_str().unwrap_or_default().to_string();
        if l["neg"] == true {
            live.retain(|x| x != &val);
        } else if !live.contains(&val) {
            live.push(val);
        }
    }
    live
}

/// Enrolls `account` through the wizard, typing `identifier`; returns the API key.
fn enroll_in_browser(
    w: &World,
    identifier: &str,
    password: &str,
    domain: &str,
    keyboard: bool,
    shots: &str,
) -> String {
    let mut args = json!({
        "relay": w.origin(), "identifier": identifier, "password": password,
        "domain": domain, "shots": screenshots(shots), "keyboard": keyboard, "expect": "enrolled",
    });
    if let Some(p) = &w.public {
        args["hostRules"] = json!(format!("MAP {PUBLIC_HOST} {}", p.ip));
    }
    let mut b = Wizard::start(&args);
    let signed = b.step(Duration::from_secs(90));
    assert_eq!(signed["step"], "signed-in", "{signed}");
    b.go();
    let enrolled = b.step(Duration::from_secs(90));
    assert_eq!(enrolled["step"], "enrolled", "{enrolled}");
    let key = enrolled["apiKey"].as_str().expect("key").to_string();
    assert!(key.starts_with("atmos_") && key.len() == 38, "{key}");
    assert!(
        enrolled["standing"]
            .as_str()
            .unwrap_or_default()
            .contains("Pending operator approval"),
        "{enrolled}"
    );
    assert!(
        enrolled["swaks"]
            .as_str()
            .unwrap_or_default()
            .contains(&key),
        "{enrolled}"
    );
    publish_dkim(w, domain);
    b.go();
    let done = b.step(Duration::from_secs(120));
    assert_eq!(done["step"], "done", "{done}");
    assert_eq!(done["consoleErrors"], json!([]), "{done}");
    assert_eq!(
        done["accessibility"],
        json!([]),
        "axe-core: serious or critical violations"
    );
    key
}

/// Alice enrolls by DID in the browser, is attested, pending, approved, sends mail that arrives
/// signed four times, and is labelled.
fn alice_enrolls_and_sends(w: &World, shots: &str) {
    let alice = w.pds.create_account("alice.test");
    w.knot
        .add_txt("_atproto.alice.test", &format!("did={}", alice.did));
    w.knot
        .add_txt("_atmos.alice-mail.test", &format!("did={}", alice.did));

    // Typing the DID, signing in on the PDS, proving the domain, getting the key.
    let key = enroll_in_browser(
        w,
        &alice.did,
        &alice.password,
        "alice-mail.test",
        false,
        shots,
    );

    // The attestation is in alice's repo, and valid against lexicons/.
    let record = w
        .pds
        .get_record(&alice.did, "email.atmos.attestation", "alice-mail.test")
        .expect("attestation in the repo");
    let value = &record["value"];
    assert_eq!(
        (value["domain"].as_str(), value["relayMember"].as_bool()),
        (Some("alice-mail.test"), Some(true)),
        "{record}"
    );
    assert_eq!(
        value["dkimSelectors"].as_array().map(Vec::len),
        Some(2),
        "{record}"
    );
    let mut child = Command::new("node")
        .arg(atmos_tests::workspace_root().join("tests/node/validate-lexicons.mjs"))
        .arg(atmos_tests::workspace_root().join("lexicons"))
        .current_dir(atmos_tests::workspace_root().join("tests/node"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("validate");
    {
        use std::io::Write;
        let input = json!({"lexicon": "email.atmos.attestation", "records": [value]});
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.to_string().as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("validate");
    let verdicts: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(verdicts[0]["valid"], true, "lexicon validation: {verdicts}");

    // Pending: SMTP AUTH with the DID and with the handle is refused as pending.
    for user in [alice.did.as_str(), "alice.test"] {
        let (code, out) = swaks(w, user, &key, "hello@alice-mail.test", "pending");
        assert_ne!(code, 0, "{out}");
        assert!(
            out.contains("535 5.7.8 pending operator approval"),
            "{user}: {out}"
        );
    }
    // The labeler learned of the attestation in-process: the DKIM records are live.
    poll_until(Duration::from_secs(60), "verified-mail-operator", || {
        labels(w, &alice.did)
            .contains(&"verified-mail-operator".to_string())
            .then_some(())
    });

    // The operator approves; the mail goes out signed four times, and the labels follow.
    let (status, v, _) = w.curl(
        "POST",
        &format!("/admin/member/{}/approve", alice.did),
        &[format!("Authorization: Bearer {TOKEN}")],
        None,
    );
    assert_eq!(status, 200, "{v}");
    let (code, out) = swaks(w, &alice.did, &key, "hello@alice-mail.test", "approved");
    assert_eq!(code, 0, "{out}");
    let delivered = poll_until(Duration::from_secs(30), "delivery", || {
        w.sink
            .messages_with("X-Test-Id: approved")
            .into_iter()
            .next()
    });
    let file = w.relay.dir.path().join("delivered.eml");
    std::fs::write(&file, &delivered).expect("write");
    let out = Command::new(venv_python())
        .arg(atmos_tests::workspace_root().join("tests/py/dkim_verify.py"))
        .arg(w.knot.port.to_string())
        .arg(&file)
        .output()
        .expect("dkimpy");
    let sigs: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(sigs.len(), 4, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(sigs.iter().all(|s| s["ok"] == true), "{sigs:?}");
    poll_until(Duration::from_secs(60), "relay-member", || {
        labels(w, &alice.did)
            .contains(&"relay-member".to_string())
            .then_some(())
    });
}

#[test]
fn a_member_enrolls_in_the_browser_and_sends_once_approved() {
    let w = world(Client::Loopback);
    alice_enrolls_and_sends(&w, "enroll-did");

    // A second member types a handle (resolved through _atproto in DNS) and does it all with
    // the keyboard.
    let bob = w.pds.create_account("bob.test");
    w.knot
        .add_txt("_atproto.bob.test", &format!("did={}", bob.did));
    w.knot
        .add_txt("_atmos.bob-mail.test", &format!("did={}", bob.did));
    let key = enroll_in_browser(
        &w,
        "bob.test",
        &bob.password,
        "bob-mail.test",
        true,
        "enroll-handle-keyboard",
    );
    let (_, out) = swaks(&w, "bob.test", &key, "hello@bob-mail.test", "bob");
    assert!(out.contains("535 5.7.8 pending operator approval"), "{out}");
}

#[test]
fn the_confidential_client_enrolls_a_member_through_https_and_private_key_jwt() {
    let w = world(Client::Confidential);
    alice_enrolls_and_sends(&w, "enroll-confidential");
    // The PDS fetched the client's metadata and keys from the public origin, and accepted the
    // private_key_jwt assertion (the code exchange needs it: the metadata names no other method).
    let log = w.relay.log(1);
    assert!(log.contains("web: client metadata fetched"), "{log}");
    assert!(log.contains("web: client JWKS fetched"), "{log}");
    let (status, meta, _) = w.curl("GET", "/oauth/client-metadata.json", &[], None);
    assert_eq!(status, 200);
    assert_eq!(
        meta["client_id"],
        format!("https://{PUBLIC_HOST}/oauth/client-metadata.json")
    );
    assert_eq!(meta["token_endpoint_auth_method"], "private_key_jwt");
    // Cookies are Secure on an https origin, and `__Host-` (issue 27, L5: a sibling subdomain
    // cannot plant one with Domain=); the answer carries HSTS and the other security headers.
    let did = w.pds.create_account("carol.test").did;
    let body = json!({ "identifier": did }).to_string();
    let (status, _, head) = w.curl("POST", "/api/signin", &[], Some(body.as_bytes()));
    assert_eq!(status, 200, "{head}");
    let lower = head.to_ascii_lowercase();
    let cookie = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: __host-atmos_signin=")
        })
        .unwrap_or_default();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("Path=/"),
        "{head}"
    );
    assert!(!cookie.contains("Domain="), "{head}");
    for h in [
        "strict-transport-security: max-age=",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
        "frame-ancestors 'none'",
    ] {
        assert!(lower.contains(h), "{h}: {head}");
    }
}
