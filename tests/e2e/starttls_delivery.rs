//! Delivery upgrades to TLS when the MX offers STARTTLS (a real aiosmtpd server with a
//! self-signed certificate: opportunistic TLS does not authenticate the MX), and says EHLO with
//! `server.hostname`.

use atmos_tests::peers::{Dns, TlsMx};
use atmos_tests::relay::Relay;
use atmos_tests::{client, poll_until};
use std::time::Duration;

#[test]
fn delivery_uses_starttls_when_offered() {
    let dns = Dns::with_mx(&["rcpt.test"]);
    let mx = TlsMx::start();
    let mut relay = Relay::new(Some(&dns.address()), mx.port, "");
    let m = relay.add_member("did:plc:hhhhhhhhhhhhhhhhhhhhhhhh", "sender.test", true);
    let addr = relay.start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut s = client::connect(addr, &m.did, &m.api_key)
            .await
            .expect("session");
        let body = client::message("app@sender.test", "x@rcpt.test", "tls-1", 512);
        client::send(&mut s, "app@sender.test", &["x@rcpt.test"], &body)
            .await
            .expect("accepted");
    });
    let msg = poll_until(Duration::from_secs(30), "message at the TLS MX", || {
        mx.messages()
            .into_iter()
            .find(|m| m.contains("X-Test-Id: tls-1"))
    });
    assert!(
        msg.starts_with("X-Seen-TLS: yes\r\n"),
        "delivered in clear:\n{msg}"
    );
    assert!(msg.contains("X-Seen-Helo: relay.test\r\n"), "{msg}");
}
