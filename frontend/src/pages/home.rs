//! `/`: what the cooperative is and how to join.

use leptos::prelude::*;

/// The landing page.
#[component]
pub fn Home() -> impl IntoView {
    view! {
        <h1>"Atmosphere Mail"</h1>
        <section class="card">
            <p>"A cooperative email relay for atproto identities: sign in with your handle, prove your sending domain in DNS, and send transactional mail over SMTP or an HTTP API — signed for your domain, delivered, and tracked."</p>
            <p><a href="/enroll">"Join with your atproto handle"</a></p>
        </section>
    }
}
