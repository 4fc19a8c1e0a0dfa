//! The quotas API Gateway enforces before a handler runs: stage and route throttling (from the
//! template's route settings), new connections per second, URL length and authorizer result
//! size; and the account's request rate on the @connections API. Each can be relaxed, for load
//! tests that measure the code rather than the quota.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::template::{StageSpec, ThrottleSpec};

/// API Gateway's quotas, each `None`/`false` when relaxed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// New connections per second and region (API Gateway: 500, burst as many).
    pub new_connections_per_second: Option<NonZeroU32>,
    /// The stage's and routes' throttling settings from the template: `$connect` over them is
    /// refused with 429, a message gets API Gateway's error frame.
    pub stage_throttling: bool,
    /// The longest upgrade URL, path and query (API Gateway: 4,096 characters).
    pub max_url_length: Option<usize>,
    /// The largest authorizer result (API Gateway: 8 KB).
    pub max_authorizer_result_bytes: Option<usize>,
    /// The account's throttle as the @connections API meets it, one bucket for the whole
    /// gateway: past it a call gets 429 `LimitExceededException`.
    pub connections_api: Option<AccountRate>,
}

/// A token bucket of requests per second, shared by every caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountRate {
    /// Requests per second, steady state (API Gateway: 10,000 per account and region).
    pub per_second: NonZeroU32,
    /// Requests at once when the bucket is full (API Gateway: 5,000).
    pub burst: NonZeroU32,
}

impl AccountRate {
    /// API Gateway's account throttle: 10,000 requests per second, burst 5,000.
    pub const API_GATEWAY: Self = Self {
        per_second: NonZeroU32::new(10_000).expect("not zero"),
        burst: NonZeroU32::new(5_000).expect("not zero"),
    };
}

impl Quotas {
    /// Every quota as API Gateway has it by default.
    pub fn api_gateway() -> Self {
        Self {
            new_connections_per_second: NonZeroU32::new(500),
            stage_throttling: true,
            max_url_length: Some(4096),
            max_authorizer_result_bytes: Some(8 * 1024),
            connections_api: Some(AccountRate::API_GATEWAY),
        }
    }

    /// None at all: what load tests and benchmarks run with (and say so).
    pub fn relaxed() -> Self {
        Self {
            new_connections_per_second: None,
            stage_throttling: false,
            max_url_length: None,
            max_authorizer_result_bytes: None,
            connections_api: None,
        }
    }

    /// One line naming what is relaxed, for the output of a load test or a benchmark.
    pub fn describe(&self) -> String {
        let mut relaxed = Vec::new();
        if self.new_connections_per_second.is_none() {
            relaxed.push("new connections per second");
        }
        if !self.stage_throttling {
            relaxed.push("stage throttling");
        }
        if self.max_url_length.is_none() {
            relaxed.push("URL length");
        }
        if self.max_authorizer_result_bytes.is_none() {
            relaxed.push("authorizer result size");
        }
        if self.connections_api.is_none() {
            relaxed.push("@connections account rate");
        }
        if relaxed.is_empty() {
            "API Gateway's quotas enforced".to_owned()
        } else {
            format!("quotas relaxed: {}", relaxed.join(", "))
        }
    }
}

/// The token buckets the quotas need, shared by every connection.
pub(crate) struct Throttles {
    connects: Option<DefaultDirectRateLimiter>,
    /// Every @connections call of every handler.
    connections_api: Option<DefaultDirectRateLimiter>,
    /// By route key; a route without settings of its own has the stage default's. Replaced
    /// whole when a reload changes the routes or the stage's settings.
    routes: arc_swap::ArcSwap<HashMap<String, DefaultDirectRateLimiter>>,
    /// Refusals so far, for load tests and benchmarks to report (see [`Refusals`]).
    refused: RefusalCounters,
}

/// How many calls the quotas refused since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refusals {
    /// @connections calls refused by the account throttle (429 LimitExceededException).
    pub connections_calls: u64,
    /// Upgrades refused by the new-connection rate or `$connect`'s route throttle (429).
    pub connects: u64,
}

#[derive(Debug, Default)]
struct RefusalCounters {
    connections_calls: std::sync::atomic::AtomicU64,
    connects: std::sync::atomic::AtomicU64,
}

/// Counts a refusal when `admitted` is false; passes `admitted` on.
fn counted(admitted: bool, counter: &std::sync::atomic::AtomicU64) -> bool {
    if !admitted {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    admitted
}

impl std::fmt::Debug for Throttles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttles")
            .field("routes", &self.routes.load().len())
            .finish_non_exhaustive()
    }
}

