//! Suppression policy (BEHAVIOUR §4.1, §4.4, §7): which suppressed recipients a message may still
//! reach. Auth categories (login links, resets, codes, verification) bypass unsubscribes; nothing
//! bypasses bounces, complaints or manual entries.

use crate::headers::Category;

/// True when a recipient suppressed for `reason` must not get mail of `category`.
pub fn blocks(reason: &str, category: &Category) -> bool {
    !(reason == "unsubscribe" && matches!(category, Category::Auth(_)))
}

/// True when the reason is known before the category is (at SMTP RCPT): everything but
/// unsubscribes is refused there.
pub fn refuse_at_rcpt(reason: &str) -> bool {
    reason != "unsubscribe"
}

/// True for an enhanced status that means the address itself is bad (5.1.x: no such mailbox,
/// bad domain...): those go on the suppression list. Other permanent failures (policy, content)
/// say nothing about the address.
pub fn is_hard_bounce(status: &str) -> bool {
    status.starts_with("5.1.")
}

/// The SMTP reply text and HTTP reason for a suppressed recipient.
pub const SUPPRESSED_TEXT: &str = "suppressed recipient";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_mail_bypasses_unsubscribes_only() {
        let auth = Category::Auth("password-reset".into());
        assert!(!blocks("unsubscribe", &auth));
        assert!(blocks("unsubscribe", &Category::Bulk));
        assert!(blocks("unsubscribe", &Category::Transactional));
        assert!(blocks("complaint", &auth));
        assert!(blocks("bounce", &auth));
        assert!(!refuse_at_rcpt("unsubscribe"));
        assert!(refuse_at_rcpt("complaint"));
        assert!(is_hard_bounce("5.1.1") && !is_hard_bounce("5.7.1") && !is_hard_bounce("4.1.1"));
    }
}
