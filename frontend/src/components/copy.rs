//! A button that copies a value to the clipboard and says so.

use leptos::prelude::*;

/// Copies `value`; `label` names what is copied for screen readers.
#[component]
pub fn CopyButton(#[prop(into)] value: String, #[prop(into)] label: String) -> impl IntoView {
    let copied = RwSignal::new(false);
    let value = StoredValue::new(value);
    let on_click = move |_| {
        let text = value.get_value();
        if let Some(w) = web_sys::window() {
            let promise = w.navigator().clipboard().write_text(&text);
            leptos::task::spawn_local(async move {
                if wasm_bindgen_futures::JsFuture::from(promise).await.is_ok() {
                    copied.set(true);
                }
            });
        }
    };
    view! {
        <button type="button" class="secondary" on:click=on_click aria-label=format!("Copy {label}")>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}
