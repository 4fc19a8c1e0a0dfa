//! What the DynamoDB proxy changes in a counted call on its way: the request asks DynamoDB
//! Local for its `ConsumedCapacity` on the caller's behalf, and the answer has it taken out
//! again, cut from the text so that the rest is byte for byte DynamoDB Local's; a batch that
//! touches a throttled key runs without that key's items, which come back unprocessed, as
//! DynamoDB hands back what it throttles.

use serde_json::{Map, Value};

use super::capacity::entry;
use super::consumption::{Asked, Op, Plan};
use super::scopes::Scopes;

/// The request with `"ReturnConsumedCapacity": "TOTAL"` added; `None` when it is not an
/// object.
pub(crate) fn ask_capacity(body: &[u8]) -> Option<Vec<u8>> {
    let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
    if body[open] != b'{' {
        return None;
    }
    let rest = &body[open + 1..];
    let empty = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_none_or(|&b| b == b'}');
    let field: &[u8] = if empty {
        br#""ReturnConsumedCapacity":"TOTAL""#
    } else {
        br#""ReturnConsumedCapacity":"TOTAL","#
    };
    let mut out = Vec::with_capacity(body.len() + field.len());
    out.extend_from_slice(&body[..=open]);
    out.extend_from_slice(field);
    out.extend_from_slice(rest);
    Some(out)
}

/// The answer without its top-level `ConsumedCapacity`, cut out of the text (the rest stays
/// byte for byte); `None` when it has none.
pub(crate) fn strip_capacity(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let raw = entry(text, "ConsumedCapacity")?;
    // The value is a slice of `text`: its offsets place the member.
    let value_start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
    let value_end = value_start + raw.get().len();
    let before = text[..value_start].trim_end();
    let before = before.strip_suffix(':')?.trim_end();
    let key_start = before.strip_suffix("\"ConsumedCapacity\"")?.len();
    let head = text[..key_start].trim_end();
    let (cut_start, cut_end) = if let Some(head) = head.strip_suffix(',') {
        (head.len(), value_end)
    } else {
        let tail = &text[value_end..];
        let skipped = tail.len() - tail.trim_start().len();
        match tail.trim_start().strip_prefix(',') {
            Some(_) => (key_start, value_end + skipped + 1),
            None => (key_start, value_end),
        }
    };
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..cut_start]);
    out.extend_from_slice(&body[cut_end..]);
    Some(out)
}

/// A batch with the items of refused keys taken out (to be handed back unprocessed, as
/// DynamoDB hands back what it throttled).
#[derive(Debug)]
pub(crate) struct Split {
    /// The request to forward.
    pub(crate) request: Vec<u8>,
    /// By table, what was taken out, in the shape of `UnprocessedItems` / `UnprocessedKeys`.
    pub(crate) unprocessed: Map<String, Value>,
}

/// Splits a batch between the keys admitted and the refused; `None` when nothing is left.
pub(crate) fn split_batch(plan: &Plan<'_>, scopes: &Scopes, body: &[u8]) -> Option<Split> {
    let mut request: Value = serde_json::from_slice(body).ok()?;
    let refused = |scope: usize, key: &str| {
        plan.charges
            .iter()
            .any(|c| c.refused && c.scope == scope && c.key == key)
    };
    let mut unprocessed = Map::new();
    let items = request.get_mut("RequestItems")?.as_object_mut()?;
    for (name, table) in items.iter_mut() {
        let Some(scope) = scopes.table(name) else {
            continue;
        };
        let hash_key = &scopes.get(scope).hash_key;
        let list = match plan.op {
            Op::BatchGetItem => table.get_mut("Keys"),
            _ => Some(&mut *table),
        };
        let Some(list) = list.and_then(Value::as_array_mut) else {
            continue;
        };
        let (kept, taken): (Vec<Value>, Vec<Value>) =
            std::mem::take(list).into_iter().partition(|v| {
                let key = match plan.op {
                    Op::BatchGetItem => Some(v),
                    _ => v
                        .pointer("/PutRequest/Item")
                        .or_else(|| v.pointer("/DeleteRequest/Key")),
                };
                !key.and_then(|k| value_key(k, hash_key))
                    .is_some_and(|k| refused(scope, k))
            });
        *list = kept;
        if taken.is_empty() {
            continue;
        }
        let handed_back = match plan.op {
            Op::BatchGetItem => {
                let mut rest = table.as_object().cloned().unwrap_or_default();
                rest.insert("Keys".into(), Value::Array(taken));
                Value::Object(rest)
            }
            _ => Value::Array(taken),
        };
        unprocessed.insert(name.clone(), handed_back);
    }
    items.retain(|_, table| {
        let list = table.get("Keys").unwrap_or(table);
        list.as_array().is_none_or(|l| !l.is_empty())
    });
    if items.is_empty() {
        return None;
    }
    if plan.asked == Asked::No {
        if let Some(object) = request.as_object_mut() {
            object.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
        }
    }
    Some(Split {
        request: serde_json::to_vec(&request).ok()?,
        unprocessed,
    })
}

