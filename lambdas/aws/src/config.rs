//! Configuration from the environment, read once at start-up.

use std::time::Duration;

use realtime_core::fanout::FanoutPolicy;
use realtime_core::queued::QueuedSettings;
use realtime_core::rate::RatePolicy;
use realtime_core::shards::RoomShards;
use realtime_core::Settings;

/// A variable is missing or unusable. The message names the variable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable does not parse or is out of range.
    #[error("environment variable {name}={value:?} is not valid: expected {expected}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
}

/// Where data lives, how long it is kept, and the limits of the use cases (every handler).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// `CONNECTIONS_TABLE`: connections and room memberships.
    pub connections_table: String,
    /// `AUDIT_TABLE`: the audit log.
    pub audit_table: String,
    /// `AUDIT_RETENTION_DAYS`, and optional: `CONNECTION_TTL_SECONDS` (at least 7200),
    /// `FANOUT_CONCURRENCY`, `RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`,
    /// `MAX_ROOMS_PER_CONNECTION`, `NEW_CONNECTION_GRACE_SECONDS`.
    pub settings: Settings,
    /// `SDK_TIMEOUT_MS` (default 3000): the limit on every AWS call.
    pub sdk_timeout: Duration,
    /// `ROOM_SHARDS` (default `lobby=8`): how rooms' memberships are spread over keys.
    pub room_shards: RoomShards,
}

/// The queued fan-out tier: where large rooms' jobs go (message and fan-out handlers).
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// `FANOUT_QUEUE_URL`: the SQS queue of delivery jobs.
    pub queue_url: String,
    /// `QUEUED_FANOUT_ABOVE` (default 1000): rooms with more members go through the queue.
    pub above: usize,
    /// `FANOUT_POSTS_PER_SECOND` (default 500) and the store's fan-out policy: how one
    /// fan-out process posts.
    pub settings: QueuedSettings,
}

/// How to reach clients (the message handler only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifierConfig {
    /// `CALLBACK_URL`: the @connections endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    pub callback_url: String,
}

impl StoreConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Settings::default();
        let audit_days: i64 = required_number(&lookup, "AUDIT_RETENTION_DAYS", 1, 36_500)?;
        let ttl_seconds: i64 = optional_number(
            &lookup,
            "CONNECTION_TTL_SECONDS",
            defaults.connection_ttl.num_seconds(),
            realtime_core::app::MIN_CONNECTION_TTL.num_seconds(),
            30 * 24 * 3600,
        )?;
        let concurrency: i64 = optional_number(
            &lookup,
            "FANOUT_CONCURRENCY",
            defaults.fanout.concurrency as i64,
            1,
            1024,
        )?;
        let timeout_ms: i64 = optional_number(&lookup, "SDK_TIMEOUT_MS", 3000, 100, 29_000)?;
        let per_second = optional_rate(&lookup, defaults.rate_limit.per_second)?;
        let burst = optional_number(
            &lookup,
            "RATE_LIMIT_BURST",
            i64::from(defaults.rate_limit.burst),
            1,
            1000,
        )?;
        let max_rooms = optional_number(
            &lookup,
            "MAX_ROOMS_PER_CONNECTION",
            defaults.max_rooms_per_connection as i64,
            1,
            500,
        )?;
        let grace_seconds = optional_number(
            &lookup,
            "NEW_CONNECTION_GRACE_SECONDS",
            defaults.new_connection_grace.num_seconds(),
            0,
            3600,
        )?;
        let sdk_timeout = Duration::from_millis(timeout_ms as u64);
        // Set but empty means no room is sharded (the stage said so); unset, the default.
        let room_shards = match lookup("ROOM_SHARDS") {
            Some(spec) => {
                RoomShards::parse(&spec).map_err(|_| ConfigError::Invalid {
                    name: "ROOM_SHARDS",
                    value: spec,
                    expected: "room=count pairs separated by commas, a room name or a prefix ending in `*`, counts 1 to 1000 (e.g. lobby=8,live-*=64)",
                })?
            }
            _ => RoomShards::default(),
        };
        Ok(Self {
            connections_table: required(&lookup, "CONNECTIONS_TABLE")?,
            audit_table: required(&lookup, "AUDIT_TABLE")?,
            settings: Settings {
                connection_ttl: chrono::Duration::seconds(ttl_seconds),
                audit_retention: chrono::Duration::days(audit_days),
                fanout: FanoutPolicy {
                    concurrency: concurrency as usize,
                    // A post started before this margin ends within the SDK timeout, leaving
                    // time to answer the sender.
                    deadline_margin: sdk_timeout + Duration::from_millis(500),
                    ..defaults.fanout
                },
                rate_limit: RatePolicy {
                    per_second,
                    burst: burst as u32,
                },
                max_rooms_per_connection: max_rooms as usize,
                new_connection_grace: chrono::Duration::seconds(grace_seconds),
            },
            sdk_timeout,
            room_shards,
        })
    }
}

