//! Changes applied to a running gateway without closing a client connection: rebuilt handler
//! binaries (each changed function's pool starts a new generation of processes), and a
//! re-synthesized template (routes, functions, environment, timeouts, authorizer and stage
//! settings, roles, new tables). What a running gateway cannot take over (queues, event source
//! mappings, secrets, the stage, a table's keys) is refused whole, one line each, with what to do.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::functions::{missing_binary, EventSources, FunctionPool, HostSettings};
use crate::iam::RoleError;
use crate::state::{Shared, Stack};
use crate::tables::{self, TableError, LOCAL_ACCESS_KEY};
use crate::template::{
    ApiModel, FunctionSpec, LocalContext, Template, TemplateError, CALLBACK_URL_VAR,
};

/// What to say about a change a running gateway cannot apply.
const RESTART: &str = "stop `make dev` (Ctrl-C) and start it again";

/// Why a changed template was not applied; the gateway serves the previous one.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The template cannot be read or served.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// A function's binary does not exist.
    #[error("handler binary {path} (function {function}) not found: build it first")]
    MissingBinary {
        /// The expected path.
        path: PathBuf,
        /// The function's logical id.
        function: String,
    },
    /// Something changed that a running gateway cannot take over.
    #[error("{}", .0.join("\n"))]
    NotLive(Vec<String>),
    /// A function's role cannot be enforced.
    #[error("cannot enforce the template's IAM roles: {0}")]
    Roles(#[from] RoleError),
    /// A new table could not be created.
    #[error("cannot create the template's new tables in DynamoDB: {0}")]
    Tables(#[from] TableError),
}

/// What a reload of the template changed, one short item each (`routes +echo`,
/// `functions ~realtime-dev-message`); empty when the template serves the same as before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackChange {
    /// The changes, in the order routes, functions, tables, stage.
    pub items: Vec<String>,
}

impl StackChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl std::fmt::Display for StackChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.items.is_empty() {
            f.write_str("no change")
        } else {
            f.write_str(&self.items.join(", "))
        }
    }
}

/// Everything a reload needs from the gateway that started.
pub(crate) struct Reloader {
    pub(crate) shared: Arc<Shared>,
    pub(crate) template: PathBuf,
    pub(crate) local: LocalContext,
    pub(crate) settings: HostSettings,
    pub(crate) extra_env: BTreeMap<String, String>,
    pub(crate) dynamodb_endpoint: String,
    /// The tables a DynamoDB Local restart creates (`None` with an external DynamoDB).
    pub(crate) restart_tables: Option<Arc<Mutex<Vec<crate::template::TableSpec>>>>,
    pub(crate) event_sources: Arc<EventSources>,
    /// One reload at a time.
    pub(crate) busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// Starts a new generation of processes for every function whose binary file changed since
    /// its processes started (in-flight invocations finish on the old binary); returns the
    /// names of those functions, sorted.
    pub(crate) fn refresh_binaries(&self) -> Vec<String> {
        let stack = self.shared.stack();
        let mut refreshed: Vec<String> = stack
            .functions
            .iter()
            .filter(|(_, pool)| pool.binary_changed())
            .map(|(_, pool)| {
                pool.refresh();
                pool.spec().name.clone()
            })
            .collect();
        refreshed.sort();
        refreshed
    }

    /// Reads the template again and serves it: unchanged functions keep their processes,
    /// changed ones get new pools (the old ones finish what they run), new tables are created.
    pub(crate) async fn apply_template(&self) -> Result<StackChange, ReloadError> {
        let _one_at_a_time = self.busy.lock().await;
        let template = Template::load(&self.template)?;
        let current = self.shared.stack();
        let api = template.api(&current.api.stage.name, &self.local)?;
        if let Some((path, function)) =
            missing_binary(&self.settings.bin_dir, api.functions.values())
        {
            return Err(ReloadError::MissingBinary { path, function });
        }
        let not_live = not_live(&current.api, &api);
        if !not_live.is_empty() {
            return Err(ReloadError::NotLive(not_live));
        }
        let change = describe(&current.api, &api);
        if change.is_empty() {
            return Ok(change);
        }
        let guard = &self.shared.guard;
        for note in guard.update(api.functions.values(), LOCAL_ACCESS_KEY)? {
            warn!("IAM: {note}");
        }
        let new_tables: Vec<_> = api
            .tables
            .iter()
            .filter(|t| !current.api.tables.iter().any(|old| old.name == t.name))
            .cloned()
            .collect();
        if !new_tables.is_empty() {
            let client = tables::local_client(&self.dynamodb_endpoint, crate::LOCAL_REGION);
            tables::create_all(&client, &new_tables).await?;
            if let Some(list) = &self.restart_tables {
                list.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend(new_tables);
            }
        }
        let callback_url = format!("http://{}/{}", self.shared.local_addr(), api.stage.name);
        let functions: HashMap<String, Arc<FunctionPool>> = api
            .functions
            .values()
            .map(|spec| {
                let kept = current
                    .api
                    .functions
                    .get(&spec.logical_id)
                    .filter(|old| *old == spec)
                    .and_then(|_| current.functions.get(&spec.logical_id));
                let pool = match kept {
                    Some(pool) => pool.clone(),
                    None => Arc::new(self.pool(spec, &callback_url)),
                };
                (spec.logical_id.clone(), pool)
            })
            .collect();
        let stack = Stack::new(api, &self.local, self.shared.local_addr(), functions);
        self.event_sources.repoint(&stack.functions);
        let new_pools: Vec<Arc<FunctionPool>> = stack.functions.values().cloned().collect();
        let old = self.shared.replace_stack(stack);
        for pool in old.functions.values() {
            if !new_pools.iter().any(|p| Arc::ptr_eq(p, pool)) {
                pool.retire();
            }
        }
        Ok(change)
    }

