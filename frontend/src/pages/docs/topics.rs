//! The written documentation topics.

use leptos::prelude::*;

/// The body of `topic` (one of `TOPICS`, except the generated API reference).
pub fn body(topic: &str) -> AnyView {
    match topic {
        "quick-start" => view! {
            <section class="card">
                <ol>
                    <li>"Go to " <a href="/enroll">"/enroll"</a> " and sign in with your atproto handle (any handle that resolves to a DID: " <code>"you.bsky.social"</code> ", your own domain…). You sign in at your PDS; the relay never sees your password."</li>
                    <li>"Name the domain you will send from and prove it is yours: a TXT record at " <code>"_atmos.<domain>"</code> " with the value " <code>"did=<your DID>"</code> ". Your handle and your sending domain do not need to match."</li>
                    <li>"Enroll. The relay makes two DKIM keys, shows your API key " <strong>"once"</strong> ", and writes an " <code>"email.atmos.attestation"</code> " record to your repo so the network can see the enrollment."</li>
                    <li>"Publish the DNS records the page lists (two DKIM keys, SPF, DMARC). The page checks each one live."</li>
                    <li>"Wait for an operator to approve you; until then the relay answers " <code>"535 5.7.8 pending operator approval"</code> "."</li>
                    <li>"Send with SMTP or the HTTP API. Your DID is the username, your API key the password."</li>
                </ol>
                <pre class="command" tabindex="0">"swaks --server relay.example.com:587 --tls --auth PLAIN \\\n  --auth-user did:plc:… --auth-password atmos_… \\\n  --from hello@your-domain --to you@example.org"</pre>
                <p>"New members warm up for two weeks (see " <a href="/docs/warming">"warming"</a> ")."</p>
            </section>
        }.into_any(),
        "smtp" => view! {
            <section class="card">
                <ul>
                    <li>"Submission on port 587 with STARTTLS; the relay refuses AUTH and MAIL before TLS (" <code>"530 5.7.0 Must issue a STARTTLS command first"</code> ")."</li>
                    <li>"AUTH PLAIN (or LOGIN) with your DID or handle and your API key. Many clients default to LOGIN; with swaks pass " <code>"--auth PLAIN"</code> "."</li>
                    <li>"The envelope sender and the " <code>"From:"</code> " header must be at one of your sending domains (" <code>"550 5.7.1 DOMAIN_MISMATCH"</code> "). One " <code>"From:"</code> " header only."</li>
                    <li>"Header lines follow RFC 5322: each ends in CRLF, field names have no spaces, and no control characters but tab appear. Anything else is refused with " <code>"550 5.6.0"</code> ", because mail programs would read it differently."</li>
                    <li><code>"250 2.0.0 queued as <id>"</code> " comes after the message is on disk. Look the id up in " <a href="/account">"your account"</a> " or at " <code>"GET /v1/messages/<id>"</code> "."</li>
                    <li>"Set " <code>"X-Atmos-Category"</code> " to " <code>"login-link"</code> ", " <code>"password-reset"</code> ", " <code>"mfa-otp"</code> " or " <code>"verification"</code> " for auth mail (one recipient, no unsubscribe link, delivered even to people who unsubscribed), " <code>"transactional"</code> " for other one-to-one mail. Anything else is bulk and gets a one-click unsubscribe link per recipient."</li>
                </ul>
            </section>
        }.into_any(),
        "dns" => view! {
            <section class="card">
                <dl class="facts">
                    <dt><code>"_atmos.<domain>"</code>" TXT"</dt><dd><code>"did=<your DID>"</code>": proves the domain is yours (or " <code>"_atproto.<domain>"</code> "). Only DNS proves a mail domain: a handle verified by a web page proves control of a web server, not of the domain's mail."</dd>
                    <dt><code>"atmos<date>r._domainkey"</code>" TXT"</dt><dd>"Your RSA-2048 DKIM key. Longer than 255 bytes: providers that ask for strings get it pre-split on the enroll and account pages."</dd>
                    <dt><code>"atmos<date>e._domainkey"</code>" TXT"</dt><dd>"Your Ed25519 DKIM key."</dd>
                    <dt>"SPF at the domain"</dt><dd>"Authorises the relay's host. If you already have an SPF record, add the relay's " <code>"a:"</code> " or " <code>"include:"</code> " to it: a domain may have only one."</dd>
                    <dt><code>"_dmarc"</code>" TXT"</dt><dd>"Your DMARC policy. The relay signs for your domain, so DMARC aligns."</dd>
                    <dt>"MX (optional)"</dt><dd>"Only if replies to your domain should come through the relay and be forwarded to your address."</dd>
                </dl>
                <p>"Re-enrolling a domain makes new keys with a new date in the selector; publish the new records — the old ones may stay for a day or two while mail in flight is checked."</p>
            </section>
        }.into_any(),
        "warming" => view! {
            <section class="card">
                <p>"The IP is shared, so new senders start slowly. Caps count recipients over rolling windows:"</p>
                <div class="scroll" tabindex="0" role="region" aria-label="Warming tiers">
                <table><thead><tr><th scope="col">"Tier"</th><th scope="col">"Since approval"</th><th scope="col">"Per hour"</th><th scope="col">"Per day"</th></tr></thead>
                <tbody><tr><td>"warming"</td><td>"0–7 days"</td><td>"5"</td><td>"20"</td></tr>
                <tr><td>"ramping"</td><td>"7–14 days"</td><td>"20"</td><td>"100"</td></tr>
                <tr><td>"warmed"</td><td>"14 days on"</td><td>"your limit (100)"</td><td>"your limit (1,000)"</td></tr></tbody></table>
                </div>
                <p>"Over a cap: SMTP " <code>"451 4.7.1 RATE_LIMITED"</code> ", HTTP " <code>"429"</code> " with " <code>"Retry-After"</code> ". Thirty clean days earn " <code>"highly_trusted"</code> " (no warming); hitting the cap often earns a day of " <code>"burst_warming"</code> " (half the hourly cap). Your account page shows your tier and usage."</p>
            </section>
        }.into_any(),
        "bounces" => view! {
            <section class="card">
                <p>"Each recipient is delivered to its own MX. Temporary failures (4xx, timeouts) are retried with growing pauses for up to three days; permanent ones (5xx) bounce at once. A bounce sends a delivery report (RFC 3464) to your domain's forward-to address, set on your account page."</p>
                <p>"Bounces and complaints that come back to the relay count only when they prove the relay sent the message (its signed return path, or its DKIM signature in the returned headers). Proven hard bounces and every complaint add the address to your suppression list; you can remove bounces and unsubscribes, not complaints."</p>
                <p>"The rules suspend a member whose bounce rate over 24 hours passes 5 % or complaint rate passes 0.1 % (from 50 recipients). Your account page shows your rates against those lines."</p>
            </section>
        }.into_any(),
        "labels" => view! {
            <section class="card">
                <p>"The relay runs an atproto labeler. Apps can read its labels with " <code>"com.atproto.label.queryLabels"</code> " and " <code>"subscribeLabels"</code> ":"</p>
                <dl class="facts">
                    <dt><code>"verified-mail-operator"</code></dt><dd>"Your attested domains' DKIM records are live in DNS."</dd>
                    <dt><code>"relay-member"</code></dt><dd>"You are an approved member and your attestation says so."</dd>
                    <dt><code>"clean-sender"</code></dt><dd>"Thirty days of clean sending."</dd>
                </dl>
                <p>"Labels are re-checked daily and withdrawn (negated) when the records, your standing or your attestation change."</p>
            </section>
        }.into_any(),
        "errors" => view! {
            <section class="card">
                <div class="scroll" tabindex="0" role="region" aria-label="Error codes">
                <table><thead><tr><th scope="col">"Code"</th><th scope="col">"HTTP"</th><th scope="col">"Retry?"</th><th scope="col">"What to do"</th></tr></thead>
                <tbody>
                    {[("AUTH_REQUIRED", "400", "no", "Send X-Atmos-DID and Authorization: Bearer, or Basic."),
                      ("INVALID_DID", "400", "no", "The username is not a DID or handle."),
                      ("INVALID_REQUEST", "400", "no", "The message names the field to fix."),
                      ("AUTH_FAILED", "401", "no", "Wrong key; make a new one on your account page."),
                      ("MEMBER_PENDING", "403", "no", "Wait for approval."),
                      ("MEMBER_SUSPENDED", "403", "no", "Your account page says why."),
                      ("DOMAIN_MISMATCH", "403", "no", "Send from one of your domains."),
                      ("PAYLOAD_TOO_LARGE", "413", "no", "At most 1 MiB of JSON."),
                      ("IDEMPOTENCY_CONFLICT", "409", "no", "Same Idempotency-Key, different body."),
                      ("RATE_LIMITED", "429", "yes", "After Retry-After."),
                      ("QUEUE_FULL", "503 (SMTP 451)", "yes", "After Retry-After."),
                      ("INTERNAL", "500", "yes", "Later; tell the operator if it lasts."),
                      ("CSRF", "403", "no", "Reload the page (web session only)."),
                      ("SIGNED_OUT", "401", "no", "Sign in again.")]
                        .into_iter().map(|(c, h, r, w)| view! { <tr><td><code>{c}</code></td><td>{h}</td><td>{r}</td><td>{w}</td></tr> }).collect_view()}
                </tbody></table>
                </div>
            </section>
        }.into_any(),
        _ => view! { <p>"No such topic."</p> }.into_any(),
    }
}
