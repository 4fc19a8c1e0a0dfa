//! The connections table: connections, memberships and the rate limiter's state.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::{DeleteRequest, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use realtime_core::model::iso8601;
use realtime_core::ports::{
    ConnectionStore, JobLedger, MemberPage, Members, RateStore, StoreError,
};
use realtime_core::shards::RoomShards;
use realtime_core::{Connection, ConnectionId, Room};

use super::{
    conn_key, delete, is_retryable_cancellation, key, n, number, projection_names, put, room_key,
    s, text, Backoff, Item, BATCH_LIMIT, RATE_SK,
};

/// Connections, memberships and rate-limit state in the connections table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    retry_budget: Duration,
    shards: RoomShards,
}

impl DynamoStore {
    /// A store over the given client and table name, retrying throttles for up to 3 s.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retry_budget: Duration::from_secs(3),
            shards: RoomShards::default(),
        }
    }

    /// How rooms' memberships are sharded (the stage's `ROOM_SHARDS`; the lobby over 8 keys
    /// by default).
    pub fn with_shards(mut self, shards: RoomShards) -> Self {
        self.shards = shards;
        self
    }

    /// How long a throttled transaction or batch is retried (the SDK timeout).
    pub fn with_retry_budget(mut self, budget: Duration) -> Self {
        self.retry_budget = budget;
        self
    }

    /// The two items of one membership: the room's view, in the member's shard, and the
    /// connection's view, which records the shard for leaving and clean-up.
    fn membership(&self, id: &ConnectionId, room: &Room, expires_at: DateTime<Utc>) -> [Item; 2] {
        let shard = self.shards.shard_of(room, id);
        let mut by_room = key(shard_key(room, shard), conn_key(id));
        by_room.insert("connectionId".into(), s(id.as_str()));
        by_room.insert("expiresAt".into(), n(expires_at.timestamp()));
        let mut by_connection = key(conn_key(id), room_key(room));
        by_connection.insert("room".into(), s(room.as_str()));
        by_connection.insert("shard".into(), n(shard));
        by_connection.insert("expiresAt".into(), n(expires_at.timestamp()));
        [by_room, by_connection]
    }

    /// One Query request (no pagination): up to `limit` items of `pk` after sort key
    /// `start`, live ones only, eventually consistent; and the last sort key read when
    /// DynamoDB says there may be more.
    async fn query_page(
        &self,
        pk: String,
        start: Option<String>,
        limit: usize,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Item>, Option<String>), StoreError> {
        let start_key = start.map(|sk| key(pk.clone(), sk));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .filter_expression("#expiresAt > :now")
            .projection_expression("#connectionId")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#expiresAt", "expiresAt")
            .expression_attribute_names("#connectionId", "connectionId")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":now", n(now.timestamp()))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX).max(1))
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(|e| StoreError::new("members", e.into_service_error()))?;
        let last = out
            .last_evaluated_key
            .as_ref()
            .and_then(|last| text(last, "sk"));
        Ok((out.items.unwrap_or_default(), last))
    }

    /// Up to `want` live members of one shard, from sort key `start` on.
    async fn read_shard(
        &self,
        pk: &str,
        mut start: Option<String>,
        want: usize,
        now: DateTime<Utc>,
    ) -> Result<ShardRead, StoreError> {
        let mut ids = Vec::new();
        loop {
            // DynamoDB pages at 1 MB anyway; the limit only bounds what a huge room costs.
            let limit = want.saturating_sub(ids.len()).clamp(1, 10_000);
            let (items, last) = self.query_page(pk.to_owned(), start, limit, now).await?;
            ids.extend(member_ids(&items));
            start = last;
            if start.is_none() || ids.len() >= want {
                let done = start.is_none();
                return Ok(ShardRead { ids, start, done });
            }
        }
    }
    /// One transaction, retried while DynamoDB cancels it for throttling or a conflict (the
    /// SDK retries throttled calls, but a cancelled transaction is not one).
    async fn transact(
        &self,
        operation: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        let mut backoff = Backoff::new(self.retry_budget);
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(SdkError::ServiceError(e))
                    if is_retryable_cancellation(e.err()) && backoff.wait().await =>
                {
                    tracing::debug!(
                        operation,
                        "transaction cancelled by a throttle or conflict: retrying"
                    );
                }
                Err(e) => return Err(StoreError::new(operation, e.into_service_error())),
            }
        }
    }

    /// One item, read consistently.
    async fn get(
        &self,
        operation: &'static str,
        pk: String,
        sk: String,
        projection: &str,
    ) -> Result<Option<Item>, StoreError> {
        let mut request = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .projection_expression(projection);
        for (placeholder, name) in projection_names(projection) {
            request = request.expression_attribute_names(placeholder, name);
        }
        request
            .send()
            .await
            .map(|out| out.item)
            .map_err(|e| StoreError::new(operation, e.into_service_error()))
    }

    /// Queries one partition (all pages), with an optional sort-key prefix, keeping items
    /// whose TTL has not passed (DynamoDB deletes expired items lazily). `consistent` reads
    /// what was written just before, at twice the cost.
    async fn query_live(
        &self,
        operation: &'static str,
        pk: String,
        sk_prefix: Option<&str>,
        projection: &str,
        now: Option<DateTime<Utc>>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut condition = "#pk = :pk".to_owned();
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(consistent)
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_values(":pk", s(pk))
            .projection_expression(projection);
        for (placeholder, name) in projection_names(projection) {
            request = request.expression_attribute_names(placeholder, name);
        }
        if let Some(prefix) = sk_prefix {
            condition.push_str(" AND begins_with(#sk, :prefix)");
            request = request
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":prefix", s(prefix));
        }
        if let Some(now) = now {
            request = request
                .filter_expression("#expiresAt > :now")
                .expression_attribute_names("#expiresAt", "expiresAt")
                .expression_attribute_values(":now", n(now.timestamp()));
        }
        request
            .key_condition_expression(condition)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| StoreError::new(operation, e.into_service_error()))
    }

    /// Deletes keys in batches of 25, retrying what DynamoDB leaves unprocessed until it is
    /// written or the retry budget is spent.
    async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
        let mut backoff = Backoff::new(self.retry_budget);
        for chunk in keys.chunks(BATCH_LIMIT) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|key| {
                    DeleteRequest::builder()
                        .set_key(Some(key.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| StoreError::new("build delete", e))
                })
                .collect::<Result<_, _>>()?;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| StoreError::new("forget", e.into_service_error()))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default();
                if !pending.is_empty() && !backoff.wait().await {
                    return Err(StoreError::new(
                        "forget",
                        format!(
                            "{} deletes still unprocessed after {:?} of retries",
                            pending.len(),
                            self.retry_budget
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every item of a connection (its keys, and its record's `connectedAt`).
    async fn connection_items(&self, id: &ConnectionId) -> Result<Vec<Item>, StoreError> {
        self.query_live(
            "forget",
            conn_key(id),
            None,
            "#sk, #connectedAt, #shard",
            None,
            true,
        )
        .await
    }

    /// Deletes the given items of a connection and the room-side halves of its memberships.
    async fn delete_connection(&self, id: &ConnectionId, items: &[Item]) -> Result<(), StoreError> {
        let mut keys = Vec::with_capacity(items.len() * 2);
        for item in items {
            let Some(sk) = text(item, "sk") else { continue };
            if let Some(room) = sk.strip_prefix("ROOM#") {
                // Memberships written before sharding have no shard: shard 0 is their key.
                let shard = number(item, "shard").unwrap_or(0);
                let pk = match shard {
                    0 => format!("ROOM#{room}"),
                    shard => format!("ROOM#{room}#{shard}"),
                };
                keys.push(key(pk, conn_key(id)));
            }
            keys.push(key(conn_key(id), sk));
        }
        self.delete_keys(keys).await
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
    fn shards(&self, room: &Room) -> u32 {
        self.shards.count(room)
    }

    async fn add(&self, connection: &Connection, lobby: &Room) -> Result<(), StoreError> {
        let mut meta = key(conn_key(&connection.id), "META".into());
        meta.insert("connectionId".into(), s(connection.id.as_str()));
        meta.insert("connectedAt".into(), s(iso8601(connection.connected_at)));
        meta.insert("expiresAt".into(), n(connection.expires_at.timestamp()));
        if let Some(user) = &connection.user {
            meta.insert("user".into(), s(user));
        }
        let mut items = vec![put(&self.table, meta)?];
        for item in self.membership(&connection.id, lobby, connection.expires_at) {
            items.push(put(&self.table, item)?);
        }
        self.transact("add connection", items).await
    }

    async fn join(
        &self,
        id: &ConnectionId,
        room: &Room,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let items = self
            .membership(id, room, expires_at)
            .into_iter()
            .map(|item| put(&self.table, item))
            .collect::<Result<_, _>>()?;
        self.transact("join", items).await
    }

    async fn leave(&self, id: &ConnectionId, room: &Room) -> Result<(), StoreError> {
        // The shard the membership was written to, which the room's count may no longer give.
        let shard = self
            .get("leave", conn_key(id), room_key(room), "#shard")
            .await?
            .and_then(|item| number(&item, "shard"))
            .and_then(|shard| u32::try_from(shard).ok())
            .unwrap_or_else(|| self.shards.shard_of(room, id));
        let items = vec![
            delete(&self.table, key(shard_key(room, shard), conn_key(id)))?,
            delete(&self.table, key(conn_key(id), room_key(room)))?,
        ];
        self.transact("leave", items).await
    }

    async fn is_member(
        &self,
        id: &ConnectionId,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let item = self
            .get("is_member", conn_key(id), room_key(room), "#expiresAt")
            .await?;
        Ok(item
            .and_then(|item| number(&item, "expiresAt"))
            .is_some_and(|expires| expires > now.timestamp()))
    }

    async fn members(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        Ok(self.members_up_to(room, now, usize::MAX - 1).await?.ids)
    }

    async fn members_up_to(
        &self,
        room: &Room,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Members, StoreError> {
        // One more than the bound tells that there are more. The shards are read in parallel,
        // each up to its share of that; only if every shard fits its share is the rest read,
        // one shard after another. A huge room is known after reading about `max` members,
        // whatever its shard count.
        let bound = max.saturating_add(1);
        let count = self.shards.count(room);
        let share = bound.div_ceil(count as usize);
        let keys: Vec<String> = (0..count).map(|shard| shard_key(room, shard)).collect();
        let mut reads = futures::future::try_join_all(
            keys.iter().map(|pk| self.read_shard(pk, None, share, now)),
        )
        .await?;
        let mut total: usize = reads.iter().map(|read| read.ids.len()).sum();
        for (pk, read) in keys.iter().zip(reads.iter_mut()) {
            if total >= bound {
                break;
            }
            if !read.done {
                let more = self
                    .read_shard(pk, read.start.take(), bound - total, now)
                    .await?;
                total += more.ids.len();
                read.ids.extend(more.ids);
            }
        }
        let mut ids: Vec<ConnectionId> = reads.into_iter().flat_map(|read| read.ids).collect();
        let complete = ids.len() <= max;
        ids.truncate(max);
        Ok(Members { ids, complete })
    }

    async fn member_page(
        &self,
        room: &Room,
        shard: u32,
        now: DateTime<Utc>,
        after: Option<&ConnectionId>,
        limit: usize,
    ) -> Result<MemberPage, StoreError> {
        let (items, last) = self
            .query_page(shard_key(room, shard), after.map(conn_key), limit, now)
            .await?;
        let next = last
            .as_deref()
            .and_then(|sk| sk.strip_prefix("CONN#"))
            .map(ConnectionId::from);
        Ok(MemberPage {
            ids: member_ids(&items).collect(),
            next,
        })
    }

    async fn rooms_of(
        &self,
        id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Room>, StoreError> {
        let items = self
            .query_live(
                "rooms_of",
                conn_key(id),
                Some("ROOM#"),
                "#room",
                Some(now),
                true,
            )
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| text(item, "room"))
            .filter_map(|room| Room::parse(&room).ok())
            .collect())
    }

    async fn forget(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let items = self.connection_items(id).await?;
        self.delete_connection(id, &items).await
    }

    async fn forget_stale(
        &self,
        id: &ConnectionId,
        registered_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let items = self.connection_items(id).await?;
        let registered = items
            .iter()
            .find(|item| text(item, "sk").as_deref() == Some("META"))
            .and_then(|meta| text(meta, "connectedAt"))
            .and_then(|at| DateTime::parse_from_rfc3339(&at).ok());
        if registered.is_some_and(|at| at >= registered_before) {
            return Ok(false);
        }
        self.delete_connection(id, &items).await?;
        Ok(true)
    }
}

#[async_trait]
impl RateStore for DynamoStore {
    async fn rate_state(&self, id: &ConnectionId) -> Result<Option<i64>, StoreError> {
        let item = self
            .get("rate limit", conn_key(id), RATE_SK.to_owned(), "#tat")
            .await?;
        Ok(item.and_then(|item| number(&item, "tat")))
    }

    async fn replace_rate_state(
        &self,
        id: &ConnectionId,
        expected: Option<i64>,
        next: i64,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut item = key(conn_key(id), RATE_SK.to_owned());
        item.insert("tat".into(), n(next));
        item.insert("expiresAt".into(), n(expires_at.timestamp()));
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        let request = match expected {
            None => request
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", "pk"),
            Some(tat) => request
                .condition_expression("#tat = :expected")
                .expression_attribute_names("#tat", "tat")
                .expression_attribute_values(":expected", n(tat)),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::new("rate limit", e.into_service_error())),
        }
    }
}

/// The partition key of one shard of a room's members: shard 0 is the room's own key, so an
/// unsharded room is laid out as it always was.
fn shard_key(room: &Room, shard: u32) -> String {
    match shard {
        0 => room_key(room),
        shard => format!("{}#{shard}", room_key(room)),
    }
}

/// What one bounded read of a shard found.
struct ShardRead {
    ids: Vec<ConnectionId>,
    /// Where a further read would start.
    start: Option<String>,
    /// The shard was read to its end.
    done: bool,
}

fn member_ids(items: &[Item]) -> impl Iterator<Item = ConnectionId> + '_ {
    items
        .iter()
        .filter_map(|item| text(item, "connectionId"))
        .map(ConnectionId::from)
}

#[async_trait]
impl JobLedger for DynamoStore {
    async fn claim(&self, key_text: &str, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        // Its own partition key per job: claims never make a hot key, however large the room.
        let mut item = key(format!("FANOUT#{key_text}"), "CLAIM".to_owned());
        item.insert("expiresAt".into(), n(expires_at.timestamp()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", "pk")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::new("claim", e.into_service_error())),
        }
    }
}
