//! What one DynamoDB call consumes, and on which partition keys. The request names the keys
//! (from `Key`, `Item`, or a Query's key condition) and shows a first estimate (the size of
//! an item written, else DynamoDB's minimum); DynamoDB Local's answer settles it: asked for its
//! `ConsumedCapacity` on the caller's behalf, it counts what AWS counts (the larger of the item
//! before and after a write, a Query's items before its filter), and the field is taken out
//! again, so the caller gets what it would have got.
//!
//! Its numbers are per table: a batch or a transaction over several keys of one table shares
//! the table's total among them in proportion to their estimates.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::capacity::{
    entry, measure, read_units, scalar, write_units, Consistency, MilliUnits, Text, UNIT,
};
use super::partitions::{Charge, Kind};
use super::scopes::Scopes;

/// The operations whose consumption is counted; a Scan reads every partition, and is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    GetItem,
    PutItem,
    UpdateItem,
    DeleteItem,
    Query,
    BatchGetItem,
    BatchWriteItem,
    TransactGetItems,
    TransactWriteItems,
}

impl Op {
    fn parse(operation: &str) -> Option<Self> {
        Some(match operation {
            "GetItem" => Self::GetItem,
            "PutItem" => Self::PutItem,
            "UpdateItem" => Self::UpdateItem,
            "DeleteItem" => Self::DeleteItem,
            "Query" => Self::Query,
            "BatchGetItem" => Self::BatchGetItem,
            "BatchWriteItem" => Self::BatchWriteItem,
            "TransactGetItems" => Self::TransactGetItems,
            "TransactWriteItems" => Self::TransactWriteItems,
            _ => return None,
        })
    }

    /// A batch runs the items it can and hands the others back; anything else runs whole or
    /// not at all.
    pub(crate) fn is_batch(self) -> bool {
        matches!(self, Self::BatchGetItem | Self::BatchWriteItem)
    }

    pub(crate) fn is_transaction(self) -> bool {
        matches!(self, Self::TransactGetItems | Self::TransactWriteItems)
    }

    /// Where a batch hands back what it did not run.
    pub(crate) fn unprocessed_field(self) -> &'static str {
        if self == Self::BatchGetItem {
            "UnprocessedKeys"
        } else {
            "UnprocessedItems"
        }
    }
}

/// Whether the caller asked for `ConsumedCapacity` itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Asked {
    /// No: the gateway asks, and takes the field out of the answer.
    No,
    /// `TOTAL` or `INDEXES`: the answer goes back as it is.
    Yes,
    /// `NONE`: not asked, and the estimates stand.
    Declined,
}

/// One call, read for its consumption.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) op: Op,
    /// One per partition key the call touches.
    pub(crate) charges: Vec<Charge<'a>>,
    /// A transaction's items in order: the index of each one's charge (`None` for an item on a
    /// table the template does not have).
    pub(crate) items: Vec<Option<usize>>,
    pub(crate) asked: Asked,
}

