//! `/account`: a member's own page (BEHAVIOUR §11) — standing and labels, usage against caps, sends
//! over time with the rates the rules watch, domains (DNS, attestation, forward-to, add, remove,
//! re-enroll), the API key, messages (`messages.rs`) and the suppression list. Everything is
//! read from and written to the member API with the web session.

mod domains;
pub mod messages;

use crate::api;
use crate::components::chart::{RangePicker, RateMeters, SeriesChart, UsageBar};
use crate::components::copy::CopyButton;
use crate::components::loading;
use crate::components::signin::Gate;
use crate::components::time;
use atmos_lexicons::api::SessionInfo;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

/// The page.
#[component]
pub fn Account() -> impl IntoView {
    view! { <Gate return_to="/account" title="Your account" render=|s| view! { <AccountBody session=s /> }.into_any() /> }
}

/// What a failed or finished action says, next to the control that did it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Done(String),
    Failed(String),
}

/// Shows an [`Outcome`] (a polite status, or an alert for failures).
#[component]
pub fn OutcomeLine(outcome: RwSignal<Option<Outcome>>, #[prop(into)] id: String) -> impl IntoView {
    move || {
        outcome.get().map(|o| match o {
            Outcome::Done(t) => {
                view! { <p class="notice" role="status" id=id.clone()>{t}</p> }.into_any()
            }
            Outcome::Failed(t) => {
                view! { <p class="error" role="alert" id=id.clone()>{t}</p> }.into_any()
            }
        })
    }
}

