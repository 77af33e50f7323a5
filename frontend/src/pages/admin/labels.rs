//! Label moderation: emit or negate any value on any subject with a reason, the audit trail
//! (who, why, which key), and the `createReport` reports with their status.

use super::operator_only;
use crate::api;
use crate::components::loading;
use crate::components::signin::Gate;
use crate::components::time;
use crate::pages::account::{Outcome, OutcomeLine};
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

/// `/admin/labels`.
#[component]
pub fn Labels() -> impl IntoView {
    view! { <Gate return_to="/admin/labels" title="Labels and reports" render=|s| operator_only(&s, |csrf| view! { <LabelsBody csrf /> }.into_any()) /> }
}

#[component]
fn LabelsBody(csrf: String) -> impl IntoView {
    let uri = RwSignal::new(String::new());
    let val = RwSignal::new(String::new());
    let neg = RwSignal::new(false);
    let reason = RwSignal::new(String::new());
    let outcome = RwSignal::new(None::<Outcome>);
    let settled = RwSignal::new(None::<Outcome>);
    let labels = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let reports = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let csrf = StoredValue::new(csrf);
    let fetch = move || {
        spawn_local(
            async move { labels.set(Some(api::get("/admin/labeler/labels?limit=200").await)) },
        );
        spawn_local(async move { reports.set(Some(api::get("/admin/labeler/reports").await)) });
    };
    fetch();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let body = serde_json::json!({ "uri": uri.get_untracked().trim(), "val": val.get_untracked().trim(), "neg": neg.get_untracked(), "reason": reason.get_untracked() });
        spawn_local(async move {
            match api::send(
                "POST",
                "/admin/labeler/labels",
                &csrf.get_value(),
                Some(&body),
            )
            .await
            {
                Ok(v) => outcome.set(Some(Outcome::Done(format!(
                    "Published (seq {}).",
                    v["seq"]
                )))),
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
            fetch();
        });
    };
    let settle = move |id: i64, status: &'static str| {
        spawn_local(async move {
            let body = serde_json::json!({ "status": status });
            match api::send(
                "POST",
                &format!("/admin/labeler/reports/{id}"),
                &csrf.get_value(),
                Some(&body),
            )
            .await
            {
                Ok(_) => settled.set(Some(Outcome::Done(format!("Report {id} marked {status}.")))),
                Err(e) => settled.set(Some(Outcome::Failed(e.shown()))),
            }
            fetch();
        });
    };
    view! {
        <section class="card" aria-labelledby="emit-title">
            <h2 id="emit-title">"Publish a label"</h2>
            <form on:submit=submit>
                <label for="label-uri">"Subject (a DID or an at:// URI)"</label>
                <input type="text" id="label-uri" spellcheck="false" prop:value=move || uri.get() on:input=move |ev| uri.set(event_target_value(&ev)) />
                <label for="label-val">"Value"</label>
                <input type="text" id="label-val" spellcheck="false" placeholder="clean-sender" list="label-values"
                    prop:value=move || val.get() on:input=move |ev| val.set(event_target_value(&ev)) />
                <datalist id="label-values"><option value="verified-mail-operator"></option><option value="relay-member"></option><option value="clean-sender"></option></datalist>
                <div class="row"><input type="checkbox" id="label-neg" prop:checked=move || neg.get() on:change=move |ev| neg.set(event_target_checked(&ev)) />
                    <label for="label-neg" class="inline">"Negate (withdraw the label)"</label></div>
                <label for="label-reason">"Reason (kept in the audit trail)"</label>
                <input type="text" id="label-reason" prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev)) />
                <div class="row"><button type="submit" id="label-submit">"Publish"</button></div>
            </form>
            <OutcomeLine outcome id="label-outcome" />
        </section>
        <section class="card" aria-labelledby="reports-title">
            <h2 id="reports-title">"Reports"</h2>
            <OutcomeLine outcome=settled id="report-outcome" />
            {move || match reports.get() {
                None => loading::spinner(" Loading…"),
                Some(Err(e)) => loading::failed(&e),
                Some(Ok(v)) if v["reports"].as_array().is_none_or(|a| a.is_empty()) => view! { <p>"No reports."</p> }.into_any(),
                Some(Ok(v)) => v["reports"].as_array().cloned().unwrap_or_default().into_iter().map(|r| {
                    let id = r["id"].as_i64().unwrap_or(0);
                    let status = r["status"].as_str().unwrap_or("open").to_string();
                    view! {
                        <article class="report" data-id=id data-status=status.clone()>
                            <h3>{format!("Report {id}: {}", r["reasonType"].as_str().unwrap_or_default().rsplit('#').next().unwrap_or_default())}</h3>
                            <p>"About " <code>{r["subject"]["did"].as_str().or(r["subject"]["uri"].as_str()).unwrap_or_default().to_string()}</code>
                               " by " <code>{r["reportedBy"].as_str().unwrap_or_default().to_string()}</code></p>
                            {r["reason"].as_str().map(|t| view! { <blockquote>{t.to_string()}</blockquote> })}
                            <p><span class=format!("badge {status}")>{status.clone()}</span>
                               {r["actedBy"].as_str().map(|a| view! { <span class="hint">" by " {a.to_string()}</span> })}</p>
                            <div class="row">
                                <button type="button" class="secondary" aria-label=format!("Mark report {id} acted") on:click=move |_| settle(id, "acted")>"Acted"</button>
                                <button type="button" class="secondary" aria-label=format!("Dismiss report {id}") on:click=move |_| settle(id, "dismissed")>"Dismiss"</button>
                                <button type="button" class="secondary" aria-label=format!("Reopen report {id}") on:click=move |_| settle(id, "open")>"Reopen"</button>
                            </div>
                        </article>
                    }
                }).collect_view().into_any(),
            }}
        </section>
        <section class="card" aria-labelledby="audit-title">
            <h2 id="audit-title">"Audit trail"</h2>
            {move || match labels.get() {
                None => loading::spinner(" Loading…"),
                Some(Err(e)) => loading::failed(&e),
                Some(Ok(v)) => {
                    let rows = v["labels"].as_array().cloned().unwrap_or_default().into_iter().map(|l| view! {
                        <tr><td>{l["seq"].as_i64().unwrap_or(0)}</td><td class="mono">{l["label"]["uri"].as_str().unwrap_or_default().to_string()}</td>
                            <td>{l["label"]["val"].as_str().unwrap_or_default().to_string()}{if l["label"]["neg"] == true { " (negated)" } else { "" }}</td>
                            <td>{l["actor"].as_str().unwrap_or_default().to_string()}</td><td>{l["reason"].as_str().unwrap_or("—").to_string()}</td>
                            <td>{time::local_rfc3339(&l["label"]["cts"])}</td></tr>
                    }).collect_view();
                    view! {
                        <div class="scroll" tabindex="0" role="region" aria-label="Label audit trail">
                        <table id="audit"><thead><tr><th scope="col">"Seq"</th><th scope="col">"Subject"</th><th scope="col">"Value"</th><th scope="col">"By"</th><th scope="col">"Why"</th><th scope="col">"When"</th></tr></thead><tbody>{rows}</tbody></table>
                        </div>
                    }.into_any()
                }
            }}
        </section>
    }
}
