//! The member's messages: a filtered, paged list (`GET /v1/messages`) and one message with
//! every recipient and attempt, remote replies verbatim (`GET /v1/messages/{id}`).

use crate::api;
use crate::components::filters::{PeriodFilter, TextFilter};
use crate::components::loading;
use crate::components::signin::Gate;
use crate::components::time;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use serde_json::Value;

/// The worst state among a message's recipients, for the list.
fn summary(m: &Value) -> (String, String) {
    let rs = m["recipients"].as_array().cloned().unwrap_or_default();
    let first = rs
        .first()
        .and_then(|r| r["recipient"].as_str())
        .unwrap_or_default()
        .to_string();
    let who = if rs.len() > 1 {
        format!("{first} and {} more", rs.len() - 1)
    } else {
        first
    };
    let states: Vec<&str> = rs.iter().filter_map(|r| r["status"].as_str()).collect();
    let worst = ["bounced", "deferred", "accepted", "sent"]
        .into_iter()
        .find(|s| states.contains(s))
        .unwrap_or("sent");
    (who, worst.to_string())
}

/// Words for a recipient state.
pub fn state_text(s: &str) -> &'static str {
    match s {
        "accepted" => "queued",
        "deferred" => "waiting to retry",
        "sent" => "delivered",
        "bounced" => "bounced",
        _ => "unknown",
    }
}

/// The list with its filters.
#[component]
pub fn Messages() -> impl IntoView {
    let status = RwSignal::new(String::new());
    let recipient = RwSignal::new(String::new());
    let category = RwSignal::new(String::new());
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let pages = RwSignal::new(Vec::<Value>::new());
    let cursor = RwSignal::new(None::<String>);
    let loading = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);
    let fetch = move |more: bool| {
        let mut pairs = vec![
            ("status", status.get_untracked()),
            ("recipient", recipient.get_untracked()),
            ("category", category.get_untracked()),
            (
                "since",
                time::parse_local(&since.get_untracked())
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ),
            (
                "until",
                time::parse_local(&until.get_untracked())
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
            ),
        ];
        if more {
            pairs.push(("cursor", cursor.get_untracked().unwrap_or_default()));
        }
        let path = format!("/v1/messages{}", api::query(&pairs));
        loading.set(true);
        spawn_local(async move {
            match api::get(&path).await {
                Ok(v) => {
                    failure.set(None);
                    let got = v["messages"].as_array().cloned().unwrap_or_default();
                    if more {
                        pages.update(|p| p.extend(got));
                    } else {
                        pages.set(got);
                    }
                    cursor.set(v["cursor"].as_str().map(str::to_string));
                }
                Err(e) => failure.set(Some(e.shown())),
            }
            loading.set(false);
        });
    };
    fetch(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        fetch(false);
    };
    view! {
        <section class="card" aria-labelledby="messages-title">
            <h2 id="messages-title">"Messages"</h2>
            <form class="filters" on:submit=submit aria-label="Filter messages">
                <div><label for="f-status">"State"</label>
                    <select id="f-status" on:change=move |ev| status.set(event_target_value(&ev))>
                        <option value="">"any"</option>
                        <option value="accepted">"queued"</option>
                        <option value="deferred">"waiting to retry"</option>
                        <option value="sent">"delivered"</option>
                        <option value="bounced">"bounced"</option>
                    </select></div>
                <TextFilter id="f-recipient" label="Recipient" value=recipient placeholder="part of an address" />
                <TextFilter id="f-category" label="Category" value=category placeholder="e.g. password-reset" />
                <PeriodFilter prefix="f" since until />
                <div class="row"><button type="submit" id="filter-messages">"Filter"</button></div>
            </form>
            {move || failure.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || {
                let rows = pages.get();
                if rows.is_empty() && !loading.get() {
                    return view! { <p id="no-messages">"No messages match."</p> }.into_any();
                }
                let body = rows.into_iter().map(|m| {
                    let id = m["id"].as_str().unwrap_or_default().to_string();
                    let (who, worst) = summary(&m);
                    view! {
                        <tr class="message" data-id=id.clone() data-status=worst.clone()>
                            <td>{time::local_json(&m["receivedAt"])}</td>
                            <td class="mono">{who}</td>
                            <td>{m["category"].as_str().unwrap_or("—").to_string()}</td>
                            <td><span class=format!("status {worst}")>{state_text(&worst)}</span></td>
                            <td><a href=format!("/account/messages/{id}") aria-label=format!("Details of message {id}")>"Details"</a></td>
                        </tr>
                    }
                }).collect_view();
                view! {
                    <div class="scroll" tabindex="0" role="region" aria-label="Messages">
                    <table id="messages"><thead><tr><th scope="col">"Received"</th><th scope="col">"To"</th><th scope="col">"Category"</th><th scope="col">"State"</th><th scope="col"><span class="visually-hidden">"Link"</span></th></tr></thead>
                    <tbody>{body}</tbody></table>
                    </div>
                }.into_any()
            }}
            <div class="row">
                {move || cursor.get().is_some().then(|| view! { <button type="button" class="secondary" id="more-messages" on:click=move |_| fetch(true)>"Show more"</button> })}
                {move || loading.get().then(|| view! { <span role="status"><span class="spinner" aria-hidden="true"></span>" Loading…"</span> })}
            </div>
        </section>
    }
}

