//! DynamoDB's per-partition throughput, which no emulator has: one partition key value takes at
//! most 1,000 write units and 3,000 read units a second, whatever the table's mode (adaptive
//! capacity isolates a hot key but cannot lift that ceiling). The gateway counts what each
//! handler call consumes on each key and warns when a key passes a limit, or, with
//! `--throttle-hot-partitions`, refuses the call as DynamoDB would: a hot key fails on the
//! laptop rather than in production.
//!
//! The window is sliding: the last second, in ten steps of 100 ms. A fixed window would let a
//! burst that straddles its edge pass at twice the limit, and hide it from the report.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use tracing::warn;

use super::capacity::{MilliUnits, UNIT};
use super::scopes::Scopes;
use crate::template::TableSpec;

/// Steps of the sliding window, and how long each is.
const SLOTS: usize = 10;
const SLOT_MILLIS: u128 = 100;
/// A report line is printed at shutdown once a key has used this share of a limit.
const REPORT_SHARE: f64 = 0.5;
/// Counters of idle, cold keys are forgotten once there are this many (each connection is a
/// key: a long load test would otherwise keep them all); the hottest key is always kept.
const SWEEP_AT: usize = 8192;
/// A key counts as cold below this share of both limits.
const COLD_SHARE: u64 = 10;

/// The per-partition limits, and what happens past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLimits {
    /// Write units per second one partition key takes (DynamoDB: 1,000).
    pub write_units: u32,
    /// Read units per second one partition key takes (DynamoDB: 3,000).
    pub read_units: u32,
    /// Refuse a call past a limit with DynamoDB's throttling error, instead of warning.
    pub throttle: bool,
}

impl Default for PartitionLimits {
    fn default() -> Self {
        Self {
            write_units: 1000,
            read_units: 3000,
            throttle: false,
        }
    }
}

/// Whether a call reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Read,
    Write,
}

/// What one call is expected to consume on one partition key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Charge<'a> {
    pub(crate) scope: usize,
    /// The partition key's value, as the request's JSON gives it.
    pub(crate) key: Cow<'a, str>,
    pub(crate) kind: Kind,
    /// What the request shows it will consume at least; DynamoDB Local's answer settles it.
    pub(crate) estimate: MilliUnits,
    /// Set by [`Partitions::admit`] when the key has no room for it.
    pub(crate) hot: bool,
    /// Set by [`Partitions::admit`] when it is not admitted: its key is hot, or another key of
    /// the same all-or-nothing call is.
    pub(crate) refused: bool,
}

/// The counts of one partition key.
#[derive(Debug)]
struct Counter {
    /// The newest step the slots hold.
    newest: u64,
    writes: [u32; SLOTS],
    reads: [u32; SLOTS],
    peak_writes: MilliUnits,
    peak_reads: MilliUnits,
    throttled: u64,
    /// No warning of this kind before this step: one per key per window.
    quiet_until: [u64; 2],
}

impl Counter {
    fn new(now: u64) -> Self {
        Self {
            newest: now,
            writes: [0; SLOTS],
            reads: [0; SLOTS],
            peak_writes: 0,
            peak_reads: 0,
            throttled: 0,
            quiet_until: [0; 2],
        }
    }

    /// Moves the window to step `now`, emptying the steps it leaves behind.
    fn advance(&mut self, now: u64) {
        if now <= self.newest {
            return;
        }
        if now - self.newest >= SLOTS as u64 {
            self.writes = [0; SLOTS];
            self.reads = [0; SLOTS];
        } else {
            for step in self.newest + 1..=now {
                self.writes[step as usize % SLOTS] = 0;
                self.reads[step as usize % SLOTS] = 0;
            }
        }
        self.newest = now;
    }

    fn slots(&mut self, kind: Kind) -> &mut [u32; SLOTS] {
        match kind {
            Kind::Read => &mut self.reads,
            Kind::Write => &mut self.writes,
        }
    }

    fn sum(&self, kind: Kind) -> MilliUnits {
        let slots = match kind {
            Kind::Read => &self.reads,
            Kind::Write => &self.writes,
        };
        slots.iter().map(|&s| MilliUnits::from(s)).sum()
    }

    /// Adds `units` (taking back `taken`) at step `step`, if the window still holds it.
    fn adjust(&mut self, kind: Kind, step: u64, units: MilliUnits, taken: MilliUnits) {
        if self.newest.saturating_sub(step) >= SLOTS as u64 {
            return;
        }
        let slot = &mut self.slots(kind)[step as usize % SLOTS];
        let value = MilliUnits::from(*slot)
            .saturating_add(units)
            .saturating_sub(taken);
        *slot = u32::try_from(value).unwrap_or(u32::MAX);
    }