impl QueueConfig {
    /// Reads the process environment: `None` when `FANOUT_QUEUE_URL` is not set (every room
    /// is then delivered by the message handler).
    pub fn from_env(store: &StoreConfig) -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok(), store)
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        store: &StoreConfig,
    ) -> Result<Option<Self>, ConfigError> {
        let Ok(queue_url) = required(&lookup, "FANOUT_QUEUE_URL") else {
            return Ok(None);
        };
        let defaults = QueuedSettings::default();
        let above = optional_number(&lookup, "QUEUED_FANOUT_ABOVE", 1000, 1, 10_000_000)?;
        let per_second = optional_number(
            &lookup,
            "FANOUT_POSTS_PER_SECOND",
            i64::from(defaults.posts_per_second),
            1,
            100_000,
        )?;
        Ok(Some(Self {
            queue_url,
            above: above as usize,
            settings: QueuedSettings {
                posts_per_second: per_second as u32,
                new_connection_grace: store.settings.new_connection_grace,
                fanout: store.settings.fanout,
                ..defaults
            },
        }))
    }
}

impl NotifierConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let callback_url = required(&lookup, "CALLBACK_URL")?;
        if !(callback_url.starts_with("https://") || callback_url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                name: "CALLBACK_URL",
                value: callback_url,
                expected: "an http(s) URL ending in the stage, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com/dev",
            });
        }
        Ok(Self {
            callback_url: callback_url.trim_end_matches('/').to_owned(),
        })
    }
}

fn required(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => Ok(value),
        _ => Err(ConfigError::Missing(name)),
    }
}

fn required_number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let value = required(lookup, name)?;
    parse_number(name, value, min, max)
}

fn optional_number(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    match lookup(name) {
        Some(value) if !value.trim().is_empty() => parse_number(name, value, min, max),
        _ => Ok(default),
    }
}

/// `RATE_LIMIT_PER_SECOND`: a number of requests a second, fractions allowed.
fn optional_rate(
    lookup: &impl Fn(&str) -> Option<String>,
    default: f64,
) -> Result<f64, ConfigError> {
    const NAME: &str = "RATE_LIMIT_PER_SECOND";
    match lookup(NAME) {
        Some(value) if !value.trim().is_empty() => match value.trim().parse::<f64>() {
            Ok(n) if n > 0.0 && n <= 1000.0 => Ok(n),
            _ => Err(ConfigError::Invalid {
                name: NAME,
                value,
                expected: bounds_text(NAME),
            }),
        },
        _ => Ok(default),
    }
}

fn parse_number(name: &'static str, value: String, min: i64, max: i64) -> Result<i64, ConfigError> {
    match value.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            expected: bounds_text(name),
        }),
    }
}

