//! The DynamoDB adapters against AWS's DynamoDB Local.

mod support;

use chrono::{Duration, Timelike, Utc};
use realtime_aws::dynamodb::{DynamoAudit, DynamoStore};
use realtime_core::ports::{AuditLog, ConnectionStore, RateStore};
use realtime_core::{
    AuditEntry, AuditEvent, ChatMessage, Connection, ConnectionId, HistoryPage, MessageId, Room,
};

fn room(name: &str) -> Room {
    Room::parse(name).expect("valid room")
}

fn id(s: &str) -> ConnectionId {
    ConnectionId::from(s)
}

/// The real time: DynamoDB Local's TTL deletes items whose `expiresAt` is past by the wall
/// clock, so test data must expire in the real future.
fn now() -> chrono::DateTime<Utc> {
    Utc::now().with_nanosecond(0).expect("valid")
}

fn connection(name: &str, user: Option<&str>) -> Connection {
    Connection {
        id: id(name),
        user: user.map(str::to_owned),
        connected_at: now(),
        expires_at: now() + Duration::hours(3),
    }
}

async fn store() -> (support::Db, DynamoStore) {
    let db = support::db().await;
    let table = support::table(&db.client, "connections").await;
    let store = DynamoStore::new(db.client.clone(), table);
    (db, store)
}

#[tokio::test]
async fn add_join_leave_members_rooms_and_forget() {
    let (_db, store) = store().await;
    let lobby = Room::lobby();
    // Ids like API Gateway's, with the characters that need care in keys and URLs.
    let (a, b) = (id("L0SM9cOFvHcCIhw="), id("a+b/c="));
    store
        .add(&connection(a.as_str(), Some("alice")), &lobby)
        .await
        .expect("add a");
    store
        .add(&connection(b.as_str(), None), &lobby)
        .await
        .expect("add b");

    let mut members = store.members(&lobby, now()).await.expect("members");
    members.sort();
    assert_eq!(members, vec![a.clone(), b.clone()]);

    let expires = now() + Duration::hours(3);
    store.join(&a, &room("r1"), expires).await.expect("join");
    store
        .join(&a, &room("r1"), expires)
        .await
        .expect("join twice is fine");
    store.join(&a, &room("r0"), expires).await.expect("join");
    assert_eq!(
        store.rooms_of(&a, now()).await.expect("rooms"),
        vec![room("lobby"), room("r0"), room("r1")]
    );
    assert_eq!(
        store.members(&room("r1"), now()).await.expect("members"),
        vec![a.clone()]
    );

    store.leave(&a, &room("r1")).await.expect("leave");
    store
        .leave(&a, &room("r1"))
        .await
        .expect("leaving twice is fine");
    assert!(store
        .members(&room("r1"), now())
        .await
        .expect("members")
        .is_empty());
    assert_eq!(
        store.rooms_of(&a, now()).await.expect("rooms"),
        vec![room("lobby"), room("r0")]
    );

    store.forget(&a).await.expect("forget");
    assert_eq!(
        store.members(&lobby, now()).await.expect("members"),
        vec![b.clone()],
        "only a is gone"
    );
    assert!(store
        .members(&room("r0"), now())
        .await
        .expect("members")
        .is_empty());
    assert!(store.rooms_of(&a, now()).await.expect("rooms").is_empty());
    store.forget(&a).await.expect("forgetting twice is fine");
}

#[tokio::test]
async fn expired_records_are_not_members_even_before_ttl_deletes_them() {
    let (_db, store) = store().await;
    let a = id("A");
    store
        .add(&connection("A", None), &Room::lobby())
        .await
        .expect("add");
    let later = now() + Duration::hours(4);
    assert!(store
        .members(&Room::lobby(), later)
        .await
        .expect("members")
        .is_empty());
    assert!(store.rooms_of(&a, later).await.expect("rooms").is_empty());
}

#[tokio::test]
async fn forget_handles_more_memberships_than_one_batch() {
    let (_db, store) = store().await;
    let a = id("A");
    store
        .add(&connection("A", None), &Room::lobby())
        .await
        .expect("add");
    for i in 0..30 {
        store
            .join(&a, &room(&format!("r{i}")), now() + Duration::hours(3))
            .await
            .expect("join");
    }
    assert_eq!(store.rooms_of(&a, now()).await.expect("rooms").len(), 31);
    store.forget(&a).await.expect("forget 63 items");
    assert!(store.rooms_of(&a, now()).await.expect("rooms").is_empty());
    assert!(store
        .members(&room("r29"), now())
        .await
        .expect("members")
        .is_empty());
}

