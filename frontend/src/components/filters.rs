//! The fields of the list pages' filter forms: a labelled text box, and a from/until pair of
//! local times, each bound to a signal.

use leptos::prelude::*;

/// A labelled text box bound to `value` (optionally with a `<datalist>` as children).
#[component]
pub fn TextFilter(
    id: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    #[prop(optional)] placeholder: Option<&'static str>,
    #[prop(optional)] list: Option<&'static str>,
    #[prop(optional)] children: Option<Children>,
) -> impl IntoView {
    view! {
        <div><label for=id>{label}</label>
            <input type="text" id=id spellcheck="false" placeholder=placeholder list=list
                prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev)) />
            {children.map(|c| c())}</div>
    }
}

/// "From" and "Until" (`datetime-local`), with ids `<prefix>-since` and `<prefix>-until`.
#[component]
pub fn PeriodFilter(
    prefix: &'static str,
    since: RwSignal<String>,
    until: RwSignal<String>,
) -> impl IntoView {
    let (since_id, until_id) = (format!("{prefix}-since"), format!("{prefix}-until"));
    view! {
        <div><label for=since_id.clone()>"From"</label>
            <input type="datetime-local" id=since_id prop:value=move || since.get() on:input=move |ev| since.set(event_target_value(&ev)) /></div>
        <div><label for=until_id.clone()>"Until"</label>
            <input type="datetime-local" id=until_id prop:value=move || until.get() on:input=move |ev| until.set(event_target_value(&ev)) /></div>
    }
}
