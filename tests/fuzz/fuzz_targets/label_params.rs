//! `queryLabels` and `subscribeLabels` parameters: any query string is refused with
//! InvalidRequest or answered from the store, with at most `limit` labels in `seq` order.
#![no_main]
use atmos_labeler::Labeler;
use atmos_labeler::xrpc::query::{MAX_LIMIT, parse};
use atmos_labeler::xrpc::subscribe::Params;
use axum::extract::Query;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static L: OnceLock<Labeler> = OnceLock::new();
    let l = L.get_or_init(|| atmos_fuzz::labeler(None));
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Ok(q) = parse(raw) {
        assert!((1..=MAX_LIMIT).contains(&q.limit));
        let found = l.store.query(&q).expect("query on a working store");
        assert!(found.len() <= q.limit as usize);
        assert!(found.windows(2).all(|w| w[0].seq < w[1].seq));
    }
    if let Ok(uri) = format!("/xrpc/com.atproto.label.subscribeLabels?{raw}").parse()
        && let Ok(Query(p)) = Query::<Params>::try_from_uri(&uri)
    {
        let after = l.store.since(p.cursor.unwrap_or(0), 100).expect("replay");
        assert!(after.iter().all(|s| s.seq > p.cursor.unwrap_or(0)));
    }
});
