//! Random numbers for ids and retry jitter, from std alone: SipHash, keyed once per process
//! from the operating system's generator, over a counter. Distinct within a process, not
//! guessable across processes, and spread evenly: what ids and jitter need. Not for secrets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// 64 random bits.
pub fn next_u64() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = KEYS.get_or_init(RandomState::new).build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A number in `0..=max`. The modulo bias is at most `max / 2^64`: nothing for jitter.
pub fn up_to(max: u64) -> u64 {
    match max.checked_add(1) {
        Some(n) => next_u64() % n,
        None => next_u64(),
    }
}

/// The pause before retry number `retry` (1-based): full jitter under a ceiling that starts at
/// `base` and doubles up to `max`, so that throttled callers do not all come back at once.
pub fn full_jitter(base: Duration, max: Duration, retry: u32) -> Duration {
    let ceiling = base
        .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
        .min(max);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(up_to(millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn draws_are_distinct_and_use_every_bit() {
        let draws: Vec<u64> = (0..100_000).map(|_| next_u64()).collect();
        let distinct: HashSet<u64> = draws.iter().copied().collect();
        assert_eq!(distinct.len(), draws.len());
        let ones = draws.iter().fold(0u64, |acc, d| acc | d);
        let zeros = draws.iter().fold(0u64, |acc, d| acc | !d);
        assert_eq!(
            (ones, zeros),
            (u64::MAX, u64::MAX),
            "every bit takes both values"
        );
        // Half the bits set on average: a counter or a constant would be far off.
        let set: u64 = draws.iter().map(|d| u64::from(d.count_ones())).sum();
        let mean = set as f64 / draws.len() as f64;
        assert!((31.5..32.5).contains(&mean), "mean bits set {mean}");
    }

    #[test]
    fn up_to_covers_its_range_and_stays_in_it() {
        let mut seen = [0u32; 4];
        for _ in 0..4_000 {
            let v = up_to(3);
            assert!(v <= 3);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(up_to(0), 0);
        let _ = up_to(u64::MAX);
    }
}
