//! DynamoDB as the [`ConnectionStore`] and the [`AuditLog`].
//!
//! Both tables have a string partition key `pk`, a string sort key `sk` and the TTL attribute
//! `expiresAt` (epoch seconds). Every read is a Query: never a Scan.
//!
//! Connections table:
//! | pk | sk | what |
//! |---|---|---|
//! | `CONN#<id>` | `META` | the connection: `connectionId`, `user`, `connectedAt` |
//! | `CONN#<id>` | `ROOM#<room>` | a room the connection is in (for `whoami` and clean-up) |
//! | `ROOM#<room>` | `CONN#<id>` | a member of the room (for fan-out) |
//!
//! Audit table: room messages under `ROOM#<room>` (what `history` reads), everything else
//! under `CONN#<id>`; the sort key is `<ISO-8601 time>#<id>`, so a Query reads them in order.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, DeleteRequest, Put, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use realtime_core::model::iso8601;
use realtime_core::ports::{AuditLog, ConnectionStore, StoreError};
use realtime_core::{AuditEntry, AuditEvent, ChatMessage, Connection, ConnectionId, Room};

type Item = HashMap<String, AttributeValue>;

/// BatchWriteItem takes at most this many requests.
const BATCH_LIMIT: usize = 25;
/// Rounds of retrying unprocessed batch items before giving up.
const BATCH_RETRIES: u32 = 5;

fn conn_key(id: &ConnectionId) -> String {
    format!("CONN#{id}")
}

