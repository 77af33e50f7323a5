//! The router and the frame every page shares.

use crate::pages;
use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

/// The app.
#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <a class="skip" href="#main">"Skip to the content"</a>
            <header class="site">
                <nav aria-label="Site">
                    <A href="/" attr:class="brand">"Atmosphere Mail"</A>
                    <A href="/docs">"Docs"</A>
                    <A href="/faq">"FAQ"</A>
                    <A href="/account">"Account"</A>
                    <A href="/enroll">"Join"</A>
                </nav>
            </header>
            <main id="main" tabindex="-1">
                <Routes fallback=|| view! { <h1>"Page not found"</h1><p><a href="/">"Back to the start"</a></p> }>
                    <Route path=path!("/") view=pages::home::Home />
                    <Route path=path!("/enroll") view=pages::enroll::Enroll />
                    <Route path=path!("/account") view=pages::account::Account />
                    <Route path=path!("/account/messages/:id") view=pages::account::messages::MessageDetail />
                    <Route path=path!("/admin") view=pages::admin::Overview />
                    <Route path=path!("/admin/members") view=pages::admin::members::Members />
                    <Route path=path!("/admin/members/:did") view=pages::admin::members::MemberPage />
                    <Route path=path!("/admin/queue") view=pages::admin::queue::Queue />
                    <Route path=path!("/admin/logs") view=pages::admin::logs::Logs />
                    <Route path=path!("/admin/inbound") view=pages::admin::logs::Inbound />
                    <Route path=path!("/admin/labels") view=pages::admin::labels::Labels />
                    <Route path=path!("/docs") view=pages::docs::DocsIndex />
                    <Route path=path!("/docs/:topic") view=pages::docs::DocsTopic />
                    <Route path=path!("/faq") view=pages::faq::Faq />
                </Routes>
            </main>
        </Router>
    }
}