impl<'a> Plan<'a> {
    /// Adds `estimate` to the key's charge (one charge per key, whatever the number of items).
    fn charge(
        &mut self,
        scope: usize,
        key: Cow<'a, str>,
        kind: Kind,
        estimate: MilliUnits,
    ) -> usize {
        if let Some(i) = self
            .charges
            .iter()
            .position(|c| c.scope == scope && c.key == key)
        {
            self.charges[i].estimate += estimate;
            return i;
        }
        self.charges.push(Charge {
            scope,
            key,
            kind,
            estimate,
            hot: false,
            refused: false,
        });
        self.charges.len() - 1
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Request<'a> {
    #[serde(borrow, default)]
    table_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    index_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    item: Option<&'a RawValue>,
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
    #[serde(default)]
    consistent_read: Option<bool>,
    #[serde(borrow, default)]
    key_condition_expression: Option<Text<'a>>,
    #[serde(borrow, default)]
    key_conditions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    expression_attribute_names: Option<&'a RawValue>,
    #[serde(borrow, default)]
    expression_attribute_values: Option<&'a RawValue>,
    #[serde(borrow, default)]
    return_consumed_capacity: Option<Text<'a>>,
    #[serde(borrow, default)]
    transact_items: Option<Vec<TransactItem<'a>>>,
    #[serde(borrow, default)]
    request_items: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TransactItem<'a> {
    #[serde(borrow, default)]
    get: Option<ItemRef<'a>>,
    #[serde(borrow, default)]
    put: Option<ItemRef<'a>>,
    #[serde(borrow, default)]
    update: Option<ItemRef<'a>>,
    #[serde(borrow, default)]
    delete: Option<ItemRef<'a>>,
    #[serde(borrow, default)]
    condition_check: Option<ItemRef<'a>>,
}

/// A transaction's item, or a batch's request: a table and an item or key.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ItemRef<'a> {
    #[serde(borrow, default)]
    table_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    item: Option<&'a RawValue>,
    #[serde(borrow, default)]
    key: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WriteRequest<'a> {
    #[serde(borrow, default)]
    put_request: Option<ItemRef<'a>>,
    #[serde(borrow, default)]
    delete_request: Option<ItemRef<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeysAndAttributes<'a> {
    #[serde(borrow, default)]
    keys: Vec<&'a RawValue>,
    #[serde(default)]
    consistent_read: Option<bool>,
}

/// Reads the call `operation` with JSON `body` for its consumption; `None` when it is not
/// counted (an operation that reads no partition in particular, a table the template does not
/// have, a body DynamoDB would refuse).
pub(crate) fn plan<'a>(scopes: &Scopes, operation: &str, body: &'a [u8]) -> Option<Plan<'a>> {
    let op = Op::parse(operation)?;
    let text = std::str::from_utf8(body).ok()?;
    let request: Request<'a> = serde_json::from_str(text).ok()?;
    let asked = match request
        .return_consumed_capacity
        .as_ref()
        .map(|t| t.0.as_ref())
    {
        None => Asked::No,
        Some("NONE") => Asked::Declined,
        Some(_) => Asked::Yes,
    };
    let mut plan = Plan {
        op,
        charges: Vec::new(),
        items: Vec::new(),
        asked,
    };
    let table = || scopes.table(&request.table_name.as_ref()?.0);
    let key_of = |scope: usize, raw: Option<&'a RawValue>| {
        measure(raw?.get(), &scopes.get(scope).hash_key)
            .ok()
            .and_then(|m| m.key)
    };
    match op {
        Op::GetItem => {
            let scope = table()?;
            let key = key_of(scope, request.key)?;
            let units = read_units(0, Consistency::from_flag(request.consistent_read));
            plan.charge(scope, key, Kind::Read, units);
        }
        Op::PutItem => {
            let scope = table()?;
            let measured = measure(request.item?.get(), &scopes.get(scope).hash_key).ok()?;
            let units = write_units(measured.bytes, false);
            plan.charge(scope, measured.key?, Kind::Write, units);
        }
        Op::UpdateItem | Op::DeleteItem => {
            let scope = table()?;
            let key = key_of(scope, request.key)?;
            plan.charge(scope, key, Kind::Write, write_units(0, false));
        }
        Op::Query => {
            let table = table()?;
            let scope = match &request.index_name {
                Some(index) => scopes.index(table, &index.0)?,
                None => table,
            };
            let key = query_key(&request, &scopes.get(scope).hash_key)?;
            let units = read_units(0, Consistency::from_flag(request.consistent_read));
            plan.charge(scope, key, Kind::Read, units);
        }
        Op::TransactGetItems | Op::TransactWriteItems => {
            for item in request.transact_items.as_deref().unwrap_or_default() {
                let charged = transact_charge(&mut plan, scopes, item);
                plan.items.push(charged);
            }
        }
        Op::BatchWriteItem => {
            for (name, requests) in entries(request.request_items?.get())? {
                let Some(scope) = scopes.table(&name) else {
                    continue;
                };
                let requests: Vec<WriteRequest<'a>> = serde_json::from_str(requests.get()).ok()?;
                for request in requests {
                    if let Some(put) = request.put_request {
                        let measured =
                            measure(put.item?.get(), &scopes.get(scope).hash_key).ok()?;
                        let units = write_units(measured.bytes, false);
                        plan.charge(scope, measured.key?, Kind::Write, units);
                    } else if let Some(delete) = request.delete_request {
                        let key = key_of(scope, delete.key)?;
                        plan.charge(scope, key, Kind::Write, write_units(0, false));
                    }
                }
            }
        }
        Op::BatchGetItem => {
            for (name, keys) in entries(request.request_items?.get())? {
                let Some(scope) = scopes.table(&name) else {
                    continue;
                };
                let keys: KeysAndAttributes<'a> = serde_json::from_str(keys.get()).ok()?;
                let units = read_units(0, Consistency::from_flag(keys.consistent_read));
                for raw in keys.keys {
                    let key = key_of(scope, Some(raw))?;
                    plan.charge(scope, key, Kind::Read, units);
                }
            }
        }
    }
    (!plan.charges.is_empty()).then_some(plan)
}

