//! The HTTP API reference, read from `/openapi.json` at view time: every path and method with
//! its summary, parameters, request body and responses.

use crate::api;
use crate::components::loading;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

/// One operation's section.
fn operation(path: &str, method: &str, op: &Value) -> impl IntoView + use<> {
    let id = format!("{method}-{}", path.replace(['/', '{', '}', '.'], "-"));
    let summary = op["summary"]
        .as_str()
        .or(op["description"].as_str())
        .unwrap_or_default()
        .to_string();
    let description = op["description"]
        .as_str()
        .filter(|d| *d != summary)
        .map(str::to_string);
    let params = op["parameters"].as_array().cloned().unwrap_or_default().into_iter().map(|p| view! {
        <tr><td><code>{p["name"].as_str().unwrap_or_default().to_string()}</code></td><td>{p["in"].as_str().unwrap_or_default().to_string()}</td>
            <td>{if p["required"] == true { "yes" } else { "no" }}</td><td>{p["description"].as_str().unwrap_or_default().to_string()}</td></tr>
    }).collect_view();
    let has_params = op["parameters"].as_array().is_some_and(|a| !a.is_empty());
    let responses = op["responses"].as_object().cloned().unwrap_or_default().into_iter().map(|(code, r)| view! {
        <li><code>{code}</code>" " {r["description"].as_str().unwrap_or_default().to_string()}</li>
    }).collect_view();
    let auth = op["security"]
        .as_array()
        .and_then(|s| s.first())
        .and_then(|s| s.as_object())
        .and_then(|o| o.keys().next().cloned());
    view! {
        <article class="operation card" id=id.clone()>
            <h3><span class=format!("method {method}")>{method.to_uppercase()}</span>" " <code>{path.to_string()}</code></h3>
            <p>{summary}</p>
            {description.map(|d| view! { <p class="hint">{d}</p> })}
            {auth.map(|a| view! { <p class="hint">{match a.as_str() { "admin" => "Operators: the admin token or an operator's session.", "member" => "Members: the DID and API key, or your signed-in session.", _ => "Authenticated." }}</p> })}
            {has_params.then(|| view! {
                <div class="scroll" tabindex="0" role="region" aria-label=format!("Parameters of {method} {path}")>
                <table><thead><tr><th scope="col">"Parameter"</th><th scope="col">"In"</th><th scope="col">"Required"</th><th scope="col">"About"</th></tr></thead><tbody>{params}</tbody></table>
                </div>
            })}
            <h4>"Answers"</h4>
            <ul>{responses}</ul>
        </article>
    }
}

/// One documented operation: (path, method, its OpenAPI object).
type Operation = (String, String, Value);

/// The reference.
#[component]
pub fn Reference() -> impl IntoView {
    let spec = RwSignal::new(None::<Result<Value, api::ApiError>>);
    spawn_local(async move { spec.set(Some(api::get("/openapi.json").await)) });
    move || match spec.get() {
        None => loading::spinner(" Reading /openapi.json…"),
        Some(Err(e)) => loading::failed(&e),
        Some(Ok(s)) => {
            let mut by_tag: Vec<(String, Vec<Operation>)> = Vec::new();
            for (path, item) in s["paths"].as_object().cloned().unwrap_or_default() {
                for (method, op) in item.as_object().cloned().unwrap_or_default() {
                    let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
                    match by_tag.iter_mut().find(|(t, _)| *t == tag) {
                        Some((_, ops)) => ops.push((path.clone(), method, op)),
                        None => by_tag.push((tag, vec![(path.clone(), method, op)])),
                    }
                }
            }
            let version = s["info"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            view! {
                <section class="card">
                    <p>"Every endpoint of this relay (OpenAPI 3.1, version " {version} "). Errors are " <code>"{\"error\": text, \"code\": CODE}"</code> " — see " <a href="/docs/errors">"error codes"</a> ". The machine-readable document is at " <a href="/openapi.json">"/openapi.json"</a> "."</p>
                    <nav aria-label="API sections"><ul class="inline-list">{by_tag.iter().map(|(t, _)| view! { <li><a href=format!("#tag-{t}")>{t.clone()}</a></li> }).collect_view()}</ul></nav>
                </section>
                {by_tag.into_iter().map(|(tag, ops)| view! {
                    <section aria-labelledby=format!("tag-{tag}")>
                        <h2 id=format!("tag-{tag}")>{tag.clone()}</h2>
                        {ops.into_iter().map(|(p, m, op)| operation(&p, &m, &op)).collect_view()}
                    </section>
                }).collect_view()}
            }.into_any()
        }
    }
}