#[component]
fn AccountBody(session: SessionInfo) -> impl IntoView {
    let status = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let load = move || {
        spawn_local(async move {
            status.set(Some(api::get("/member/status").await));
        })
    };
    load();
    let csrf = StoredValue::new(session.csrf.clone().unwrap_or_default());
    view! {
        <nav class="subnav" aria-label="Account sections">
            <a href="#standing-title">"Standing"</a>
            <a href="#usage-title">"Usage"</a>
            <a href="#domains-title">"Domains"</a>
            <a href="#key-title">"API key"</a>
            <a href="#messages-title">"Messages"</a>
            <a href="#suppressions-title">"Suppressions"</a>
        </nav>
        {move || match status.get() {
            None => loading::spinner(" Loading your account…"),
            Some(Err(e)) if e.code == "NOT_A_MEMBER" => view! {
                <section class="card"><p>"You are signed in but have not enrolled a domain yet."</p><p><a href="/enroll">"Enroll a domain"</a></p></section>
            }.into_any(),
            Some(Err(e)) => loading::failed(&e),
            Some(Ok(s)) => view! {
                <Standing status=s.clone() />
                <Usage status=s.clone() />
                <domains::Domains status=s.clone() csrf=csrf.get_value() max=session.max_domains reload=load />
                <Key csrf=csrf.get_value() />
                <messages::Messages />
                <Suppressions csrf=csrf.get_value() />
            }.into_any(),
        }}
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// State, reason, labels, tier.
#[component]
fn Standing(status: Value) -> impl IntoView {
    let state = status["state"].as_str().unwrap_or_default().to_string();
    let reason = status["stateReason"].as_str().map(str::to_string);
    let (class, text) = match state.as_str() {
        "active" => ("notice", "Active: you can send."),
        "pending" => (
            "warning",
            "Pending operator approval: the relay refuses your mail (535 5.7.8 pending operator approval) until an operator approves you.",
        ),
        _ => (
            "error",
            "Suspended: the relay refuses your mail (535 5.7.8 account suspended).",
        ),
    };
    let public = strings(&status["publicLabels"]);
    let internal = strings(&status["labels"]);
    let tier = status["tier"].as_str().unwrap_or_default().to_string();
    view! {
        <section class="card" aria-labelledby="standing-title">
            <h2 id="standing-title">"Standing"</h2>
            <p class=class id="account-state" data-state=state.clone()>{text}</p>
            {reason.map(|r| view! { <p id="state-reason">"Reason: " <strong>{r}</strong></p> })}
            <dl class="facts">
                <dt>"Warming tier"</dt><dd id="tier">{tier}</dd>
                <dt>"Public labels"</dt>
                <dd id="public-labels">{if public.is_empty() { "none yet".to_string() } else { public.join(", ") }}</dd>
                <dt>"Labels that affect sending"</dt>
                <dd>{if internal.is_empty() { "none".to_string() } else { internal.join(", ") }}</dd>
                <dt>"Member since"</dt><dd>{time::local_json(&status["createdAt"])}</dd>
            </dl>
        </section>
    }
}

/// Usage against caps, and sends over time with the rates the rules watch.
#[component]
fn Usage(status: Value) -> impl IntoView {
    let hour = status["usage"]["lastHour"].as_i64().unwrap_or(0);
    let day = status["usage"]["lastDay"].as_i64().unwrap_or(0);
    let hourly = status["caps"]["hourly"].as_i64().unwrap_or(0);
    let daily = status["caps"]["daily"].as_i64().unwrap_or(0);
    let range = RwSignal::new("24h".to_string());
    let series = RwSignal::new(None::<Result<Value, api::ApiError>>);
    Effect::new(move |_| {
        let r = range.get();
        series.set(None);
        spawn_local(async move {
            series.set(Some(
                api::get(&format!("/member/metrics/series?range={r}")).await,
            ));
        });
    });
    view! {
        <section class="card" aria-labelledby="usage-title">
            <h2 id="usage-title">"Usage"</h2>
            <UsageBar label="Recipients in the last hour" id="usage-hour" used=hour cap=hourly />
            <UsageBar label="Recipients in the last 24 hours" id="usage-day" used=day cap=daily />
            <h3>"Sends over time"</h3>
            <RangePicker range name="account-range" />
            {move || match series.get() {
                None => loading::spinner(" Loading…"),
                Some(Err(e)) => loading::failed(&e),
                Some(Ok(s)) => view! { <SeriesChart series=s.clone() title="Your sends" /> <RateMeters series=s /> }.into_any(),
            }}
        </section>
    }
}

/// Regenerates the API key (shown once).
#[component]
fn Key(csrf: String) -> impl IntoView {
    let key = RwSignal::new(None::<String>);
    let outcome = RwSignal::new(None::<Outcome>);
    let busy = RwSignal::new(false);
    let csrf = StoredValue::new(csrf);
    let make = move |_| {
        busy.set(true);
        spawn_local(async move {
            match api::regenerate_key(&csrf.get_value()).await {
                Ok(k) => {
                    key.set(Some(k.api_key));
                    outcome.set(Some(Outcome::Done(
                        "A new key was made; the old one stopped working.".into(),
                    )));
                }
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
            busy.set(false);
        });
    };
    view! {
        <section class="card" aria-labelledby="key-title">
            <h2 id="key-title">"API key"</h2>
            <p>"Your key is the SMTP password and the HTTP API's bearer token. The relay keeps only a hash of it: when it is lost, make a new one — the old one stops working at once."</p>
            <p class="row"><button type="button" class="secondary" id="new-key" on:click=make disabled=move || busy.get()>"Make a new API key"</button>
                {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}</p>
            <OutcomeLine outcome id="key-outcome" />
            {move || key.get().map(|k| view! {
                <p class="warning" role="alert">"This key is shown only now. Copy it to a password manager or your app's secrets."</p>
                <p><code class="key" id="api-key">{k.clone()}</code>" " <CopyButton value=k label="API key" /></p>
            })}
        </section>
    }
}

/// The suppression list; entries that are not complaints can be removed.
#[component]
fn Suppressions(csrf: String) -> impl IntoView {
    let list = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let outcome = RwSignal::new(None::<Outcome>);
    let csrf = StoredValue::new(csrf);
    let load = move || {
        spawn_local(async move {
            list.set(Some(api::get("/member/suppressions").await));
        })
    };
    load();
    let remove = move |address: String| {
        spawn_local(async move {
            let path = format!("/member/suppressions?address={}", api::enc(&address));
            match api::send("DELETE", &path, &csrf.get_value(), None).await {
                Ok(_) => {
                    outcome.set(Some(Outcome::Done(format!(
                        "{address} can be mailed again."
                    ))));
                    load();
                }
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
        });
    };
    view! {
        <section class="card" aria-labelledby="suppressions-title">
            <h2 id="suppressions-title">"Suppressions"</h2>
            <p>"Addresses the relay will not mail for you: they bounced, complained, unsubscribed, or you added them. Complaints stay."</p>
            <OutcomeLine outcome id="suppression-outcome" />
            {move || match list.get() {
                None => loading::spinner(" Loading…"),
                Some(Err(e)) => loading::failed(&e),
                Some(Ok(v)) if v.as_array().is_none_or(|a| a.is_empty()) => view! { <p id="no-suppressions">"No suppressed addresses."</p> }.into_any(),
                Some(Ok(v)) => {
                    let rows = v.as_array().cloned().unwrap_or_default().into_iter().map(|s| {
                        let address = s["address"].as_str().unwrap_or_default().to_string();
                        let reason = s["reason"].as_str().unwrap_or_default().to_string();
                        let removable = reason != "complaint";
                        let a = address.clone();
                        view! {
                            <tr data-address=address.clone()>
                                <td class="mono">{address.clone()}</td><td>{reason}</td><td>{time::local_json(&s["createdAt"])}</td>
                                <td>{removable.then(|| view! {
                                    <button type="button" class="secondary" aria-label=format!("Remove {address}") on:click=move |_| remove(a.clone())>"Remove"</button>
                                })}</td>
                            </tr>
                        }
                    }).collect_view();
                    view! {
                        <div class="scroll" tabindex="0" role="region" aria-label="Suppressed addresses">
                        <table id="suppressions"><thead><tr><th scope="col">"Address"</th><th scope="col">"Reason"</th><th scope="col">"Since"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
                        <tbody>{rows}</tbody></table>
                        </div>
                    }.into_any()
                }
            }}
        </section>
    }
}
