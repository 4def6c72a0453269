//! When to sync next: a pure rule, so that it can be tested by table and reused by the agent.
//!
//! Like Salesforce for Outlook, the interval tightens while calls are flowing (the agent is
//! working and new callers matter) and relaxes while the PC is idle; it stretches as the org's
//! API usage approaches its daily limit, backs off exponentially on failures, waits an hour when
//! Salesforce says the limit is exhausted, and carries ±10 % jitter so a fleet started at the same
//! minute does not hit the org in lockstep.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScheduleInput {
    /// `sync.interval_secs`.
    pub base: Duration,
    /// A call happened in the last 15 minutes.
    pub calls_flowing: bool,
    /// No call and no user input for 30 minutes or more.
    pub idle: bool,
    /// The org's API usage (used / max), from `Sforce-Limit-Info`.
    pub api_share: Option<f64>,
    /// `sync.api_usage_limit_percent` / 100: above it, sync slows down.
    pub api_threshold: f64,
    /// Syncs that failed in a row (retryable errors).
    pub failures: u32,
    /// The last failure was REQUEST_LIMIT_EXCEEDED.
    pub rate_limited: bool,
    /// A random number in [0, 1) for the jitter.
    pub jitter: f64,
}

/// Calls count as flowing for this long after the last one.
const FLOWING_MS: i64 = 15 * 60_000;
/// No call and no user input for this long: idle.
const IDLE_MS: i64 = 30 * 60_000;

/// Pure: (calls flowing, idle) from when the agent started and when the last call and the last
/// user input happened (unix ms). Input is reported by the tray shell; headless, only calls
/// count.
pub(crate) fn activity_state(
    now: i64,
    started: i64,
    last_call: Option<i64>,
    last_input: Option<i64>,
) -> (bool, bool) {
    let flowing = last_call.is_some_and(|t| now - t < FLOWING_MS);
    let last_sign = [Some(started), last_call, last_input]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(started);
    (flowing, now - last_sign >= IDLE_MS)
}

/// When calls and user input last happened, written by the threads that see them and read by
/// the sync loop.
#[derive(Debug)]
pub struct Activity {
    started: i64,
    last_call: AtomicI64,
    last_input: AtomicI64,
}

const NEVER: i64 = i64::MIN;

impl Activity {
    pub fn new(now: i64) -> Activity {
        Activity {
            started: now,
            last_call: AtomicI64::new(NEVER),
            last_input: AtomicI64::new(NEVER),
        }
    }

    /// Records a call; true when calls resume after a quiet spell (the sync loop re-plans).
    pub fn note_call(&self, now: i64) -> bool {
        let before = self.last_call.swap(now, Ordering::Relaxed);
        before == NEVER || now - before >= FLOWING_MS
    }

    pub fn note_input(&self, now: i64) {
        self.last_input.store(now, Ordering::Relaxed);
    }

    /// (calls flowing, idle) now.
    pub fn state(&self, now: i64) -> (bool, bool) {
        let get = |a: &AtomicI64| Some(a.load(Ordering::Relaxed)).filter(|&t| t != NEVER);
        activity_state(
            now,
            self.started,
            get(&self.last_call),
            get(&self.last_input),
        )
    }
}

const MIN: Duration = Duration::from_secs(30);
const MAX: Duration = Duration::from_secs(3_600);

