//! `/enroll`: the enrollment wizard (BEHAVIOUR §3). Sign in with a handle or DID through the
//! member's own PDS → name a sending domain → publish the ownership record (live check) →
//! enroll: the API key once, the DNS records with their live status, examples → pending
//! approval. Reloading resumes from what the session says.

use crate::api::{self, ApiError};
use crate::components::copy::CopyButton;
use crate::components::loading;
use crate::components::records::RecordList;
use crate::components::signin::{SignIn, SignedInAs};
use atmos_lexicons::api::{Enrolled, OwnershipCheck, RecordCheck, SessionInfo};
use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::hooks::use_query_map;

/// Where the member is in the wizard.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    SignIn,
    Domain,
    Records,
}

const STEPS: [(Step, &str); 3] = [
    (Step::SignIn, "1. Sign in"),
    (Step::Domain, "2. Your domain"),
    (Step::Records, "3. DNS records and key"),
];

fn signin_message(code: &str, typed: Option<String>, got: Option<String>) -> String {
    let what = match code {
        "denied" => "You did not grant access at your PDS, so nothing was set up.".to_string(),
        "expired" => "That sign-in link expired or was already used.".to_string(),
        "issuer" => "The answer did not come from your PDS's sign-in service.".to_string(),
        "account" => {
            // Only DIDs are shown, so a crafted link cannot put its own words here.
            let did = |d: Option<String>| d.and_then(|d| atmos_lexicons::did::parse(&d).ok());
            match (did(typed), did(got)) {
                (Some(t), Some(g)) => format!("You typed {} but signed in as {}, a different account.", t.as_str(), g.as_str()),
                _ => "You signed in as a different account than the one you typed.".to_string(),
            }
        }
        "scope" => "Your PDS did not grant the permission the relay needs (atproto, and writing the attestation record).".to_string(),
        "unreachable" => "Your PDS could not be reached; try again in a moment.".to_string(),
        _ => "Signing in did not work.".to_string(),
    };
    format!("{what} Start again below.")
}

/// The wizard.
#[component]
pub fn Enroll() -> impl IntoView {
    let session = RwSignal::new(None::<SessionInfo>);
    let failure = RwSignal::new(None::<String>);
    let enrolled = RwSignal::new(None::<Enrolled>);
    let query = use_query_map();
    Effect::new(move |_| {
        let q = query.read();
        if let Some(code) = q.get("signin_error") {
            failure.set(Some(signin_message(&code, q.get("typed"), q.get("got"))));
        }
    });
    let reload = move || {
        spawn_local(async move {
            match api::session().await {
                Ok(s) => session.set(Some(s)),
                Err(e) => failure.set(Some(e.shown())),
            }
        })
    };
    reload();
    let step = Memo::new(move |_| match (session.get(), enrolled.get()) {
        (Some(s), _) if !s.signed_in => Step::SignIn,
        (Some(_), Some(_)) => Step::Records,
        (Some(s), None) => match &s.member {
            Some(m) if !m.domains.is_empty() => Step::Records,
            _ => Step::Domain,
        },
        (None, _) => Step::SignIn,
    });
    view! {
        <h1>"Join Atmosphere Mail"</h1>
        <ol class="steps" aria-label="Progress">
            {STEPS
                .into_iter()
                .map(|(s, name)| {
                    let current = move || (step.get() == s).then_some("step");
                    let done = move || (step.get() as u8) > (s as u8);
                    view! { <li aria-current=current class:done=done>{name}</li> }
                })
                .collect_view()}
        </ol>
        {move || failure.get().map(|e| view! { <p class="error" role="alert" id="failure">{e}</p> })}
        {move || match session.get() {
            None => loading::spinner(" Loading…"),
            Some(s) if !s.signed_in => view! { <SignIn failure return_to="/enroll" /> }.into_any(),
            Some(s) => view! { <SignedInAs session=s.clone() /> <Wizard session=s enrolled failure reload /> }.into_any(),
        }}
    }
}