/// Charges one item of a transaction: two units per KB written or 4 KB read.
fn transact_charge<'a>(
    plan: &mut Plan<'a>,
    scopes: &Scopes,
    item: &TransactItem<'a>,
) -> Option<usize> {
    let (inner, kind) = [
        (&item.get, Kind::Read),
        (&item.put, Kind::Write),
        (&item.update, Kind::Write),
        (&item.delete, Kind::Write),
        (&item.condition_check, Kind::Write),
    ]
    .into_iter()
    .find_map(|(inner, kind)| Some((inner.as_ref()?, kind)))?;
    let scope = scopes.table(&inner.table_name.as_ref()?.0)?;
    let hash_key = &scopes.get(scope).hash_key;
    // A Put carries its `Item`, measured; the others carry only a `Key`.
    let (bytes, key) = match (inner.item, inner.key) {
        (_, Some(key)) => (0, measure(key.get(), hash_key).ok()?.key?),
        (Some(item), None) => {
            let measured = measure(item.get(), hash_key).ok()?;
            (measured.bytes, measured.key?)
        }
        (None, None) => return None,
    };
    let units = match kind {
        Kind::Read => read_units(bytes, Consistency::Transactional),
        Kind::Write => write_units(bytes, true),
    };
    Some(plan.charge(scope, key, kind, units))
}

/// The partition key value a Query reads: from `KeyConditionExpression` (`#pk = :pk` or
/// `pk = :pk`, either way round, with `AND` and a sort key condition beside it), or from the
/// legacy `KeyConditions`.
fn query_key<'a>(request: &Request<'a>, hash_key: &str) -> Option<Cow<'a, str>> {
    if let Some(expression) = &request.key_condition_expression {
        let names = request.expression_attribute_names;
        let values = request.expression_attribute_values?;
        for (left, right) in equalities(&expression.0) {
            for (name, value) in [(left, right), (right, left)] {
                if !value.starts_with(':') || !names_attribute(names, name, hash_key) {
                    continue;
                }
                return scalar(entry(values.get(), value)?.get());
            }
        }
        return None;
    }
    let condition = entry(request.key_conditions?.get(), hash_key)?;
    let list = entry(condition.get(), "AttributeValueList")?;
    let first = serde_json::from_str::<Vec<&RawValue>>(list.get())
        .ok()?
        .into_iter()
        .next()?;
    scalar(first.get())
}

