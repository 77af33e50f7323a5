//! Warming tiers and sending limits (BEHAVIOUR §6): caps by age since approval, the member's own caps,
//! `highly_trusted` (skips warming) and `burst_warming` (halves the hourly cap), and a relay-wide
//! per-minute cap. Windows are rolling and counted per recipient from the store, so a restart
//! does not reset them.

use crate::config::LimitsConfig;
use crate::store::members::Member;
use crate::store::{StoreError, labels, send_counts};
use rusqlite::Connection;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const MINUTE_MS: i64 = 60_000;

/// Label that skips warming.
pub const HIGHLY_TRUSTED: &str = "highly_trusted";
/// Label that halves the hourly cap.
pub const BURST_WARMING: &str = "burst_warming";

/// A member's tier by age since approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Warming,
    Ramping,
    Warmed,
}

impl Tier {
    /// Tier at `now` for a member approved at `approved_at`.
    pub fn at(approved_at: Option<i64>, now: i64) -> Self {
        let age = now - approved_at.unwrap_or(now);
        if age < 7 * DAY_MS {
            Self::Warming
        } else if age < 14 * DAY_MS {
            Self::Ramping
        } else {
            Self::Warmed
        }
    }

    /// Name for status APIs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Warming => "warming",
            Self::Ramping => "ramping",
            Self::Warmed => "warmed",
        }
    }
}

/// Effective caps of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub tier: Tier,
    pub hourly: u32,
    pub daily: u32,
}

/// Caps from tier, member limits and labels.
pub fn caps(member: &Member, member_labels: &[String], limits: &LimitsConfig, now: i64) -> Caps {
    let has = |l: &str| member_labels.iter().any(|x| x == l);
    let tier = Tier::at(member.approved_at, now);
    let own_hourly = member.hourly_limit.unwrap_or(limits.hourly);
    let own_daily = member.daily_limit.unwrap_or(limits.daily);
    let (mut hourly, daily) = match (tier, has(HIGHLY_TRUSTED)) {
        (_, true) | (Tier::Warmed, _) => (own_hourly, own_daily),
        (Tier::Warming, false) => (own_hourly.min(5), own_daily.min(20)),
        (Tier::Ramping, false) => (own_hourly.min(20), own_daily.min(100)),
    };
    if has(BURST_WARMING) {
        hourly /= 2;
    }
    Caps {
        tier,
        hourly,
        daily,
    }
}

/// A member's tier, caps and use of them now (for `/member/status`).
pub fn usage(
    conn: &Connection,
    member: &Member,
    limits: &LimitsConfig,
    now: i64,
) -> Result<(Caps, Vec<String>, i64, i64), StoreError> {
    let member_labels = labels::active(conn, &member.did, now)?;
    let caps = caps(member, &member_labels, limits, now);
    let hour = send_counts::recipients_since(conn, &member.did, now - HOUR_MS)?;
    let day = send_counts::recipients_since(conn, &member.did, now - DAY_MS)?;
    Ok((caps, member_labels, hour, day))
}

/// Over a cap: seconds until a retry can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub retry_after_secs: u64,
}

fn retry_after(oldest: Option<i64>, window: i64, now: i64) -> u64 {
    let until = oldest.map(|t| t + window - now).unwrap_or(window);
    (until.max(1000) as u64).div_ceil(1000)
}

/// Whose sending a message spends, and the buckets it is counted in.
#[derive(Debug, Clone, Copy)]
pub enum Budget<'a> {
    /// A member's own mail: the member's caps and the relay's.
    Member(&'a Member),
    /// Replies to a member's domain that the relay forwards: the member's caps in a bucket of
    /// their own (a stranger mailing the domain cannot spend the member's own sending), and at
    /// most `share` percent of the relay-wide cap (nor the other members').
    Forwards(&'a Member, u8),
    /// Bounces of forwarded mail returned to their sender (no member): at most `share` percent
    /// of the relay-wide cap, shared with forwards.
    Returns(u8),
}

/// The bucket of every recipient the relay sends.
const RELAY: &str = "*";
/// The bucket of every forwarded recipient.
const FORWARDS: &str = "fwd:*";

impl Budget<'_> {
    /// The member bucket this budget is checked against (none for returns).
    fn member(&self) -> Option<(&Member, String)> {
        match self {
            Self::Member(m) => Some((m, m.did.clone())),
            Self::Forwards(m, _) => Some((m, format!("fwd:{}", m.did))),
            Self::Returns(_) => None,
        }
    }

    /// Every bucket the recipients are counted in.
    pub fn buckets(&self) -> Vec<String> {
        let mut out: Vec<String> = self.member().map(|(_, b)| b).into_iter().collect();
        out.push(RELAY.into());
        if !matches!(self, Self::Member(_)) {
            out.push(FORWARDS.into());
        }
        out
    }
}

