//! ACME problems as the manager needs them: a message in the CA's words,
//! how long a rateLimited answer asks us to wait, and which refusals of a
//! `replaces` order are worth one try without it.

use super::super::IssueError;

/// The shortest: a date in the past or a few seconds ahead still waits this.
const RATE_LIMITED_MIN_WAIT_SECS: u64 = 60;
/// The longest wait a rateLimited answer may impose (Let's Encrypt's longest
/// window is 7 days); a date further out is taken as this.
const RATE_LIMITED_MAX_WAIT_SECS: u64 = 7 * 86_400;
/// When the CA says rateLimited without saying until when.
const RATE_LIMITED_WAIT_SECS: u64 = 3600;

pub(super) fn problem_text(p: &instant_acme::Problem) -> String {
    let kind = p
        .r#type
        .as_deref()
        .unwrap_or("")
        .rsplit(':')
        .next()
        .unwrap_or("");
    match &p.detail {
        Some(detail) => format!("{kind}: {detail}"),
        None => kind.to_owned(),
    }
}

/// A problem answering an order that named a replaced certificate, after
/// which the same order without `replaces` is worth one try: anything but a
/// rejected nonce (retried as a whole order) or an unknown account (handled
/// by creating a new one).
pub(super) fn refused_replacement(p: &instant_acme::Problem) -> bool {
    !is_bad_nonce(p)
        && !p
            .r#type
            .as_deref()
            .is_some_and(|t| t.ends_with(":accountDoesNotExist"))
}

pub(super) fn is_bad_nonce(p: &instant_acme::Problem) -> bool {
    p.r#type
        .as_deref()
        .is_some_and(|t| t.ends_with(":badNonce"))
}

/// How long a rateLimited answer asks us to wait, bounded. instant-acme
/// keeps no headers of an error response (our HTTP client keeps the
/// Retry-After header itself, see `http::RetryAfter`, which wins when it was
/// sent); Let's Encrypt repeats it in the detail ("..., retry after
/// 2025-05-07 15:11:29 UTC: see https://letsencrypt.org/docs/rate-limits/"),
/// which is read here. Without one, an hour.
pub(super) fn rate_limited_wait(detail: Option<&str>, now: i64) -> u64 {
    let parsed = detail.and_then(|d| {
        let at = d.find("retry after ")? + "retry after ".len();
        let stamp = d.get(at..at + 19)?.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            std::str::from_utf8(stamp.get(r)?).ok()?.parse().ok()
        };
        let shape_ok = [4, 7].iter().all(|&i| stamp[i] == b'-')
            && stamp[10] == b' '
            && [13, 16].iter().all(|&i| stamp[i] == b':');
        if !shape_ok {
            return None;
        }
        let month = time::Month::try_from(num(5..7)? as u8).ok()?;
        let date =
            time::Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()?;
        let clock =
            time::Time::from_hms(num(11..13)? as u8, num(14..16)? as u8, num(17..19)? as u8)
                .ok()?;
        Some(
            time::PrimitiveDateTime::new(date, clock)
                .assume_utc()
                .unix_timestamp()
                - now,
        )
    });
    match parsed {
        Some(secs) => {
            (secs.max(0) as u64).clamp(RATE_LIMITED_MIN_WAIT_SECS, RATE_LIMITED_MAX_WAIT_SECS)
        }
        None => RATE_LIMITED_WAIT_SECS,
    }
}

/// A wait the CA asked for, kept between a minute and a week.
pub(super) fn bound_rate_limited_wait(secs: u64) -> u64 {
    secs.clamp(RATE_LIMITED_MIN_WAIT_SECS, RATE_LIMITED_MAX_WAIT_SECS)
}

pub(super) fn acme_error(e: instant_acme::Error) -> IssueError {
    match e {
        instant_acme::Error::Api(p) => {
            let rate_limited = p
                .r#type
                .as_deref()
                .is_some_and(|t| t.ends_with(":rateLimited"));
            IssueError {
                message: problem_text(&p),
                retry_after_secs: rate_limited
                    .then(|| rate_limited_wait(p.detail.as_deref(), super::super::unix_now())),
                transient: is_bad_nonce(&p),
            }
        }
        // With the causes: hyper's "client error (Connect)" alone does not say
        // that the CA refused the connection or that its certificate was not trusted.
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(cause) = source {
                let text = cause.to_string();
                if !message.contains(&text) {
                    message.push_str(": ");
                    message.push_str(&text);
                }
                source = cause.source();
            }
            IssueError::new(message)
        }
    }
}