    /// The pool of `spec` as the gateway runs it: the template's environment, the local-only
    /// variables, the function's own credentials and the @connections URL.
    pub(crate) fn pool(&self, spec: &FunctionSpec, callback_url: &str) -> FunctionPool {
        function_pool(
            spec,
            &self.settings,
            &self.extra_env,
            &self.shared.guard,
            callback_url,
        )
    }
}

/// The pool of `spec`: the template's environment, the local-only variables, the function's
/// own credentials (so that its calls are checked against its role) and the @connections URL.
pub(crate) fn function_pool(
    spec: &FunctionSpec,
    settings: &HostSettings,
    extra_env: &BTreeMap<String, String>,
    guard: &crate::iam::Guard,
    callback_url: &str,
) -> FunctionPool {
    let mut spec = spec.clone();
    spec.environment.extend(extra_env.clone());
    if let Some(credentials) = guard.credentials(&spec.logical_id) {
        spec.environment
            .insert("AWS_ACCESS_KEY_ID".to_owned(), credentials.access_key_id);
        spec.environment.insert(
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            credentials.secret_access_key,
        );
    }
    spec.environment
        .insert(CALLBACK_URL_VAR.to_owned(), callback_url.to_owned());
    FunctionPool::new(spec, settings)
}

/// One line per change of `new` that a running gateway cannot take over, with what to do.
fn not_live(old: &ApiModel, new: &ApiModel) -> Vec<String> {
    let mut lines = Vec::new();
    if old.stage.name != new.stage.name {
        lines.push(format!(
            "the stage is now {} (was {}): {RESTART} with STAGE={}",
            new.stage.name, old.stage.name, new.stage.name
        ));
    }
    for table in &new.tables {
        let Some(before) = old.tables.iter().find(|t| t.name == table.name) else {
            continue;
        };
        if before != table {
            lines.push(format!(
                "table {}: its keys, indexes or TTL changed, which DynamoDB Local cannot alter in place: {RESTART} (with --persist-dir, delete that folder first: the data has the old keys)",
                table.name
            ));
        }
    }
    let by_id = [
        (
            "the SQS queues",
            names_changed(
                old.queues.iter().map(|q| (&q.logical_id, q)),
                new.queues.iter().map(|q| (&q.logical_id, q)),
            ),
        ),
        (
            "the event source mappings",
            names_changed(
                old.event_source_mappings.iter().map(|m| (&m.logical_id, m)),
                new.event_source_mappings.iter().map(|m| (&m.logical_id, m)),
            ),
        ),
        (
            "the Secrets Manager secrets",
            names_changed(
                old.secrets.iter().map(|s| (&s.logical_id, s)),
                new.secrets.iter().map(|s| (&s.logical_id, s)),
            ),
        ),
    ];
    for (what, changed) in by_id {
        if !changed.is_empty() {
            lines.push(format!("{what} changed ({changed}): {RESTART}"));
        }
    }
    lines
}

/// What changed between `old` and `new`: `+name` added, `-name` removed, `~name` changed.
fn names_changed<'a, T: PartialEq + 'a>(
    old: impl Iterator<Item = (&'a String, &'a T)>,
    new: impl Iterator<Item = (&'a String, &'a T)>,
) -> String {
    let old: BTreeMap<&String, &T> = old.collect();
    let new: BTreeMap<&String, &T> = new.collect();
    let mut items = Vec::new();
    for (name, spec) in &new {
        match old.get(name) {
            None => items.push(format!("+{name}")),
            Some(before) if before != spec => items.push(format!("~{name}")),
            Some(_) => {}
        }
    }
    items.extend(
        old.keys()
            .filter(|name| !new.contains_key(*name))
            .map(|name| format!("-{name}")),
    );
    items.join(" ")
}

/// The changes a reload applies, as [`StackChange`] items.
fn describe(old: &ApiModel, new: &ApiModel) -> StackChange {
    let mut items = Vec::new();
    let routes = names_changed(old.routes.iter(), new.routes.iter());
    if !routes.is_empty() {
        items.push(format!("routes {routes}"));
    }
    let functions = names_changed(
        old.functions.values().map(|f| (&f.name, f)),
        new.functions.values().map(|f| (&f.name, f)),
    );
    if !functions.is_empty() {
        items.push(format!("functions {functions}"));
    }
    let tables = names_changed(
        old.tables.iter().map(|t| (&t.name, t)),
        new.tables.iter().map(|t| (&t.name, t)),
    );
    if !tables.is_empty() {
        items.push(format!("tables {tables}"));
    }
    if old.stage != new.stage {
        items.push("stage settings".to_owned());
    }
    if old.selection != new.selection {
        items.push("route selection".to_owned());
    }
    StackChange { items }
}