/// Steps 2 and 3.
#[component]
fn Wizard(
    session: SessionInfo,
    enrolled: RwSignal<Option<Enrolled>>,
    failure: RwSignal<Option<String>>,
    reload: impl Fn() + Copy + Send + 'static,
) -> impl IntoView {
    let existing = session
        .member
        .as_ref()
        .and_then(|m| m.domains.first().map(|d| d.domain.clone()));
    let state = session.member.as_ref().map(|m| m.state.clone());
    let session = StoredValue::new(session);
    view! {
        {move || state.clone().map(|s| view! { <Standing state=s /> })}
        {move || match (enrolled.get(), existing.clone()) {
            (Some(e), _) => view! {
                <KeyOnce enrolled=e.clone() session=session.get_value() />
                <Records domain=e.domain.clone() session=session.get_value() failure />
            }
            .into_any(),
            (None, Some(domain)) => view! {
                <section class="card">
                    <h2>"Your domain " <code>{domain.clone()}</code></h2>
                    <p>"You are enrolled. Your API key was shown once, when you enrolled."</p>
                    <NewKeyButton session=session.get_value() failure />
                </section>
                <Records domain session=session.get_value() failure />
            }
            .into_any(),
            (None, None) => view! { <DomainStep session=session.get_value() enrolled failure reload /> }.into_any(),
        }}
    }
}

/// Makes a new API key (the old one stops working) and shows it once.
#[component]
fn NewKeyButton(session: SessionInfo, failure: RwSignal<Option<String>>) -> impl IntoView {
    let key = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let csrf = StoredValue::new(session.csrf.clone().unwrap_or_default());
    let make = move |_| {
        busy.set(true);
        spawn_local(async move {
            match api::regenerate_key(&csrf.get_value()).await {
                Ok(k) => key.set(Some(k.api_key)),
                Err(e) => failure.set(Some(e.shown())),
            }
            busy.set(false);
        });
    };
    view! {
        {move || match key.get() {
            Some(k) => view! {
                <p class="warning" role="alert">"Your new key is shown only now; the old one stopped working."</p>
                <p><code class="key" id="api-key">{k.clone()}</code>" " <CopyButton value=k label="API key" /></p>
            }.into_any(),
            None => view! {
                <p class="row"><button type="button" class="secondary" id="new-key" on:click=make disabled=move || busy.get()>"Make a new API key"</button></p>
            }.into_any(),
        }}
    }
}

/// The member's standing: pending approval, active, suspended.
#[component]
fn Standing(state: String) -> impl IntoView {
    let text = match state.as_str() {
        "pending" => {
            "Pending operator approval: the relay refuses your mail (535 5.7.8 pending operator approval) until an operator approves you."
        }
        "active" => "Active: you can send.",
        "suspended" => "Suspended: an operator or a rule stopped your sending.",
        _ => "",
    };
    view! { <p class="warning" id="standing" role="status">{text}</p> }
}

