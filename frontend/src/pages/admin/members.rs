//! Members: the list (pending first, search by DID, handle or domain) with approve / suspend
//! (a reason is required) / reactivate, and one member's page — domains with DNS and
//! attestation, labels, send history, rates, events and verdicts.

use super::{load, operator_only};
use crate::api;
use crate::components::chart::{RangePicker, RateMeters, SeriesChart};
use crate::components::loading;
use crate::components::records::RecordList;
use crate::components::signin::Gate;
use crate::components::time;
use crate::pages::account::{Outcome, OutcomeLine};
use atmos_lexicons::api::RecordCheck;
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_params_map;
use serde_json::Value;

/// `/admin/members`.
#[component]
pub fn Members() -> impl IntoView {
    view! { <Gate return_to="/admin/members" title="Members" render=|s| operator_only(&s, |csrf| view! { <List csrf /> }.into_any()) /> }
}

/// Approve / suspend / reactivate for one member, with the reason a suspension needs.
#[component]
fn Actions(
    did: String,
    state: String,
    csrf: String,
    done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let reason = RwSignal::new(String::new());
    let outcome = RwSignal::new(None::<Outcome>);
    let did = StoredValue::new(did);
    let csrf = StoredValue::new(csrf);
    let id = did.get_value().replace([':', '.'], "-");
    let act = move |action: &'static str| {
        let r = reason.get_untracked();
        if action == "suspend" && r.trim().is_empty() {
            outcome.set(Some(Outcome::Failed(
                "Say why: the member sees the reason.".into(),
            )));
            return;
        }
        spawn_local(async move {
            let path = format!(
                "/admin/member/{}/{action}{}",
                api::enc(&did.get_value()),
                api::query(&[("reason", r)])
            );
            match api::send("POST", &path, &csrf.get_value(), None).await {
                Ok(v) => {
                    outcome.set(Some(Outcome::Done(format!(
                        "Now {}.",
                        v["state"].as_str().unwrap_or_default()
                    ))));
                    done();
                }
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
        });
    };
    let pending = state == "pending";
    let active = state == "active";
    let suspended = state == "suspended";
    view! {
        <div class="actions">
            {pending.then(|| view! { <button type="button" class="approve" on:click=move |_| act("approve")>"Approve"</button> })}
            {suspended.then(|| view! { <button type="button" class="reactivate" on:click=move |_| act("reactivate")>"Reactivate"</button> })}
            {(active || pending).then(|| view! {
                <label for=format!("reason-{id}") class="visually-hidden">"Reason for suspending"</label>
                <input type="text" id=format!("reason-{id}") class="reason" placeholder="reason (required to suspend)"
                    prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev)) />
                <button type="button" class="danger suspend" on:click=move |_| act("suspend")>"Suspend"</button>
            })}
            <OutcomeLine outcome id=format!("outcome-{id}") />
        </div>
    }
}

/// A domain an active member added, waiting for the operator: approve it to let it send.
#[component]
fn DomainReview(
    domain: String,
    csrf: String,
    done: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let outcome = RwSignal::new(None::<Outcome>);
    let domain = StoredValue::new(domain);
    let csrf = StoredValue::new(csrf);
    let id = domain.get_value().replace('.', "-");
    let approve = move |_| {
        spawn_local(async move {
            let path = format!("/admin/domains/{}/approve", api::enc(&domain.get_value()));
            match api::send("POST", &path, &csrf.get_value(), None).await {
                Ok(_) => {
                    outcome.set(Some(Outcome::Done(format!(
                        "{} may send now.",
                        domain.get_value()
                    ))));
                    done();
                }
                Err(e) => outcome.set(Some(Outcome::Failed(e.shown()))),
            }
        });
    };
    view! {
        <p class="review" data-domain=domain.get_value()>
            <span class="badge pending">"domain awaiting review"</span>" " <code>{domain.get_value()}</code>" "
            <button type="button" class="approve-domain" on:click=approve>{format!("Approve {}", domain.get_value())}</button>
            <OutcomeLine outcome id=format!("review-outcome-{id}") />
        </p>
    }
}

