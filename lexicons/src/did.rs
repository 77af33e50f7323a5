//! DIDs the cooperative resolves, as a checked type: `did:plc:<24 base32>` or `did:web:<host>`
//! with a strict host grammar (a domain name; a port only on `localhost`, for development), so
//! nothing from outside reaches a URL or the PLC directory unchecked.

use crate::domain::Domain;
pub use atrium_api::types::string::Did;

/// Why a string is not a DID the relay accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    #[error("is not a DID")]
    Syntax,
    #[error("uses a DID method other than did:plc and did:web")]
    Method,
    #[error("is a did:plc whose identifier is not 24 base32 characters")]
    Plc,
    #[error("is a did:web whose host is not a plain domain name (no path, user, query or port)")]
    WebHost,
}

/// The host a did:web names, and its port (only `localhost` may have one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebHost {
    pub host: String,
    pub port: Option<u16>,
}

impl WebHost {
    /// `https://<host>[:port]` (`http` for localhost).
    pub fn origin(&self) -> String {
        let scheme = if self.host == "localhost" {
            "http"
        } else {
            "https"
        };
        match self.port {
            Some(p) => format!("{scheme}://{}:{p}", self.host),
            None => format!("{scheme}://{}", self.host),
        }
    }
}

/// Parses a did:plc or did:web DID.
pub fn parse(input: &str) -> Result<Did, DidError> {
    if let Some(id) = input.strip_prefix("did:plc:") {
        if id.len() != 24 || !id.bytes().all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7')) {
            return Err(DidError::Plc);
        }
    } else if input.starts_with("did:web:") {
        web_host_of(input)?;
    } else if input.starts_with("did:") {
        return Err(DidError::Method);
    } else {
        return Err(DidError::Syntax);
    }
    Did::new(input.to_string()).map_err(|_| DidError::Syntax)
}

/// The host of a did:web (checked as [`parse`] does).
pub fn web_host(did: &Did) -> Option<WebHost> {
    web_host_of(did.as_str()).ok()
}

fn web_host_of(input: &str) -> Result<WebHost, DidError> {
    let rest = input.strip_prefix("did:web:").ok_or(DidError::Method)?;
    if let Some(text) = rest
        .strip_prefix("localhost%3A")
        .or_else(|| rest.strip_prefix("localhost%3a"))
    {
        let port: u16 = text.parse().map_err(|_| DidError::WebHost)?;
        if port == 0 || text != port.to_string() {
            return Err(DidError::WebHost);
        }
        return Ok(WebHost {
            host: "localhost".into(),
            port: Some(port),
        });
    }
    if rest.bytes().any(|b| b":/@?%#".contains(&b)) {
        return Err(DidError::WebHost);
    }
    match Domain::parse(rest) {
        Ok(d) if d.as_str() == rest => Ok(WebHost {
            host: rest.to_string(),
            port: None,
        }),
        _ => Err(DidError::WebHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plc_and_plain_web() {
        assert!(parse("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa").is_ok());
        let web = parse("did:web:labeler.example.com").unwrap();
        assert_eq!(
            web_host(&web).unwrap().origin(),
            "https://labeler.example.com"
        );
        let dev = parse("did:web:localhost%3A8080").unwrap();
        assert_eq!(web_host(&dev).unwrap().origin(), "http://localhost:8080");
    }

    #[test]
    fn refuses_everything_that_could_aim_a_request_elsewhere() {
        for (input, why) in [
            ("did:plc:short", DidError::Plc),
            ("did:plc:AAAAAAAAAAAAAAAAAAAAAAAA", DidError::Plc),
            ("did:key:z6Mk", DidError::Method),
            ("alice.test", DidError::Syntax),
            ("did:web:evil.test:8080", DidError::WebHost),
            ("did:web:evil.test%3A8080", DidError::WebHost),
            ("did:web:user@evil.test", DidError::WebHost),
            ("did:web:evil.test/path", DidError::WebHost),
            ("did:web:evil.test?x", DidError::WebHost),
            ("did:web:evil.test:users:alice", DidError::WebHost),
            ("did:web:127.0.0.1", DidError::WebHost),
            ("did:web:localhost", DidError::WebHost),
            ("did:web:localhost%3A0", DidError::WebHost),
            ("did:web:localhost%3A99999", DidError::WebHost),
            ("did:web:EVIL.test", DidError::WebHost),
            ("did:web:", DidError::WebHost),
        ] {
            assert_eq!(parse(input).err(), Some(why), "{input}");
        }
    }
}
