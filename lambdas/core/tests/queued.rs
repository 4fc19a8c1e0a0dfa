//! The queued tier over in-memory adapters: which rooms it takes, the jobs it makes, and that
//! working them delivers to every member exactly once, through redeliveries, throttles and a
//! failing queue.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use realtime_core::memory::{
    FixedClock, MemoryAudit, MemoryLedger, MemoryNotifier, MemoryQueue, MemoryStore, SequentialIds,
};
use realtime_core::ports::{Clock, ConnectionStore};
use realtime_core::queued::{FanoutJob, JobReport, QueuedFanout, QueuedSettings, Work};
use realtime_core::shards::RoomShards;
use realtime_core::{Caller, ConnectionId, Deadline, Messaging, Ports, Room, Settings};
use serde_json::{json, Value};

struct World {
    store: Arc<MemoryStore>,
    notifier: Arc<MemoryNotifier>,
    queue: Arc<MemoryQueue>,
    clock: Arc<FixedClock>,
    app: Messaging,
    fanout: QueuedFanout,
}

/// A world whose lobby has `shards` shards, whose queued tier takes rooms above `above`,
/// and whose fan-out reads pages of `page_size`.
fn world(shards: u32, above: usize, page_size: usize) -> World {
    let store = Arc::new(MemoryStore::sharded(
        RoomShards::parse(&format!("lobby={shards}")).expect("spec"),
    ));
    let notifier = Arc::new(MemoryNotifier::default());
    let queue = Arc::new(MemoryQueue::default());
    let ledger = Arc::new(MemoryLedger::default());
    let clock = Arc::new(FixedClock::at(
        Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap(),
    ));
    let mut settings = Settings::default();
    settings.fanout.base_backoff = Duration::from_millis(1);
    let ports = Ports {
        store: store.clone(),
        rates: store.clone(),
        audit: Arc::new(MemoryAudit::default()),
        clock: clock.clone(),
        ids: Arc::new(SequentialIds::default()),
        settings,
    };
    let app = Messaging::new(ports, notifier.clone()).with_queue(queue.clone(), above);
    let fanout = QueuedFanout::new(
        store.clone(),
        ledger.clone(),
        queue.clone(),
        notifier.clone(),
        clock.clone(),
        QueuedSettings {
            page_size,
            posts_per_second: 100_000,
            retry_delay: Duration::from_secs(2),
            fanout: settings.fanout,
            ..QueuedSettings::default()
        },
    );
    World {
        store,
        notifier,
        queue,
        clock,
        app,
        fanout,
    }
}

fn caller(i: usize) -> Caller {
    Caller {
        connection_id: ConnectionId::from(format!("Conn{i:05}=")),
        request_id: format!("req-{i}"),
        user: None,
    }
}

impl World {
    async fn connect(&self, members: usize) {
        for i in 0..members {
            self.app.ports().connect(&caller(i)).await.expect("connect");
        }
    }

    async fn send(&self, text: &str) -> Value {
        let outcome = self
            .app
            .on_message(
                &caller(0),
                &json!({"action": "sendmessage", "text": text}).to_string(),
                Deadline::NONE,
            )
            .await;
        serde_json::from_str(&outcome.frame()).expect("reply")
    }

    /// Works every job in the queue, and every job they enqueue, until it is empty.
    async fn drain(&self) -> Vec<JobReport> {
        let mut reports = Vec::new();
        loop {
            let jobs = self.queue.take();
            if jobs.is_empty() {
                return reports;
            }
            for (job, _) in jobs {
                reports.push(self.fanout.run(&job, Deadline::NONE).await.expect("job"));
            }
        }
    }

    /// Frames each member received.
    fn received(&self, members: usize) -> HashMap<usize, usize> {
        (0..members)
            .map(|i| (i, self.notifier.frames_to(&caller(i).connection_id).len()))
            .collect()
    }
}

