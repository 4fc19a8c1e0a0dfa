//! DynamoDB's capacity rules: the size of an item as DynamoDB counts it, and the read and write
//! units an operation on items of that size consumes ("DynamoDB item sizes and formats" and
//! "DynamoDB read and write operations" in the developer guide).
//!
//! Items are measured straight from the request's JSON (`{"name": {"S": "..."}}`) by a serde
//! visitor: nothing is built, and the one attribute asked for (the partition key) is handed
//! back on the way, borrowed from the request where it can be.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Capacity in thousandths of a unit: eventually consistent reads take halves, and a total that
/// DynamoDB Local reports for a whole batch is shared out in fractions.
pub type MilliUnits = u64;

/// One capacity unit, in [`MilliUnits`].
pub const UNIT: MilliUnits = 1000;

/// A write unit covers 1 KB of item.
const WRITE_BLOCK: u64 = 1024;
/// A read unit covers 4 KB of item.
const READ_BLOCK: u64 = 4 * 1024;
/// A List or a Map costs 3 bytes whatever it holds, and each of its elements 1 more.
const DOCUMENT_OVERHEAD: u64 = 3;
const ELEMENT_OVERHEAD: u64 = 1;

/// How a read is made: what it costs per 4 KB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Half a unit per 4 KB (the default of GetItem, Query and BatchGetItem).
    Eventual,
    /// One unit per 4 KB (`ConsistentRead: true`).
    Strong,
    /// Two units per 4 KB (TransactGetItems).
    Transactional,
}

impl Consistency {
    /// `ConsistentRead` as a request gives it (absent: eventually consistent).
    pub fn from_flag(consistent_read: Option<bool>) -> Self {
        if consistent_read == Some(true) {
            Self::Strong
        } else {
            Self::Eventual
        }
    }
}

/// What writing an item of `bytes` consumes: one unit per KB started (at least one), twice that
/// in a transaction.
pub fn write_units(bytes: u64, transactional: bool) -> MilliUnits {
    let blocks = bytes.div_ceil(WRITE_BLOCK).max(1);
    blocks * UNIT * if transactional { 2 } else { 1 }
}

/// What reading `bytes` of items consumes: one unit per 4 KB started (at least one, as DynamoDB
/// charges a read that finds nothing), half that eventually consistent, twice in a transaction.
pub fn read_units(bytes: u64, consistency: Consistency) -> MilliUnits {
    let blocks = bytes.div_ceil(READ_BLOCK).max(1);
    match consistency {
        Consistency::Eventual => blocks * UNIT / 2,
        Consistency::Strong => blocks * UNIT,
        Consistency::Transactional => blocks * UNIT * 2,
    }
}

/// The size DynamoDB gives a number: 1 byte per two significant digits, plus 1. Leading and
/// trailing zeroes do not count, nor do sign, decimal point and exponent.
pub fn number_size(text: &str) -> u64 {
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    let digits = mantissa.bytes().filter(u8::is_ascii_digit);
    // Leading zeroes are skipped as they come; trailing ones are counted, then taken back.
    let (mut significant, mut trailing_zeroes, mut started) = (0u64, 0u64, false);
    for digit in digits {
        if digit == b'0' {
            if started {
                trailing_zeroes += 1;
            }
            continue;
        }
        started = true;
        significant += trailing_zeroes + 1;
        trailing_zeroes = 0;
    }
    significant.div_ceil(2) + 1
}

/// The raw length of a base64 value (DynamoDB counts binary by its bytes, not its text).
pub fn binary_size(base64: &str) -> u64 {
    let text = base64.trim_end_matches('=');
    (text.len() as u64 * 3) / 4
}

/// An item's size, and the value of one of its attributes when it is a string, number or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured<'a> {
    /// The item's size in bytes, as DynamoDB counts it.
    pub bytes: u64,
    /// The attribute asked for, as its JSON text gives it (the number's or base64 text).
    pub key: Option<Cow<'a, str>>,
}

/// Measures the item (or key) `json`, an object of attribute values in DynamoDB's JSON, and
/// picks out the attribute `key_attribute` on the way.
pub fn measure<'a>(json: &'a str, key_attribute: &str) -> serde_json::Result<Measured<'a>> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let measured = ItemSeed {
        key_attribute: Some(key_attribute),
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(measured)
}

/// Reads a top-level item: the sum of each attribute's name and value.
struct ItemSeed<'k> {
    key_attribute: Option<&'k str>,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Measured<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Measured<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an item: a map of attribute values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut measured = Measured {
            bytes: 0,
            key: None,
        };
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            let wanted = self.key_attribute == Some(name.as_ref());
            let value = map.next_value_seed(ValueSeed { keep: wanted })?;
            measured.bytes += name.len() as u64 + value.bytes;
            if wanted {
                measured.key = value.scalar;
            }
        }
        Ok(measured)
    }
}

/// One attribute value's size, and its text when it is a scalar that was asked for.
struct ValueSize<'de> {
    bytes: u64,
    scalar: Option<Cow<'de, str>>,
}

