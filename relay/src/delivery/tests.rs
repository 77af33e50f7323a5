//! The scheduler's and workers' own rules, on a real store and spool.

use super::*;
use crate::store::test_store;

/// A recipient already sent, handed over again (acceptance's hand-over can arrive after a scan
/// has dispatched, sent and recorded it): the worker must not open a connection for it, and the
/// recipient stays sent. The CI soak once failed on this: the late copy found the body deleted,
/// recorded "451 message body unavailable" over the sent status, and stayed deferred for ever.
/// The mail host here is a bare listener: the test only asks whether anyone connected to it.
#[tokio::test]
async fn a_recipient_already_final_is_not_sent_again() {
    let (_d, store) = test_store();
    let store = Arc::new(store);
    let rcpts = [Mailbox::parse("a@x.test").expect("mailbox")];
    store
        .write(|tx| messages::insert(tx, &messages::test_message("m1", &rcpts, None)))
        .expect("insert");
    // The hand-over as acceptance made it, before the recipient was sent by a scan's dispatch.
    let stale = store.with(|c| messages::due(c, 100, 10)).expect("due");
    let id = stale[0].id;
    store
        .write(|tx| {
            messages::record_attempt(
                tx,
                &AttemptRecord {
                    recipient_id: id,
                    at: 200,
                    mx: Some("mx.x.test"),
                    code: Some(250),
                    reply: "250 2.0.0 ok",
                    status: RecipientStatus::Sent,
                    next_attempt_at: 0,
                },
            )
        })
        .expect("record");

    let host = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    host.set_nonblocking(true).expect("nonblocking");
    let mut config = Config::default();
    config.delivery.smarthost = host.local_addr().expect("addr").to_string();
    config.delivery.attempt_timeout = Duration::from_secs(2);
    let (spool, _writer) = Spool::start(&store).expect("spool");
    let delivery = Arc::new(Delivery::new(&config, store.clone(), spool, None).expect("delivery"));

    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (workers, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let (mut in_flight, mut destinations) = (HashSet::new(), HashMap::new());
    delivery.dispatch(
        stale,
        &mut in_flight,
        &mut destinations,
        &workers,
        &done_tx,
        &shutdown,
    );
    let done = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
        .await
        .expect("the worker answered for the job");
    assert_eq!(done, Some(vec![id]));
    shutdown.cancel();
    workers.close();
    workers.wait().await;

    let connected = host.accept().is_ok();
    assert!(
        !connected,
        "the worker connected to send a recipient already sent"
    );
    let now = store
        .with(|c| messages::recipients_of(c, "m1"))
        .expect("recipients");
    assert_eq!((now[0].status, now[0].attempts), (RecipientStatus::Sent, 1));
}
