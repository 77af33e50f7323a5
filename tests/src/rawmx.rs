//! A recipient MX that keeps the exact bytes of each DATA transfer, dot-stuffing and line ends
//! as they crossed the wire. smtp-sink and Postfix store messages after undoing both, so they
//! cannot show what the relay wrote; this one answers only the commands the relay's client
//! sends (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and accepts everything, without STARTTLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A running raw-recording MX on a loopback port.
pub struct RawMx {
    pub port: u16,
    transfers: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl RawMx {
    /// Listens on a fresh loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the raw MX");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("non-blocking accept");
        let transfers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (transfers.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let t = t.clone();
                        std::thread::spawn(move || {
                            let _ = serve(stream, &t);
                        });
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            transfers,
            stop,
        }
    }

    /// Every DATA transfer so far, each from the first byte after `354` to the final `.` line.
    pub fn transfers(&self) -> Vec<Vec<u8>> {
        self.transfers.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

impl Drop for RawMx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(stream: TcpStream, transfers: &Mutex<Vec<Vec<u8>>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    out.write_all(b"220 raw.test ESMTP\r\n")?;
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let verb = String::from_utf8_lossy(&line).to_ascii_uppercase();
        let reply: &[u8] = if verb.starts_with("EHLO") || verb.starts_with("HELO") {
            b"250-raw.test\r\n250 PIPELINING\r\n"
        } else if verb.starts_with("DATA") {
            out.write_all(b"354 go ahead\r\n")?;
            let mut data = Vec::new();
            let mut byte = [0u8; 1];
            // Only CRLF.CRLF ends DATA here (a strict receiver); everything before it is kept.
            while !data.ends_with(b"\r\n.\r\n") {
                if reader.read(&mut byte)? == 0 {
                    return Ok(());
                }
                data.push(byte[0]);
            }
            if let Ok(mut t) = transfers.lock() {
                t.push(data);
            }
            b"250 2.0.0 kept\r\n"
        } else if verb.starts_with("QUIT") {
            out.write_all(b"221 2.0.0 bye\r\n")?;
            return Ok(());
        } else {
            b"250 2.0.0 ok\r\n"
        };
        out.write_all(reply)?;
    }
}