fn over(
    conn: &Connection,
    bucket: &str,
    cap: u32,
    window: i64,
    adding: u32,
    now: i64,
) -> Result<Option<OverLimit>, StoreError> {
    let used = send_counts::recipients_since(conn, bucket, now - window)?;
    if used + i64::from(adding) <= i64::from(cap) {
        return Ok(None);
    }
    let oldest = send_counts::oldest_since(conn, bucket, now - window)?;
    Ok(Some(OverLimit {
        retry_after_secs: retry_after(oldest, window, now),
    }))
}

/// Checks that `adding` more recipients from `member`'s own mail fit every cap.
pub fn check(
    conn: &Connection,
    member: &Member,
    limits: &LimitsConfig,
    adding: u32,
    now: i64,
) -> Result<Result<(), OverLimit>, StoreError> {
    check_budget(conn, Budget::Member(member), limits, adding, now)
}

/// Checks that `adding` more recipients fit every cap of `budget`.
pub fn check_budget(
    conn: &Connection,
    budget: Budget<'_>,
    limits: &LimitsConfig,
    adding: u32,
    now: i64,
) -> Result<Result<(), OverLimit>, StoreError> {
    if let Some((member, bucket)) = budget.member() {
        let member_labels = labels::active(conn, &member.did, now)?;
        let caps = caps(member, &member_labels, limits, now);
        for (cap, window) in [(caps.hourly, HOUR_MS), (caps.daily, DAY_MS)] {
            if let Some(o) = over(conn, &bucket, cap, window, adding, now)? {
                return Ok(Err(o));
            }
        }
    }
    if limits.global_per_minute > 0 {
        if let Some(o) = over(
            conn,
            RELAY,
            limits.global_per_minute,
            MINUTE_MS,
            adding,
            now,
        )? {
            return Ok(Err(o));
        }
        let share = match budget {
            Budget::Member(_) => None,
            Budget::Forwards(_, share) | Budget::Returns(share) => Some(share),
        };
        if let Some(share) = share {
            let cap = (u64::from(limits.global_per_minute) * u64::from(share) / 100).max(1) as u32;
            if let Some(o) = over(conn, FORWARDS, cap, MINUTE_MS, adding, now)? {
                return Ok(Err(o));
            }
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(approved_days_ago: i64, now: i64) -> Member {
        Member::active("did:plc:x", now - approved_days_ago * DAY_MS)
    }

    #[test]
    fn tiers_caps_and_labels() {
        let limits = LimitsConfig::default();
        let now = 100 * DAY_MS;
        let c = |days, labels: &[&str]| {
            let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
            caps(&member(days, now), &labels, &limits, now)
        };
        assert_eq!(
            c(1, &[]),
            Caps {
                tier: Tier::Warming,
                hourly: 5,
                daily: 20
            }
        );
        assert_eq!(
            c(8, &[]),
            Caps {
                tier: Tier::Ramping,
                hourly: 20,
                daily: 100
            }
        );
        assert_eq!(
            c(30, &[]),
            Caps {
                tier: Tier::Warmed,
                hourly: 100,
                daily: 1000
            }
        );
        assert_eq!(
            c(1, &[HIGHLY_TRUSTED]).hourly,
            100,
            "highly_trusted skips warming"
        );
        assert_eq!(
            c(1, &[BURST_WARMING]).hourly,
            2,
            "burst_warming halves the hourly cap"
        );
        assert_eq!(c(30, &[BURST_WARMING]).hourly, 50);
        let mut m = member(30, now);
        m.hourly_limit = Some(10);
        assert_eq!(
            caps(&m, &[], &limits, now).hourly,
            10,
            "member cap below tier cap wins"
        );
        assert_eq!(retry_after(Some(now - HOUR_MS + 5000), HOUR_MS, now), 5);
    }
}
