//! The per-connection rate limit: a token bucket kept as one number, the generic cell rate
//! algorithm's "theoretical arrival time" (TAT), so that one conditional write updates it.

/// A rate with bursts: `per_second` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatePolicy {
    /// Requests a second, on average.
    pub per_second: f64,
    /// Requests accepted back to back after a quiet spell.
    pub burst: u32,
}

impl Default for RatePolicy {
    fn default() -> Self {
        Self {
            per_second: 10.0,
            burst: 20,
        }
    }
}

impl RatePolicy {
    /// Milliseconds one request uses up (at least 1).
    pub fn interval_ms(&self) -> i64 {
        ((1000.0 / self.per_second).round() as i64).max(1)
    }

    /// Decides a request at `now_ms` given the stored TAT: `Ok(next TAT)` to accept it, or
    /// `Err(milliseconds until one would be accepted)`.
    pub fn admit(&self, tat: Option<i64>, now_ms: i64) -> Result<i64, u64> {
        let interval = self.interval_ms();
        let tolerance = interval * i64::from(self.burst.max(1) - 1);
        let tat = tat.map_or(now_ms, |tat| tat.max(now_ms));
        let ahead = tat - now_ms;
        if ahead > tolerance {
            Err(u64::try_from(ahead - tolerance).unwrap_or(1).max(1))
        } else {
            Ok(tat + interval)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds requests at the given times; returns which were accepted.
    fn run(policy: RatePolicy, times: impl IntoIterator<Item = i64>) -> Vec<bool> {
        let mut tat = None;
        times
            .into_iter()
            .map(|now| match policy.admit(tat, now) {
                Ok(next) => {
                    tat = Some(next);
                    true
                }
                Err(_) => false,
            })
            .collect()
    }

    #[test]
    fn a_burst_then_the_rate() {
        let policy = RatePolicy::default();
        let at_once = run(policy, std::iter::repeat_n(1_000, 30));
        assert_eq!(at_once.iter().filter(|a| **a).count(), 20, "the burst");
        // One request every 50 ms for 10 s after an idle start: 20 of burst, then 10 a second.
        let steady = run(policy, (0..200).map(|i| 10_000 + i * 50));
        let accepted = steady.iter().filter(|a| **a).count();
        assert!((118..=121).contains(&accepted), "{accepted}");
    }

    #[test]
    fn retry_after_is_when_a_token_is_back() {
        let policy = RatePolicy {
            per_second: 2.0,
            burst: 1,
        };
        let tat = policy.admit(None, 0).expect("first");
        let wait = policy.admit(Some(tat), 100).expect_err("too soon");
        assert_eq!(wait, 400);
        assert!(policy.admit(Some(tat), 100 + wait as i64).is_ok());
        // An old state is a full bucket, not credit for the idle time.
        let old = policy.admit(Some(-1_000_000), 0).expect("accepted");
        assert!(policy.admit(Some(old), 0).is_err(), "burst of one");
    }
}