#[tokio::test]
async fn a_room_above_the_threshold_is_queued_one_job_per_shard() {
    let world = world(8, 10, 100);
    world.connect(11).await;
    let reply = world.send("hello").await;
    assert_eq!(reply["type"], "sent");
    assert_eq!(reply["queued"], true, "{reply}");
    assert_eq!(
        world.notifier.delivered(),
        0,
        "nothing posted by the message handler"
    );
    let jobs = world.queue.take();
    let shards: Vec<u32> = jobs
        .iter()
        .map(|(job, _)| match job.work {
            Work::Shard { shard, after: None } => shard,
            ref other => panic!("not a first shard job: {other:?}"),
        })
        .collect();
    assert_eq!(shards, (0..8).collect::<Vec<_>>());
    let frame: Value = serde_json::from_str(&jobs[0].0.frame).expect("frame");
    assert_eq!(frame["type"], "message");
    assert_eq!(frame["text"], "hello");
    assert_eq!(frame["id"], reply["id"]);
}

#[tokio::test]
async fn a_room_at_the_threshold_is_delivered_before_the_ack_as_before() {
    let world = world(8, 10, 100);
    world.connect(10).await;
    let reply = world.send("hello").await;
    assert_eq!(reply["type"], "sent");
    assert!(reply.get("queued").is_none(), "{reply}");
    assert!(world.queue.take().is_empty());
    assert!(world.received(10).values().all(|n| *n == 1));
}

#[tokio::test]
async fn working_the_jobs_delivers_to_every_member_exactly_once() {
    let members = 2_500;
    let world = world(8, 100, 64);
    world.connect(members).await;
    world.send("to all").await;
    let reports = world.drain().await;
    let received = world.received(members);
    assert!(received.values().all(|n| *n == 1), "each member once");
    // Each shard of ~312 members takes several pages of 64, each page its own job.
    assert!(reports.len() > 8 * 4, "{} jobs", reports.len());
    assert_eq!(reports.iter().map(|r| r.targets).sum::<usize>(), members);
    assert!(reports.iter().all(|r| !r.duplicate));
}

#[tokio::test]
async fn a_redelivered_or_copied_job_posts_nothing() {
    let world = world(1, 5, 100);
    world.connect(20).await;
    world.send("once").await;
    let jobs = world.queue.take();
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0].0;
    let first = world.fanout.run(job, Deadline::NONE).await.expect("job");
    assert_eq!(first.targets, 20);
    // The queue delivers it again (a lost delete, a visibility timeout): skipped.
    let again = world.fanout.run(job, Deadline::NONE).await.expect("job");
    assert!(again.duplicate);
    assert_eq!(world.notifier.delivered(), 20);
    // Its key is its content: a copy enqueued by another attempt is the same job.
    let copy: FanoutJob =
        serde_json::from_str(&serde_json::to_string(job).expect("json")).expect("job");
    assert_eq!(copy.key(), job.key());
    assert!(
        world
            .fanout
            .run(&copy, Deadline::NONE)
            .await
            .expect("job")
            .duplicate
    );
}

#[tokio::test]
async fn throttled_members_get_a_retry_job_of_their_own_and_nobody_twice() {
    let world = world(1, 5, 100);
    world.connect(30).await;
    world.send("throttled").await;
    let jobs = world.queue.take();
    // Enough 429s that some members spend all four attempts of the invocation: 3 × 30 + 10.
    world.notifier.throttle(100);
    let first = world
        .fanout
        .run(&jobs[0].0, Deadline::NONE)
        .await
        .expect("job");
    assert!(first.retried > 0, "{first:?}");
    let retries = world.queue.take();
    assert_eq!(retries.len(), 1);
    let (retry, delay) = &retries[0];
    assert_eq!(
        *delay,
        Duration::from_secs(2),
        "the throttle gets time to refill"
    );
    match &retry.work {
        Work::Retry { attempt, targets } => {
            assert_eq!(*attempt, 1);
            assert_eq!(targets.len(), first.retried);
            assert_eq!(targets.len() + first.fanout.delivered, 30);
        }
        other => panic!("not a retry: {other:?}"),
    }
    world.queue.put_back(retries);
    world.drain().await;
    assert!(world.received(30).values().all(|n| *n == 1));
}

