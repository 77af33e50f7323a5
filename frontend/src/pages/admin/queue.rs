//! The queue browser: filter what waits (state, member, recipient domain, age), retry one
//! message now or delete it, and act on a whole filtered selection after a confirmation that
//! states how many recipients it holds.

use super::operator_only;
use crate::api;
use crate::components::filters::TextFilter;
use crate::components::loading;
use crate::components::signin::Gate;
use crate::components::time;
use crate::pages::account::{Outcome, OutcomeLine};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

/// `/admin/queue`.
#[component]
pub fn Queue() -> impl IntoView {
    view! { <Gate return_to="/admin/queue" title="Queue" render=|s| operator_only(&s, |csrf| view! { <QueueBody csrf /> }.into_any()) /> }
}

#[component]
fn QueueBody(csrf: String) -> impl IntoView {
    let status = RwSignal::new(String::new());
    let did = RwSignal::new(String::new());
    let domain = RwSignal::new(String::new());
    let older = RwSignal::new(String::new());
    let data = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let outcome = RwSignal::new(None::<Outcome>);
    let busy = RwSignal::new(false);
    let csrf = StoredValue::new(csrf);
    let filter = move || {
        let older_s = older
            .get_untracked()
            .trim()
            .parse::<i64>()
            .ok()
            .map(|m| (m * 60).to_string())
            .unwrap_or_default();
        (
            status.get_untracked(),
            did.get_untracked(),
            domain.get_untracked(),
            older_s,
        )
    };
    let fetch = move || {
        let (s, d, dm, o) = filter();
        let path = format!(
            "/admin/queue{}",
            api::query(&[("status", s), ("did", d), ("domain", dm), ("olderThan", o)])
        );
        spawn_local(async move { data.set(Some(api::get(&path).await)) });
    };
    fetch();
    let bulk = move |action: &'static str| {
        let Some(Ok(v)) = data.get_untracked() else {
            return;
        };
        let n = v["selected"]["recipients"].as_i64().unwrap_or(0);
        let m = v["selected"]["messages"].as_i64().unwrap_or(0);
        if n == 0 {
            outcome.set(Some(Outcome::Failed("The filter selects nothing.".into())));
            return;
        }
        let what = if action == "retry" {
            "Retry now"
        } else {
            "Delete"
        };
        let question = format!("{what} {n} recipients in {m} messages selected by this filter?");
        let ok = web_sys::window()
            .and_then(|w| w.confirm_with_message(&question).ok())
            .unwrap_or(false);
        if !ok {
            return;
        }
        let (s, d, dm, o) = filter();
        let mut f = serde_json::Map::new();
        for (k, v) in [("status", s), ("did", d), ("domain", dm)] {
            if !v.trim().is_empty() {
                f.insert(k.into(), Value::from(v.trim().to_string()));
            }
        }
        if let Ok(secs) = o.parse::<i64>() {
            f.insert("olderThan".into(), Value::from(secs));
        }
        let body = serde_json::json!({ "action": action, "filter": f, "expect": n });
        busy.set(true);
        spawn_local(async move {
            match api::send("POST", "/admin/queue/bulk", &csrf.get_value(), Some(&body)).await {
                Ok(r) => outcome.set(Some(Outcome::Done(format!(
                    "{what}: done for {} recipients in {} messages.",
                    r["recipients"], r["messages"]
                )))),
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
            busy.set(false);
            fetch();
        });
    };
    let one = move |method: &'static str, id: String| {
        let path = if method == "DELETE" {
            format!("/admin/queue/{}", api::enc(&id))
        } else {
            format!("/admin/queue/{}/retry", api::enc(&id))
        };
        spawn_local(async move {
            match api::send(method, &path, &csrf.get_value(), None).await {
                Ok(_) => outcome.set(Some(Outcome::Done(if method == "DELETE" {
                    format!("Message {id} deleted.")
                } else {
                    format!("Message {id} is due now.")
                }))),
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
            fetch();
        });
    };
    view! {
        <form class="filters" on:submit=move |ev| { ev.prevent_default(); fetch(); } aria-label="Filter the queue">
            <div><label for="queue-status">"State"</label>
                <select id="queue-status" on:change=move |ev| status.set(event_target_value(&ev))>
                    <option value="">"any"</option><option value="accepted">"queued"</option><option value="deferred">"waiting to retry"</option>
                </select></div>
            <TextFilter id="queue-did" label="Member DID" value=did />
            <TextFilter id="queue-domain" label="Recipient domain" value=domain />
            <div><label for="queue-older">"Older than (minutes)"</label>
                <input type="number" id="queue-older" min="0" inputmode="numeric" prop:value=move || older.get() on:input=move |ev| older.set(event_target_value(&ev)) /></div>
            <div class="row"><button type="submit" id="filter-queue">"Filter"</button></div>
        </form>
        <OutcomeLine outcome id="queue-outcome" />
        {move || match data.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => loading::failed(&e),
            Some(Ok(v)) => {
                let n = v["selected"]["recipients"].as_i64().unwrap_or(0);
                let m = v["selected"]["messages"].as_i64().unwrap_or(0);
                let rows = v["entries"].as_array().cloned().unwrap_or_default().into_iter().map(|e| {
                    let id = e["messageId"].as_str().unwrap_or_default().to_string();
                    let (a, b) = (id.clone(), id.clone());
                    view! {
                        <tr class="queued" data-id=id.clone()>
                            <td class="mono">{e["recipient"].as_str().unwrap_or_default().to_string()}</td>
                            <td>{e["status"].as_str().unwrap_or_default().to_string()}</td>
                            <td>{e["attempts"].as_i64().unwrap_or(0)}</td>
                            <td>{time::local_json(&e["nextAttemptAt"])}</td>
                            <td>{time::duration(time::now_ms() - e["receivedAt"].as_i64().unwrap_or(0))}</td>
                            <td class="reply">{e["lastReply"].as_str().unwrap_or("—").to_string()}</td>
                            <td><button type="button" class="secondary" aria-label=format!("Retry message {id} now") on:click=move |_| one("POST", a.clone())>"Retry"</button>
                                <button type="button" class="danger" aria-label=format!("Delete message {id}") on:click=move |_| one("DELETE", b.clone())>"Delete"</button></td>
                        </tr>
                    }
                }).collect_view();
                view! {
                    <section class="card" aria-labelledby="selection-title">
                        <h2 id="selection-title">"Selection"</h2>
                        <p id="selection" data-recipients=n>{format!("This filter selects {n} recipients in {m} messages.")}</p>
                        <div class="row">
                            <button type="button" id="bulk-retry" on:click=move |_| bulk("retry") disabled=move || busy.get()>"Retry all now"</button>
                            <button type="button" class="danger" id="bulk-delete" on:click=move |_| bulk("delete") disabled=move || busy.get()>"Delete all"</button>
                            {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
                        </div>
                        <div class="scroll" tabindex="0" role="region" aria-label="Queued recipients">
                        <table id="queue"><thead><tr><th scope="col">"Recipient"</th><th scope="col">"State"</th><th scope="col">"Attempts"</th><th scope="col">"Next try"</th><th scope="col">"Age"</th><th scope="col">"Last reply"</th><th scope="col"><span class="visually-hidden">"Actions"</span></th></tr></thead>
                        <tbody>{rows}</tbody></table>
                        </div>
                    </section>
                }.into_any()
            }
        }}
    }
}
