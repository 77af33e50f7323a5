//! `/docs` and `/docs/:topic`: how to use the relay. The HTTP API reference is drawn from the
//! relay's own `/openapi.json` (`api.rs`), not retyped; the rest is written here.

mod api;
mod topics;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

/// Topics in reading order: (slug, title).
pub const TOPICS: [(&str, &str); 8] = [
    ("quick-start", "Quick start"),
    ("smtp", "Sending over SMTP"),
    ("http-api", "HTTP API reference"),
    ("dns", "DNS records"),
    ("warming", "Warming and limits"),
    ("bounces", "Bounces and complaints"),
    ("labels", "Trust labels"),
    ("errors", "Error codes"),
];

/// The topic list, with the current one marked.
#[component]
fn TopicNav(current: String) -> impl IntoView {
    view! {
        <nav class="subnav" aria-label="Documentation topics">
            {TOPICS.into_iter().map(|(slug, title)| {
                let here = (current == slug).then_some("page");
                view! { <a href=format!("/docs/{slug}") aria-current=here>{title}</a> }
            }).collect_view()}
        </nav>
    }
}

/// `/docs`.
#[component]
pub fn DocsIndex() -> impl IntoView {
    view! {
        <h1>"Documentation"</h1>
        <TopicNav current=String::new() />
        <section class="card">
            <p>"Everything a member needs to send through Atmosphere Mail. Start with the quick start; the HTTP API reference is generated from the relay you are reading it on."</p>
            <ul>{TOPICS.into_iter().map(|(slug, title)| view! { <li><a href=format!("/docs/{slug}")>{title}</a></li> }).collect_view()}</ul>
        </section>
    }
}

/// `/docs/:topic`.
#[component]
pub fn DocsTopic() -> impl IntoView {
    let params = use_params_map();
    move || {
        let topic = params.read().get("topic").unwrap_or_default();
        let title = TOPICS.iter().find(|(s, _)| *s == topic).map(|(_, t)| *t);
        match title {
            None => view! { <h1>"No such topic"</h1><p><a href="/docs">"All topics"</a></p> }.into_any(),
            Some(title) => view! {
                <h1>{title}</h1>
                <TopicNav current=topic.clone() />
                {if topic == "http-api" { view! { <api::Reference /> }.into_any() } else { topics::body(&topic) }}
            }.into_any(),
        }
    }
}
