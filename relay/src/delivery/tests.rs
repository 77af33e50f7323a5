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

/// While the disk stalls, a worker goes on sending only until
/// [`UNRECORDED_PER_WORKER`] results wait for their commit: what it holds, and what a crash
/// would send again, stays bounded. The mail host is a bare listener that hangs up: each
/// attempt is one connection, quickly deferred.
#[tokio::test]
async fn a_worker_waits_for_the_disk_after_a_few_unrecorded_results() {
    let (_d, store) = test_store();
    let store = Arc::new(store);
    let rcpts = [Mailbox::parse("a@x.test").expect("mailbox")];
    let ids: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
    for id in &ids {
        store
            .write(|tx| messages::insert(tx, &messages::test_message(id, &rcpts, None)))
            .expect("insert");
    }
    let due = store.with(|c| messages::due(c, 100, 100)).expect("due");
    assert_eq!(due.len(), 20);

    let host = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    host.set_nonblocking(true).expect("nonblocking");
    let mut config = Config::default();
    config.delivery.smarthost = host.local_addr().expect("addr").to_string();
    config.delivery.attempt_timeout = Duration::from_millis(200);
    config.delivery.per_destination_concurrency = 1;
    let (spool, _writer) = Spool::start(&store).expect("spool");
    // The disk stalls: the writer is held by a job until released.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let stalled = spool
        .enqueue(move |_tx| {
            let _ = hold.recv();
            Ok(())
        })
        .expect("enqueue");
    let delivery = Arc::new(Delivery::new(&config, store.clone(), spool, None).expect("delivery"));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (workers, shutdown) = (TaskTracker::new(), CancellationToken::new());
    let (mut in_flight, mut destinations) = (HashSet::new(), HashMap::new());
    delivery.dispatch(
        due,
        &mut in_flight,
        &mut destinations,
        &workers,
        &done_tx,
        &shutdown,
    );

    let mut connections = 0;
    let mut accept = || {
        while host.accept().is_ok() {
            connections += 1;
        }
        connections
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while accept() < UNRECORDED_PER_WORKER {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker stopped early"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A negative needs a window: uncapped, the worker makes the other 12 attempts within it.
    let window = std::time::Instant::now() + Duration::from_secs(2);
    while std::time::Instant::now() < window {
        assert_eq!(
            accept(),
            UNRECORDED_PER_WORKER,
            "attempts went on while the disk stalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    release.send(()).expect("release");
    stalled.await.expect("stalled write");
    let mut answered = 0;
    while answered < 20 {
        let ids = tokio::time::timeout(Duration::from_secs(30), done_rx.recv())
            .await
            .expect("every job answered once the disk is back")
            .expect("open");
        answered += ids.len();
    }
    assert_eq!(accept(), 20);
    shutdown.cancel();
    workers.close();
    workers.wait().await;
}
