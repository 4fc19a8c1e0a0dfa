//! DynamoDB Local as the harness uses it: one instance for the whole run, tables dropped
//! between phases (the gateway's table builder makes them), a few reads to check what the
//! handlers wrote.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_sdk_dynamodb::Client;

/// A DynamoDB client for DynamoDB Local at `endpoint`, built as the handlers' adapters build
/// theirs (static credentials, the local region, hyper with rustls on ring).
pub async fn client(endpoint: &str) -> Client {
    realtime_aws::clients::local_dynamodb(
        endpoint,
        realtime_aws::clients::LOCAL_REGION,
        Duration::from_secs(30),
    )
}

/// Drops every table, so that the next phase starts empty.
pub async fn drop_all_tables(client: &Client) -> Result<()> {
    let tables = client
        .list_tables()
        .send()
        .await
        .context("list tables")?
        .table_names
        .unwrap_or_default();
    for table in tables {
        client
            .delete_table()
            .table_name(&table)
            .send()
            .await
            .with_context(|| format!("delete table {table}"))?;
    }
    Ok(())
}

/// How many items a partition holds (e.g. the members of `ROOM#lobby`).
pub async fn count_partition(client: &Client, table: &str, pk: &str) -> Result<usize> {
    let mut total = 0usize;
    let mut start = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .select(Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .with_context(|| format!("count {pk} in {table}"))?;
        total += usize::try_from(out.count).unwrap_or(0);
        start = out.last_evaluated_key;
        if start.is_none() {
            return Ok(total);
        }
    }
}

/// Whether the item `pk` / `sk` exists.
pub async fn item_exists(client: &Client, table: &str, pk: &str, sk: &str) -> Result<bool> {
    let out = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.to_owned()))
        .key("sk", AttributeValue::S(sk.to_owned()))
        .consistent_read(true)
        .send()
        .await
        .with_context(|| format!("get {pk}/{sk} from {table}"))?;
    Ok(out.item.is_some())
}

/// Waits until the lobby has exactly `expected` live members, over all its shards
/// (`$disconnect` cleans up asynchronously); returns the last count seen.
pub async fn wait_for_lobby(
    client: &Client,
    table: &str,
    expected: usize,
    timeout: Duration,
) -> Result<usize> {
    use realtime_core::ports::ConnectionStore;
    // The stack's default shard count: the bench deploys the dev stage's template.
    let store = realtime_aws::dynamodb::DynamoStore::new(client.clone(), table);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let count = store
            .members(&realtime_core::Room::lobby(), chrono::Utc::now())
            .await
            .map_err(|e| anyhow::anyhow!("count the lobby in {table}: {e}"))?
            .len();
        if count == expected || tokio::time::Instant::now() >= deadline {
            return Ok(count);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