#[tokio::test]
async fn members_throttled_through_every_retry_are_given_up_and_counted() {
    let world = world(1, 5, 100);
    world.connect(10).await;
    world.send("never").await;
    world.notifier.throttle(usize::MAX);
    let reports = world.drain().await;
    // The first job and five retries, each trying all ten.
    assert_eq!(
        reports.len(),
        1 + QueuedSettings::default().max_retries as usize
    );
    assert_eq!(reports.last().map(|r| r.given_up), Some(10));
    assert_eq!(world.notifier.delivered(), 0);
}

#[tokio::test]
async fn a_job_whose_next_page_cannot_be_queued_fails_before_posting() {
    let world = world(1, 5, 10);
    world.connect(25).await;
    world.send("stuck").await;
    let jobs = world.queue.take();
    world.queue.fail.store(true, Ordering::SeqCst);
    let error = world.fanout.run(&jobs[0].0, Deadline::NONE).await;
    assert!(error.is_err(), "the queue may retry it");
    assert_eq!(world.notifier.delivered(), 0);
    // Not claimed: the queue's retry does the work.
    world.queue.fail.store(false, Ordering::SeqCst);
    world.queue.put_back(jobs);
    world.drain().await;
    assert!(world.received(25).values().all(|n| *n == 1));
}

#[tokio::test]
async fn the_message_is_refused_when_the_queue_fails_but_kept_in_history() {
    let world = world(1, 5, 10);
    world.connect(6).await;
    world.queue.fail.store(true, Ordering::SeqCst);
    let reply = world.send("lost?").await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["code"], "internal");
    assert!(reply["message"]
        .as_str()
        .is_some_and(|m| m.contains("history")));
}

#[tokio::test]
async fn gone_members_are_forgotten_by_the_fan_out() {
    let world = world(1, 5, 100);
    world.connect(8).await;
    let gone = caller(3).connection_id;
    world.notifier.mark_gone(&gone);
    world.send("hi").await;
    // Past the grace period in which a 410 may only mean "still connecting".
    world.clock.advance(chrono::Duration::seconds(60));
    let reports = world.drain().await;
    let report = &reports[0];
    assert_eq!(report.fanout.delivered, 7);
    assert_eq!(report.fanout.gone, vec![gone.clone()], "{report:?}");
    let now = world.clock.now();
    assert!(!world
        .store
        .is_member(&gone, &Room::lobby(), now)
        .await
        .expect("read"));
}

#[tokio::test(start_paused = true)]
async fn the_pacer_holds_one_process_to_its_share_of_the_rate() {
    let store = Arc::new(MemoryStore::default());
    let notifier = Arc::new(MemoryNotifier::default());
    let queue = Arc::new(MemoryQueue::default());
    let fanout = QueuedFanout::new(
        store,
        Arc::new(MemoryLedger::default()),
        queue,
        notifier.clone(),
        Arc::new(FixedClock::at(Utc::now())),
        QueuedSettings {
            posts_per_second: 50,
            ..QueuedSettings::default()
        },
    );
    let targets: Vec<ConnectionId> = (0..100).map(|i| caller(i).connection_id).collect();
    let job = FanoutJob {
        message_id: realtime_core::memory::SequentialIds::nth(Utc::now(), 1),
        room: Room::lobby(),
        frame: "{}".into(),
        work: Work::Retry {
            attempt: 1,
            targets,
        },
    };
    let started = tokio::time::Instant::now();
    let report = fanout.run(&job, Deadline::NONE).await.expect("job");
    assert_eq!(report.fanout.delivered, 100);
    // 100 posts at 50 a second: the last starts 99 intervals of 20 ms after the first.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1980), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(2100), "{elapsed:?}");
}