#[tokio::test]
async fn a_large_room_pages_through_every_member() {
    let (_db, store) = store().await;
    let big = room("big");
    // Enough members that the membership query needs more than one page (1 MB pages would
    // not split this; the paginator still must be used, so check the count exactly).
    let futures = (0..300).map(|i| {
        let store = store.clone();
        let big = big.clone();
        async move {
            store
                .join(
                    &id(&format!("member-{i:04}")),
                    &big,
                    now() + Duration::hours(3),
                )
                .await
        }
    });
    for result in futures::future::join_all(futures).await {
        result.expect("join");
    }
    assert_eq!(
        store.members(&big, now()).await.expect("members").len(),
        300
    );
}

fn message_entry(
    base: chrono::DateTime<Utc>,
    at_secs: i64,
    text: &str,
    room_name: &str,
) -> AuditEntry {
    let at = base + Duration::seconds(at_secs);
    let message = ChatMessage {
        room: Some(room(room_name)),
        text: text.to_owned(),
        from: id("A"),
        user: Some("alice".into()),
        id: MessageId::new(at, at_secs as u64),
        sent_at: at,
        direct: false,
    };
    AuditEntry {
        id: message.id.clone(),
        at,
        connection_id: id("A"),
        user: Some("alice".into()),
        route: "sendmessage".into(),
        size: text.len(),
        event: AuditEvent::Message(message),
        expires_at: at + Duration::days(7),
    }
}

#[tokio::test]
async fn history_reads_the_last_messages_of_one_room_oldest_first() {
    let db = support::db().await;
    let table = support::table(&db.client, "audit").await;
    let audit = DynamoAudit::new(db.client.clone(), table);
    let base = now();
    for i in 0..8 {
        audit
            .record(&message_entry(base, i, &format!("m{i}"), "r1"))
            .await
            .expect("record");
    }
    audit
        .record(&message_entry(base, 20, "elsewhere", "r2"))
        .await
        .expect("record");
    let mut connect = message_entry(base, 30, "", "r1");
    connect.event = AuditEvent::Connect;
    audit.record(&connect).await.expect("record connect");

    let recent = audit
        .messages(&room("r1"), &HistoryPage::Latest, 3, base)
        .await
        .expect("history");
    let texts: Vec<_> = recent.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m5", "m6", "m7"]);
    assert_eq!(
        recent[2],
        match message_entry(base, 7, "m7", "r1").event {
            AuditEvent::Message(m) => m,
            _ => unreachable!(),
        }
    );
    assert_eq!(
        audit
            .messages(&room("r1"), &HistoryPage::Latest, 100, base)
            .await
            .expect("history")
            .len(),
        8
    );
    assert!(audit
        .messages(&room("empty"), &HistoryPage::Latest, 20, now())
        .await
        .expect("history")
        .is_empty());
    let past_retention = base + Duration::days(8);
    assert!(audit
        .messages(&room("r1"), &HistoryPage::Latest, 20, past_retention)
        .await
        .expect("history")
        .is_empty());
}

#[tokio::test]
async fn storage_errors_name_the_operation() {
    let db = support::db().await;
    let store = DynamoStore::new(db.client.clone(), "no-such-table");
    let err = store
        .members(&Room::lobby(), now())
        .await
        .expect_err("missing table");
    assert!(err.to_string().starts_with("members failed"), "{err}");
}

