//! Dates in the viewer's own time zone and language (the browser's `Intl`).

use wasm_bindgen::JsValue;

/// `ms` since the epoch as the viewer's local date and time.
pub fn local(ms: i64) -> String {
    if ms <= 0 {
        return "—".into();
    }
    js_sys::Date::new(&JsValue::from_f64(ms as f64))
        .to_locale_string("default", &JsValue::UNDEFINED)
        .into()
}

/// A JSON number of ms as [`local`]; "—" when absent.
pub fn local_json(v: &serde_json::Value) -> String {
    v.as_i64().map(local).unwrap_or_else(|| "—".into())
}

/// A JSON RFC 3339 string (labels' `cts`, `exp`) as [`local`]; "—" when absent.
pub fn local_rfc3339(v: &serde_json::Value) -> String {
    v.as_str()
        .and_then(parse_local)
        .map(local)
        .unwrap_or_else(|| "—".into())
}

/// A duration in ms as words (`3 h 20 min`).
pub fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

/// A `datetime-local` input's value (the viewer's zone) as ms since the epoch.
pub fn parse_local(value: &str) -> Option<i64> {
    if value.trim().is_empty() {
        return None;
    }
    let ms = js_sys::Date::new(&JsValue::from_str(value)).get_time();
    (!ms.is_nan()).then_some(ms as i64)
}