/// Whether `name` (an attribute, or a `#placeholder` of `names`) is `attribute`.
fn names_attribute(names: Option<&RawValue>, name: &str, attribute: &str) -> bool {
    if !name.starts_with('#') {
        return name == attribute;
    }
    names
        .and_then(|names| entry(names.get(), name))
        .and_then(|raw| serde_json::from_str::<Text<'_>>(raw.get()).ok())
        .is_some_and(|text| text.0 == attribute)
}

/// The operands on each side of every `=` of a condition expression (not `<=`, `>=`, `<>`).
fn equalities(expression: &str) -> impl Iterator<Item = (&str, &str)> {
    let operand = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '#' | ':' | '.' | '-');
    let bytes = expression.as_bytes();
    expression.match_indices('=').filter_map(move |(at, _)| {
        if at > 0 && matches!(bytes[at - 1], b'<' | b'>' | b'!') {
            return None;
        }
        let before = expression[..at].trim_end();
        let left_start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| operand(*c))
            .last()
            .map(|(i, _)| i)?;
        let after = expression[at + 1..].trim_start();
        let right_end = after
            .char_indices()
            .take_while(|(_, c)| operand(*c))
            .last()
            .map(|(i, c)| i + c.len_utf8())?;
        Some((&before[left_start..], &after[..right_end]))
    })
}

/// The entries of a JSON object, each value left raw.
fn entries(json: &str) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    struct Entries;

    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                out.push((key, map.next_value()?));
            }
            Ok(out)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(json);
    serde::de::Deserializer::deserialize_map(&mut deserializer, Entries).ok()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Capacity<'a> {
    #[serde(borrow, default)]
    table_name: Option<Text<'a>>,
    #[serde(default)]
    capacity_units: Option<f64>,
}

/// What each of `plan`'s charges consumed, read from DynamoDB Local's answer (`status`,
/// `body`): its `ConsumedCapacity` shared among each table's charges, never less than what the
/// request showed. A failed condition consumes the estimate (AWS charges the write it
/// attempted); any other error consumes nothing.
pub(crate) fn consumed(
    plan: &Plan<'_>,
    scopes: &Scopes,
    status: u16,
    body: &[u8],
) -> Vec<MilliUnits> {
    let estimates = || {
        plan.charges
            .iter()
            .map(|c| if c.refused { 0 } else { c.estimate })
            .collect()
    };
    let text = std::str::from_utf8(body).unwrap_or_default();
    if !(200..300).contains(&status) {
        let charged = entry(text, "__type")
            .and_then(|t| serde_json::from_str::<Text<'_>>(t.get()).ok())
            .is_some_and(|t| {
                t.0.ends_with("ConditionalCheckFailedException")
                    || t.0.ends_with("TransactionCanceledException")
            });
        return if charged {
            estimates()
        } else {
            vec![0; plan.charges.len()]
        };
    }
    let Some(raw) = entry(text, "ConsumedCapacity") else {
        return estimates();
    };
    let tables: Vec<Capacity<'_>> = if raw.get().starts_with('[') {
        serde_json::from_str(raw.get()).unwrap_or_default()
    } else {
        serde_json::from_str(raw.get())
            .map(|c| vec![c])
            .unwrap_or_default()
    };
    let mut out: Vec<MilliUnits> = estimates();
    for table in tables {
        let (Some(name), Some(units)) = (table.table_name, table.capacity_units) else {
            continue;
        };
        let total = (units.max(0.0) * UNIT as f64).round() as MilliUnits;
        let ours: Vec<usize> = (0..plan.charges.len())
            .filter(|&i| {
                !plan.charges[i].refused && scopes.get(plan.charges[i].scope).table == name.0
            })
            .collect();
        let estimated: MilliUnits = ours.iter().map(|&i| plan.charges[i].estimate).sum();
        if total <= estimated || estimated == 0 {
            continue;
        }
        for &i in &ours {
            out[i] = total * plan.charges[i].estimate / estimated;
        }
    }
    out
}

#[cfg(test)]
#[path = "tests/consumption.rs"]
mod tests;
