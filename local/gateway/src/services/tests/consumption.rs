//! The consumption of the calls the handlers make (lambdas/aws/src/dynamodb/*.rs), read from
//! requests and from answers shaped as DynamoDB Local gives them.

use super::*;
use crate::services::fixtures::{plan_of, scopes};

/// Each charge as (scope label, key, kind, estimated units).
fn charges(scopes: &Scopes, plan: &Plan<'_>) -> Vec<(String, String, Kind, f64)> {
    plan.charges
        .iter()
        .map(|c| {
            let label = scopes.get(c.scope).label.clone();
            (
                label,
                c.key.to_string(),
                c.kind,
                c.estimate as f64 / UNIT as f64,
            )
        })
        .collect()
}

fn one(label: &str, key: &str, kind: Kind, units: f64) -> Vec<(String, String, Kind, f64)> {
    vec![(label.into(), key.into(), kind, units)]
}

#[test]
fn single_item_calls_charge_their_key() {
    let scopes = scopes();
    let big = "x".repeat(5000);
    let put = format!(
        r##"{{"TableName":"audit","Item":{{"pk":{{"S":"ROOM#a"}},"sk":{{"S":"t"}},"text":{{"S":"{big}"}}}}}}"##
    );
    let plan = plan_of(&scopes, "PutItem", &put);
    assert_eq!(
        charges(&scopes, &plan),
        one("audit", "ROOM#a", Kind::Write, 5.0)
    );
    assert_eq!(plan.asked, Asked::No);
    let get = r##"{"TableName":"conns","Key":{"pk":{"S":"CONN#1"},"sk":{"S":"META"}},"ConsistentRead":true,"ProjectionExpression":"#sk","ExpressionAttributeNames":{"#sk":"sk"}}"##;
    let plan = plan_of(&scopes, "GetItem", get);
    assert_eq!(
        charges(&scopes, &plan),
        one("conns", "CONN#1", Kind::Read, 1.0)
    );
    let get = r##"{"TableName":"arn:aws:dynamodb:us-east-1:000000000000:table/conns","Key":{"sk":{"S":"META"},"pk":{"S":"CONN#1"}}}"##;
    assert_eq!(
        charges(&scopes, &plan_of(&scopes, "GetItem", get)),
        one("conns", "CONN#1", Kind::Read, 0.5)
    );
    let update = r##"{"TableName":"conns","Key":{"pk":{"S":"CONN#1"},"sk":{"S":"RATE"}},"UpdateExpression":"SET #tat = :t","ReturnConsumedCapacity":"TOTAL"}"##;
    let plan = plan_of(&scopes, "UpdateItem", update);
    assert_eq!(
        charges(&scopes, &plan),
        one("conns", "CONN#1", Kind::Write, 1.0)
    );
    assert_eq!(plan.asked, Asked::Yes);
    let delete = r##"{"TableName":"conns","Key":{"pk":{"S":"CONN#1"},"sk":{"S":"META"}},"ReturnConsumedCapacity":"NONE"}"##;
    assert_eq!(
        plan_of(&scopes, "DeleteItem", delete).asked,
        Asked::Declined
    );
}

