//! Suppression: the RFC 8058 one-click URL from a delivered message records an unsubscribe (GET
//! changes nothing); suppressed recipients are dropped or refused on SMTP and listed in
//! `rejected` on HTTP; auth categories bypass unsubscribes but not bounces; hard bounces suppress;
//! members list and delete entries.

use atmos_tests::client;
use atmos_tests::http::curl;
use atmos_tests::poll_until;
use atmos_tests::setup::{RCPT_DOMAIN, World};
use serde_json::{Value, json};
use std::time::Duration;

#[test]
fn unsubscribe_bounce_and_member_list() {
    let mut world = World::start(Some(&[]), "");
    let http = world.relay.http.expect("http");
    let headers = vec![
        format!("X-Atmos-DID: {}", world.member.did),
        format!("Authorization: Bearer {}", world.member.api_key),
    ];
    let reader = format!("reader@{RCPT_DOMAIN}");
    let send = |to: &[&str], category: Option<&str>| -> Value {
        let mut body =
            json!({"from": "news@sender.test", "to": to, "subject": "news", "text": "hello"});
        if let Some(c) = category {
            body["category"] = json!(c);
        }
        let (status, v, _) = curl(
            "POST",
            &format!("http://{http}/v1/send"),
            &headers,
            Some(body.to_string().as_bytes()),
        );
        assert_eq!(status, 200, "{v}");
        v
    };
    let count = |sql: &str| world.relay.count(sql);

    // A bulk message carries the one-click URL; GET shows a page, POST unsubscribes.
    send(&[&reader], None);
    let msg = poll_until(Duration::from_secs(20), "bulk message delivered", || {
        world
            .sink
            .messages_with("List-Unsubscribe:")
            .into_iter()
            .next()
    });
    let token = msg
        .lines()
        .find_map(|l| l.strip_prefix("List-Unsubscribe: <https://relay.test/unsubscribe/"))
        .and_then(|t| t.strip_suffix('>'))
        .expect("List-Unsubscribe URL")
        .to_string();
    let url = format!("http://{http}/unsubscribe/{token}");
    let (status, _, _) = curl("GET", &url, &[], None);
    assert_eq!(status, 200);
    assert_eq!(
        count("SELECT count(*) FROM suppressions"),
        0,
        "GET must not unsubscribe"
    );
    let (status, _, _) = curl(
        "GET",
        &format!("http://{http}/unsubscribe/{token}x"),
        &[],
        None,
    );
    assert_eq!(status, 400, "a damaged token is refused");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "--data",
            "List-Unsubscribe=One-Click",
            &url,
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert_eq!(
        count("SELECT count(*) FROM suppressions WHERE reason = 'unsubscribe'"),
        1
    );

    // HTTP: bulk to the unsubscribed reader is rejected; an auth category bypasses it.
    let v = send(&[&reader, "other@rcpt.test"], None);
    assert_eq!(v["accepted"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["rejected"][0]["recipient"], reader.as_str());
    assert_eq!(v["rejected"][0]["code"], "SUPPRESSED");
    let v = send(&[&reader], Some("password-reset"));
    assert_eq!(
        v["accepted"][0]["recipient"],
        reader.as_str(),
        "auth mail bypasses unsubscribes"
    );

    // SMTP: known only after DATA for unsubscribes: the lone recipient is refused.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let smtp = |to: &str| -> Result<String, String> {
        rt.block_on(async {
            let mut s = client::connect(world.submission, &world.member.did, &world.member.api_key)
                .await
                .expect("session");
            let body = client::message("news@sender.test", to, "smtp-sup", 300);
            client::send(&mut s, "news@sender.test", &[to], &body)
                .await
                .map_err(|e| e.to_string())
        })
    };
    let err = smtp(&reader).expect_err("suppressed");
    assert!(
        err.contains("550") && err.contains("suppressed recipient"),
        "{err}"
    );

    // Member API lists and removes it.
    let (status, list, _) = curl(
        "GET",
        &format!("http://{http}/member/suppressions"),
        &headers,
        None,
    );
    assert_eq!(
        (
            status,
            list[0]["address"].as_str(),
            list[0]["reason"].as_str()
        ),
        (200, Some(reader.as_str()), Some("unsubscribe"))
    );
    let (status, _, _) = curl(
        "DELETE",
        &format!("http://{http}/member/suppressions?address={reader}"),
        &headers,
        None,
    );
    assert_eq!(status, 200);
    assert!(smtp(&reader).is_ok(), "deliverable again after removal");
    // Let that message reach the sink before it starts refusing, or it would bounce too.
    poll_until(Duration::from_secs(20), "delivery after removal", || {
        (count("SELECT count(*) FROM recipients WHERE status NOT IN ('sent', 'bounced')") == 0)
            .then_some(())
    });

    // A hard bounce (5.1.1) suppresses; RCPT then refuses at once, even for auth mail on HTTP.
    world
        .sink
        .restart(&["-f", "rcpt", "-B", "550 5.1.1 no such user"]);
    let gone = format!("gone@{RCPT_DOMAIN}");
    send(&[&gone], None);
    poll_until(Duration::from_secs(20), "bounce suppression", || {
        (count("SELECT count(*) FROM suppressions WHERE reason = 'bounce'") == 1).then_some(())
    });
    let err = rt.block_on(async {
        let (mut c, _) = client::probe_tls(world.submission).await;
        c.cmd(format!(
            "{}\r\n",
            client::auth_plain_line(&world.member.did, &world.member.api_key)
        ))
        .await
        .expect("auth");
        c.cmd(b"MAIL FROM:<news@sender.test>\r\n")
            .await
            .expect("mail");
        c.cmd(format!("RCPT TO:<{gone}>\r\n")).await.expect("rcpt")
    });
    assert_eq!(
        (err.code, err.message.as_str()),
        (550, "suppressed recipient")
    );
    let v = send(&[&gone], Some("password-reset"));
    assert_eq!(
        v["rejected"][0]["code"], "SUPPRESSED",
        "bounces are not bypassed"
    );
}
