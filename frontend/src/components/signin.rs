//! Signing in (a handle or DID, then the person's own PDS), who is signed in, and the gate
//! that shows a page only to a signed-in person.

use crate::api;
use crate::components::loading;
use atmos_lexicons::api::SessionInfo;
use leptos::prelude::*;
use leptos::task::spawn_local;

/// A handle or DID, then off to the person's PDS; back at `return_to` once signed in.
#[component]
pub fn SignIn(failure: RwSignal<Option<String>>, return_to: &'static str) -> impl IntoView {
    let identifier = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let id = identifier.get_untracked().trim().to_string();
        if id.is_empty() {
            failure.set(Some(
                "Type your handle (like alice.bsky.social) or your DID.".into(),
            ));
            return;
        }
        busy.set(true);
        failure.set(None);
        spawn_local(async move {
            match api::signin(&id, return_to).await {
                Ok(started) => {
                    if let Some(w) = web_sys::window() {
                        let _ = w.location().set_href(&started.redirect);
                    }
                }
                Err(e) => {
                    failure.set(Some(e.shown()));
                    busy.set(false);
                }
            }
        });
    };
    view! {
        <section class="card" aria-labelledby="signin-title">
            <h2 id="signin-title">"Sign in with your atproto account"</h2>
            <p>"You sign in at your own PDS; the relay never sees your password. It asks to write one kind of record to your repo: the attestation that your domain sends through this cooperative."</p>
            <form on:submit=submit>
                <label for="identifier">"Handle or DID"</label>
                <input type="text" id="identifier" name="identifier" autocomplete="username" spellcheck="false"
                    placeholder="alice.bsky.social" aria-describedby="identifier-hint"
                    prop:value=move || identifier.get() on:input=move |ev| identifier.set(event_target_value(&ev)) />
                <p class="hint" id="identifier-hint">"Your handle, your DID (did:plc:… or did:web:…), or your PDS's address."</p>
                <div class="row">
                    <button type="submit" id="signin" disabled=move || busy.get()>
                        {move || if busy.get() { "Contacting your PDS…" } else { "Sign in" }}
                    </button>
                    {move || busy.get().then(|| view! { <span class="spinner" aria-hidden="true"></span> })}
                </div>
            </form>
        </section>
    }
}

/// Who is signed in, with a way out.
#[component]
pub fn SignedInAs(session: SessionInfo) -> impl IntoView {
    let csrf = session.csrf.clone().unwrap_or_default();
    let who = session
        .handle
        .clone()
        .unwrap_or_else(|| session.did.clone().unwrap_or_default());
    let did = session.did.clone().unwrap_or_default();
    let sign_out = move |_| {
        let csrf = csrf.clone();
        spawn_local(async move {
            let _ = api::signout(&csrf).await;
            if let Some(w) = web_sys::window() {
                let _ = w.location().reload();
            }
        });
    };
    view! {
        <p class="notice" id="signed-in">"Signed in as " <strong>{who}</strong> " " <span class="hint mono">{did}</span> " "
            <button type="button" class="secondary" on:click=sign_out>"Sign out"</button></p>
    }
}

/// Loads the session; shows the sign-in form when there is none, else `render(session)`.
#[component]
pub fn Gate(
    return_to: &'static str,
    #[prop(into)] title: String,
    render: fn(SessionInfo) -> AnyView,
) -> impl IntoView {
    let session = RwSignal::new(None::<Result<SessionInfo, String>>);
    let failure = RwSignal::new(None::<String>);
    spawn_local(async move {
        session.set(Some(api::session().await.map_err(|e| e.shown())));
    });
    view! {
        <h1>{title}</h1>
        {move || failure.get().map(|e| view! { <p class="error" role="alert" id="failure">{e}</p> })}
        {move || match session.get() {
            None => loading::spinner(" Loading…"),
            Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
            Some(Ok(s)) if !s.signed_in => view! { <SignIn failure return_to /> }.into_any(),
            Some(Ok(s)) => view! { <SignedInAs session=s.clone() /> {render(s)} }.into_any(),
        }}
    }
}
