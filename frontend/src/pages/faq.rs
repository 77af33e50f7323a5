//! `/faq`.

use leptos::prelude::*;

/// Questions people ask.
#[component]
pub fn Faq() -> impl IntoView {
    let qa = [
        (
            "Do my handle and my sending domain have to match?",
            "No. Sign in as you.bsky.social and send from news.example.com; you prove the domain with a TXT record naming your DID.",
        ),
        (
            "How many domains can I enroll?",
            "Up to the relay's limit (two unless the operator changed it). Add more on your account page.",
        ),
        (
            "I lost my API key.",
            "Make a new one on your account page. The old key stops working at once; the relay never stored it, only its hash.",
        ),
        (
            "Why does the relay say 'pending operator approval'?",
            "Every new sender shares the IP's reputation, so an operator looks at each enrollment before it can send.",
        ),
        (
            "Is accepted mail safe if the relay restarts?",
            "Yes: the relay answers only after the message is written and synced to disk, and resumes delivery when it starts again.",
        ),
        (
            "My mail goes to spam.",
            "Expected for a new sender at first. Check that DKIM, SPF and DMARC pass in a received copy's headers, send to people who expect your mail, and keep bounces low.",
        ),
        (
            "Can someone get me suspended by sending fake complaints?",
            "No: a report counts only when it proves the relay sent the message, and only for that message's recipients.",
        ),
        (
            "What does the relay write to my repo?",
            "One email.atmos.attestation record per domain (its DKIM selectors and that you are a relay member). Removing the domain deletes it.",
        ),
    ];
    view! {
        <h1>"Questions and answers"</h1>
        <section class="card faq">
            {qa.into_iter().map(|(q, a)| view! { <details><summary>{q}</summary><p>{a}</p></details> }).collect_view()}
        </section>
    }
}