/// A batch's answer with what the split took out added to its unprocessed items (and the
/// `ConsumedCapacity` the gateway asked for taken out).
pub(crate) fn merge_unprocessed(
    plan: &Plan<'_>,
    body: &[u8],
    unprocessed: Map<String, Value>,
) -> Option<Vec<u8>> {
    let mut answer: Value = serde_json::from_slice(body).ok()?;
    let object = answer.as_object_mut()?;
    if plan.asked == Asked::No {
        object.remove("ConsumedCapacity");
    }
    let field = object
        .entry(plan.op.unprocessed_field())
        .or_insert_with(|| Value::Object(Map::new()));
    let tables = field.as_object_mut()?;
    for (name, taken) in unprocessed {
        match (tables.get_mut(&name), taken) {
            (Some(Value::Array(list)), Value::Array(more)) => list.extend(more),
            (Some(Value::Object(keys)), Value::Object(more)) => {
                let more_keys = more
                    .get("Keys")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if let Some(Value::Array(list)) = keys.get_mut("Keys") {
                    list.extend(more_keys);
                }
            }
            (_, taken) => {
                tables.insert(name, taken);
            }
        }
    }
    serde_json::to_vec(&answer).ok()
}

/// The partition key value of an item or key as a JSON value (`{"pk": {"S": "x"}}` gives `x`).
fn value_key<'v>(item: &'v Value, hash_key: &str) -> Option<&'v str> {
    item.get(hash_key)?.as_object()?.values().next()?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::fixtures::{plan_of, scopes};

    #[test]
    fn the_capacity_asked_for_is_taken_out_again() {
        let asked = ask_capacity(br##" {"TableName":"t"}"##).expect("an object");
        assert_eq!(
            asked,
            br##" {"ReturnConsumedCapacity":"TOTAL","TableName":"t"}"##
        );
        assert_eq!(
            ask_capacity(b"{ }").expect("an object"),
            br##"{"ReturnConsumedCapacity":"TOTAL" }"##
        );
        assert!(ask_capacity(b"[]").is_none());
        let cases: [(&[u8], &[u8]); 4] = [
            (br##"{"ConsumedCapacity":{"TableName":"t","CapacityUnits":1.0}}"##, b"{}"),
            (br##"{"Items":[],"Count":0,"ConsumedCapacity":{"TableName":"t","CapacityUnits":0.5}}"##, br##"{"Items":[],"Count":0}"##),
            (br##"{"ConsumedCapacity":[{"TableName":"t","CapacityUnits":2.0}], "UnprocessedItems":{}}"##, br##"{ "UnprocessedItems":{}}"##),
            (br##"{ "Item" : {"ConsumedCapacity":{"S":"an attribute"}} , "ConsumedCapacity" : {"CapacityUnits":1} }"##, br##"{ "Item" : {"ConsumedCapacity":{"S":"an attribute"}}  }"##),
        ];
        for (answer, stripped) in cases {
            let out = strip_capacity(answer).expect("a ConsumedCapacity");
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(stripped)
            );
            serde_json::from_slice::<Value>(&out).expect("still JSON");
        }
        assert!(strip_capacity(br##"{"Item":{}}"##).is_none());
    }

    #[test]
    fn a_batch_hands_back_the_items_of_refused_keys() {
        let scopes = scopes();
        let body = r##"{"RequestItems":{"conns":[
            {"PutRequest":{"Item":{"pk":{"S":"hot"},"sk":{"S":"1"}}}},
            {"DeleteRequest":{"Key":{"pk":{"S":"cold"},"sk":{"S":"1"}}}},
            {"DeleteRequest":{"Key":{"pk":{"S":"hot"},"sk":{"S":"2"}}}}]}}"##;
        let mut plan = plan_of(&scopes, "BatchWriteItem", body);
        plan.charges[0].refused = true;
        let split = split_batch(&plan, &scopes, body.as_bytes()).expect("the cold key is left");
        let request: Value = serde_json::from_slice(&split.request).unwrap();
        assert_eq!(
            request["RequestItems"]["conns"].as_array().unwrap().len(),
            1
        );
        assert_eq!(request["ReturnConsumedCapacity"], "TOTAL");
        let answer = br##"{"UnprocessedItems":{},"ConsumedCapacity":[{"TableName":"conns","CapacityUnits":1.0}]}"##;
        let merged: Value =
            serde_json::from_slice(&merge_unprocessed(&plan, answer, split.unprocessed).unwrap())
                .unwrap();
        assert_eq!(
            merged["UnprocessedItems"]["conns"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(merged.get("ConsumedCapacity").is_none(), "{merged}");
        // Every key refused: nothing to forward.
        plan.charges[1].refused = true;
        assert!(split_batch(&plan, &scopes, body.as_bytes()).is_none());

        let body = r##"{"RequestItems":{"audit":{"Keys":[{"pk":{"S":"hot"},"sk":{"S":"1"}},{"pk":{"S":"cold"},"sk":{"S":"1"}}],"ConsistentRead":true}}}"##;
        let mut plan = plan_of(&scopes, "BatchGetItem", body);
        plan.charges[0].refused = true;
        let split = split_batch(&plan, &scopes, body.as_bytes()).expect("the cold key is left");
        let merged: Value = serde_json::from_slice(
            &merge_unprocessed(&plan, br##"{"Responses":{"audit":[]}}"##, split.unprocessed)
                .unwrap(),
        )
        .unwrap();
        let handed_back = &merged["UnprocessedKeys"]["audit"];
        assert_eq!(handed_back["Keys"].as_array().unwrap().len(), 1);
        assert_eq!(handed_back["ConsistentRead"], true);
    }
}
