//! The audit table: every state change, and room messages for `history`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use realtime_core::model::iso8601;
use realtime_core::ports::{AuditLog, StoreError};
use realtime_core::{
    AuditEntry, AuditEvent, ChatMessage, ConnectionId, HistoryPage, MessageId, Room,
};

use super::{conn_key, key, n, room_key, s, text, Item};

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
    let mut item = key(pk, sort_key(entry.at, &entry.id));
    item.insert("id".into(), s(entry.id.as_str()));
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

/// An audit item's sort key: time first, so that a Query reads a partition in order.
fn sort_key(at: DateTime<Utc>, id: &MessageId) -> String {
    format!("{}#{id}", iso8601(at))
}

/// The sort key of a message from its id alone: ids begin with the time they were accepted
/// at, which is the time of the message's entry.
fn message_sort_key(id: &MessageId) -> Option<String> {
    Some(sort_key(id.accepted_at()?, id))
}

/// A room message read back from its audit item.
fn message_from(item: &Item) -> Option<ChatMessage> {
    Some(ChatMessage {
        room: text(item, "room").and_then(|r| Room::parse(&r).ok()),
        text: text(item, "text")?,
        from: ConnectionId::from(text(item, "connectionId")?),
        user: text(item, "user"),
        id: MessageId::from_stored(text(item, "id")?),
        sent_at: DateTime::parse_from_rfc3339(&text(item, "at")?)
            .ok()?
            .with_timezone(&Utc),
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

    async fn messages(
        &self,
        room: &Room,
        page: &HistoryPage,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let mut condition = "#pk = :pk".to_owned();
        let mut request = self
            .client
            .query()
            .table_name(&self.table)
            .filter_expression("#expiresAt > :now")
            .expression_attribute_names("#pk", "pk")
            .expression_attribute_names("#expiresAt", "expiresAt")
            .expression_attribute_values(":pk", s(room_key(room)))
            .expression_attribute_values(":now", n(now.timestamp()))
            // Newest first, except when reading on from a message.
            .scan_index_forward(matches!(page, HistoryPage::After(_)))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        let bound = match page {
            HistoryPage::Latest => None,
            HistoryPage::Before(id) => Some(("<", id)),
            HistoryPage::After(id) => Some((">", id)),
        };
        if let Some((op, id)) = bound {
            let sk = message_sort_key(id).ok_or_else(|| {
                StoreError::new("history", format!("message id {id} has no time"))
            })?;
            condition.push_str(&format!(" AND #sk {op} :bound"));
            request = request
                .expression_attribute_names("#sk", "sk")
                .expression_attribute_values(":bound", s(sk));
        }
        // A page's limit counts items before the TTL filter: read on until enough are live.
        let mut stream = request
            .key_condition_expression(condition)
            .into_paginator()
            .items()
            .send();
        let mut items: Vec<Item> = Vec::new();
        while items.len() < limit as usize {
            match stream.next().await {
                Some(Ok(item)) => items.push(item),
                Some(Err(e)) => return Err(StoreError::new("history", e.into_service_error())),
                None => break,
            }
        }
        let mut messages: Vec<ChatMessage> = items.iter().filter_map(message_from).collect();
        if !matches!(page, HistoryPage::After(_)) {
            messages.reverse();
        }
        Ok(messages)
    }
}