    fn peak(&mut self, kind: Kind) -> &mut MilliUnits {
        match kind {
            Kind::Read => &mut self.peak_reads,
            Kind::Write => &mut self.peak_writes,
        }
    }

    fn idle(&self, now: u64) -> bool {
        now.saturating_sub(self.newest) >= SLOTS as u64
    }
}

/// The hottest key seen, kept when its counter is forgotten.
#[derive(Debug)]
struct Hottest {
    scope: usize,
    key: Box<str>,
    peak_writes: MilliUnits,
    peak_reads: MilliUnits,
    throttled: u64,
}

#[derive(Debug, Default)]
struct Counts {
    /// By scope, then key.
    keys: Vec<HashMap<Box<str>, Counter>>,
    len: usize,
    sweep_at: usize,
    hottest: Option<Hottest>,
}

/// A warning to log once the lock is released.
struct Notice {
    scope: usize,
    key: String,
    kind: Kind,
    units: MilliUnits,
    throttled: bool,
}

/// The per-key counts of every handler's DynamoDB calls.
#[derive(Debug)]
pub(crate) struct Partitions {
    limits: PartitionLimits,
    scopes: Scopes,
    started: Instant,
    counts: Mutex<Counts>,
}

impl Partitions {
    /// Counts for the template's `tables` under `limits`.
    pub(crate) fn new(
        tables: &[TableSpec],
        limits: PartitionLimits,
        table_arn: impl Fn(&str) -> String,
    ) -> Self {
        let scopes = Scopes::new(tables, table_arn);
        let counts = Counts {
            keys: (0..scopes.len()).map(|_| HashMap::new()).collect(),
            sweep_at: SWEEP_AT,
            ..Counts::default()
        };
        Self {
            limits,
            scopes,
            started: Instant::now(),
            counts: Mutex::new(counts),
        }
    }

