//! What a page shows while a read is in flight and when it failed: one markup for both, so
//! every page announces progress (`role=status`) and errors (`role=alert`, the API's code).

use crate::api::ApiError;
use leptos::prelude::*;

/// A spinner with `text` (" Loading…" and the like), announced politely.
pub fn spinner(text: &'static str) -> AnyView {
    view! { <p role="status"><span class="spinner" aria-hidden="true"></span>{text}</p> }.into_any()
}

/// A failed call as `CODE: message`, announced at once.
pub fn failed(e: &ApiError) -> AnyView {
    view! { <p class="error" role="alert">{e.shown()}</p> }.into_any()
}
