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
            <header class="site">
                <nav aria-label="Site">
                    <A href="/" attr:class="brand">"Atmosphere Mail"</A>
                    <A href="/enroll">"Join"</A>
                </nav>
            </header>
            <main id="main">
                <Routes fallback=|| view! { <h1>"Page not found"</h1><p><a href="/">"Back to the start"</a></p> }>
                    <Route path=path!("/") view=pages::home::Home />
                    <Route path=path!("/enroll") view=pages::enroll::Enroll />
                </Routes>
            </main>
        </Router>
    }
}