/// The accepted range of each numeric variable, for error messages.
fn bounds_text(name: &str) -> &'static str {
    match name {
        "AUDIT_RETENTION_DAYS" => "a whole number of days from 1 to 36500",
        "CONNECTION_TTL_SECONDS" => {
            "a whole number of seconds from 7200 (API Gateway's 2 h limit) to 2592000"
        }
        "FANOUT_CONCURRENCY" => "a whole number from 1 to 1024",
        "SDK_TIMEOUT_MS" => "a whole number of milliseconds from 100 to 29000",
        "RATE_LIMIT_PER_SECOND" => "a number of requests a second above 0 and at most 1000",
        "RATE_LIMIT_BURST" => "a whole number from 1 to 1000",
        "MAX_ROOMS_PER_CONNECTION" => "a whole number from 1 to 500",
        "NEW_CONNECTION_GRACE_SECONDS" => "a whole number of seconds from 0 to 3600",
        "QUEUED_FANOUT_ABOVE" => "a whole number of members from 1 to 10000000",
        "FANOUT_POSTS_PER_SECOND" => "a whole number of posts a second from 1 to 100000",
        _ => "a whole number in range",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("CONNECTIONS_TABLE", "c"),
        ("AUDIT_TABLE", "a"),
        ("AUDIT_RETENTION_DAYS", "7"),
    ];

    #[test]
    fn reads_required_and_defaults() {
        let config = StoreConfig::from_lookup(env(BASE)).expect("valid");
        assert_eq!(config.connections_table, "c");
        assert_eq!(config.audit_table, "a");
        assert_eq!(config.settings.audit_retention, chrono::Duration::days(7));
        assert_eq!(config.settings.connection_ttl, chrono::Duration::hours(3));
        assert_eq!(config.settings.fanout.concurrency, 64);
        assert_eq!(config.sdk_timeout, Duration::from_secs(3));
        assert_eq!(config.settings.rate_limit, RatePolicy::default());
        assert_eq!(config.settings.max_rooms_per_connection, 50);
        assert_eq!(
            config.settings.new_connection_grace,
            chrono::Duration::seconds(30)
        );
        assert_eq!(
            config.settings.fanout.deadline_margin,
            Duration::from_millis(3500),
            "the SDK timeout and half a second"
        );
    }

    #[test]
    fn reads_room_shards_and_the_queued_tier() {
        let store = StoreConfig::from_lookup(env(BASE)).expect("valid");
        assert_eq!(store.room_shards, RoomShards::default());
        let mut unsharded = BASE.to_vec();
        unsharded.push(("ROOM_SHARDS", ""));
        let store_unsharded = StoreConfig::from_lookup(env(&unsharded)).expect("valid");
        assert_eq!(store_unsharded.room_shards, RoomShards::single());
        assert_eq!(
            QueueConfig::from_lookup(env(BASE), &store).expect("valid"),
            None
        );
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("ROOM_SHARDS", "lobby=16,live-*=64"),
            ("FANOUT_QUEUE_URL", "http://127.0.0.1:1/000000000000/q"),
            ("QUEUED_FANOUT_ABOVE", "200"),
            ("FANOUT_POSTS_PER_SECOND", "250"),
        ]);
        let store = StoreConfig::from_lookup(env(&pairs)).expect("valid");
        assert_eq!(store.room_shards.to_string(), "lobby=16,live-*=64");
        let queue = QueueConfig::from_lookup(env(&pairs), &store)
            .expect("valid")
            .expect("a queue");
        assert_eq!(queue.queue_url, "http://127.0.0.1:1/000000000000/q");
        assert_eq!(queue.above, 200);
        assert_eq!(queue.settings.posts_per_second, 250);
        assert_eq!(queue.settings.fanout, store.settings.fanout);
        for (name, bad) in [
            ("ROOM_SHARDS", "lobby"),
            ("QUEUED_FANOUT_ABOVE", "0"),
            ("FANOUT_POSTS_PER_SECOND", "many"),
        ] {
            let mut pairs = pairs.clone();
            pairs.retain(|(n, _)| *n != name);
            pairs.push((name, bad));
            let err = StoreConfig::from_lookup(env(&pairs))
                .and_then(|store| QueueConfig::from_lookup(env(&pairs), &store))
                .expect_err(bad);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn reads_the_limits_and_names_a_bad_one() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("RATE_LIMIT_PER_SECOND", "2.5"),
            ("RATE_LIMIT_BURST", "5"),
            ("MAX_ROOMS_PER_CONNECTION", "7"),
            ("NEW_CONNECTION_GRACE_SECONDS", "0"),
        ]);
        let settings = StoreConfig::from_lookup(env(&pairs))
            .expect("valid")
            .settings;
        assert_eq!(
            settings.rate_limit,
            RatePolicy {
                per_second: 2.5,
                burst: 5
            }
        );
        assert_eq!(settings.max_rooms_per_connection, 7);
        assert_eq!(settings.new_connection_grace, chrono::Duration::zero());
        for (name, bad) in [
            ("RATE_LIMIT_PER_SECOND", "0"),
            ("RATE_LIMIT_PER_SECOND", "fast"),
            ("RATE_LIMIT_BURST", "0"),
            ("MAX_ROOMS_PER_CONNECTION", "501"),
            ("NEW_CONNECTION_GRACE_SECONDS", "-1"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((name, bad));
            let err = StoreConfig::from_lookup(env(&pairs)).expect_err(bad);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn names_each_missing_variable() {
        for missing in ["CONNECTIONS_TABLE", "AUDIT_TABLE", "AUDIT_RETENTION_DAYS"] {
            let pairs: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = StoreConfig::from_lookup(env(&pairs)).expect_err("missing");
            assert_eq!(err, ConfigError::Missing(missing));
            assert!(err.to_string().contains(missing));
        }
        let err = NotifierConfig::from_lookup(env(&[])).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "environment variable CALLBACK_URL is not set"
        );
    }

    #[test]
    fn rejects_bad_numbers_with_the_valid_range() {
        let mut pairs = BASE.to_vec();
        pairs.push(("FANOUT_CONCURRENCY", "0"));
        let err = StoreConfig::from_lookup(env(&pairs)).expect_err("zero");
        assert!(
            err.to_string().contains("FANOUT_CONCURRENCY=\"0\""),
            "{err}"
        );
        assert!(err.to_string().contains("1 to 1024"), "{err}");

        let mut pairs = BASE.to_vec();
        pairs.push(("CONNECTION_TTL_SECONDS", "3600"));
        let err = StoreConfig::from_lookup(env(&pairs)).expect_err("below 2 h");
        assert!(err.to_string().contains("7200"), "{err}");

        let pairs = [
            ("CONNECTIONS_TABLE", "c"),
            ("AUDIT_TABLE", "a"),
            ("AUDIT_RETENTION_DAYS", "week"),
        ];
        assert!(matches!(
            StoreConfig::from_lookup(env(&pairs)),
            Err(ConfigError::Invalid {
                name: "AUDIT_RETENTION_DAYS",
                ..
            })
        ));
    }

    #[test]
    fn callback_url_must_be_http_and_loses_its_trailing_slash() {
        let config =
            NotifierConfig::from_lookup(env(&[("CALLBACK_URL", "http://127.0.0.1:3001/dev/")]))
                .expect("valid");
        assert_eq!(config.callback_url, "http://127.0.0.1:3001/dev");
        let err =
            NotifierConfig::from_lookup(env(&[("CALLBACK_URL", "wss://x/dev")])).expect_err("ws");
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "CALLBACK_URL",
                ..
            }
        ));
    }
}