/// Step 2: the domain and its ownership record, checked live.
#[component]
fn DomainStep(
    session: SessionInfo,
    enrolled: RwSignal<Option<Enrolled>>,
    failure: RwSignal<Option<String>>,
    reload: impl Fn() + Copy + Send + 'static,
) -> impl IntoView {
    let domain = RwSignal::new(String::new());
    let check = RwSignal::new(None::<OwnershipCheck>);
    let checking = RwSignal::new(false);
    let enrolling = RwSignal::new(false);
    let csrf = StoredValue::new(session.csrf.clone().unwrap_or_default());
    let dev_zone = session.dev_zone;
    let run_check = move || {
        let d = domain.get_untracked().trim().to_ascii_lowercase();
        if d.is_empty() {
            failure.set(Some(
                "Type the domain you will send from (like example.com).".into(),
            ));
            return;
        }
        checking.set(true);
        spawn_local(async move {
            match api::ownership(&d).await {
                Ok(c) => {
                    failure.set(None);
                    check.set(Some(c));
                }
                Err(e) => failure.set(Some(e.shown())),
            }
            checking.set(false);
        });
    };
    // While the record is not live yet, look again every 5 s.
    let handle = set_interval_with_handle(
        move || {
            if check.get_untracked().is_some_and(|c| !c.proven) && !checking.get_untracked() {
                run_check();
            }
        },
        std::time::Duration::from_secs(5),
    );
    on_cleanup(move || {
        if let Ok(h) = handle {
            h.clear();
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        run_check();
    };
    let publish = move |_| {
        let d = domain.get_untracked().trim().to_ascii_lowercase();
        spawn_local(async move {
            match api::dev_publish(&csrf.get_value(), &d).await {
                Ok(_) => run_check(),
                Err(e) => failure.set(Some(e.shown())),
            }
        });
    };
    let enroll = move |_| {
        let d = domain.get_untracked().trim().to_ascii_lowercase();
        enrolling.set(true);
        spawn_local(async move {
            match api::add_domain(&csrf.get_value(), &d).await {
                Ok(e) => {
                    failure.set(None);
                    enrolled.set(Some(e));
                    reload();
                }
                Err(ApiError { code, message, .. }) => {
                    failure.set(Some(format!("{code}: {message}")))
                }
            }
            enrolling.set(false);
        });
    };
    view! {
        <section class="card" aria-labelledby="domain-title">
            <h2 id="domain-title">"Your sending domain"</h2>
            <form on:submit=submit>
                <label for="domain">"Domain"</label>
                <input type="text" id="domain" name="domain" spellcheck="false" placeholder="example.com"
                    aria-describedby="domain-hint" prop:value=move || domain.get()
                    on:input=move |ev| { domain.set(event_target_value(&ev)); check.set(None); } />
                <p class="hint" id="domain-hint">"The domain in your From addresses. You prove it is yours with one DNS record."</p>
                <div class="row">
                    <button type="submit" id="check" disabled=move || checking.get()>"Check ownership"</button>
                    {move || checking.get().then(|| view! { <span class="spinner" aria-hidden="true"></span><span class="visually-hidden">"Checking"</span> })}
                </div>
            </form>
            {move || check.get().map(|c| {
                let proven = c.proven;
                view! {
                    <div id="ownership" data-proven=proven.to_string()>
                        {if proven {
                            view! { <p class="notice" role="status">"Proven (" {c.via.clone().unwrap_or_default()} "). You can enroll " <code>{c.domain.clone()}</code> "."</p> }.into_any()
                        } else {
                            view! {
                                <p>"Publish this record at your DNS provider, then wait a moment: this page checks every few seconds."</p>
                                <div class="record">
                                    <dl>
                                        <dt>"Type"</dt><dd>"TXT"</dd>
                                        <dt>"Name"</dt><dd><code>{c.expected_name.clone()}</code>" " <CopyButton value=c.expected_name.clone() label="ownership record name" /></dd>
                                        <dt>"Value"</dt><dd><code>{c.expected_value.clone()}</code>" " <CopyButton value=c.expected_value.clone() label="ownership record value" /></dd>
                                        <dt>"Status"</dt><dd><span class="status missing" role="status">"Not found yet"</span>
                                            {c.observed.iter().filter(|o| !o.records.is_empty()).map(|o| view! {
                                                <p class="hint">{o.name.clone()} " serves: " <code>{o.records.join(" | ")}</code></p>
                                            }).collect_view()}
                                        </dd>
                                    </dl>
                                </div>
                                {dev_zone.then(|| view! {
                                    <p class="row"><button type="button" class="secondary" id="dev-publish-ownership" on:click=publish>"Publish to the dev DNS zone"</button></p>
                                })}
                            }.into_any()
                        }}
                        <div class="row">
                            <button type="button" id="enroll" disabled=move || !proven || enrolling.get() on:click=enroll>
                                {move || if enrolling.get() { "Enrolling…" } else { "Enroll this domain" }}
                            </button>
                            {move || enrolling.get().then(|| view! { <span class="spinner" aria-hidden="true"></span><span class="visually-hidden">"Making keys and writing your attestation"</span> })}
                        </div>
                    </div>
                }
            })}
        </section>
    }
}

/// The API key, shown once, with examples.
#[component]
fn KeyOnce(enrolled: Enrolled, session: SessionInfo) -> impl IntoView {
    let did = session.did.clone().unwrap_or_default();
    let origin = web_sys::window()
        .and_then(|w| w.location().origin().ok())
        .unwrap_or_default();
    let from = format!("hello@{}", enrolled.domain);
    match enrolled.api_key.clone() {
        Some(key) => {
            let swaks = format!(
                "swaks --server {} --tls --auth PLAIN \\\n  --auth-user {did} --auth-password {key} \\\n  --from {from} --to you@example.com",
                session.submission
            );
            let curl = format!(
                "curl -X POST {origin}/v1/send \\\n  -H 'X-Atmos-DID: {did}' -H 'Authorization: Bearer {key}' \\\n  -H 'Content-Type: application/json' \\\n  -d '{{\"from\":\"{from}\",\"to\":\"you@example.com\",\"subject\":\"Hi\",\"text\":\"Hello\"}}'"
            );
            view! {
                <section class="card" aria-labelledby="key-title">
                    <h2 id="key-title">"Your API key"</h2>
                    <p class="warning" role="alert">"This key is shown only now. Copy it to a password manager or your app's secrets; the relay keeps only a hash of it."</p>
                    <p><code class="key" id="api-key">{key.clone()}</code>" " <CopyButton value=key.clone() label="API key" /></p>
                    <h3>"Send with SMTP (swaks)"</h3>
                    <pre id="swaks" class="command" tabindex="0" aria-label="swaks command">{swaks.clone()}</pre>
                    <CopyButton value=swaks label="swaks example" />
                    <h3>"Send with the HTTP API (curl)"</h3>
                    <pre id="curl" class="command" tabindex="0" aria-label="curl command">{curl.clone()}</pre>
                    <CopyButton value=curl label="curl example" />
                </section>
            }
            .into_any()
        }
        None => view! {
            <section class="card"><p>"Your domain was added; your API key did not change."</p></section>
        }
        .into_any(),
    }
}

/// Step 3: the records to publish, checked live.
#[component]
fn Records(
    domain: String,
    session: SessionInfo,
    failure: RwSignal<Option<String>>,
) -> impl IntoView {
    let records = RwSignal::new(None::<Vec<RecordCheck>>);
    let loading = RwSignal::new(false);
    let domain = StoredValue::new(domain);
    let csrf = StoredValue::new(session.csrf.clone().unwrap_or_default());
    let refresh = move || {
        loading.set(true);
        spawn_local(async move {
            match api::domain_dns(&domain.get_value()).await {
                Ok(r) => records.set(Some(r)),
                Err(e) => failure.set(Some(e.shown())),
            }
            loading.set(false);
        });
    };
    refresh();
    let handle = set_interval_with_handle(
        move || {
            let all_live = records
                .get_untracked()
                .is_some_and(|r| r.iter().all(|c| c.status == "ok" || !c.required));
            if !all_live && !loading.get_untracked() {
                refresh();
            }
        },
        std::time::Duration::from_secs(10),
    );
    on_cleanup(move || {
        if let Ok(h) = handle {
            h.clear();
        }
    });
    let publish = move |_| {
        spawn_local(async move {
            match api::dev_publish(&csrf.get_value(), &domain.get_value()).await {
                Ok(_) => refresh(),
                Err(e) => failure.set(Some(e.shown())),
            }
        });
    };
    view! {
        <section class="card" aria-labelledby="records-title">
            <h2 id="records-title">"DNS records for " <code>{domain.get_value()}</code></h2>
            <p>"Publish these at your DNS provider. DKIM keys let receivers check that mail from your domain really came through the cooperative; SPF and DMARC tell them what to do with mail that did not."</p>
            <div class="row">
                <button type="button" class="secondary" id="recheck" on:click=move |_| refresh() disabled=move || loading.get()>"Check again"</button>
                {session.dev_zone.then(|| view! { <button type="button" class="secondary" id="dev-publish" on:click=publish>"Publish to the dev DNS zone"</button> })}
                {move || loading.get().then(|| view! { <span class="spinner" aria-hidden="true"></span><span class="visually-hidden">"Checking DNS"</span> })}
            </div>
            {move || records.get().map(|r| view! { <RecordList records=r /> })}
        </section>
    }
}