#[test]
fn queries_find_the_key_in_the_key_condition() {
    let scopes = scopes();
    // As the connection store writes it: a placeholder, a sort key prefix, a filter.
    let query = r##"{"TableName":"conns","ConsistentRead":false,
        "KeyConditionExpression":"#pk = :pk AND begins_with(#sk, :prefix)",
        "FilterExpression":"#expiresAt > :now",
        "ExpressionAttributeNames":{"#pk":"pk","#sk":"sk","#expiresAt":"expiresAt"},
        "ExpressionAttributeValues":{":now":{"N":"1"},":pk":{"S":"ROOM#lobby"},":prefix":{"S":"CONN#"}}}"##;
    let counted = plan_of(&scopes, "Query", query);
    assert_eq!(
        charges(&scopes, &counted),
        one("conns", "ROOM#lobby", Kind::Read, 0.5)
    );
    // The attribute named directly, the other way round, without spaces, strongly consistent.
    for condition in [
        "pk = :v",
        ":v = pk",
        "(pk=:v) AND sk BETWEEN :a AND :b",
        "sk <= :a AND pk = :v",
    ] {
        let query = format!(
            r##"{{"TableName":"audit","ConsistentRead":true,"KeyConditionExpression":"{condition}","ExpressionAttributeValues":{{":v":{{"S":"k"}},":a":{{"S":"a"}},":b":{{"S":"b"}}}}}}"##
        );
        assert_eq!(
            charges(&scopes, &plan_of(&scopes, "Query", &query)),
            one("audit", "k", Kind::Read, 1.0),
            "{condition}"
        );
    }
    // An index's own partition key; the legacy KeyConditions.
    let query = r##"{"TableName":"conns","IndexName":"byUser","KeyConditionExpression":"#u = :u","ExpressionAttributeNames":{"#u":"user"},"ExpressionAttributeValues":{":u":{"S":"alice"}}}"##;
    assert_eq!(
        charges(&scopes, &plan_of(&scopes, "Query", query)),
        one("conns/index/byUser", "alice", Kind::Read, 0.5)
    );
    let legacy = r##"{"TableName":"conns","KeyConditions":{"pk":{"AttributeValueList":[{"S":"old"}],"ComparisonOperator":"EQ"}}}"##;
    assert_eq!(
        charges(&scopes, &plan_of(&scopes, "Query", legacy)),
        one("conns", "old", Kind::Read, 0.5)
    );
    // A sort key alone is not the partition key.
    let wrong = r##"{"TableName":"conns","KeyConditionExpression":"sk = :v","ExpressionAttributeValues":{":v":{"S":"k"}}}"##;
    assert!(plan(&scopes, "Query", wrong.as_bytes()).is_none());
}

#[test]
fn transactions_and_batches_charge_each_key_once() {
    let scopes = scopes();
    // A membership: two puts under two keys, transactional (two units per KB).
    let join = r##"{"TransactItems":[
        {"Put":{"TableName":"conns","Item":{"pk":{"S":"ROOM#a"},"sk":{"S":"CONN#1"}}}},
        {"Put":{"TableName":"conns","Item":{"pk":{"S":"CONN#1"},"sk":{"S":"ROOM#a"}}}},
        {"Delete":{"TableName":"conns","Key":{"pk":{"S":"CONN#1"},"sk":{"S":"ROOM#b"}}}},
        {"Put":{"TableName":"elsewhere","Item":{"pk":{"S":"x"}}}}]}"##;
    let plan = plan_of(&scopes, "TransactWriteItems", join);
    assert_eq!(
        charges(&scopes, &plan),
        vec![
            ("conns".into(), "ROOM#a".into(), Kind::Write, 2.0),
            ("conns".into(), "CONN#1".into(), Kind::Write, 4.0)
        ]
    );
    assert_eq!(plan.items, [Some(0), Some(1), Some(1), None]);
    let get = r##"{"TransactItems":[{"Get":{"TableName":"conns","Key":{"pk":{"S":"a"},"sk":{"S":"b"}}}}]}"##;
    assert_eq!(
        charges(&scopes, &plan_of(&scopes, "TransactGetItems", get)),
        one("conns", "a", Kind::Read, 2.0)
    );
    // Forgetting a connection: deletes in a batch.
    let forget = r##"{"RequestItems":{"conns":[
        {"DeleteRequest":{"Key":{"pk":{"S":"CONN#1"},"sk":{"S":"META"}}}},
        {"DeleteRequest":{"Key":{"pk":{"S":"CONN#1"},"sk":{"S":"ROOM#a"}}}},
        {"PutRequest":{"Item":{"pk":{"S":"ROOM#a"},"sk":{"S":"x"}}}}]}}"##;
    assert_eq!(
        charges(&scopes, &plan_of(&scopes, "BatchWriteItem", forget)),
        vec![
            ("conns".into(), "CONN#1".into(), Kind::Write, 2.0),
            ("conns".into(), "ROOM#a".into(), Kind::Write, 1.0)
        ]
    );
    let batch_get = r##"{"RequestItems":{"audit":{"Keys":[{"pk":{"S":"a"},"sk":{"S":"1"}},{"pk":{"S":"a"},"sk":{"S":"2"}}],"ConsistentRead":true}}}"##;
    assert_eq!(
        charges(&scopes, &plan_of(&scopes, "BatchGetItem", batch_get)),
        one("audit", "a", Kind::Read, 2.0)
    );
}