#[component]
fn List(csrf: String) -> impl IntoView {
    let q = RwSignal::new(String::new());
    let state = RwSignal::new(String::new());
    let rows = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let csrf = StoredValue::new(csrf);
    let fetch = move || {
        let path = format!(
            "/admin/members{}",
            api::query(&[("q", q.get_untracked()), ("state", state.get_untracked())])
        );
        spawn_local(async move { rows.set(Some(api::get(&path).await)) });
    };
    fetch();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        fetch();
    };
    view! {
        <form class="filters" on:submit=submit aria-label="Find members">
            <div><label for="member-q">"DID, handle or domain"</label>
                <input type="search" id="member-q" spellcheck="false" prop:value=move || q.get() on:input=move |ev| q.set(event_target_value(&ev)) /></div>
            <div><label for="member-state">"State"</label>
                <select id="member-state" on:change=move |ev| state.set(event_target_value(&ev))>
                    <option value="">"any"</option><option value="pending">"pending"</option>
                    <option value="active">"active"</option><option value="suspended">"suspended"</option>
                </select></div>
            <div class="row"><button type="submit" id="find-members">"Find"</button></div>
        </form>
        {move || match rows.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => loading::failed(&e),
            Some(Ok(v)) if v.as_array().is_none_or(|a| a.is_empty()) => view! { <p>"No members match."</p> }.into_any(),
            Some(Ok(v)) => v.as_array().cloned().unwrap_or_default().into_iter().map(|m| {
                let did = m["did"].as_str().unwrap_or_default().to_string();
                let st = m["state"].as_str().unwrap_or_default().to_string();
                let (data_did, data_state) = (did.clone(), st.clone());
                let domains = m["domains"].as_array().map(|d| d.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).unwrap_or_default();
                let awaiting: Vec<String> = m["domainsAwaitingReview"].as_array().map(|d| d.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
                view! {
                    <article class="card member" data-did=data_did data-state=data_state>
                        <h2><a href=format!("/admin/members/{}", api::enc(&did))>{m["handle"].as_str().map(str::to_string).unwrap_or_else(|| did.clone())}</a></h2>
                        {m["handle"].as_str().is_some().then(|| view! { <p class="hint mono">{did.clone()}</p> })}
                        <p><span class=format!("badge {st}")>{st.clone()}</span>" " {domains}
                            {m["stateReason"].as_str().map(|r| view! { <span class="hint">" — " {r.to_string()}</span> })}</p>
                        {awaiting.into_iter().map(|d| view! { <DomainReview domain=d csrf=csrf.get_value() done=fetch /> }).collect_view()}
                        <Actions did state=st csrf=csrf.get_value() done=fetch />
                    </article>
                }
            }).collect_view().into_any(),
        }}
    }
}

/// `/admin/members/:did`.
#[component]
pub fn MemberPage() -> impl IntoView {
    view! { <Gate return_to="/admin/members" title="Member" render=|s| operator_only(&s, |csrf| view! { <Detail csrf /> }.into_any()) /> }
}

#[component]
fn Detail(csrf: String) -> impl IntoView {
    let params = use_params_map();
    let did = params.read_untracked().get("did").unwrap_or_default();
    let did = StoredValue::new(did);
    let data = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let fetch = move || {
        let path = format!("/admin/members/{}", api::enc(&did.get_value()));
        spawn_local(async move { data.set(Some(api::get(&path).await)) });
    };
    fetch();
    let range = RwSignal::new("24h".to_string());
    let series = RwSignal::new(None::<Result<Value, api::ApiError>>);
    Effect::new(move |_| {
        let path = format!(
            "/admin/members/{}/series?range={}",
            api::enc(&did.get_value()),
            range.get()
        );
        spawn_local(async move { series.set(Some(api::get(&path).await)) });
    });
    let csrf = StoredValue::new(csrf);
    view! {
        <p><a href="/admin/members">"← All members"</a></p>
        {move || match data.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => loading::failed(&e),
            Some(Ok(d)) => {
                let m = d["member"].clone();
                let st = m["state"].as_str().unwrap_or_default().to_string();
                let domains = d["domains"].as_array().cloned().unwrap_or_default().into_iter().map(|x| {
                    let name = x["domain"].as_str().unwrap_or_default().to_string();
                    view! { <DomainChecks did=did.get_value() domain=name selectors=x["dkimSelectors"].clone() attestations=d["attestations"].clone() /> }
                }).collect_view();
                let labels = d["labels"].as_array().cloned().unwrap_or_default().into_iter().map(|l| view! {
                    <li>{l["label"].as_str().unwrap_or_default().to_string()}
                        <span class="hint">{match l["expiresAt"].as_i64() { Some(t) => format!(" until {}", time::local(t)), None => " (no expiry)".to_string() }}</span></li>
                }).collect_view();
                let events = table("Events", &d["events"], &[("at", "When"), ("type", "Event"), ("actor", "By"), ("data", "Details")]);
                let verdicts = table("Verdicts", &d["verdicts"], &[("at", "When"), ("rule", "Rule"), ("effect", "Effect"), ("shadow", "Shadow"), ("applied", "Applied")]);
                view! {
                    <section class="card" aria-labelledby="member-title">
                        <h2 id="member-title">{m["handle"].as_str().map(str::to_string).unwrap_or_else(|| did.get_value())}</h2>
                        {m["handle"].as_str().is_some().then(|| view! { <p class="mono hint">{did.get_value()}</p> })}
                        <p><span class=format!("badge {st}") id="member-state">{st.clone()}</span>
                            {m["stateReason"].as_str().map(|r| view! { " — " {r.to_string()} })}</p>
                        <Actions did=did.get_value() state=st csrf=csrf.get_value() done=fetch />
                        <dl class="facts">
                            <dt>"Public labels"</dt><dd>{d["publicLabels"].as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(", ")).filter(|s| !s.is_empty()).unwrap_or_else(|| "none".into())}</dd>
                            <dt>"Enrolled"</dt><dd>{time::local_json(&m["createdAt"])}</dd>
                            <dt>"Approved"</dt><dd>{time::local_json(&m["approvedAt"])}</dd>
                        </dl>
                        <h3>"Internal labels"</h3>
                        <ul>{labels}</ul>
                    </section>
                    <section class="card" aria-labelledby="history-title">
                        <h2 id="history-title">"Send history"</h2>
                        <RangePicker range name="member-range" />
                        {move || series.get().map(|s| match s {
                            Ok(s) => view! { <SeriesChart series=s.clone() title="This member's sends" /> <RateMeters series=s /> }.into_any(),
                            Err(e) => view! { <p class="error">{e.shown()}</p> }.into_any(),
                        })}
                    </section>
                    <section class="card" aria-labelledby="member-domains-title"><h2 id="member-domains-title">"Domains"</h2>{domains}</section>
                    <section class="card" aria-labelledby="member-events-title"><h2 id="member-events-title">"Events"</h2>{events}</section>
                    <section class="card" aria-labelledby="member-verdicts-title"><h2 id="member-verdicts-title">"Verdicts"</h2>{verdicts}</section>
                }.into_any()
            }
        }}
    }
}

