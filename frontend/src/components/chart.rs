//! Sends over time as stacked bars (delivered, waiting, bounced) with complaints marked, drawn
//! as SVG from the buckets the API aggregates; the same numbers as a table for screen readers
//! and for anyone who would rather read.

use crate::components::time;
use leptos::prelude::*;

/// One bucket, read from the series endpoints' JSON.
#[derive(Clone, Debug, PartialEq)]
struct Bucket {
    start: i64,
    accepted: i64,
    sent: i64,
    deferred: i64,
    bounced: i64,
    complained: i64,
}

fn buckets(series: &serde_json::Value) -> Vec<Bucket> {
    series["buckets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| Bucket {
                    start: b["start"].as_i64().unwrap_or(0),
                    accepted: b["accepted"].as_i64().unwrap_or(0),
                    sent: b["sent"].as_i64().unwrap_or(0),
                    deferred: b["deferred"].as_i64().unwrap_or(0),
                    bounced: b["bounced"].as_i64().unwrap_or(0),
                    complained: b["complained"].as_i64().unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The chart of a series answer (`{range, bucketMs, buckets}`).
#[component]
pub fn SeriesChart(series: serde_json::Value, #[prop(into)] title: String) -> impl IntoView {
    let data = buckets(&series);
    let max = data
        .iter()
        .map(|b| b.accepted.max(b.complained))
        .max()
        .unwrap_or(0)
        .max(1);
    let (w, h, pad) = (600.0_f64, 160.0_f64, 4.0_f64);
    let step = w / data.len().max(1) as f64;
    let bar = (step - pad).max(1.0);
    let y = |n: i64| h * n as f64 / max as f64;
    let total: i64 = data.iter().map(|b| b.accepted).sum();
    let bars = data
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let x = i as f64 * step + pad / 2.0;
            let other = (b.accepted - b.sent - b.deferred - b.bounced).max(0);
            let mut top = h;
            let mut rects = Vec::new();
            for (n, class) in [(b.sent, "sent"), (b.deferred, "deferred"), (b.bounced, "bounced"), (other, "accepted")] {
                if n > 0 {
                    let hh = y(n);
                    top -= hh;
                    rects.push(view! { <rect class=class x=x y=top width=bar height=hh></rect> });
                }
            }
            let mark = (b.complained > 0).then(|| {
                view! { <circle class="complained" cx=x + bar / 2.0 cy=6.0 r=4.0></circle> }
            });
            view! { <g><title>{format!("{}: {} accepted, {} sent, {} waiting, {} bounced, {} complaints", time::local(b.start), b.accepted, b.sent, b.deferred, b.bounced, b.complained)}</title>{rects}{mark}</g> }
        })
        .collect_view();
    let rows = data
        .iter()
        .filter(|b| b.accepted > 0 || b.complained > 0)
        .map(|b| {
            view! { <tr><td>{time::local(b.start)}</td><td>{b.accepted}</td><td>{b.sent}</td><td>{b.deferred}</td><td>{b.bounced}</td><td>{b.complained}</td></tr> }
        })
        .collect_view();
    let label = format!("{title}: {total} recipients in this period");
    view! {
        <figure class="chart">
            <svg viewBox=format!("0 0 {w} {h}") preserveAspectRatio="none" role="img" aria-label=label.clone()>
                {bars}
            </svg>
            <figcaption>
                <span class="legend sent">"delivered"</span>
                <span class="legend deferred">"waiting to retry"</span>
                <span class="legend bounced">"bounced"</span>
                <span class="legend accepted">"queued"</span>
                <span class="legend complained">"complaint"</span>
                <span class="hint">{format!(" {total} recipients")}</span>
            </figcaption>
            <details>
                <summary>"Show as a table"</summary>
                <div class="scroll" tabindex="0" role="region" aria-label=format!("{title} table")>
                <table>
                    <thead><tr><th scope="col">"From"</th><th scope="col">"Accepted"</th><th scope="col">"Delivered"</th><th scope="col">"Waiting"</th><th scope="col">"Bounced"</th><th scope="col">"Complaints"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                </div>
            </details>
        </figure>
    }
}

/// Rates over the series against the active rules' thresholds, as meters.
#[component]
pub fn RateMeters(series: serde_json::Value) -> impl IntoView {
    let data = buckets(&series);
    let (sent, bounced, complained) = data.iter().fold((0, 0, 0), |(s, b, c), x| {
        (s + x.sent + x.bounced, b + x.bounced, c + x.complained)
    });
    let rate = |n: i64| {
        if sent > 0 {
            n as f64 / sent as f64
        } else {
            0.0
        }
    };
    let thresholds = series["thresholds"].as_array().cloned().unwrap_or_default();
    let find = |metric: &str| {
        thresholds
            .iter()
            .find(|t| t["metric"] == metric)
            .and_then(|t| {
                Some((
                    t["above"].as_f64()?,
                    t["window"].as_str().unwrap_or("").to_string(),
                    t["minRecipients"].as_i64().unwrap_or(0),
                ))
            })
    };
    let meter = |label: &'static str,
                 id: &'static str,
                 value: f64,
                 limit: Option<(f64, String, i64)>| {
        let pct = |v: f64| format!("{:.2} %", v * 100.0);
        let max = limit
            .as_ref()
            .map(|l| l.0 * 2.0)
            .unwrap_or(0.1)
            .max(value)
            .max(0.0001);
        let text = match &limit {
            Some((above, window, min)) => format!(
                "{}: {} — the rules suspend above {} over {window} (from {min} recipients)",
                label,
                pct(value),
                pct(*above)
            ),
            None => format!("{label}: {}", pct(value)),
        };
        let high = limit.as_ref().map(|l| l.0 * 0.8).unwrap_or(max);
        let optimum = 0.0;
        view! {
            <div class="meter">
                <label for=id>{text}</label>
                <meter id=id min="0" max=max low=high * 0.5 high=high optimum=optimum value=value></meter>
            </div>
        }
    };
    view! {
        <div class="meters">
            {meter("Bounce rate", "bounce-rate", rate(bounced), find("bounce_rate"))}
            {meter("Complaint rate", "complaint-rate", rate(complained), find("complaint_rate"))}
        </div>
    }
}

/// Usage against a cap, as a meter with numbers.
#[component]
pub fn UsageBar(
    #[prop(into)] label: String,
    #[prop(into)] id: String,
    used: i64,
    cap: i64,
) -> impl IntoView {
    let cap = cap.max(1);
    view! {
        <div class="meter">
            <label for=id.clone()>{format!("{label}: {used} of {cap}")}</label>
            <meter id=id min="0" max=cap low=cap as f64 * 0.7 high=cap as f64 * 0.9 optimum="0" value=used></meter>
        </div>
    }
}

/// 24 h / 7 d / 30 d choice; `range` holds the choice.
#[component]
pub fn RangePicker(range: RwSignal<String>, #[prop(into)] name: String) -> impl IntoView {
    view! {
        <fieldset class="range">
            <legend class="visually-hidden">"Period"</legend>
            {["24h", "7d", "30d"].into_iter().map(|r| {
                let id = format!("{name}-{r}");
                view! {
                    <input type="radio" id=id.clone() name=name.clone() value=r
                        prop:checked=move || range.get() == r on:change=move |_| range.set(r.to_string()) />
                    <label for=id class="inline">{match r { "24h" => "24 hours", "7d" => "7 days", _ => "30 days" }}</label>
                }
            }).collect_view()}
        </fieldset>
    }
}