/// Reads one attribute value, `{"TYPE": value}`.
struct ValueSeed {
    keep: bool,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = ValueSize<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = ValueSize<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an attribute value such as {\"S\": \"text\"}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut size = ValueSize {
            bytes: 0,
            scalar: None,
        };
        while let Some(Text(kind)) = map.next_key::<Text<'de>>()? {
            match kind.as_ref() {
                "S" | "N" | "B" => {
                    let Text(text) = map.next_value()?;
                    size.bytes += scalar_size(&kind, &text);
                    if self.keep {
                        size.scalar = Some(text);
                    }
                }
                "BOOL" | "NULL" => {
                    map.next_value::<IgnoredAny>()?;
                    size.bytes += 1;
                }
                "SS" | "NS" | "BS" => {
                    size.bytes += map.next_value_seed(SetSeed { kind: &kind })?;
                }
                "L" => size.bytes += map.next_value_seed(ListSeed)?,
                "M" => size.bytes += map.next_value_seed(MapSeed)?,
                // A type DynamoDB does not have: DynamoDB Local refuses the call, and what it
                // would have cost does not matter.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(size)
    }
}

/// A JSON string borrowed from the input when it holds no escape (serde's own `Cow<str>`
/// always copies).
pub struct Text<'de>(pub Cow<'de, str>);

impl<'de: 'a, 'a> de::Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }

        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

fn scalar_size(kind: &str, text: &str) -> u64 {
    match kind {
        "N" => number_size(text),
        "B" => binary_size(text),
        _ => text.len() as u64,
    }
}

/// A string, number or binary set: the sum of its elements.
struct SetSeed<'k> {
    kind: &'k str,
}

impl<'de> DeserializeSeed<'de> for SetSeed<'_> {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for SetSeed<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a set: an array of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let kind = &self.kind[..1];
        let mut bytes = 0;
        while let Some(Text(text)) = seq.next_element::<Text<'de>>()? {
            bytes += scalar_size(kind, &text);
        }
        Ok(bytes)
    }
}

/// A List: 3 bytes, plus each element and 1 byte for it.
struct ListSeed;

impl<'de> DeserializeSeed<'de> for ListSeed {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ListSeed {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list: an array of attribute values")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
        let mut bytes = DOCUMENT_OVERHEAD;
        while let Some(element) = seq.next_element_seed(ValueSeed { keep: false })? {
            bytes += element.bytes + ELEMENT_OVERHEAD;
        }
        Ok(bytes)
    }
}

/// A Map: 3 bytes, plus each element (name and value) and 1 byte for it.
struct MapSeed;

impl<'de> DeserializeSeed<'de> for MapSeed {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MapSeed {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map: an object of attribute values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut bytes = DOCUMENT_OVERHEAD;
        while let Some(Text(name)) = map.next_key::<Text<'de>>()? {
            let value = map.next_value_seed(ValueSeed { keep: false })?;
            bytes += name.len() as u64 + value.bytes + ELEMENT_OVERHEAD;
        }
        Ok(bytes)
    }
}

