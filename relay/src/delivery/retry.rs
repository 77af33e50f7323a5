//! Retry policy (BEHAVIOUR §5.2): what a remote reply means for a recipient, and when to try again.

use crate::store::messages::RecipientStatus;
use std::time::Duration;

/// The retry schedule and the queue lifetime.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
    pub lifetime: Duration,
}

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// 4xx, a network error or a temporary DNS failure.
    Temporary,
    /// 5xx, null MX, or a domain that does not exist.
    Permanent,
}

impl Outcome {
    /// Classifies an SMTP reply code.
    pub fn from_code(code: u16) -> Self {
        match code {
            200..=399 => Self::Delivered,
            500..=599 => Self::Permanent,
            _ => Self::Temporary,
        }
    }
}

impl RetryPolicy {
    /// Delay before the next try after `attempts` tries (1 = the first retry): base doubling to max.
    pub fn delay(&self, attempts: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempts.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The new status and next attempt time (ms) for a recipient first queued at `received_at`
    /// that has now had `attempts` tries (this one included).
    pub fn decide(
        &self,
        outcome: Outcome,
        attempts: u32,
        received_at: i64,
        now: i64,
    ) -> (RecipientStatus, i64) {
        match outcome {
            Outcome::Delivered => (RecipientStatus::Sent, now),
            Outcome::Permanent => (RecipientStatus::Bounced, now),
            Outcome::Temporary => {
                let next = now + self.delay(attempts).as_millis() as i64;
                let expires = received_at + self.lifetime.as_millis() as i64;
                if next > expires {
                    (RecipientStatus::Bounced, now)
                } else {
                    (RecipientStatus::Deferred, next)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(60),
        max: Duration::from_secs(3600),
        lifetime: Duration::from_secs(3 * 86400),
    };

    #[test]
    fn backoff_doubles_to_cap() {
        assert_eq!(P.delay(1), Duration::from_secs(60));
        assert_eq!(P.delay(2), Duration::from_secs(120));
        assert_eq!(P.delay(6), Duration::from_secs(1920));
        assert_eq!(P.delay(7), Duration::from_secs(3600));
        assert_eq!(P.delay(1000), Duration::from_secs(3600));
    }

    #[test]
    fn decisions() {
        assert_eq!(Outcome::from_code(250), Outcome::Delivered);
        assert_eq!(Outcome::from_code(451), Outcome::Temporary);
        assert_eq!(Outcome::from_code(550), Outcome::Permanent);
        assert_eq!(
            P.decide(Outcome::Delivered, 1, 0, 10).0,
            RecipientStatus::Sent
        );
        assert_eq!(
            P.decide(Outcome::Permanent, 1, 0, 10).0,
            RecipientStatus::Bounced
        );
        assert_eq!(
            P.decide(Outcome::Temporary, 1, 0, 10),
            (RecipientStatus::Deferred, 60_010)
        );
        // Past the queue lifetime a temporary failure becomes a bounce.
        let late = 3 * 86_400_000;
        assert_eq!(
            P.decide(Outcome::Temporary, 50, 0, late).0,
            RecipientStatus::Bounced
        );
    }
}