/// One domain's DNS check (through the admin API) and whether the labeler saw an attestation.
#[component]
fn DomainChecks(
    did: String,
    domain: String,
    selectors: Value,
    attestations: Value,
) -> impl IntoView {
    let records = load(format!(
        "/admin/members/{}/dns/{}",
        api::enc(&did),
        api::enc(&domain)
    ));
    let attested = attestations
        .as_array()
        .is_some_and(|a| a.iter().any(|r| r["domain"] == domain.as_str()));
    let sel = selectors
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    view! {
        <article class="domain">
            <h3><code>{domain.clone()}</code></h3>
            <p>"Selectors: " <code>{sel}</code> " · "
                {if attested { view! { <span class="status ok">"attested"</span> }.into_any() } else { view! { <span class="status missing">"no attestation seen"</span> }.into_any() }}</p>
            {move || records.get().map(|r| match r {
                Ok(v) => {
                    let list: Vec<RecordCheck> = serde_json::from_value(v["records"].clone()).unwrap_or_default();
                    view! { <details><summary>{format!("DNS ({} live of {})", list.iter().filter(|c| c.status == "ok").count(), list.len())}</summary><RecordList records=list /></details> }.into_any()
                }
                Err(e) => view! { <p class="error">{e.shown()}</p> }.into_any(),
            })}
        </article>
    }
}

/// A table of JSON rows: `columns` are (field, heading); `at`-like fields show local time.
pub fn table(label: &str, rows: &Value, columns: &[(&'static str, &'static str)]) -> AnyView {
    let rows = rows.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        return view! { <p>"Nothing yet."</p> }.into_any();
    }
    let head = columns
        .iter()
        .map(|(_, h)| view! { <th scope="col">{*h}</th> })
        .collect_view();
    let cols: Vec<&'static str> = columns.iter().map(|(f, _)| *f).collect();
    let body = rows
        .into_iter()
        .map(|r| {
            let cells = cols
                .iter()
                .map(|f| {
                    let v = &r[*f];
                    let text = match (*f, v) {
                        ("at" | "receivedAt" | "createdAt" | "nextAttemptAt", Value::Number(_)) => {
                            time::local_json(v)
                        }
                        (_, Value::String(s)) => s.clone(),
                        (_, Value::Null) => "—".into(),
                        (_, Value::Bool(b)) => {
                            if *b {
                                "yes".into()
                            } else {
                                "no".into()
                            }
                        }
                        // Details read as one `key: value` per line.
                        (_, Value::Object(o)) => o
                            .iter()
                            .map(|(k, v)| match v {
                                Value::String(s) => format!("{k}: {s}"),
                                other => format!("{k}: {other}"),
                            })
                            .collect::<Vec<_>>()
                            .join("\n"),
                        (_, other) => other.to_string(),
                    };
                    let class = match v {
                        Value::Object(_) => "data",
                        Value::String(s) if s.starts_with("did:") => "mono",
                        _ => "",
                    };
                    view! { <td class=class>{text}</td> }
                })
                .collect_view();
            view! { <tr>{cells}</tr> }
        })
        .collect_view();
    view! {
        <div class="scroll" tabindex="0" role="region" aria-label=label.to_string()>
            <table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
        </div>
    }
    .into_any()
}