    pub(crate) fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    fn limit(&self, kind: Kind) -> MilliUnits {
        let units = match kind {
            Kind::Read => self.limits.read_units,
            Kind::Write => self.limits.write_units,
        };
        MilliUnits::from(units) * UNIT
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis() / SLOT_MILLIS).unwrap_or(u64::MAX)
    }

    /// Takes room for `charges` (one per key) and returns the step it was taken at. When calls
    /// are throttled, a charge its key has no room for is marked refused and takes none; with
    /// `all_or_nothing` (a single item or a transaction) one refusal refuses them all. A key
    /// with an empty window always has room: a call bigger than the limit goes through alone.
    pub(crate) fn admit(&self, charges: &mut [Charge<'_>], all_or_nothing: bool) -> u64 {
        let now = self.now();
        let mut notices = Vec::new();
        {
            let mut counts = self.lock();
            for charge in charges.iter_mut() {
                let counter = counts.counter(charge.scope, &charge.key, now);
                let used = counter.sum(charge.kind);
                charge.hot = self.limits.throttle
                    && used > 0
                    && used + charge.estimate > self.limit(charge.kind);
            }
            let refuse_all = all_or_nothing && charges.iter().any(|c| c.hot);
            for charge in charges.iter_mut() {
                charge.refused = charge.hot || refuse_all;
                let counter = counts.counter(charge.scope, &charge.key, now);
                if !charge.refused {
                    counter.adjust(charge.kind, now, charge.estimate, 0);
                    continue;
                }
                if !charge.hot {
                    continue;
                }
                counter.throttled += 1;
                let throttled = counter.throttled;
                let used = counter.sum(charge.kind);
                let quiet = &mut counter.quiet_until[charge.kind as usize];
                if now >= *quiet {
                    *quiet = now + SLOTS as u64;
                    notices.push(Notice {
                        scope: charge.scope,
                        key: charge.key.clone().into_owned(),
                        kind: charge.kind,
                        units: used + charge.estimate,
                        throttled: true,
                    });
                }
                counts.note_hottest(charge.scope, &charge.key, None, throttled, self);
            }
        }
        self.log(notices);
        now
    }

    /// Settles the charges admitted at step `step` with what they consumed (`consumed[i]` for
    /// `charges[i]`; refused charges are skipped), updates the peaks, and warns once per key and
    /// window about a key past its limit.
    pub(crate) fn settle(&self, step: u64, charges: &[Charge<'_>], consumed: &[MilliUnits]) {
        let now = self.now();
        let mut notices = Vec::new();
        {
            let mut counts = self.lock();
            for (charge, &units) in charges.iter().zip(consumed) {
                if charge.refused {
                    continue;
                }
                let counter = counts.counter(charge.scope, &charge.key, now);
                counter.adjust(charge.kind, step, units, charge.estimate);
                let used = counter.sum(charge.kind);
                let peak = counter.peak(charge.kind);
                *peak = (*peak).max(used);
                let (peaks, throttled) =
                    ((counter.peak_writes, counter.peak_reads), counter.throttled);
                let quiet = &mut counter.quiet_until[charge.kind as usize];
                if used > self.limit(charge.kind) && now >= *quiet && !self.limits.throttle {
                    *quiet = now + SLOTS as u64;
                    notices.push(Notice {
                        scope: charge.scope,
                        key: charge.key.clone().into_owned(),
                        kind: charge.kind,
                        units: used,
                        throttled: false,
                    });
                }
                counts.note_hottest(charge.scope, &charge.key, Some(peaks), throttled, self);
            }
            if counts.len > counts.sweep_at {
                counts.sweep(now, self);
            }
        }
        self.log(notices);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        // A panic while counting leaves numbers, not broken invariants: keep counting.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn log(&self, notices: Vec<Notice>) {
        for notice in notices {
            let scope = self.scopes.get(notice.scope);
            let (what, limit) = match notice.kind {
                Kind::Read => ("RCU", self.limits.read_units),
                Kind::Write => ("WCU", self.limits.write_units),
            };
            let units = notice.units as f64 / UNIT as f64;
            if notice.throttled {
                warn!(
                    table = %scope.label,
                    key = %notice.key,
                    "hot partition throttled: {units:.1} {what} in the last second on one key, \
                     over DynamoDB's {limit} {what}/s per partition (further refusals on this key \
                     are not logged for a second)"
                );
            } else {
                warn!(
                    table = %scope.label,
                    key = %notice.key,
                    "hot partition: {units:.1} {what} in the last second on one key, over \
                     DynamoDB's {limit} {what}/s per partition; AWS would throttle it \
                     (--throttle-hot-partitions refuses it here)"
                );
            }
        }
    }

    /// Each key's peaks so far, hottest first.
    pub(crate) fn report(&self) -> HotPartitions {
        let counts = self.lock();
        let mut partitions: Vec<PartitionPeak> = Vec::new();
        for (scope, keys) in counts.keys.iter().enumerate() {
            for (key, counter) in keys {
                partitions.push(self.peak_of(
                    scope,
                    key,
                    counter.peak_writes,
                    counter.peak_reads,
                    counter.throttled,
                ));
            }
        }
        if let Some(hottest) = &counts.hottest {
            let scope = self.scopes.get(hottest.scope);
            let known = partitions
                .iter()
                .any(|p| p.table == scope.label && *p.key == *hottest.key);
            if !known {
                partitions.push(self.peak_of(
                    hottest.scope,
                    &hottest.key,
                    hottest.peak_writes,
                    hottest.peak_reads,
                    hottest.throttled,
                ));
            }
        }
        let (write_limit, read_limit) = (
            f64::from(self.limits.write_units),
            f64::from(self.limits.read_units),
        );
        let share = |p: &PartitionPeak| {
            (p.write_units / write_limit.max(1.0)).max(p.read_units / read_limit.max(1.0))
        };
        partitions.sort_by(|a, b| {
            share(b)
                .total_cmp(&share(a))
                .then_with(|| a.key.cmp(&b.key))
        });
        HotPartitions {
            write_limit,
            read_limit,
            partitions,
        }
    }

    fn peak_of(
        &self,
        scope: usize,
        key: &str,
        writes: MilliUnits,
        reads: MilliUnits,
        throttled: u64,
    ) -> PartitionPeak {
        PartitionPeak {
            table: self.scopes.get(scope).label.clone(),
            key: key.to_owned(),
            write_units: writes as f64 / UNIT as f64,
            read_units: reads as f64 / UNIT as f64,
            throttled,
        }
    }
}

impl Counts {
    fn counter(&mut self, scope: usize, key: &str, now: u64) -> &mut Counter {
        let keys = &mut self.keys[scope];
        if !keys.contains_key(key) {
            keys.insert(key.into(), Counter::new(now));
            self.len += 1;
        }
        let counter = keys.get_mut(key).expect("inserted above");
        counter.advance(now);
        counter
    }

    /// Keeps the hottest key (by its share of a limit) apart from the counters, which a sweep
    /// may forget; `peaks` are its (write, read) peaks when they changed.
    fn note_hottest(
        &mut self,
        scope: usize,
        key: &str,
        peaks: Option<(MilliUnits, MilliUnits)>,
        throttled: u64,
        partitions: &Partitions,
    ) {
        let heat = |w: MilliUnits, r: MilliUnits| {
            let (wl, rl) = (
                partitions.limit(Kind::Write).max(1),
                partitions.limit(Kind::Read).max(1),
            );
            (w as f64 / wl as f64).max(r as f64 / rl as f64)
        };
        match &mut self.hottest {
            Some(h) if h.scope == scope && *h.key == *key => {
                if let Some((w, r)) = peaks {
                    (h.peak_writes, h.peak_reads) = (w, r);
                }
                h.throttled = throttled;
            }
            Some(h) => {
                let Some((w, r)) = peaks else { return };
                if heat(w, r) > heat(h.peak_writes, h.peak_reads) {
                    *h = Hottest {
                        scope,
                        key: key.into(),
                        peak_writes: w,
                        peak_reads: r,
                        throttled,
                    };
                }
            }
            None => {
                let (w, r) = peaks.unwrap_or((0, 0));
                self.hottest = Some(Hottest {
                    scope,
                    key: key.into(),
                    peak_writes: w,
                    peak_reads: r,
                    throttled,
                });
            }
        }
    }

    /// Forgets idle keys that never came near a limit nor were throttled.
    fn sweep(&mut self, now: u64, partitions: &Partitions) {
        let (write_cold, read_cold) = (
            partitions.limit(Kind::Write) / COLD_SHARE,
            partitions.limit(Kind::Read) / COLD_SHARE,
        );
        for keys in &mut self.keys {
            keys.retain(|_, c| {
                !(c.idle(now)
                    && c.throttled == 0
                    && c.peak_writes < write_cold
                    && c.peak_reads < read_cold)
            });
        }
        self.len = self.keys.iter().map(HashMap::len).sum();
        self.sweep_at = SWEEP_AT.max(self.len * 2);
    }
}

/// The peaks of one partition key.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionPeak {
    /// The table (`table/index/name` for a global secondary index).
    pub table: String,
    /// The partition key's value.
    pub key: String,
    /// The most write units consumed on it in one second.
    pub write_units: f64,
    /// The most read units consumed on it in one second.
    pub read_units: f64,
    /// Calls refused for it (with `--throttle-hot-partitions`).
    pub throttled: u64,
}