#[tokio::test]
async fn history_pages_before_and_after_a_message_id() {
    let db = support::db().await;
    let table = support::table(&db.client, "audit").await;
    let audit = DynamoAudit::new(db.client.clone(), table);
    let base = now();
    let entries: Vec<AuditEntry> = (0..6)
        .map(|i| message_entry(base, i, &format!("m{i}"), "r1"))
        .collect();
    for entry in &entries {
        audit.record(entry).await.expect("record");
    }
    let texts = |messages: Vec<ChatMessage>| -> Vec<String> {
        messages.into_iter().map(|m| m.text).collect()
    };
    let page = |id: usize| entries[id].id.clone();
    let before = audit
        .messages(&room("r1"), &HistoryPage::Before(page(4)), 2, base)
        .await
        .expect("before");
    assert_eq!(
        texts(before),
        ["m2", "m3"],
        "the newest older ones, oldest first"
    );
    let after = audit
        .messages(&room("r1"), &HistoryPage::After(page(1)), 3, base)
        .await
        .expect("after");
    assert_eq!(texts(after), ["m2", "m3", "m4"], "the oldest newer ones");
    let tail = audit
        .messages(&room("r1"), &HistoryPage::After(page(5)), 3, base)
        .await
        .expect("after the last");
    assert!(tail.is_empty());
}

#[tokio::test]
async fn membership_is_read_consistently_and_stale_connections_only_when_old() {
    let (_db, store) = store().await;
    let (a, b) = (id("A"), id("B"));
    store
        .add(&connection("A", None), &Room::lobby())
        .await
        .expect("add");
    assert!(store
        .is_member(&a, &Room::lobby(), now())
        .await
        .expect("read"));
    assert!(!store.is_member(&a, &room("r1"), now()).await.expect("read"));
    assert!(
        !store
            .is_member(&a, &Room::lobby(), now() + Duration::hours(4))
            .await
            .expect("read"),
        "past its TTL"
    );
    assert!(!store
        .is_member(&b, &Room::lobby(), now())
        .await
        .expect("read"));

    // Registered now: too new to forget on a 410.
    let cutoff = now() - Duration::seconds(30);
    assert!(!store.forget_stale(&a, cutoff).await.expect("kept"));
    assert!(store
        .is_member(&a, &Room::lobby(), now())
        .await
        .expect("read"));
    // Registered before the cutoff: forgotten, memberships and all.
    store
        .join(&a, &room("r1"), now() + Duration::hours(3))
        .await
        .expect("join");
    assert!(store
        .forget_stale(&a, now() + Duration::seconds(1))
        .await
        .expect("forgotten"));
    assert!(store.rooms_of(&a, now()).await.expect("rooms").is_empty());
    assert!(store
        .members(&room("r1"), now())
        .await
        .expect("members")
        .is_empty());
    // No record at all (memberships left without one) counts as stale.
    store
        .join(&b, &room("r2"), now() + Duration::hours(3))
        .await
        .expect("join");
    assert!(store.forget_stale(&b, cutoff).await.expect("forgotten"));
    assert!(store
        .members(&room("r2"), now())
        .await
        .expect("members")
        .is_empty());
}

#[tokio::test]
async fn rate_state_is_replaced_only_from_what_was_read() {
    let (_db, store) = store().await;
    let a = id("A");
    let expires = now() + Duration::minutes(1);
    assert_eq!(store.rate_state(&a).await.expect("read"), None);
    assert!(store
        .replace_rate_state(&a, None, 100, expires)
        .await
        .expect("first"));
    assert!(
        !store
            .replace_rate_state(&a, None, 200, expires)
            .await
            .expect("lost"),
        "someone wrote it first"
    );
    assert_eq!(store.rate_state(&a).await.expect("read"), Some(100));
    assert!(!store
        .replace_rate_state(&a, Some(99), 300, expires)
        .await
        .expect("lost"));
    assert!(store
        .replace_rate_state(&a, Some(100), 300, expires)
        .await
        .expect("won"));
    assert_eq!(store.rate_state(&a).await.expect("read"), Some(300));
    // The state is one of the connection's records: forgetting it takes it too.
    store.forget(&a).await.expect("forget");
    assert_eq!(store.rate_state(&a).await.expect("read"), None);
}

/// The distinct partition keys holding a room's members, and how many items each holds.
async fn room_partitions(
    db: &support::Db,
    table: &str,
    room: &Room,
) -> std::collections::BTreeMap<String, usize> {
    let mut partitions = std::collections::BTreeMap::new();
    let prefix = format!("ROOM#{room}");
    // A test-only scan of a small table: the code under test never scans.
    let items = db
        .client
        .scan()
        .table_name(table)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .expect("scan");
    for item in items {
        let pk = item
            .get("pk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        if pk == prefix || pk.starts_with(&format!("{prefix}#")) {
            *partitions.entry(pk).or_insert(0) += 1;
        }
    }
    partitions
}

