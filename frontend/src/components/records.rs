//! The DNS records to publish for a domain, each with what DNS serves now.

use crate::components::copy::CopyButton;
use atmos_lexicons::api::RecordCheck;
use leptos::prelude::*;

fn status_text(status: &str) -> &'static str {
    match status {
        "ok" => "Live",
        "missing" => "Not found yet",
        "different" => "Different value",
        "optional" => "Optional",
        "lookup_failed" => "Lookup failed",
        _ => "Unknown",
    }
}

/// One record with copy buttons and its live status.
#[component]
pub fn Record(record: RecordCheck) -> impl IntoView {
    let status = record.status.clone();
    let class = format!("status {status}");
    let value_label = format!("{} value", record.relative_name);
    let name_label = format!("{} name", record.relative_name);
    let observed = record.observed.clone();
    let split = record.strings.len() > 1;
    view! {
        <li class="record" data-record=record.name.clone() data-status=status.clone()>
            <dl>
                <dt>"Type"</dt><dd>{record.kind.clone()}{if record.required { "" } else { " (optional)" }}</dd>
                <dt>"Name"</dt>
                <dd>
                    <code>{record.relative_name.clone()}</code>" "
                    <span class="hint">"(" {record.name.clone()} ")"</span>" "
                    <CopyButton value=record.name.clone() label=name_label />
                </dd>
                <dt>"Value"</dt>
                <dd>
                    <pre>{record.value.clone()}</pre>
                    {split.then(|| view! {
                        <p class="hint">"Longer than 255 bytes: if your DNS provider asks for strings, enter these " {record.strings.len()} " quoted strings:"</p>
                        <pre>{record.strings.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(" ")}</pre>
                    })}
                    <CopyButton value=record.value.clone() label=value_label />
                </dd>
                <dt>"Status"</dt>
                <dd>
                    <span class=class>{status_text(&status)}</span>
                    {(!observed.is_empty() && status != "ok").then(|| view! {
                        <p class="hint">"DNS serves: " <code>{observed.join(" | ")}</code></p>
                    })}
                    {record.advice.clone().map(|a| view! { <p class="hint">{a}</p> })}
                </dd>
            </dl>
        </li>
    }
}

/// The list of records.
#[component]
pub fn RecordList(records: Vec<RecordCheck>) -> impl IntoView {
    view! {
        <ul class="records" aria-label="DNS records" style="list-style:none;padding:0">
            {records.into_iter().map(|r| view! { <Record record=r /> }).collect_view()}
        </ul>
    }
}