/// The value of entry `name` of the JSON object `json`, as raw JSON; `None` when it has none
/// (or is not an object). Nothing but the entry is kept.
pub fn entry<'a>(json: &'a str, name: &str) -> Option<&'a serde_json::value::RawValue> {
    struct Find<'n>(&'n str);

    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de serde_json::value::RawValue>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                if found.is_none() && key == self.0 {
                    found = Some(map.next_value()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(json);
    de::Deserializer::deserialize_map(&mut deserializer, Find(name))
        .ok()
        .flatten()
}

/// The text of a scalar attribute value (`{"S": "x"}` gives `x`); `None` for other types.
pub fn scalar(json: &str) -> Option<Cow<'_, str>> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = ValueSeed { keep: true }
        .deserialize(&mut deserializer)
        .ok()?;
    value.scalar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(json: &str) -> u64 {
        measure(json, "pk").expect("an item").bytes
    }

    #[test]
    fn scalars_count_name_and_value() {
        // Strings by their UTF-8 bytes: "é" is two.
        assert_eq!(size(r#"{"pk": {"S": "CONN#abc"}}"#), 2 + 8);
        assert_eq!(size(r#"{"name": {"S": "é"}}"#), 4 + 2);
        // Binary by its raw bytes, not its base64 text: "aGVsbG8=" is "hello".
        assert_eq!(size(r#"{"b": {"B": "aGVsbG8="}}"#), 1 + 5);
        assert_eq!(
            size(r#"{"ok": {"BOOL": true}, "none": {"NULL": true}}"#),
            2 + 1 + 4 + 1
        );
    }

    #[test]
    fn numbers_count_one_byte_per_two_significant_digits_plus_one() {
        assert_eq!(number_size("2099"), 3);
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("0"), 1);
        // Leading and trailing zeroes are trimmed; sign, point and exponent do not count.
        assert_eq!(number_size("000123000"), 3);
        assert_eq!(number_size("-0.00123"), 3);
        assert_eq!(number_size("1.5E+10"), 2);
        assert_eq!(number_size("1000000000000000000000000000000000000001"), 21);
    }

    #[test]
    fn an_item_of_the_documented_shapes_adds_up() {
        // The example of the item size calculators (ddbitemsizer's README): 141 bytes, computed
        // by the developer guide's rules.
        let item = r#"{
            "itemType": {"S": "SLOT"}, "id": {"S": "abc1231"}, "hostName": {"S": "Harry Mason"},
            "timeSlot": {"S": "February 23, 1999"}, "slotStatus": {"S": "OPEN"},
            "createdAt": {"S": "February 1, 1999"}, "updatedAt": {"S": "February 1, 1999"},
            "expiresAt": {"N": "2099"}
        }"#;
        assert_eq!(size(item), 141);
    }

    #[test]
    fn lists_and_maps_cost_three_bytes_and_one_per_element() {
        // An empty List or Map is its name and 3 bytes.
        assert_eq!(size(r#"{"l": {"L": []}}"#), 1 + 3);
        assert_eq!(size(r#"{"m": {"M": {}}}"#), 1 + 3);
        // ["ab", 12]: 3 + (2 + 1) + (2 + 1).
        assert_eq!(
            size(r#"{"l": {"L": [{"S": "ab"}, {"N": "12"}]}}"#),
            1 + 3 + 3 + 3
        );
        // {"x": "ab", "y": {"z": true}}: 3 + (1 + 2 + 1) + (1 + (3 + (1 + 1 + 1)) + 1).
        let nested = r#"{"m": {"M": {"x": {"S": "ab"}, "y": {"M": {"z": {"BOOL": true}}}}}}"#;
        assert_eq!(size(nested), 1 + 3 + 4 + 8);
        // Sets: the sum of their elements.
        assert_eq!(
            size(r#"{"s": {"SS": ["a", "bc"]}, "n": {"NS": ["1", "22"]}}"#),
            1 + 3 + 1 + 4
        );
    }

    #[test]
    fn the_key_comes_back_borrowed_from_the_request() {
        let item = r#"{"sk": {"S": "META"}, "pk": {"S": "ROOM#lobby"}, "n": {"N": "5"}}"#;
        let measured = measure(item, "pk").expect("an item");
        assert_eq!(measured.key.as_deref(), Some("ROOM#lobby"));
        assert!(matches!(measured.key, Some(Cow::Borrowed(_))));
        // A number key is its text; an absent one is none.
        assert_eq!(
            measure(r#"{"id": {"N": "42"}}"#, "id")
                .unwrap()
                .key
                .as_deref(),
            Some("42")
        );
        assert_eq!(measure(item, "other").unwrap().key, None);
        assert!(measure("[1, 2]", "pk").is_err());
        assert!(measure(r#"{"pk": "not an attribute value"}"#, "pk").is_err());
    }

    #[test]
    fn read_units_follow_the_developer_guides_examples() {
        // "reading a 3,500-byte item consumes the same throughput as reading a 4 KB item"
        assert_eq!(read_units(3500, Consistency::Strong), UNIT);
        assert_eq!(read_units(3500, Consistency::Eventual), UNIT / 2);
        // An 8 KB item: 2 units strongly consistent, 1 eventually, 4 transactional.
        assert_eq!(read_units(8 * 1024, Consistency::Strong), 2 * UNIT);
        assert_eq!(read_units(8 * 1024, Consistency::Eventual), UNIT);
        assert_eq!(read_units(8 * 1024, Consistency::Transactional), 4 * UNIT);
        // GetItem of 10 KB: rounded up to 12 KB, 3 units.
        assert_eq!(read_units(10 * 1024, Consistency::Strong), 3 * UNIT);
        // A Query returning 40.8 KB in all is rounded up to 44 KB: 11 units.
        assert_eq!(read_units(41_779, Consistency::Strong), 11 * UNIT);
        // A read that finds nothing still costs the minimum.
        assert_eq!(read_units(0, Consistency::Eventual), UNIT / 2);
    }

    #[test]
    fn write_units_follow_the_developer_guides_examples() {
        // "writing a 500-byte item consumes the same throughput as writing a 1 KB item"
        assert_eq!(write_units(500, false), UNIT);
        assert_eq!(write_units(1024, false), UNIT);
        assert_eq!(write_units(1025, false), 2 * UNIT);
        // A transactional write costs two units per KB.
        assert_eq!(write_units(500, true), 2 * UNIT);
        assert_eq!(write_units(3 * 1024 + 1, true), 8 * UNIT);
        // A delete of a missing item still costs one.
        assert_eq!(write_units(0, false), UNIT);
    }

    #[test]
    fn entries_and_scalars_are_found_without_building_the_object() {
        let values = r#"{":now": {"N": "17"}, ":pk": {"S": "ROOM#a\"b"}}"#;
        let pk = entry(values, ":pk").expect(":pk");
        assert_eq!(scalar(pk.get()).as_deref(), Some("ROOM#a\"b"));
        assert!(entry(values, ":missing").is_none());
        assert!(entry("[]", ":pk").is_none());
        assert_eq!(scalar(r#"{"L": []}"#), None);
    }
}
