//! Delivery (BEHAVIOUR §5.2): a scheduler picks due recipients, groups them per message and
//! destination domain, and hands them to per-destination workers that hold reused connections.
//!
//! New mail arrives straight from acceptance (no polling delay); retries and mail left from a
//! previous run come from a scan of the store. A recipient is "in flight" from dispatch until its
//! attempt is committed, and a worker sends only recipients still queued (a scan may take a new
//! one before acceptance's hand-over arrives, which then comes too late), so it is never sent
//! twice by one process; after a crash it is simply due again (at-least-once).

pub mod client;
pub mod dsn;
pub mod mx;
mod record;
pub mod retry;

use crate::address::{MailDomain, Mailbox, ReversePath};
use crate::config::Config;
use crate::spool::Spool;
use crate::store::messages::{self, AttemptRecord, DueRecipient, RecipientStatus};
use crate::store::{Store, now_ms};
use client::{ClientConfig, ConnectError, Connection, RemoteReply};
use dsn::BounceReporter;
use hickory_resolver::TokioResolver;
use mx::MailHost;
use retry::{Outcome, RetryPolicy};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long an idle worker keeps its connection before saying QUIT.
const WORKER_IDLE: Duration = Duration::from_secs(5);
/// Results of one worker waiting for their commit before it takes another job: bounds memory
/// and the mail sent again after a crash when the disk stalls.
const UNRECORDED_PER_WORKER: usize = 8;
/// Longest pause between scans of the store for due retries.
const SCAN_INTERVAL_MS: i64 = 1000;
/// Most recipients taken per scan beyond those already in flight.
const SCAN_BATCH: usize = 500;

/// Recipients of one message to one domain with one envelope sender: one SMTP transaction
/// (with per-recipient VERP, member mail is one recipient per job).
#[derive(Debug, Clone)]
struct Job {
    message_id: String,
    mail_from: ReversePath,
    /// The sender is the recipients' own return path: written into the copy too.
    copy_header: bool,
    /// The recipients' domain part (a name, or an address literal).
    destination: MailDomain,
    domain: String,
    received_at: i64,
    recipients: Vec<(i64, Mailbox, u32)>,
}

/// The field delivery writes at the top of each copy of member mail: the copy's own return
/// path (one recipient, tagged with the relay's HMAC). A report that encloses the copy thereby
/// names the one recipient it is about, even when the receiver dropped `Return-Path`; being
/// outside every DKIM signature's `h=`, it changes none of them.
pub const COPY_HEADER: &str = "X-Atmos-Copy";

fn copy_field(job: &Job) -> Vec<u8> {
    match &job.mail_from {
        Some(sender) if job.copy_header => format!("{COPY_HEADER}: <{sender}>\r\n").into_bytes(),
        _ => Vec::new(),
    }
}

struct Destination {
    jobs: async_channel::Sender<Job>,
    queue: async_channel::Receiver<Job>,
    workers: AtomicUsize,
}

/// Settings and shared services of delivery.
pub struct Delivery {
    store: Arc<Store>,
    spool: Spool,
    resolver: TokioResolver,
    policy: RetryPolicy,
    client: ClientConfig,
    attempt_timeout: Duration,
    mx_port: u16,
    smarthost: Option<SocketAddr>,
    per_destination: usize,
    global: Arc<Semaphore>,
    reporter: Option<Arc<dyn BounceReporter>>,
    /// Connect to private, loopback and link-local addresses too (dev and tests).
    allow_private: bool,
}

/// The sender side acceptance uses to hand over newly queued recipients.
pub type QueuedSender = mpsc::UnboundedSender<Vec<DueRecipient>>;

