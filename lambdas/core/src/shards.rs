//! How a room's membership is spread over partition keys, so that no key of the connections
//! table takes more than DynamoDB's per-partition limits (1,000 WCU/s, 3,000 RCU/s).
//!
//! Each room has a fixed shard count from the stage settings (`ROOM_SHARDS`): an exact name or
//! a prefix ending in `*`; rooms not named have one shard, so a small room is one Query. A
//! member's shard is a stable hash of its connection id, recorded with the membership so that
//! leaving and clean-up find it even after the count changed. Counts may only grow: readers
//! read every shard below the current count, which finds members written under a smaller one.

use std::fmt;

use crate::model::{ConnectionId, Room};

/// The most shards a room may have (reads fan out over all of them).
pub const MAX_SHARDS: u32 = 1000;

/// The default: the lobby, which every `$connect` writes, over 8 keys. At API Gateway's
/// default 500 connects/s that is 125 WCU/s per key (each connect writes 2 units, in a
/// transaction), an eighth of the limit.
pub const DEFAULT_SPEC: &str = "lobby=8";

/// Shard counts per room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomShards {
    /// Exact names and `prefix*` patterns with their counts; exact names win, then the
    /// longest prefix.
    rules: Vec<(Pattern, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

/// A shard specification that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("room shards `{entry}` is not valid: {reason} (expected `room=count` pairs separated by commas, e.g. `lobby=8,live-*=64`, counts 1 to {MAX_SHARDS})")]
pub struct ShardSpecError {
    /// The entry at fault.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Default for RoomShards {
    fn default() -> Self {
        Self::parse(DEFAULT_SPEC).unwrap_or(Self { rules: Vec::new() })
    }
}

impl RoomShards {
    /// One shard for every room.
    pub fn single() -> Self {
        Self { rules: Vec::new() }
    }

    /// Parses `name=count` pairs separated by commas; a name may end in `*` (a prefix).
    pub fn parse(spec: &str) -> Result<Self, ShardSpecError> {
        let mut rules = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let error = |reason| ShardSpecError {
                entry: entry.to_owned(),
                reason,
            };
            let (name, count) = entry.split_once('=').ok_or_else(|| error("no `=`"))?;
            let count: u32 = count
                .trim()
                .parse()
                .map_err(|_| error("the count is not a whole number"))?;
            if !(1..=MAX_SHARDS).contains(&count) {
                return Err(error("the count is out of range"));
            }
            let name = name.trim();
            let pattern = match name.strip_suffix('*') {
                Some(prefix) => {
                    if !prefix.is_empty() {
                        Room::parse(prefix).map_err(|_| error("the room prefix is not valid"))?;
                    }
                    Pattern::Prefix(prefix.to_owned())
                }
                None => {
                    Room::parse(name).map_err(|_| error("the room name is not valid"))?;
                    Pattern::Exact(name.to_owned())
                }
            };
            if rules.iter().any(|(p, _)| *p == pattern) {
                return Err(error("the room is named twice"));
            }
            rules.push((pattern, count));
        }
        Ok(Self { rules })
    }

    /// How many shards the room's membership is spread over.
    pub fn count(&self, room: &Room) -> u32 {
        let name = room.as_str();
        let mut best: Option<(usize, u32)> = None;
        for (pattern, count) in &self.rules {
            match pattern {
                Pattern::Exact(exact) if exact == name => return *count,
                Pattern::Prefix(prefix)
                    if name.starts_with(prefix.as_str())
                        && best.is_none_or(|(len, _)| prefix.len() > len) =>
                {
                    best = Some((prefix.len(), *count));
                }
                _ => {}
            }
        }
        best.map_or(1, |(_, count)| count)
    }

    /// The shard a connection's membership of the room is written to.
    pub fn shard_of(&self, room: &Room, id: &ConnectionId) -> u32 {
        let count = self.count(room);
        if count == 1 {
            return 0;
        }
        (fnv1a(id.as_str().as_bytes()) % u64::from(count)) as u32
    }
}

impl fmt::Display for RoomShards {
    /// The specification, as `ROOM_SHARDS` takes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (pattern, count)) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match pattern {
                Pattern::Exact(name) => write!(f, "{name}={count}")?,
                Pattern::Prefix(prefix) => write!(f, "{prefix}*={count}")?,
            }
        }
        Ok(())
    }
}

/// FNV-1a: a hash that is the same in every build and process (std's hasher is not promised
/// to be), so that every handler puts a member in the same shard.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> Room {
        Room::parse(name).expect("room")
    }

    #[test]
    fn exact_names_win_then_the_longest_prefix_then_one() {
        let shards =
            RoomShards::parse("lobby=8, live-*=16,live-big*=64,live-big-one=2").expect("spec");
        assert_eq!(shards.count(&room("lobby")), 8);
        assert_eq!(shards.count(&room("live-a")), 16);
        assert_eq!(shards.count(&room("live-big-two")), 64);
        assert_eq!(shards.count(&room("live-big-one")), 2);
        assert_eq!(shards.count(&room("other")), 1);
        assert_eq!(RoomShards::default().count(&Room::lobby()), 8);
        assert_eq!(RoomShards::single().count(&Room::lobby()), 1);
    }

    #[test]
    fn members_spread_evenly_and_stay_put() {
        let shards = RoomShards::parse("lobby=8").expect("spec");
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            let id = ConnectionId::from(format!("Conn{i:06}Id="));
            let shard = shards.shard_of(&Room::lobby(), &id);
            assert_eq!(shard, shards.shard_of(&Room::lobby(), &id));
            counts[shard as usize] += 1;
        }
        // A fair hash puts about 1,000 in each; a skew of a third would be a hot key.
        assert!(counts.iter().all(|c| (700..1300).contains(c)), "{counts:?}");
    }

    #[test]
    fn bad_specs_say_which_entry_and_why() {
        for (spec, reason) in [
            ("lobby", "no `=`"),
            ("lobby=x", "the count is not a whole number"),
            ("lobby=0", "the count is out of range"),
            ("lobby=1001", "the count is out of range"),
            ("lob#by=2", "the room name is not valid"),
            ("li ve*=2", "the room prefix is not valid"),
            ("lobby=2,lobby=4", "the room is named twice"),
        ] {
            let error = RoomShards::parse(spec).expect_err(spec);
            assert_eq!(error.reason, reason, "{spec}");
        }
        assert_eq!(RoomShards::parse("").expect("empty"), RoomShards::single());
    }

    #[test]
    fn the_spec_round_trips() {
        let spec = "lobby=8,live-*=64";
        assert_eq!(RoomShards::parse(spec).expect("spec").to_string(), spec);
    }
}