fn room_key(room: &Room) -> String {
    format!("ROOM#{room}")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn put(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(|e| StoreError::new("build put", e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn delete(table: &str, key: Item) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .set_key(Some(key))
        .build()
        .map_err(|e| StoreError::new("build delete", e))?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// Connections and memberships in the connections table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store over the given client and table name.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The two items of one membership: the room's view and the connection's view.
    fn membership(&self, id: &ConnectionId, room: &Room, expires_at: DateTime<Utc>) -> [Item; 2] {
        let mut by_room = key(room_key(room), conn_key(id));
        by_room.insert("connectionId".into(), s(id.as_str()));
        by_room.insert("expiresAt".into(), n(expires_at.timestamp()));
        let mut by_connection = key(conn_key(id), room_key(room));
        by_connection.insert("room".into(), s(room.as_str()));
        by_connection.insert("expiresAt".into(), n(expires_at.timestamp()));
        [by_room, by_connection]
    }

    async fn transact(
        &self,
        operation: &'static str,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), StoreError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::new(operation, e.into_service_error()))
    }

    /// Queries one partition (all pages), with an optional sort-key prefix, keeping items
    /// whose TTL has not passed (DynamoDB deletes expired items lazily).
    async fn query_live(
        &self,
        operation: &'static str,
        pk: String,
        sk_prefix: Option<&str>,
        projection: &str,
        now: Option<DateTime<Utc>>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut condition = "#pk = :pk".to_owned();
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_values(":pk", s(pk))
            .projection_expression(projection);
        for name in projection.split(", ").filter(|p| p.starts_with('#')) {
            request = request.expression_attribute_names(name, &name[1..]);
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

    /// Deletes keys in batches of 25, retrying what DynamoDB leaves unprocessed.
    async fn delete_keys(&self, keys: Vec<Item>) -> Result<(), StoreError> {
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
            for round in 0..=BATCH_RETRIES {
                if pending.is_empty() {
                    break;
                }
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(20 << round)).await;
                }
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
            }
            if !pending.is_empty() {
                return Err(StoreError::new(
                    "forget",
                    format!("{} deletes left unprocessed after retries", pending.len()),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ConnectionStore for DynamoStore {
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
        let items = vec![
            delete(&self.table, key(room_key(room), conn_key(id)))?,
            delete(&self.table, key(conn_key(id), room_key(room)))?,
        ];
        self.transact("leave", items).await
    }

    async fn members(
        &self,
        room: &Room,
        now: DateTime<Utc>,
    ) -> Result<Vec<ConnectionId>, StoreError> {
        let items = self
            .query_live("members", room_key(room), None, "#connectionId", Some(now))
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| text(item, "connectionId"))
            .map(ConnectionId::from)
            .collect())
    }

    async fn rooms_of(
        &self,
        id: &ConnectionId,
        now: DateTime<Utc>,
    ) -> Result<Vec<Room>, StoreError> {
        let items = self
            .query_live("rooms_of", conn_key(id), Some("ROOM#"), "#room", Some(now))
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| text(item, "room"))
            .filter_map(|room| Room::parse(&room).ok())
            .collect())
    }

    async fn forget(&self, id: &ConnectionId) -> Result<(), StoreError> {
        let items = self
            .query_live("forget", conn_key(id), None, "#sk", None)
            .await?;
        let mut keys = Vec::with_capacity(items.len() * 2);
        for sk in items.iter().filter_map(|item| text(item, "sk")) {
            if let Some(room) = sk.strip_prefix("ROOM#") {
                keys.push(key(format!("ROOM#{room}"), conn_key(id)));
            }
            keys.push(key(conn_key(id), sk));
        }
        self.delete_keys(keys).await
    }
}

/// The audit log in the audit table.
#[derive(Debug, Clone)]
pub struct DynamoAudit {
    client: Client,
    table: String,
}

impl DynamoAudit {
    /// An audit log over the given client and table name.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

/// The item for an audit entry.
fn audit_item(entry: &AuditEntry) -> Item {
    let pk = match &entry.event {
        AuditEvent::Message(ChatMessage {
            room: Some(room), ..
        }) => room_key(room),
        _ => conn_key(&entry.connection_id),
    };
    let mut item = key(pk, format!("{}#{}", iso8601(entry.at), entry.id));
    item.insert("id".into(), s(&entry.id));
    item.insert("kind".into(), s(entry.event.kind()));
    item.insert("at".into(), s(iso8601(entry.at)));
    item.insert("connectionId".into(), s(entry.connection_id.as_str()));
    item.insert("route".into(), s(&entry.route));
    item.insert("size".into(), n(entry.size));
    item.insert("expiresAt".into(), n(entry.expires_at.timestamp()));
    if let Some(user) = &entry.user {
        item.insert("user".into(), s(user));
    }
    if let Some(room) = entry.event.room() {
        item.insert("room".into(), s(room.as_str()));
    }
    match &entry.event {
        AuditEvent::Disconnect {
            status_code,
            reason,
        } => {
            if let Some(code) = status_code {
                item.insert("statusCode".into(), n(code));
            }
            if let Some(reason) = reason {
                item.insert("reason".into(), s(reason));
            }
        }
        AuditEvent::Message(message) => {
            item.insert("text".into(), s(&message.text));
        }
        AuditEvent::Whisper { to, message } => {
            item.insert("to".into(), s(to.as_str()));
            item.insert("text".into(), s(&message.text));
        }
        AuditEvent::Connect | AuditEvent::Join(_) | AuditEvent::Leave(_) => {}
    }
    item
}

/// A room message read back from its audit item.
fn message_from(item: &Item) -> Option<ChatMessage> {
    Some(ChatMessage {
        room: text(item, "room").and_then(|r| Room::parse(&r).ok()),
        text: text(item, "text")?,
        from: ConnectionId::from(text(item, "connectionId")?),
        user: text(item, "user"),
        id: text(item, "id")?,
        sent_at: text(item, "at")?,
        direct: false,
    })
}

#[async_trait]
impl AuditLog for DynamoAudit {
    async fn record(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(audit_item(entry)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| StoreError::new("record audit entry", e.into_service_error()))
    }

    async fn recent_messages(
        &self,
        room: &Room,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .filter_expression("#expiresAt > :now")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#expiresAt", "expiresAt")
            .expression_attribute_values(":pk", s(room_key(room)))
            .expression_attribute_values(":now", n(now.timestamp()))
            .scan_index_forward(false)
            .limit(limit as i32)
            .send()
            .await
            .map_err(|e| StoreError::new("history", e.into_service_error()))?;
        let mut messages: Vec<ChatMessage> = out.items().iter().filter_map(message_from).collect();
        messages.reverse();
        Ok(messages)
    }
}