/// `/account/messages/:id`.
#[component]
pub fn MessageDetail() -> impl IntoView {
    view! { <Gate return_to="/account" title="Message" render=|_| view! { <Detail /> }.into_any() /> }
}

#[component]
fn Detail() -> impl IntoView {
    let params = use_params_map();
    let message = RwSignal::new(None::<Result<Value, api::ApiError>>);
    Effect::new(move |_| {
        let id = params.read().get("id").unwrap_or_default();
        spawn_local(async move {
            message.set(Some(
                api::get(&format!("/v1/messages/{}", api::enc(&id))).await,
            ));
        });
    });
    view! {
        <p><a href="/account#messages-title">"← All messages"</a></p>
        {move || match message.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => view! { <p class="error" role="alert" id="message-error">{e.shown()}</p> }.into_any(),
            Some(Ok(m)) => {
                let recipients = m["recipients"].as_array().cloned().unwrap_or_default().into_iter().map(|r| {
                    let status = r["status"].as_str().unwrap_or_default().to_string();
                    let attempts = r["attempts"].as_array().cloned().unwrap_or_default().into_iter().map(|a| view! {
                        <li><span>{time::local_json(&a["at"])}</span>" " <span class="hint">{a["mx"].as_str().unwrap_or("—").to_string()}</span>
                            <pre class="reply">{a["reply"].as_str().unwrap_or_default().to_string()}</pre></li>
                    }).collect_view();
                    view! {
                        <article class="recipient card" data-status=status.clone()>
                            <h2 class="mono">{r["recipient"].as_str().unwrap_or_default().to_string()}</h2>
                            <p><span class=format!("status {status}")>{state_text(&status)}</span></p>
                            <ol class="attempts" aria-label="Delivery attempts">{attempts}</ol>
                        </article>
                    }
                }).collect_view();
                view! {
                    <section class="card" aria-labelledby="message-title">
                        <h2 id="message-title" class="mono">{m["id"].as_str().unwrap_or_default().to_string()}</h2>
                        <dl class="facts">
                            <dt>"From"</dt><dd class="mono">{m["from"].as_str().unwrap_or_default().to_string()}</dd>
                            <dt>"Received"</dt><dd>{time::local_json(&m["receivedAt"])}</dd>
                            <dt>"Category"</dt><dd>{m["category"].as_str().unwrap_or("—").to_string()}</dd>
                            <dt>"Via"</dt><dd>{m["source"].as_str().unwrap_or_default().to_string()}</dd>
                            <dt>"Size"</dt><dd>{format!("{} bytes", m["size"].as_i64().unwrap_or(0))}</dd>
                        </dl>
                    </section>
                    {recipients}
                }.into_any()
            }
        }}
    }
}
