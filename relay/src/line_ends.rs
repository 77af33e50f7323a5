//! Line ends on the wire. SMTP ends a line with CRLF, and a receiver that also takes a bare CR
//! or a bare LF as one can be made to see `<CR>.<CR><LF>` as the end of DATA and what follows
//! as a second transaction from the relay's IP (SMTP smuggling, December 2023). The relay
//! therefore turns every bare CR and bare LF of a message body into CRLF before it signs
//! (as Postfix's `smtpd_forbid_bare_newline = normalize` does), and the delivery client does it
//! again while dot-stuffing, so nothing else can reach a remote server.

use std::borrow::Cow;

/// `data` with every bare CR and bare LF turned into CRLF (borrowed when there is none).
pub fn normalize(data: &[u8]) -> Cow<'_, [u8]> {
    if !has_bare(data) {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                if data[i] == b'\r' && data.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Whether `data` holds a CR not followed by LF, or an LF not preceded by CR.
pub fn has_bare(data: &[u8]) -> bool {
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\r' if data.get(i + 1) == Some(&b'\n') => i += 1,
            b'\r' | b'\n' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// The message body after its header block (from the first blank CRLF line) normalised; the
/// header block is left as it came, for the strict header check to judge.
pub fn normalize_body(message: Vec<u8>) -> Vec<u8> {
    let Some(end) = message.windows(4).position(|w| w == b"\r\n\r\n") else {
        return message;
    };
    let body_start = end + 4;
    match normalize(&message[body_start..]) {
        Cow::Borrowed(_) => message,
        Cow::Owned(body) => {
            let mut out = Vec::with_capacity(body_start + body.len());
            out.extend_from_slice(&message[..body_start]);
            out.extend_from_slice(&body);
            out
        }
    }
}

/// The message as sent after DATA: every line ending in CRLF (bare CR and LF included), a dot
/// doubled at the start of each line, then the final `.` line (RFC 5321 §4.5.2).
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    dot_stuff_parts(&[body])
}

/// [`dot_stuff`] of `parts` one after the other (a header line before a stored body), without
/// joining them first.
pub fn dot_stuff_parts(parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + len / 64 + 8);
    let mut at_line_start = true;
    let mut bytes = parts.iter().flat_map(|p| p.iter().copied()).peekable();
    while let Some(b) = bytes.next() {
        match b {
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                if b == b'\r' && bytes.peek() == Some(&b'\n') {
                    bytes.next();
                }
                at_line_start = true;
            }
            b => {
                if at_line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                at_line_start = false;
            }
        }
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_cr_and_lf_become_crlf() {
        assert_eq!(&*normalize(b"a\r\nb"), b"a\r\nb");
        assert!(matches!(normalize(b"a\r\nb"), Cow::Borrowed(_)));
        assert_eq!(
            &*normalize(b"a\rb\nc\r\r\nd\n\r"),
            b"a\r\nb\r\nc\r\n\r\nd\r\n\r\n"
        );
        assert_eq!(&*normalize(b"x\r.\r\nMAIL"), b"x\r\n.\r\nMAIL");
        assert!(has_bare(b"\r"));
        assert!(has_bare(b"a\nb"));
        assert!(!has_bare(b"a\r\n\r\nb"));
    }

    #[test]
    fn only_the_body_is_normalised() {
        let m = b"Subject: x\r\n\r\nline\rnext\n.\r\n".to_vec();
        assert_eq!(
            normalize_body(m),
            b"Subject: x\r\n\r\nline\r\nnext\r\n.\r\n"
        );
        let h = b"Subject: x\nFrom: y\r\n".to_vec();
        assert_eq!(
            normalize_body(h.clone()),
            h,
            "no body: left for the header check"
        );
    }

    #[test]
    fn dot_stuffing_sees_every_line_end() {
        assert_eq!(
            dot_stuff(b".a\r\nb\r\n.\r\n"),
            b"..a\r\nb\r\n..\r\n.\r\n".to_vec()
        );
        assert_eq!(dot_stuff(b"x"), b"x\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n".to_vec());
        // The smuggling shapes: a bare CR or LF before or after the dot.
        assert_eq!(dot_stuff(b"a\r.\r\nb"), b"a\r\n..\r\nb\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b"a\r\n.\rb"), b"a\r\n..\r\nb\r\n.\r\n".to_vec());
        assert_eq!(dot_stuff(b"a\n.\nb"), b"a\r\n..\r\nb\r\n.\r\n".to_vec());
        let out = dot_stuff(b"x\r.\r\nMAIL FROM:<a@b>\n.\n");
        assert!(!has_bare(&out));
        assert!(!out.windows(3).any(|w| w == b"\r.\r"));
        assert_eq!(out.windows(5).filter(|w| w == b"\r\n.\r\n").count(), 1);
        assert_eq!(
            dot_stuff_parts(&[b"X: 1\r", b"\n.a\r\n"]),
            dot_stuff(b"X: 1\r\n.a\r\n"),
            "a CRLF split between parts is one line end"
        );
    }
}