impl Delivery {
    /// Builds delivery from the configuration.
    /// `reporter` hears about every bounce after it is committed (to send the DSN).
    pub fn new(
        config: &Config,
        store: Arc<Store>,
        spool: Spool,
        reporter: Option<Arc<dyn BounceReporter>>,
    ) -> Result<Self, String> {
        let resolver = crate::dns::resolver(&config.nameservers())?;
        let tls = mail_send::smtp::tls::build_tls_connector(true)?;
        Ok(Self {
            store,
            spool,
            resolver,
            policy: RetryPolicy {
                base: config.delivery.retry_base,
                max: config.delivery.retry_max,
                lifetime: config.delivery.max_queue_lifetime,
            },
            client: ClientConfig {
                ehlo_name: config.server.hostname.clone(),
                timeout: config.delivery.connect_timeout,
                tls,
            },
            attempt_timeout: config.delivery.attempt_timeout,
            mx_port: config.delivery.mx_port,
            smarthost: config.delivery.smarthost.parse().ok(),
            per_destination: config.delivery.per_destination_concurrency,
            global: Arc::new(Semaphore::new(config.delivery.global_concurrency)),
            reporter,
            allow_private: config.delivery.allow_private_destinations,
        })
    }

    /// Runs the scheduler until `shutdown`, then waits (up to `deadline`) for attempts in flight.
    pub async fn run(
        self: Arc<Self>,
        mut queued: mpsc::UnboundedReceiver<Vec<DueRecipient>>,
        shutdown: CancellationToken,
        deadline: Duration,
    ) {
        let workers = TaskTracker::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Vec<i64>>();
        let mut in_flight: HashSet<i64> = HashSet::new();
        let mut destinations: HashMap<String, Arc<Destination>> = HashMap::new();
        let mut next_scan = 0i64;
        loop {
            while let Ok(ids) = done_rx.try_recv() {
                for id in ids {
                    in_flight.remove(&id);
                }
            }
            let now = now_ms();
            if now >= next_scan {
                let limit = in_flight.len() + SCAN_BATCH;
                match self.store.with(|c| messages::due(c, now, limit)) {
                    Ok(due) => {
                        let full = due.len() >= limit;
                        self.dispatch(
                            due,
                            &mut in_flight,
                            &mut destinations,
                            &workers,
                            &done_tx,
                            &shutdown,
                        );
                        next_scan = if full { now } else { self.next_scan(now) };
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "delivery: cannot read the queue");
                        next_scan = now + SCAN_INTERVAL_MS;
                    }
                }
            }
            self.tend_workers(&mut destinations, &workers, &done_tx, &shutdown);
            let sleep = Duration::from_millis(next_scan.saturating_sub(now_ms()).max(0) as u64);
            tokio::select! {
                Some(batch) = queued.recv() => {
                    let mut due = batch;
                    while let Ok(more) = queued.try_recv() {
                        due.extend(more);
                    }
                    self.dispatch(due, &mut in_flight, &mut destinations, &workers, &done_tx, &shutdown);
                }
                Some(ids) = done_rx.recv() => {
                    for id in ids {
                        in_flight.remove(&id);
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        for d in destinations.values() {
            d.jobs.close();
        }
        workers.close();
        if tokio::time::timeout(deadline, workers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "delivery: attempts still in flight at the shutdown deadline; they stay queued"
            );
        }
        tracing::info!("delivery stopped");
    }

    fn next_scan(&self, now: i64) -> i64 {
        let next = self.store.with(|c| messages::next_due_at(c)).ok().flatten();
        match next {
            Some(t) if t > now => t.min(now + SCAN_INTERVAL_MS),
            _ => now + SCAN_INTERVAL_MS,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn dispatch(
        self: &Arc<Self>,
        due: Vec<DueRecipient>,
        in_flight: &mut HashSet<i64>,
        destinations: &mut HashMap<String, Arc<Destination>>,
        workers: &TaskTracker,
        done: &mpsc::UnboundedSender<Vec<i64>>,
        shutdown: &CancellationToken,
    ) {
        let mut jobs: Vec<Job> = Vec::new();
        let mut index: HashMap<(String, String, String), usize> = HashMap::new();
        for r in due {
            if !in_flight.insert(r.id) {
                continue;
            }
            // Only parsed mailboxes reach the wire; a stored value that no longer parses (left by
            // an older version) bounces instead of being written into an SMTP command.
            let sender = match r.mail_from.as_str() {
                "" => Ok(None),
                s => Mailbox::parse(s).map(Some),
            };
            let (address, sender) = match (Mailbox::parse(&r.address), sender) {
                (Ok(a), Ok(s)) => (a, s),
                (a, s) => {
                    let e = a
                        .err()
                        .or(s.err())
                        .map(|e| e.to_string())
                        .unwrap_or_default();
                    self.refuse_stored(r, e, done.clone());
                    continue;
                }
            };
            let key = (r.message_id.clone(), r.domain.clone(), r.mail_from.clone());
            let i = *index.entry(key).or_insert_with(|| {
                jobs.push(Job {
                    message_id: r.message_id.clone(),
                    copy_header: r.own_return_path && sender.is_some(),
                    mail_from: sender,
                    destination: address.domain().clone(),
                    domain: r.domain.clone(),
                    received_at: r.received_at,
                    recipients: Vec::new(),
                });
                jobs.len() - 1
            });
            jobs[i].recipients.push((r.id, address, r.attempts));
        }
        for job in jobs {
            let dest = destinations
                .entry(job.domain.clone())
                .or_insert_with(|| {
                    let (jobs, queue) = async_channel::unbounded();
                    Arc::new(Destination {
                        jobs,
                        queue,
                        workers: AtomicUsize::new(0),
                    })
                })
                .clone();
            let _ = dest.jobs.try_send(job);
            if dest.workers.load(Ordering::Relaxed) < self.per_destination {
                self.spawn_worker(&dest, workers, done, shutdown);
            }
        }
    }

    /// Bounces a recipient whose stored address or sender is not a valid mailbox.
    fn refuse_stored(
        self: &Arc<Self>,
        r: DueRecipient,
        error: String,
        done: mpsc::UnboundedSender<Vec<i64>>,
    ) {
        tracing::warn!(recipient_id = r.id, %error, "delivery: stored address is not a mailbox; bouncing");
        let spool = self.spool.clone();
        tokio::spawn(async move {
            let reply = format!("553 5.1.3 stored address is not a valid mailbox: {error}");
            let id = r.id;
            let _ = spool
                .write_lazy(move |tx| {
                    messages::record_attempt(
                        tx,
                        &AttemptRecord {
                            recipient_id: id,
                            at: now_ms(),
                            mx: None,
                            code: Some(553),
                            reply: &reply,
                            status: RecipientStatus::Bounced,
                            next_attempt_at: 0,
                        },
                    )
                })
                .await;
            let _ = done.send(vec![id]);
        });
    }

    /// Restarts workers for queues left with work and none to do it; forgets idle destinations.
    fn tend_workers(
        self: &Arc<Self>,
        destinations: &mut HashMap<String, Arc<Destination>>,
        workers: &TaskTracker,
        done: &mpsc::UnboundedSender<Vec<i64>>,
        shutdown: &CancellationToken,
    ) {
        destinations.retain(|_, d| !d.queue.is_empty() || d.workers.load(Ordering::Relaxed) > 0);
        for d in destinations.values() {
            if !d.queue.is_empty() && d.workers.load(Ordering::Relaxed) == 0 {
                self.spawn_worker(d, workers, done, shutdown);
            }
        }
    }

    fn spawn_worker(
        self: &Arc<Self>,
        dest: &Arc<Destination>,
        workers: &TaskTracker,
        done: &mpsc::UnboundedSender<Vec<i64>>,
        shutdown: &CancellationToken,
    ) {
        dest.workers.fetch_add(1, Ordering::Relaxed);
        let (this, dest, done, shutdown, tracker) = (
            self.clone(),
            dest.clone(),
            done.clone(),
            shutdown.clone(),
            workers.clone(),
        );
        workers.spawn(async move {
            this.worker(&dest, &done, &shutdown, &tracker).await;
            dest.workers.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Takes the destination's jobs on one reused connection. Each result is recorded by a
    /// task of its own (tracked, so shutdown waits for it): the connection goes on to the next
    /// job instead of idling through the commit, and results waiting together share one. At
    /// most [`UNRECORDED_PER_WORKER`] results wait; then the worker waits for the disk.
    async fn worker(
        self: &Arc<Self>,
        dest: &Destination,
        done: &mpsc::UnboundedSender<Vec<i64>>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) {
        let Ok(_permit) = self.global.acquire().await else {
            return;
        };
        let mut conn: Option<Connection> = None;
        let unrecorded = Arc::new(Semaphore::new(UNRECORDED_PER_WORKER));
        loop {
            let Ok(recording) = unrecorded.clone().acquire_owned().await else {
                break;
            };
            let mut job = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                job = tokio::time::timeout(WORKER_IDLE, dest.queue.recv()) => match job {
                    Ok(Ok(job)) => job,
                    _ => break,
                },
            };
            let ids: Vec<i64> = job.recipients.iter().map(|r| r.0).collect();
            // Acceptance hands new recipients over after its commit, and a scan in between may
            // have sent them already: only those still queued go out. One read with the body's.
            let read = self.store.with(|c| {
                let open = messages::still_open(c, &ids)?;
                let body = if open.is_empty() {
                    None
                } else {
                    messages::body(c, &job.message_id)?
                };
                Ok((open, body))
            });
            // A failed read keeps every recipient; the attempt then defers (recording it
            // changes nothing final).
            let body = read.ok().and_then(|(open, body)| {
                job.recipients.retain(|r| open.contains(&r.0));
                body
            });
            if job.recipients.is_empty() {
                let _ = done.send(ids);
                continue;
            }
            let attempt = self.attempt(&mut conn, &job, body.as_deref());
            let results = match tokio::time::timeout(self.attempt_timeout, attempt).await {
                Ok(r) => r,
                Err(_) => {
                    // A tarpit: nothing this connection says can be trusted to finish.
                    conn = None;
                    let reply = RemoteReply {
                        code: 451,
                        text: format!(
                            "451 4.4.2 the attempt took longer than {}",
                            humantime::format_duration(self.attempt_timeout)
                        ),
                    };
                    vec![(reply, Outcome::Temporary, None); job.recipients.len()]
                }
            };
            let (this, done) = (self.clone(), done.clone());
            tracker.spawn(async move {
                this.record(job, results, body).await;
                let _ = done.send(ids);
                drop(recording);
            });
        }
        if let Some(c) = conn {
            c.quit().await;
        }
    }

    /// Tries one job with its message's `body` (`None`: it could not be read); returns
    /// (reply, outcome, mx) per recipient, in the job's order.
    async fn attempt(
        &self,
        conn: &mut Option<Connection>,
        job: &Job,
        body: Option<&[u8]>,
    ) -> Vec<(RemoteReply, Outcome, Option<String>)> {
        let rcpts: Vec<Mailbox> = job.recipients.iter().map(|r| r.1.clone()).collect();
        let all = |reply: RemoteReply, outcome: Outcome, mx: Option<String>| {
            vec![(reply, outcome, mx); rcpts.len()]
        };
        let Some(body) = body else {
            let reply = RemoteReply {
                code: 451,
                text: "451 4.3.0 message body unavailable".into(),
            };
            return all(reply, Outcome::Temporary, None);
        };
        let prefix = copy_field(job);
        loop {
            let fresh = match conn.as_ref() {
                Some(c) if c.reusable => false,
                _ => match self.connect(&job.destination).await {
                    Ok(c) => {
                        *conn = Some(c);
                        true
                    }
                    Err((reply, outcome)) => return all(reply, outcome, None),
                },
            };
            let Some(c) = conn.as_mut() else { continue };
            let host = c.host.clone();
            match c.send(&job.mail_from, &rcpts, &prefix, body).await {
                Ok(replies) => {
                    return replies
                        .into_iter()
                        .map(|r| {
                            let outcome = Outcome::from_code(r.code);
                            (r, outcome, Some(host.clone()))
                        })
                        .collect();
                }
                Err(e) => {
                    *conn = None;
                    // A reused connection may have been closed by the server meanwhile: one
                    // retry on a fresh connection; a fresh one failing is a real failure.
                    if fresh {
                        let text = format!("451 4.4.2 connection to {host} lost: {e}");
                        return all(
                            RemoteReply { code: 451, text },
                            Outcome::Temporary,
                            Some(host),
                        );
                    }
                }
            }
        }
    }

    /// Opens a connection to the first reachable mail host of `destination`.
    async fn connect(
        &self,
        destination: &MailDomain,
    ) -> Result<Connection, (RemoteReply, Outcome)> {
        let domain = destination.to_string();
        let hosts = match (self.smarthost, destination) {
            // The operator's own smarthost (dev capture) is trusted wherever it is.
            (Some(addr), _) => vec![MailHost {
                name: addr.ip().to_string(),
                addresses: vec![addr.ip()],
            }],
            (None, MailDomain::Literal(ip)) => self.public_only(
                vec![MailHost {
                    name: domain.clone(),
                    addresses: vec![*ip],
                }],
                &domain,
            )?,
            (None, MailDomain::Name(name)) => {
                let hosts = mx::resolve(&self.resolver, name.as_str())
                    .await
                    .map_err(|e| {
                        let outcome = if e.is_permanent() {
                            Outcome::Permanent
                        } else {
                            Outcome::Temporary
                        };
                        let text = e.to_string();
                        let code = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(451);
                        (RemoteReply { code, text }, outcome)
                    })?;
                self.public_only(hosts, &domain)?
            }
        };
        let domain = domain.as_str();
        let port = self.smarthost.map(|a| a.port()).unwrap_or(self.mx_port);
        let mut last = RemoteReply {
            code: 451,
            text: format!("451 4.4.1 no mail host of {domain} answered"),
        };
        for host in &hosts {
            for ip in &host.addresses {
                match Connection::open(SocketAddr::new(*ip, port), &host.name, &self.client).await {
                    Ok(c) => return Ok(c),
                    Err(ConnectError::Refused(reply)) => last = reply,
                    Err(e) => {
                        last = RemoteReply {
                            code: 451,
                            text: format!(
                                "451 4.4.1 cannot connect to {} [{ip}]:{port}: {e}",
                                host.name
                            ),
                        }
                    }
                }
            }
        }
        // A host that refuses us at greeting or EHLO is a temporary condition for the message.
        Err((
            RemoteReply {
                code: last.code.clamp(400, 499),
                text: last.text,
            },
            Outcome::Temporary,
        ))
    }

    /// Drops private, loopback and link-local addresses from `hosts` unless they are allowed; none
    /// left is a permanent failure, so a member cannot aim the relay at the operator's network.
    fn public_only(
        &self,
        mut hosts: Vec<MailHost>,
        domain: &str,
    ) -> Result<Vec<MailHost>, (RemoteReply, Outcome)> {
        if self.allow_private {
            return Ok(hosts);
        }
        for h in &mut hosts {
            h.addresses.retain(|ip| !crate::dns::is_private(*ip));
        }
        hosts.retain(|h| !h.addresses.is_empty());
        if hosts.is_empty() {
            let text = format!(
                "550 5.4.4 the mail hosts of {domain} have only private, loopback or link-local addresses"
            );
            return Err((RemoteReply { code: 550, text }, Outcome::Permanent));
        }
        Ok(hosts)
    }
}

#[cfg(test)]
mod tests;
