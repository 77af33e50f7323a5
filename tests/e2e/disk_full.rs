//! Issue 12 §3: the data directory on a small filesystem of its own (a tmpfs mounted by the
//! test, as root) fills while mail is submitted → `451 4.3.1` over SMTP and `503 QUEUE_FULL`
//! over HTTP, never a 250/200 for mail not on disk; once space returns the same process accepts
//! mail again, and every acknowledged message is delivered. And the spool's fault hook (debug
//! builds): one injected commit failure fails exactly the messages of that batch with 451.

use atmos_relay::spool::fault::FAIL_NEXT_COMMIT;
use atmos_tests::peers::{Dns, SmtpSink};
use atmos_tests::relay::Relay;
use atmos_tests::setup::{DID, RCPT_DOMAIN, SENDER_DOMAIN, World};
use atmos_tests::{client, poll_until};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A tmpfs mounted on a directory for the test's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs on {} failed", dir.display());
        Self(dir.to_path_buf())
    }

    fn available(&self) -> u64 {
        let s = rustix::fs::statvfs(&self.0).expect("statvfs");
        s.f_bavail * s.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

enum Outcome {
    Acked,
    Refused(String),
}

async fn smtp_once(addr: std::net::SocketAddr, key: &str, id: &str) -> Outcome {
    let (from, to) = (
        format!("app@{SENDER_DOMAIN}"),
        format!("full@{RCPT_DOMAIN}"),
    );
    let mut s = match client::connect(addr, DID, key).await {
        Ok(s) => s,
        Err(e) => return Outcome::Refused(format!("connect: {e}")),
    };
    match client::send(
        &mut s,
        &from,
        &[&to],
        &client::message(&from, &to, id, 16_000),
    )
    .await
    {
        Ok(_) => Outcome::Acked,
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

async fn http_once(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    key: &str,
    id: &str,
) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "from": format!("app@{SENDER_DOMAIN}"), "to": format!("full@{RCPT_DOMAIN}"),
        "subject": "full", "text": "x".repeat(16_000), "headers": {"X-Test-Id": id},
    });
    let r = http
        .post(format!("http://{addr}/v1/send"))
        .header("X-Atmos-DID", DID)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("HTTP answer");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[test]
fn a_full_disk_refuses_with_451_and_503_and_recovers_by_itself() {
    if !is_root() {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let dns = Dns::with_mx(&[RCPT_DOMAIN]);
    // The MX is down: nothing leaves the queue while the disk fills.
    let mut sink = SmtpSink::stopped();
    let mut relay = Relay::new(Some(&dns.address()), sink.port, "");
    // The queue cap is far above the disk: the disk is what runs out.
    relay.env = vec![("ATMOS_SERVER_MAX_QUEUE_BYTES".into(), "1073741824".into())];
    let disk = Tmpfs::mount(&relay.data_dir(), "24m");
    let member = relay.add_member(DID, SENDER_DOMAIN, true);
    relay.trust(DID);
    let submission = relay.start();
    let http_addr = relay.http.expect("http");
    let filler = disk.0.join("filler");
    std::fs::write(
        &filler,
        vec![0u8; (disk.available() - 3 * 1024 * 1024) as usize],
    )
    .expect("fill the disk");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::new();
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    let (mut smtp_refusal, mut http_refusal) = (None, None);
    rt.block_on(async {
        for n in 0..2000 {
            if smtp_refusal.is_some() && http_refusal.is_some() {
                break;
            }
            let id = format!("fill-{n}");
            if n % 2 == 0 {
                match smtp_once(submission, &member.api_key, &id).await {
                    Outcome::Acked => acked.push(id),
                    Outcome::Refused(why) => {
                        refused.push(id);
                        smtp_refusal.get_or_insert(why);
                    }
                }
            } else {
                match http_once(&http, http_addr, &member.api_key, &id).await {
                    (200, _) => acked.push(id),
                    (status, v) => {
                        refused.push(id);
                        http_refusal.get_or_insert((status, v));
                    }
                }
            }
        }
    });
    let smtp_refusal = smtp_refusal.expect("the full disk never refused SMTP mail");
    assert!(
        smtp_refusal.contains("451") && smtp_refusal.contains("4.3.1"),
        "{smtp_refusal}"
    );
    let (status, body) = http_refusal.expect("the full disk never refused HTTP mail");
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("QUEUE_FULL")),
        "{body}"
    );
    assert!(
        acked.len() >= 10,
        "only {} accepted before the disk filled",
        acked.len()
    );

    // Space returns: the same process takes mail again, with no restart.
    std::fs::remove_file(&filler).expect("free the disk");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    rt.block_on(async {
        for n in 0.. {
            let id = format!("after-{n}");
            if let Outcome::Acked = smtp_once(submission, &member.api_key, &id).await {
                acked.push(id);
                break;
            }
            refused.push(id);
            assert!(
                std::time::Instant::now() < deadline,
                "no SMTP mail accepted after space returned"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = http_once(&http, http_addr, &member.api_key, "after-http").await;
        assert_eq!(status, 200, "{body}");
        acked.push("after-http".into());
    });

    // Every acknowledged message is delivered; nothing refused ever leaves.
    sink.restart(&[]);
    let delivered = poll_until(
        Duration::from_secs(120),
        "every acknowledged message delivered",
        || {
            let ids = sink.test_ids();
            acked.iter().all(|id| ids.contains_key(id)).then_some(ids)
        },
    );
    let leaked: Vec<&String> = refused
        .iter()
        .filter(|id| delivered.contains_key(*id))
        .collect();
    assert!(
        leaked.is_empty(),
        "refused messages were delivered: {leaked:?}"
    );
    poll_until(Duration::from_secs(60), "an empty queue", || {
        (relay.count("SELECT COUNT(*) FROM recipients WHERE status IN ('accepted', 'deferred')")
            == 0)
            .then_some(())
    });
    eprintln!(
        "disk full: {} acknowledged and delivered, {} refused (none delivered); SMTP: {smtp_refusal}; HTTP: {status} {}",
        acked.len(),
        refused.len(),
        body["code"]
    );
    relay.assert_logs_hold_no_secrets();
    drop(relay);
}

#[test]
fn an_injected_commit_failure_fails_exactly_its_batch() {
    let world = World::start(Some(&[]), "");
    let trigger = world.relay.data_dir().join(FAIL_NEXT_COMMIT);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let key = world.member.api_key.clone();
    // Ten sessions ready at DATA's end, so their messages reach the spool together.
    let results: Vec<(String, bool)> = rt.block_on(async {
        let mut sessions = Vec::new();
        for _ in 0..10 {
            sessions.push(
                client::connect(world.submission, DID, &key)
                    .await
                    .expect("session"),
            );
        }
        std::fs::write(&trigger, b"").expect("arm the fault");
        let mut tasks = Vec::new();
        for (n, mut s) in sessions.into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let (from, to) = (
                    format!("app@{SENDER_DOMAIN}"),
                    format!("batch@{RCPT_DOMAIN}"),
                );
                let id = format!("batch-{n}");
                let r = client::send(
                    &mut s,
                    &from,
                    &[&to],
                    &client::message(&from, &to, &id, 1000),
                )
                .await;
                if let Err(e) = &r {
                    assert!(e.to_string().contains("451"), "not a 451: {e}");
                }
                (id, r.is_ok())
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    assert!(!trigger.exists(), "the fault was never taken");
    let failed: Vec<&String> = results
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(id, _)| id)
        .collect();
    // The log is coloured; the batch size is the number after `jobs` on the failure's line.
    let log = world.relay.plain_log(1);
    let batch: usize = log
        .lines()
        .find(|l| l.contains("injected commit failure"))
        .and_then(|l| l.split("jobs=").nth(1))
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|v| v.parse().ok())
        .expect("the injected failure is logged with its batch size");
    assert_eq!(
        failed.len(),
        batch,
        "exactly the failed batch was refused: {results:?}"
    );
    // What was refused is not on disk; what was acknowledged is, and is delivered.
    let ok: Vec<&String> = results
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(id, _)| id)
        .collect();
    let delivered = poll_until(
        Duration::from_secs(60),
        "acknowledged batch mail delivered",
        || {
            let ids = world.sink.test_ids();
            ok.iter().all(|id| ids.contains_key(*id)).then_some(ids)
        },
    );
    assert!(
        failed.iter().all(|id| !delivered.contains_key(*id)),
        "a refused message left"
    );
    assert_eq!(
        world.relay.count("SELECT COUNT(*) FROM messages") as usize,
        ok.len(),
        "the failed batch left rows behind"
    );
    // The next batch commits.
    rt.block_on(async {
        let mut s = client::connect(world.submission, DID, &key)
            .await
            .expect("session");
        let (from, to) = (
            format!("app@{SENDER_DOMAIN}"),
            format!("batch@{RCPT_DOMAIN}"),
        );
        client::send(
            &mut s,
            &from,
            &[&to],
            &client::message(&from, &to, "next", 1000),
        )
        .await
        .expect("the next message is accepted");
    });
}
