//! What happened: the event log, rule verdicts and shadow verdicts (filter by member, type,
//! time), and the inbound log (classification, verified or not, what was done).

use super::members::table;
use super::operator_only;
use crate::api;
use crate::components::filters::{PeriodFilter, TextFilter};
use crate::components::loading;
use crate::components::signin::Gate;
use crate::components::time;
use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

/// `/admin/logs`.
#[component]
pub fn Logs() -> impl IntoView {
    view! { <Gate return_to="/admin/logs" title="Events and verdicts" render=|s| operator_only(&s, |_| view! { <LogsBody /> }.into_any()) /> }
}

#[component]
fn LogsBody() -> impl IntoView {
    let did = RwSignal::new(String::new());
    let kind = RwSignal::new(String::new());
    let rule = RwSignal::new(String::new());
    let since = RwSignal::new(String::new());
    let until = RwSignal::new(String::new());
    let events = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let verdicts = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let shadow = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let fetch = move || {
        let since_ms = time::parse_local(&since.get_untracked())
            .map(|t| t.to_string())
            .unwrap_or_default();
        let until_ms = time::parse_local(&until.get_untracked())
            .map(|t| t.to_string())
            .unwrap_or_default();
        let e = format!(
            "/admin/events{}",
            api::query(&[
                ("did", did.get_untracked()),
                ("type", kind.get_untracked()),
                ("since", since_ms.clone()),
                ("until", until_ms.clone())
            ])
        );
        let verdict_filter = [
            ("did", did.get_untracked()),
            ("rule", rule.get_untracked()),
            ("since", since_ms.clone()),
            ("until", until_ms.clone()),
        ];
        let v = format!("/admin/verdicts{}", api::query(&verdict_filter));
        let sv = format!("/admin/shadow-verdicts{}", api::query(&verdict_filter));
        spawn_local(async move { events.set(Some(api::get(&e).await)) });
        spawn_local(async move { verdicts.set(Some(api::get(&v).await)) });
        spawn_local(async move { shadow.set(Some(api::get(&sv).await)) });
    };
    fetch();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        fetch();
    };
    let show = |label: &'static str,
                s: RwSignal<Option<Result<Value, api::ApiError>>>,
                cols: &'static [(&'static str, &'static str)]| {
        move || match s.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => loading::failed(&e),
            Some(Ok(v)) => table(label, &v, cols),
        }
    };
    view! {
        <form class="filters" on:submit=submit aria-label="Filter the logs">
            <TextFilter id="log-did" label="Member DID" value=did />
            <TextFilter id="log-type" label="Event type" value=kind placeholder="e.g. member_suspended" list="event-types">
                <datalist id="event-types">
                    {["relay_attempt", "relay_rejected", "delivery_result", "bounce_received", "complaint_received", "report_unverified", "member_pending", "member_approved", "member_suspended", "member_reactivated", "label_applied", "label_removed", "message_deleted"].into_iter().map(|t| view! { <option value=t></option> }).collect_view()}
                </datalist>
            </TextFilter>
            <TextFilter id="log-rule" label="Rule (verdicts)" value=rule placeholder="e.g. complaint_rate" />
            <PeriodFilter prefix="log" since until />
            <div class="row"><button type="submit" id="filter-logs">"Filter"</button></div>
        </form>
        <section class="card" aria-labelledby="events-title"><h2 id="events-title">"Events"</h2>
            {show("Events", events, &[("at", "When"), ("type", "Event"), ("did", "Member"), ("actor", "By"), ("data", "Details")])}</section>
        <section class="card" aria-labelledby="verdicts-title"><h2 id="verdicts-title">"Rule verdicts"</h2>
            {show("Rule verdicts", verdicts, &[("at", "When"), ("rule", "Rule"), ("did", "Member"), ("effect", "Effect"), ("applied", "Applied")])}</section>
        <section class="card" aria-labelledby="shadow-title"><h2 id="shadow-title">"Shadow verdicts"</h2>
            <p class="hint">"What shadow rules would have done: recorded, never enforced."</p>
            {show("Shadow verdicts", shadow, &[("at", "When"), ("rule", "Rule"), ("did", "Member"), ("effect", "Effect")])}</section>
    }
}

/// `/admin/inbound`.
#[component]
pub fn Inbound() -> impl IntoView {
    view! { <Gate return_to="/admin/inbound" title="Inbound mail" render=|s| operator_only(&s, |_| view! { <InboundBody /> }.into_any()) /> }
}

#[component]
fn InboundBody() -> impl IntoView {
    let class = RwSignal::new(String::new());
    let rows = RwSignal::new(None::<Result<Value, api::ApiError>>);
    let fetch = move || {
        let path = format!(
            "/admin/inbound{}",
            api::query(&[("classification", class.get_untracked())])
        );
        spawn_local(async move { rows.set(Some(api::get(&path).await)) });
    };
    fetch();
    view! {
        <form class="filters" on:submit=move |ev| { ev.prevent_default(); fetch(); } aria-label="Filter inbound mail">
            <div><label for="inbound-class">"Kind"</label>
                <select id="inbound-class" on:change=move |ev| class.set(event_target_value(&ev))>
                    <option value="">"any"</option><option value="dsn">"bounce (DSN)"</option><option value="arf">"complaint (ARF)"</option>
                    <option value="operator">"operator alias"</option><option value="reply">"reply to a member"</option>
                    <option value="srs_bounce">"bounce of a forward"</option><option value="other">"other"</option>
                </select></div>
            <div class="row"><button type="submit" id="filter-inbound">"Filter"</button></div>
        </form>
        <section class="card" aria-labelledby="inbound-title"><h2 id="inbound-title">"What arrived, and what was done"</h2>
        {move || match rows.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => loading::failed(&e),
            Some(Ok(v)) => table("Inbound mail", &v, &[("receivedAt", "When"), ("classification", "Kind"), ("mailFrom", "From"), ("recipient", "To"), ("subject", "Subject"), ("did", "Member"), ("action", "Done (verified or not)")]),
        }}
        </section>
    }
}
