//! The dev capture sink: a loopback SMTP receiver that writes each message to a `.eml` file
//! instead of delivering it. Dev mode points delivery's smarthost at it.

use smtp_proto::Request;
use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Starts the sink on `addr`; returns the bound address.
pub async fn start(
    addr: SocketAddr,
    dir: PathBuf,
    shutdown: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let counter = Arc::new(AtomicU64::new(0));
    let dir = Arc::new(dir);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Ok((stream, _)) = listener.accept() => {
                    let (dir, counter) = (dir.clone(), counter.clone());
                    tokio::spawn(async move {
                        if let Err(e) = session(stream, &dir, &counter).await {
                            tracing::debug!(error = %e, "capture sink session ended");
                        }
                    });
                }
                _ = shutdown.cancelled() => break,
            }
        }
    });
    Ok(bound)
}

async fn session(
    mut stream: TcpStream,
    dir: &std::path::Path,
    counter: &AtomicU64,
) -> std::io::Result<()> {
    stream
        .write_all(b"220 capture.localhost ESMTP dev capture sink\r\n")
        .await?;
    let mut requests = RequestReceiver::default();
    let mut data: Option<(DataReceiver, Vec<u8>)> = None;
    let (mut from, mut rcpts) = (String::new(), Vec::<String>::new());
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        let mut iter = buf[..n].iter();
        let mut out = Vec::new();
        loop {
            if let Some((receiver, body)) = data.as_mut() {
                if !receiver.ingest(&mut iter, body) {
                    break;
                }
                let seq = counter.fetch_add(1, Ordering::Relaxed);
                let name = dir.join(format!("{}-{seq:06}.eml", crate::store::now_ms()));
                let mut file = format!("X-Capture-Mail-From: {from}\r\n").into_bytes();
                for r in &rcpts {
                    file.extend_from_slice(format!("X-Capture-Rcpt-To: {r}\r\n").as_bytes());
                }
                file.extend_from_slice(body);
                tokio::fs::write(&name, &file).await?;
                tracing::info!(file = %name.display(), "dev: message captured");
                data = None;
                rcpts.clear();
                out.extend_from_slice(b"250 2.0.0 captured\r\n");
                continue;
            }
            let reply: &[u8] = match requests.ingest(&mut iter) {
                Ok(Request::Ehlo { .. }) => {
                    b"250-capture.localhost\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
                }
                Ok(Request::Helo { .. }) => b"250 capture.localhost\r\n",
                Ok(Request::Mail { from: f }) => {
                    from = f.address.to_string();
                    b"250 2.1.0 ok\r\n"
                }
                Ok(Request::Rcpt { to }) => {
                    rcpts.push(to.address.to_string());
                    b"250 2.1.5 ok\r\n"
                }
                Ok(Request::Data) => {
                    data = Some((DataReceiver::new(), Vec::new()));
                    b"354 go ahead\r\n"
                }
                Ok(Request::Quit) => {
                    out.extend_from_slice(b"221 2.0.0 bye\r\n");
                    stream.write_all(&out).await?;
                    return Ok(());
                }
                Ok(_) => b"250 2.0.0 ok\r\n",
                Err(smtp_proto::Error::NeedsMoreData { .. }) => break,
                Err(_) => b"500 5.5.2 syntax error\r\n",
            };
            out.extend_from_slice(reply);
        }
        stream.write_all(&out).await?;
    }
}