pub fn next_delay(i: ScheduleInput) -> Duration {
    if i.rate_limited {
        return MAX;
    }
    let base = i.base.as_secs_f64();
    let mut secs = if i.failures > 0 {
        // 30 s, 60 s, 2 min, 4 min … capped at an hour.
        30.0 * 2f64.powi(i.failures.min(10) as i32 - 1)
    } else if i.calls_flowing {
        base / 2.0
    } else if i.idle {
        base * 3.0
    } else {
        base
    };
    if let Some(share) = i.api_share {
        if share > i.api_threshold && i.api_threshold < 1.0 {
            // Up to 8× slower as usage goes from the threshold to the limit.
            let over = ((share - i.api_threshold) / (1.0 - i.api_threshold)).clamp(0.0, 1.0);
            secs *= 1.0 + 7.0 * over;
        }
    }
    let jitter = 0.9 + 0.2 * i.jitter.clamp(0.0, 1.0);
    Duration::from_secs_f64((secs * jitter).clamp(MIN.as_secs_f64(), MAX.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> ScheduleInput {
        ScheduleInput {
            base: Duration::from_secs(300),
            calls_flowing: false,
            idle: false,
            api_share: None,
            api_threshold: 0.5,
            failures: 0,
            rate_limited: false,
            jitter: 0.5,
        }
    }

    #[test]
    fn table() {
        let s = |f: &dyn Fn(&mut ScheduleInput)| {
            let mut i = input();
            f(&mut i);
            next_delay(i).as_secs()
        };
        let table: Vec<(&str, u64)> = vec![
            ("base", s(&|_| {})),
            ("calls flowing", s(&|i| i.calls_flowing = true)),
            ("idle", s(&|i| i.idle = true)),
            ("usage below threshold", s(&|i| i.api_share = Some(0.3))),
            ("usage at 75 %", s(&|i| i.api_share = Some(0.75))),
            ("usage at 100 %", s(&|i| i.api_share = Some(1.0))),
            ("first failure", s(&|i| i.failures = 1)),
            ("third failure", s(&|i| i.failures = 3)),
            ("many failures", s(&|i| i.failures = 30)),
            ("limit exhausted", s(&|i| i.rate_limited = true)),
            ("tiny base", s(&|i| i.base = Duration::from_secs(1))),
        ];
        let want = [300, 150, 900, 300, 1350, 2400, 30, 120, 3600, 3600, 30];
        for ((name, got), want) in table.iter().zip(want) {
            assert_eq!(*got, want, "{name}");
        }
    }

    #[test]
    fn activity_table() {
        let m = 60_000;
        let start = 0;
        // (now, last call, last input) → (flowing, idle)
        let table = [
            ("just started", 5 * m, None, None, (false, false)),
            ("started, 30 min quiet", 30 * m, None, None, (false, true)),
            ("call 1 min ago", 40 * m, Some(39 * m), None, (true, false)),
            (
                "call 15 min ago",
                60 * m,
                Some(45 * m),
                None,
                (false, false),
            ),
            ("call 30 min ago", 90 * m, Some(60 * m), None, (false, true)),
            (
                "no call, typing",
                90 * m,
                Some(10 * m),
                Some(89 * m),
                (false, false),
            ),
            (
                "no call, no input",
                90 * m,
                Some(10 * m),
                Some(50 * m),
                (false, true),
            ),
        ];
        for (name, now, call, input, want) in table {
            assert_eq!(activity_state(now, start, call, input), want, "{name}");
        }
    }

    #[test]
    fn calls_resuming_after_a_quiet_spell_are_reported_once() {
        let m = 60_000;
        let a = Activity::new(0);
        assert!(a.note_call(m), "first call");
        assert!(!a.note_call(2 * m), "calls flowing");
        assert_eq!(a.state(3 * m), (true, false));
        assert!(a.note_call(40 * m), "after a quiet spell");
        a.note_input(100 * m);
        assert_eq!(a.state(110 * m), (false, false));
        assert_eq!(a.state(131 * m), (false, true));
    }

    #[test]
    fn jitter_spreads_a_fleet_by_ten_percent() {
        let lo = next_delay(ScheduleInput {
            jitter: 0.0,
            ..input()
        })
        .as_secs();
        let hi = next_delay(ScheduleInput {
            jitter: 0.999_999,
            ..input()
        })
        .as_secs();
        assert_eq!((lo, hi), (270, 329));
    }
}