impl Throttles {
    /// The buckets for `stage`'s routes `route_keys` under `quotas`.
    pub(crate) fn new<'a>(
        quotas: &Quotas,
        stage: &StageSpec,
        route_keys: impl IntoIterator<Item = &'a String>,
    ) -> Self {
        let connects = quotas
            .new_connections_per_second
            .map(|rate| RateLimiter::direct(Quota::per_second(rate).allow_burst(rate)));
        let connections_api = quotas.connections_api.map(|account| {
            RateLimiter::direct(Quota::per_second(account.per_second).allow_burst(account.burst))
        });
        Self {
            connects,
            connections_api,
            routes: arc_swap::ArcSwap::from_pointee(route_buckets(quotas, stage, route_keys)),
            refused: RefusalCounters::default(),
        }
    }

    /// New buckets for the routes of a reloaded template (full ones: the settings are new).
    pub(crate) fn set_routes<'a>(
        &self,
        quotas: &Quotas,
        stage: &StageSpec,
        route_keys: impl IntoIterator<Item = &'a String>,
    ) {
        self.routes.store(std::sync::Arc::new(route_buckets(
            quotas, stage, route_keys,
        )));
    }

    /// Takes a token for one @connections call; `false` when it must be refused with 429.
    pub(crate) fn admit_connections_call(&self) -> bool {
        let admitted = self
            .connections_api
            .as_ref()
            .is_none_or(|bucket| bucket.check().is_ok());
        counted(admitted, &self.refused.connections_calls)
    }

    /// Takes a token for a new connection; `false` when it must be refused with 429.
    pub(crate) fn admit_connection(&self) -> bool {
        let admitted = self.connects.as_ref().is_none_or(|c| c.check().is_ok())
            && self.admit_route("$connect");
        counted(admitted, &self.refused.connects)
    }

    /// The refusals so far.
    pub(crate) fn refusals(&self) -> Refusals {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        Refusals {
            connections_calls: load(&self.refused.connections_calls),
            connects: load(&self.refused.connects),
        }
    }

    /// Takes a token of the route `key`'s bucket; `false` when the message is throttled.
    pub(crate) fn admit_route(&self, key: &str) -> bool {
        self.routes
            .load()
            .get(key)
            .is_none_or(|r| r.check().is_ok())
    }
}

/// A bucket per route that has throttling settings of its own or the stage default's.
fn route_buckets<'a>(
    quotas: &Quotas,
    stage: &StageSpec,
    route_keys: impl IntoIterator<Item = &'a String>,
) -> HashMap<String, DefaultDirectRateLimiter> {
    let mut routes = HashMap::new();
    if quotas.stage_throttling {
        for key in route_keys {
            let spec = stage
                .route_throttling
                .get(key)
                .or(stage.default_throttling.as_ref());
            if let Some(limiter) = spec.and_then(bucket) {
                routes.insert(key.clone(), limiter);
            }
        }
    }
    routes
}

/// A token bucket of `rate` per second holding `burst`; `None` for a rate of 0 or less, which
/// API Gateway reads as "refuse everything": a bucket that never refills does the same.
fn bucket(spec: &ThrottleSpec) -> Option<DefaultDirectRateLimiter> {
    let burst = NonZeroU32::new(spec.burst.max(1))?;
    let period = if spec.rate > 0.0 {
        Duration::from_secs_f64(1.0 / spec.rate)
    } else {
        Duration::from_secs(u32::MAX.into())
    };
    let quota = Quota::with_period(period)?.allow_burst(burst);
    Some(RateLimiter::direct(quota))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(default: Option<ThrottleSpec>) -> StageSpec {
        StageSpec {
            name: "dev".into(),
            variables: Default::default(),
            default_throttling: default,
            route_throttling: HashMap::from([(
                "sendmessage".to_owned(),
                ThrottleSpec {
                    rate: 1.0,
                    burst: 2,
                },
            )]),
        }
    }

    #[test]
    fn routes_take_their_own_settings_or_the_stage_default() {
        let keys = [
            "$connect".to_owned(),
            "sendmessage".to_owned(),
            "ping".to_owned(),
        ];
        let default = ThrottleSpec {
            rate: 1.0,
            burst: 3,
        };
        let throttles = Throttles::new(&Quotas::api_gateway(), &stage(Some(default)), &keys);
        let admitted = |key: &str| (0..10).filter(|_| throttles.admit_route(key)).count();
        assert_eq!(admitted("sendmessage"), 2);
        assert_eq!(admitted("ping"), 3);
        assert_eq!(admitted("not-a-route"), 10);
        // Relaxed: nothing is throttled.
        let relaxed = Throttles::new(&Quotas::relaxed(), &stage(Some(default)), &keys);
        assert_eq!((0..10).filter(|_| relaxed.admit_route("ping")).count(), 10);
        assert_eq!(
            (0..1000).filter(|_| relaxed.admit_connection()).count(),
            1000
        );
    }

    #[test]
    fn new_connections_stop_at_the_per_second_quota() {
        let keys = ["$connect".to_owned()];
        let throttles = Throttles::new(&Quotas::api_gateway(), &stage(None), &keys);
        let admitted = (0..600).filter(|_| throttles.admit_connection()).count();
        assert_eq!(admitted, 500);
    }

    #[test]
    fn connections_calls_share_one_bucket_of_the_accounts_burst() {
        let keys = ["$connect".to_owned()];
        let throttles = Throttles::new(&Quotas::api_gateway(), &stage(None), &keys);
        // The bucket starts full at the burst, and refills at 10,000 a second: a tight loop of
        // 6,000 takes far less than the 100 ms that would refill 1,000.
        let admitted = (0..6000)
            .filter(|_| throttles.admit_connections_call())
            .count();
        assert!((5000..6000).contains(&admitted), "{admitted}");
        let relaxed = Throttles::new(&Quotas::relaxed(), &stage(None), &keys);
        assert!((0..6000).all(|_| relaxed.admit_connections_call()));
        assert_eq!(
            Quotas::relaxed().describe(),
            "quotas relaxed: new connections per second, stage throttling, URL length, \
             authorizer result size, @connections account rate"
        );
    }

    #[test]
    fn refusals_are_counted() {
        let keys = ["$connect".to_owned()];
        let throttles = Throttles::new(&Quotas::api_gateway(), &stage(None), &keys);
        let admitted = (0..6000)
            .filter(|_| throttles.admit_connections_call())
            .count() as u64;
        let connects = (0..600).filter(|_| throttles.admit_connection()).count() as u64;
        assert_eq!(
            throttles.refusals(),
            Refusals {
                connections_calls: 6000 - admitted,
                connects: 600 - connects,
            }
        );
        assert!(throttles.refusals().connects > 0);
    }
}
