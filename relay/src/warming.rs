//! Warming tiers and sending limits (SPEC §6): caps by age since approval, the member's own caps,
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
    let hour = send_counts::recipients_since(conn, Some(&member.did), now - HOUR_MS)?;
    let day = send_counts::recipients_since(conn, Some(&member.did), now - DAY_MS)?;
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

/// Checks that `adding` more recipients from `member` fit every cap.
pub fn check(
    conn: &Connection,
    member: &Member,
    limits: &LimitsConfig,
    adding: u32,
    now: i64,
) -> Result<Result<(), OverLimit>, StoreError> {
    let member_labels = labels::active(conn, &member.did, now)?;
    let caps = caps(member, &member_labels, limits, now);
    for (cap, window) in [(caps.hourly, HOUR_MS), (caps.daily, DAY_MS)] {
        let used = send_counts::recipients_since(conn, Some(&member.did), now - window)?;
        if used + i64::from(adding) > i64::from(cap) {
            let oldest = send_counts::oldest_since(conn, Some(&member.did), now - window)?;
            return Ok(Err(OverLimit {
                retry_after_secs: retry_after(oldest, window, now),
            }));
        }
    }
    if limits.global_per_minute > 0 {
        let used = send_counts::recipients_since(conn, None, now - MINUTE_MS)?;
        if used + i64::from(adding) > i64::from(limits.global_per_minute) {
            let oldest = send_counts::oldest_since(conn, None, now - MINUTE_MS)?;
            return Ok(Err(OverLimit {
                retry_after_secs: retry_after(oldest, MINUTE_MS, now),
            }));
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
