//! The Leptos web frontend (enrollment wizard, member account, operator admin). It will talk to
//! the relay only through its JSON API; no pages exist yet.
