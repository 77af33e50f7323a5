//! `/`: what the cooperative is and how to join.

use leptos::prelude::*;

/// The landing page.
#[component]
pub fn Home() -> impl IntoView {
    view! {
        <section class="hero">
            <h1>"Email for your atproto identity"</h1>
            <p class="lead">"Atmosphere Mail is a cooperative relay: members share one well-kept sending IP, and every message carries proof of who sent it — DKIM for your domain, the cooperative's own signature, and a trust label on the atproto network."</p>
            <p class="row"><a class="button" href="/enroll">"Join with your handle"</a> <a class="button secondary" href="/docs">"Read the docs"</a></p>
        </section>
        <section class="card" aria-labelledby="how-title">
            <h2 id="how-title">"How it works"</h2>
            <ol class="how">
                <li><strong>"Sign in with atproto."</strong>" You sign in at your own PDS; the relay never sees your password."</li>
                <li><strong>"Prove your domain."</strong>" Publish one TXT record naming your DID. Your handle and your sending domain can differ."</li>
                <li><strong>"Publish your DKIM keys."</strong>" The relay makes them and shows the records; a live check tells you when they are right."</li>
                <li><strong>"Send."</strong>" Over SMTP submission or an HTTP API, with your DID as username and your API key as password, once an operator approves you."</li>
            </ol>
        </section>
        <section class="card" aria-labelledby="promise-title">
            <h2 id="promise-title">"What the relay promises"</h2>
            <ul>
                <li>"Accepted means on disk: a 250 or 200 comes after the message is written and synced."</li>
                <li>"Every recipient's fate is recorded: delivered, waiting to retry, or bounced — with the remote server's words."</li>
                <li>"Bounces and complaints are honoured only with proof the relay sent the message, so nobody can get a member suspended by forging reports."</li>
                <li>"New senders warm up slowly, which keeps the shared IP welcome at Gmail, Outlook and Yahoo."</li>
            </ul>
            <p><a href="/faq">"Questions people ask"</a></p>
        </section>
    }
}