#[tokio::test]
async fn a_sharded_room_spreads_members_over_keys_and_reads_them_all_back() {
    let db = support::db().await;
    let table = support::table(&db.client, "connections").await;
    let shards = realtime_core::shards::RoomShards::parse("lobby=8").expect("spec");
    let store = DynamoStore::new(db.client.clone(), &table).with_shards(shards);
    let lobby = Room::lobby();
    let ids: Vec<ConnectionId> = (0..400).map(|i| id(&format!("Conn{i:04}Id="))).collect();
    let connections: Vec<Connection> = ids
        .iter()
        .map(|each| connection(each.as_str(), None))
        .collect();
    // At most 16 in flight: 400 transactions at once can outlast the SDK timeout on a DynamoDB
    // Local shared with the rest of the suite.
    use futures::stream::{StreamExt, TryStreamExt};
    futures::stream::iter(connections.iter().map(|each| store.add(each, &lobby)))
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .expect("add");

    let partitions = room_partitions(&db, &table, &lobby).await;
    assert_eq!(partitions.len(), 8, "{partitions:?}");
    assert!(
        partitions.contains_key("ROOM#lobby"),
        "shard 0 is the room's own key"
    );
    // An even hash: no shard holds more than about twice its share of 50.
    assert!(
        partitions.values().all(|n| (20..=100).contains(n)),
        "{partitions:?}"
    );

    let mut members = store.members(&lobby, now()).await.expect("members");
    members.sort();
    assert_eq!(members, ids);

    // Bounded reads: over the bound says so, at or under it reads all.
    let over = store.members_up_to(&lobby, now(), 100).await.expect("read");
    assert!(!over.complete);
    assert_eq!(over.ids.len(), 100);
    let all = store.members_up_to(&lobby, now(), 400).await.expect("read");
    assert!(all.complete);
    assert_eq!(all.ids.len(), 400);

    // Pages of each shard, in turn, give every member exactly once.
    let mut paged = Vec::new();
    for shard in 0..store.shards(&lobby) {
        let mut after: Option<ConnectionId> = None;
        loop {
            let page = store
                .member_page(&lobby, shard, now(), after.as_ref(), 16)
                .await
                .expect("page");
            assert!(page.ids.len() <= 16);
            paged.extend(page.ids);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    paged.sort();
    assert_eq!(paged, ids);
}

#[tokio::test]
async fn leaving_and_forgetting_find_the_shard_even_after_the_count_grew() {
    let db = support::db().await;
    let table = support::table(&db.client, "connections").await;
    let parse = |spec: &str| realtime_core::shards::RoomShards::parse(spec).expect("spec");
    let before = DynamoStore::new(db.client.clone(), &table).with_shards(parse("big=4"));
    let after = DynamoStore::new(db.client.clone(), &table).with_shards(parse("big=16"));
    let big = room("big");
    let ids: Vec<ConnectionId> = (0..40).map(|i| id(&format!("Member{i:02}="))).collect();
    for each in &ids {
        before
            .add(&connection(each.as_str(), None), &Room::lobby())
            .await
            .expect("add");
        before
            .join(each, &big, now() + Duration::hours(3))
            .await
            .expect("join");
    }
    // Joined under 4 shards, read under 16: all found.
    assert_eq!(after.members(&big, now()).await.expect("members").len(), 40);
    // Leaving and forgetting under 16 remove the items written under 4.
    for each in &ids[..20] {
        after.leave(each, &big).await.expect("leave");
    }
    for each in &ids[20..] {
        after.forget(each).await.expect("forget");
    }
    assert!(after
        .members(&big, now())
        .await
        .expect("members")
        .is_empty());
    assert!(room_partitions(&db, &table, &big).await.is_empty());
}

#[tokio::test]
async fn a_job_is_claimed_once() {
    use realtime_core::ports::JobLedger;
    let (_db, store) = store().await;
    let expires = now() + Duration::hours(1);
    assert!(store.claim("m1#lobby#0#", expires).await.expect("claim"));
    assert!(!store.claim("m1#lobby#0#", expires).await.expect("claim"));
    assert!(store.claim("m1#lobby#1#", expires).await.expect("claim"));
}
