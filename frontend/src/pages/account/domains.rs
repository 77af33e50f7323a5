//! The member's domains: each one's DNS records checked live, its attestation in the repo, its
//! forward-to address; add a domain (up to the limit), remove one, re-enroll (new keys).

use super::{Outcome, OutcomeLine};
use crate::api;
use crate::components::loading;
use crate::components::records::RecordList;
use crate::components::time;
use atmos_lexicons::api::{AttestationCheck, RecordCheck};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

/// Every domain, and the form to add one.
#[component]
pub fn Domains(
    status: Value,
    csrf: String,
    max: u32,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let domains: Vec<(String, Option<String>, bool)> = status["domains"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["domain"].as_str().unwrap_or_default().to_string(),
                d["forwardTo"].as_str().map(str::to_string),
                d["approved"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    let count = domains.len() as u32;
    let csrf = StoredValue::new(csrf);
    view! {
        <section class="card" aria-labelledby="domains-title">
            <h2 id="domains-title">"Domains"</h2>
            <p class="hint">{format!("{count} of {max} domains.")}</p>
            {domains.into_iter().map(|(d, fwd, approved)| view! { <Domain domain=d forward_to=fwd approved csrf=csrf.get_value() reload /> }).collect_view()}
            {(count < max).then(|| view! { <AddDomain csrf=csrf.get_value() reload /> })}
        </section>
    }
}

/// One domain.
#[component]
fn Domain(
    domain: String,
    forward_to: Option<String>,
    approved: bool,
    csrf: String,
    reload: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let domain = StoredValue::new(domain);
    let csrf = StoredValue::new(csrf);
    let records = RwSignal::new(None::<Result<Vec<RecordCheck>, api::ApiError>>);
    let checked_at = RwSignal::new(0i64);
    let attestation = RwSignal::new(None::<Result<AttestationCheck, api::ApiError>>);
    let outcome = RwSignal::new(None::<Outcome>);
    let busy = RwSignal::new(false);
    let forward = RwSignal::new(forward_to.unwrap_or_default());
    let check = move || {
        records.set(None);
        spawn_local(async move {
            records.set(Some(api::domain_dns(&domain.get_value()).await));
            checked_at.set(time::now_ms());
        });
        spawn_local(async move {
            let path = format!("/api/domains/{}/attestation", api::enc(&domain.get_value()));
            attestation.set(Some(api::get(&path).await.and_then(|v| {
                serde_json::from_value(v).map_err(|e| api::ApiError {
                    code: "UNEXPECTED".into(),
                    message: e.to_string(),
                    details: None,
                })
            })));
        });
    };
    check();
    let act = move |method: &'static str, path: String, body: Option<Value>, done: String| {
        busy.set(true);
        spawn_local(async move {
            match api::send(method, &path, &csrf.get_value(), body.as_ref()).await {
                Ok(_) => {
                    outcome.set(Some(Outcome::Done(done)));
                    reload();
                }
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
            busy.set(false);
        });
    };
    let d = domain.get_value();
    let id = d.replace('.', "-");
    let save_forward = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let address = forward.get_untracked().trim().to_string();
        let body = serde_json::json!({ "domain": domain.get_value(), "address": if address.is_empty() { Value::Null } else { Value::from(address.clone()) } });
        let done = if address.is_empty() {
            "Bounce notices are no longer forwarded.".to_string()
        } else {
            format!("Bounce notices go to {address}.")
        };
        act("PUT", "/member/forward-to".into(), Some(body), done);
    };
    let remove = move |_| {
        let ok = web_sys::window()
            .and_then(|w| w.confirm_with_message(&format!("Remove {}? Its DKIM keys are deleted and the attestation is removed from your repo.", domain.get_value())).ok())
            .unwrap_or(false);
        if ok {
            act(
                "DELETE",
                format!("/api/domains/{}", api::enc(&domain.get_value())),
                None,
                format!("{} was removed.", domain.get_value()),
            );
        }
    };
    let rotate = move |_| {
        act(
            "POST",
            format!("/api/domains/{}/rotate", api::enc(&domain.get_value())),
            None,
            "New DKIM keys were made and the attestation updated: publish the new records below."
                .into(),
        );
    };
    view! {
        <article class="domain" aria-labelledby=format!("domain-{id}") data-domain=d.clone()>
            <h3 id=format!("domain-{id}")><code>{d.clone()}</code></h3>
            {(!approved).then(|| view! {
                <p class="review"><span class="badge pending">"awaiting review"</span>
                    " An operator looks at every domain added after approval; it sends once they approve it."</p>
            })}
            <OutcomeLine outcome id=format!("domain-outcome-{id}") />
            <div class="attestation">
                {move || match attestation.get() {
                    None => loading::spinner(" Reading your repo…"),
                    Some(Err(e)) => view! { <p class="error">"Attestation: " {e.shown()}</p> }.into_any(),
                    Some(Ok(a)) => {
                        let (class, text) = match (a.present, a.matches) {
                            (true, true) => ("status ok", "Attestation in your repo, matching the relay's keys".to_string()),
                            (true, false) => ("status different", format!("Attestation in your repo names {} — re-enroll to update it", a.selectors.join(", "))),
                            _ => ("status missing", "No attestation in your repo — re-enroll to write it".to_string()),
                        };
                        view! { <p><span class=class data-attestation=a.matches.to_string()>{text}</span>" " <span class="hint mono">{a.uri.clone()}</span></p> }.into_any()
                    }
                }}
            </div>
            <form class="row" on:submit=save_forward>
                <label for=format!("forward-{id}") class="inline">"Bounce notices to"</label>
                <input type="email" id=format!("forward-{id}") placeholder="bounces@example.com" autocomplete="email"
                    prop:value=move || forward.get() on:input=move |ev| forward.set(event_target_value(&ev)) />
                <button type="submit" class="secondary" disabled=move || busy.get()>"Save"</button>
            </form>
            <div class="row">
                <button type="button" class="secondary recheck" on:click=move |_| check()>"Check DNS again"</button>
                <button type="button" class="secondary" on:click=rotate disabled=move || busy.get()>"Re-enroll (new keys)"</button>
                <button type="button" class="danger" on:click=remove disabled=move || busy.get()>"Remove domain"</button>
                {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
            </div>
            {move || (checked_at.get() > 0).then(|| view! { <p class="hint">"Last checked " {time::local(checked_at.get())}</p> })}
            {move || match records.get() {
                None => loading::spinner(" Checking DNS…"),
                Some(Err(e)) => loading::failed(&e),
                Some(Ok(r)) => view! { <details><summary>{format!("DNS records ({} live of {})", r.iter().filter(|c| c.status == "ok").count(), r.len())}</summary><RecordList records=r /></details> }.into_any(),
            }}
        </article>
    }
}

/// A second (or later) domain: ownership first, then enroll.
#[component]
fn AddDomain(csrf: String, reload: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let domain = RwSignal::new(String::new());
    let outcome = RwSignal::new(None::<Outcome>);
    let busy = RwSignal::new(false);
    let csrf = StoredValue::new(csrf);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let d = domain.get_untracked().trim().to_ascii_lowercase();
        if d.is_empty() {
            outcome.set(Some(Outcome::Failed("Type the domain to add.".into())));
            return;
        }
        busy.set(true);
        spawn_local(async move {
            match api::add_domain(&csrf.get_value(), &d).await {
                Ok(e) => {
                    outcome.set(Some(Outcome::Done(format!(
                        "{} was added: publish its DNS records.",
                        e.domain
                    ))));
                    reload();
                }
                Err(e) => {
                    let hint = e.details.as_ref().and_then(|d| {
                        Some(format!(
                            " Publish TXT {} = {}",
                            d["expectedName"].as_str()?,
                            d["expectedValue"].as_str()?
                        ))
                    });
                    outcome.set(Some(Outcome::Failed(format!(
                        "{}{}",
                        e.shown(),
                        hint.unwrap_or_default()
                    ))));
                }
            }
            busy.set(false);
        });
    };
    view! {
        <form on:submit=submit class="add-domain">
            <h3>"Add a domain"</h3>
            <label for="add-domain">"Domain"</label>
            <input type="text" id="add-domain" spellcheck="false" placeholder="mail.example.com" aria-describedby="add-domain-hint"
                prop:value=move || domain.get() on:input=move |ev| domain.set(event_target_value(&ev)) />
            <p class="hint" id="add-domain-hint">"Prove it first: TXT " <code>"_atmos.<domain>"</code> " with " <code>"did=<your DID>"</code> "."</p>
            <div class="row"><button type="submit" id="add-domain-submit" disabled=move || busy.get()>"Add domain"</button>
                {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}</div>
            <OutcomeLine outcome id="add-domain-outcome" />
        </form>
    }
}