#[test]
fn what_is_not_counted_has_no_plan() {
    let scopes = scopes();
    for (op, body) in [
        ("Scan", r##"{"TableName":"conns"}"##),
        ("DescribeTable", r##"{"TableName":"conns"}"##),
        (
            "PutItem",
            r##"{"TableName":"other","Item":{"pk":{"S":"a"}}}"##,
        ),
        (
            "PutItem",
            r##"{"TableName":"conns","Item":{"sk":{"S":"no pk"}}}"##,
        ),
        ("GetItem", "not json"),
    ] {
        assert!(plan(&scopes, op, body.as_bytes()).is_none(), "{op} {body}");
    }
}

#[test]
fn dynamodb_locals_total_settles_the_estimates() {
    let scopes = scopes();
    // A 1-unit estimate of an update that replaced a 5 KB item: DynamoDB Local says 5.
    let update = r##"{"TableName":"conns","Key":{"pk":{"S":"k"},"sk":{"S":"s"}}}"##;
    let plan = plan_of(&scopes, "UpdateItem", update);
    let answer = br##"{"ConsumedCapacity":{"TableName":"conns","CapacityUnits":5.0}}"##;
    assert_eq!(consumed(&plan, &scopes, 200, answer), [5 * UNIT]);
    // An empty Query: DynamoDB Local says 0, the minimum stands.
    let query = r##"{"TableName":"conns","KeyConditionExpression":"pk = :p","ExpressionAttributeValues":{":p":{"S":"k"}}}"##;
    let plan = plan_of(&scopes, "Query", query);
    let answer = br##"{"Items":[],"Count":0,"ScannedCount":0,"ConsumedCapacity":{"TableName":"conns","CapacityUnits":0.0}}"##;
    assert_eq!(consumed(&plan, &scopes, 200, answer), [UNIT / 2]);
    // A transaction's total is shared by estimate: 2 and 4 of 6 become 4 and 8 of 12.
    let join = r##"{"TransactItems":[
        {"Put":{"TableName":"conns","Item":{"pk":{"S":"a"},"sk":{"S":"1"}}}},
        {"Put":{"TableName":"conns","Item":{"pk":{"S":"b"},"sk":{"S":"1"}}}},
        {"Delete":{"TableName":"conns","Key":{"pk":{"S":"b"},"sk":{"S":"2"}}}}]}"##;
    let plan = plan_of(&scopes, "TransactWriteItems", join);
    let answer = br##"{"ConsumedCapacity":[{"TableName":"conns","CapacityUnits":12.0}]}"##;
    assert_eq!(consumed(&plan, &scopes, 200, answer), [4 * UNIT, 8 * UNIT]);
    // No numbers: the estimates; a failed condition: the estimates; another error: nothing.
    assert_eq!(consumed(&plan, &scopes, 200, b"{}"), [2 * UNIT, 4 * UNIT]);
    let cancelled = br##"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"x"}"##;
    assert_eq!(
        consumed(&plan, &scopes, 400, cancelled),
        [2 * UNIT, 4 * UNIT]
    );
    let invalid = br##"{"__type":"com.amazon.coral.validate#ValidationException","message":"x"}"##;
    assert_eq!(consumed(&plan, &scopes, 400, invalid), [0, 0]);
}
