//! `/admin`: the operator's pages (BEHAVIOUR §11), for DIDs in `[web] operator_dids` signed in with
//! atproto. The admin token never enters the browser: the session is the credential. The
//! overview is here; members, the queue, logs and labels have their own files.

pub mod labels;
pub mod logs;
pub mod members;
pub mod queue;

use crate::api;
use crate::components::chart::{RangePicker, SeriesChart};
use crate::components::loading;
use crate::components::records::RecordList;
use crate::components::signin::Gate;
use crate::components::time;
use atmos_lexicons::api::{RecordCheck, SessionInfo};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

/// The operator pages' navigation.
#[component]
pub fn AdminNav() -> impl IntoView {
    view! {
        <nav class="subnav" aria-label="Operator pages">
            <a href="/admin">"Overview"</a>
            <a href="/admin/members">"Members"</a>
            <a href="/admin/queue">"Queue"</a>
            <a href="/admin/logs">"Events and verdicts"</a>
            <a href="/admin/inbound">"Inbound"</a>
            <a href="/admin/labels">"Labels and reports"</a>
        </nav>
    }
}

/// Shows `render` only to operators; others are told, not shown data.
pub fn operator_only(s: &SessionInfo, render: impl FnOnce(String) -> AnyView) -> AnyView {
    if s.operator {
        view! { <AdminNav /> {render(s.csrf.clone().unwrap_or_default())} }.into_any()
    } else {
        view! { <p class="error" role="alert" id="not-operator">"This account is not an operator of this relay."</p> }.into_any()
    }
}

/// A JSON read, as a signal the view matches on.
pub fn load(path: String) -> RwSignal<Option<Result<Value, api::ApiError>>> {
    let s = RwSignal::new(None);
    spawn_local(async move { s.set(Some(api::get(&path).await)) });
    s
}

/// `/admin`.
#[component]
pub fn Overview() -> impl IntoView {
    view! { <Gate return_to="/admin" title="Relay overview" render=|s| operator_only(&s, |_| view! { <OverviewBody /> }.into_any()) /> }
}

#[component]
fn OverviewBody() -> impl IntoView {
    let range = RwSignal::new("24h".to_string());
    let data = RwSignal::new(None::<Result<Value, api::ApiError>>);
    Effect::new(move |_| {
        let r = range.get();
        spawn_local(async move {
            data.set(Some(api::get(&format!("/admin/overview?range={r}")).await))
        });
    });
    view! {
        {move || match data.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => loading::failed(&e),
            Some(Ok(o)) => {
                let oldest = o["queue"]["oldestReceivedAt"].as_i64();
                let records: Vec<RecordCheck> = serde_json::from_value(o["operatorDkim"]["records"].clone()).unwrap_or_default();
                let keys = o["operatorDkim"]["keys"].as_array().cloned().unwrap_or_default().into_iter().map(|k| view! {
                    <tr><td class="mono">{k["selector"].as_str().unwrap_or_default().to_string()}</td><td>{k["algorithm"].as_str().unwrap_or_default().to_string()}</td>
                        <td>{time::local_json(&k["createdAt"])}</td>
                        <td>{if k["retiredAt"].is_null() { "signing".to_string() } else { format!("retired {}, listed 48 h", time::local_json(&k["retiredAt"])) }}</td></tr>
                }).collect_view();
                let labeler = o["labeler"].clone();
                view! {
                    <section class="card" aria-labelledby="queue-title">
                        <h2 id="queue-title">"Queue"</h2>
                        <dl class="facts">
                            <dt>"Recipients waiting"</dt><dd id="queue-depth">{o["queue"]["depth"].as_i64().unwrap_or(0)}</dd>
                            <dt>"Oldest"</dt><dd>{oldest.map(|t| format!("{} ({} ago)", time::local(t), time::duration(time::now_ms() - t))).unwrap_or_else(|| "—".into())}</dd>
                            <dt>"Delivery latency (24 h)"</dt>
                            <dd>{format!("median {}, 95th percentile {} over {} deliveries", time::duration(o["latency"]["p50Ms"].as_i64().unwrap_or(0)), time::duration(o["latency"]["p95Ms"].as_i64().unwrap_or(0)), o["latency"]["delivered"].as_i64().unwrap_or(0))}</dd>
                        </dl>
                        <p><a href="/admin/queue">"Browse the queue"</a></p>
                    </section>
                    <section class="card" aria-labelledby="sends-title">
                        <h2 id="sends-title">"Sends by state"</h2>
                        <RangePicker range name="overview-range" />
                        <SeriesChart series=o["series"].clone() title="All members' sends" />
                    </section>
                    <section class="card" aria-labelledby="dkim-title">
                        <h2 id="dkim-title">"Operator DKIM for " <code>{o["operatorDomain"].as_str().unwrap_or_default().to_string()}</code></h2>
                        <div class="scroll" tabindex="0" role="region" aria-label="Operator keys">
                        <table><thead><tr><th scope="col">"Selector"</th><th scope="col">"Algorithm"</th><th scope="col">"Made"</th><th scope="col">"State"</th></tr></thead><tbody>{keys}</tbody></table>
                        </div>
                        <p class="hint">"Rotate with " <code>"atmos operator rotate-dkim"</code> "; retired records stay listed for 48 hours."</p>
                        <details><summary>{format!("DNS records ({} live of {})", records.iter().filter(|r| r.status == "ok").count(), records.len())}</summary><RecordList records=records /></details>
                    </section>
                    <section class="card" aria-labelledby="labeler-title">
                        <h2 id="labeler-title">"Labeler"</h2>
                        {if labeler.is_null() {
                            view! { <p>"The labeler is off ([labeler] enabled = false)."</p> }.into_any()
                        } else {
                            view! {
                                <p>"DID: " <code id="labeler-did">{labeler["did"].as_str().unwrap_or_default().to_string()}</code></p>
                                <details><summary>"Service record to publish"</summary>
                                    <pre tabindex="0">{serde_json::to_string_pretty(&labeler["serviceRecord"]).unwrap_or_default()}</pre></details>
                            }.into_any()
                        }}
                    </section>
                }.into_any()
            }
        }}
    }
}
