//! DynamoDB Local under the gateway's watch: started with it, started again on the same port
//! (with the template's tables) when it dies, stopped with it. Handlers hold its endpoint in
//! their environment, so a restart elsewhere would not reach them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dynamodb_local::{DynamoDbLocal, Options};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::tables;
use crate::template::TableSpec;

/// More deaths than this within [`RESTART_WINDOW`] is a crash loop: then it stays down.
const MAX_RESTARTS: usize = 5;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// A running DynamoDB Local and the task that watches it.
pub(crate) struct Database {
    endpoint: String,
    /// What a restart creates: the template's tables, those a reload added included.
    tables: Arc<Mutex<Vec<TableSpec>>>,
    pid: Arc<AtomicU32>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Database {
    /// Starts DynamoDB Local with `options`; `tables` are created again after a restart.
    pub(crate) async fn start(
        options: Options,
        tables: Vec<TableSpec>,
    ) -> Result<Self, dynamodb_local::Error> {
        let db = DynamoDbLocal::start(options.clone()).await?;
        let endpoint = db.endpoint();
        let pid = Arc::new(AtomicU32::new(db.pid().unwrap_or(0)));
        let (stop, stopped) = oneshot::channel();
        // The same port from now on: the handlers were given this endpoint.
        let options = Options {
            port: Some(db.port()),
            ..options
        };
        let tables = Arc::new(Mutex::new(tables));
        let task = tokio::spawn(watch(db, options, tables.clone(), pid.clone(), stopped));
        Ok(Self {
            endpoint,
            tables,
            pid,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The endpoint handlers and the gateway use.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The Java process's id, the current one after a restart (0: none runs).
    pub(crate) fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Acquire)).filter(|pid| *pid != 0)
    }

    /// The tables a restart creates: a reload adds those it created.
    pub(crate) fn restart_tables(&self) -> Arc<Mutex<Vec<TableSpec>>> {
        self.tables.clone()
    }

    /// Stops the watch, then DynamoDB Local.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Waits for the database to die or the gateway to stop it; restarts it when it died.
async fn watch(
    mut db: DynamoDbLocal,
    options: Options,
    tables: Arc<Mutex<Vec<TableSpec>>>,
    pid: Arc<AtomicU32>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut deaths: Vec<Instant> = Vec::new();
    loop {
        let status = tokio::select! {
            status = db.wait() => status,
            _ = &mut stopped => {
                db.stop().await;
                return;
            }
        };
        pid.store(0, Ordering::Release);
        let port = db.port();
        let kept = if options.data_dir.is_some() {
            "its data is kept on disk"
        } else {
            "it ran in memory: every table's data is gone"
        };
        let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
        warn!("DynamoDB Local exited ({status}): starting it again on port {port} ({kept})");
        deaths.retain(|at| at.elapsed() < RESTART_WINDOW);
        deaths.push(Instant::now());
        if deaths.len() > MAX_RESTARTS {
            error!(
                "DynamoDB Local died {} times within {RESTART_WINDOW:?}: not starting it again; \
                 every storage call fails until the gateway is restarted",
                deaths.len()
            );
            let _ = stopped.await;
            return;
        }
        let restarted = tokio::select! {
            restarted = restart(&options, tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()) => restarted,
            _ = &mut stopped => return,
        };
        match restarted {
            Ok(new) => {
                pid.store(new.pid().unwrap_or(0), Ordering::Release);
                info!("DynamoDB Local is back on port {port}");
                db = new;
            }
            Err(problem) => {
                error!(
                    "DynamoDB Local died and could not be started again on port {port}: \
                     {problem}; every storage call fails until the gateway is restarted"
                );
                let _ = stopped.await;
                return;
            }
        }
    }
}

/// A new DynamoDB Local with the template's tables.
async fn restart(options: &Options, tables: Vec<TableSpec>) -> Result<DynamoDbLocal, String> {
    let db = DynamoDbLocal::start(options.clone())
        .await
        .map_err(|e| e.to_string())?;
    let client = tables::local_client(&db.endpoint(), crate::LOCAL_REGION);
    tables::create_all(&client, &tables)
        .await
        .map_err(|e| e.to_string())?;
    Ok(db)
}
