//! The web UI of Atmosphere Mail: a Leptos app rendered in the browser (built with Trunk,
//! served by `atmos`). Pages call the relay's JSON API (`api.rs`) with the request and response
//! types the relay itself uses (`atmos_lexicons::api`); no rule of the relay lives here.
//!
//! Layout: `app.rs` (router and frame), `api.rs` (every call), `pages/` (one file per route),
//! `components/` (widgets pages share). Only the browser build has a UI: a native build of this
//! crate is empty.

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod components;
#[cfg(target_arch = "wasm32")]
mod pages;

/// Starts the app (Trunk calls this when the WebAssembly module loads).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