/// Every partition key's peaks, hottest (by share of a limit) first.
#[derive(Debug, Clone, PartialEq)]
pub struct HotPartitions {
    /// Write units per second per partition key.
    pub write_limit: f64,
    /// Read units per second per partition key.
    pub read_limit: f64,
    /// By key, hottest first.
    pub partitions: Vec<PartitionPeak>,
}

impl HotPartitions {
    /// The key that came nearest to (or went furthest past) a limit.
    pub fn hottest(&self) -> Option<&PartitionPeak> {
        self.partitions.first()
    }

    /// The peaks of `key` in `table`, if it was seen.
    pub fn get(&self, table: &str, key: &str) -> Option<&PartitionPeak> {
        self.partitions
            .iter()
            .find(|p| p.table == table && p.key == key)
    }

    /// The larger of a key's shares of the write and read limits (1.0: at the limit).
    pub fn share(&self, peak: &PartitionPeak) -> f64 {
        (peak.write_units / self.write_limit.max(1.0))
            .max(peak.read_units / self.read_limit.max(1.0))
    }

    /// Whether a key went past a limit.
    pub fn over_limit(&self, peak: &PartitionPeak) -> bool {
        peak.write_units > self.write_limit || peak.read_units > self.read_limit
    }

    /// One line about the hottest key, when it used at least half a limit.
    pub fn summary(&self) -> Option<String> {
        let hottest = self.hottest()?;
        if self.share(hottest) < REPORT_SHARE {
            return None;
        }
        let over = self
            .partitions
            .iter()
            .filter(|p| self.over_limit(p))
            .count();
        Some(format!(
            "hot partitions: hottest key {} in {} peaked at {:.1} WCU/s and {:.1} RCU/s \
             (limits {} and {} per key); {over} key(s) over a limit, {} call(s) throttled",
            hottest.key,
            hottest.table,
            hottest.write_units,
            hottest.read_units,
            self.write_limit,
            self.read_limit,
            self.partitions.iter().map(|p| p.throttled).sum::<u64>(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::fixtures::table;

    fn partitions(throttle: bool) -> Partitions {
        let limits = PartitionLimits {
            write_units: 10,
            read_units: 30,
            throttle,
        };
        Partitions::new(&[table("chat")], limits, |n| format!("arn:table/{n}"))
    }

    fn write(key: &str, units: u64) -> Charge<'_> {
        Charge {
            scope: 0,
            key: Cow::Borrowed(key),
            kind: Kind::Write,
            estimate: units * UNIT,
            hot: false,
            refused: false,
        }
    }

    /// One call of `charges`, consuming what each estimated; whether it was refused.
    fn call(partitions: &Partitions, mut charges: Vec<Charge<'_>>) -> Vec<bool> {
        let step = partitions.admit(&mut charges, true);
        let consumed: Vec<u64> = charges.iter().map(|c| c.estimate).collect();
        partitions.settle(step, &charges, &consumed);
        charges.iter().map(|c| c.refused).collect()
    }

    #[test]
    fn a_key_past_its_limit_is_reported_and_not_refused_by_default() {
        let partitions = partitions(false);
        for _ in 0..4 {
            assert_eq!(call(&partitions, vec![write("hot", 4)]), [false]);
        }
        call(&partitions, vec![write("cold", 1)]);
        let report = partitions.report();
        let hot = report.get("chat", "hot").expect("hot is reported");
        assert_eq!(hot.write_units, 16.0);
        assert!(report.over_limit(hot));
        assert_eq!(report.hottest().map(|p| p.key.as_str()), Some("hot"));
        let cold = report.get("chat", "cold").expect("cold is reported");
        assert!(!report.over_limit(cold));
        assert!(report
            .summary()
            .expect("a summary")
            .contains("hottest key hot in chat"));
    }

    #[test]
    fn throttling_refuses_what_has_no_room_and_keeps_the_peak_at_the_limit() {
        let partitions = partitions(true);
        let refused: Vec<bool> = (0..4)
            .map(|_| call(&partitions, vec![write("hot", 4)])[0])
            .collect();
        assert_eq!(refused, [false, false, true, true]);
        // Another key has its own room.
        assert_eq!(call(&partitions, vec![write("other", 4)]), [false]);
        let report = partitions.report();
        let hot = report.get("chat", "hot").expect("hot");
        assert_eq!((hot.write_units, hot.throttled), (8.0, 2));
        // A transaction over a hot and a cold key is refused whole; nothing is taken.
        assert_eq!(
            call(&partitions, vec![write("hot", 4), write("fresh", 1)]),
            [true, true]
        );
        assert!(partitions
            .report()
            .get("chat", "fresh")
            .is_some_and(|p| p.write_units == 0.0));
        // A call bigger than the limit passes on an idle key.
        assert_eq!(call(&partitions, vec![write("big", 25)]), [false]);
    }

    #[test]
    fn the_window_slides_and_a_settled_call_corrects_its_estimate() {
        let partitions = partitions(true);
        let mut charges = vec![write("k", 1)];
        let step = partitions.admit(&mut charges, true);
        // DynamoDB Local said the write replaced a bigger item: 6 units.
        partitions.settle(step, &charges, &[6 * UNIT]);
        assert_eq!(
            partitions.report().get("chat", "k").unwrap().write_units,
            6.0
        );
        let mut counts = partitions.lock();
        let counter = counts.counter(0, "k", step);
        assert_eq!(counter.sum(Kind::Write), 6 * UNIT);
        // A second later the window is empty again, and the peak stays.
        counter.advance(step + SLOTS as u64);
        assert_eq!(counter.sum(Kind::Write), 0);
        assert_eq!(counter.peak_writes, 6 * UNIT);
    }

    #[test]
    fn idle_cold_keys_are_forgotten_but_the_hottest_is_kept() {
        let partitions = partitions(false);
        call(&partitions, vec![write("warm", 9)]);
        for i in 0..SWEEP_AT + 1 {
            let key = format!("c{i}");
            call(
                &partitions,
                vec![Charge {
                    estimate: 0,
                    ..write(&key, 0)
                }],
            );
        }
        {
            let mut counts = partitions.lock();
            let later = partitions.now() + SLOTS as u64;
            counts.sweep(later, &partitions);
            assert_eq!(counts.len, 1, "only the warm key is left");
        }
        let report = partitions.report();
        assert_eq!(report.hottest().map(|p| p.key.as_str()), Some("warm"));
    }
}
