//! IAM, enforced locally: each function's role from the template, the signature of every call
//! its process makes, and whether a statement allows the action on the resource.
//!
//! Each function's processes get credentials of their own; the AWS stand-ins (DynamoDB, Secrets
//! Manager, @connections) ask the [`Guard`] about every request before serving it. The
//! developer's key (the one tests and tools use) is allowed everything, as an administrator.

pub mod actions;
pub mod policy;
pub mod sigv4;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::SystemTime;

use rand::distr::{Alphanumeric, SampleString};
use tracing::warn;

use actions::{Access, ActionError, Arns};
use policy::{Decision, PolicyError, PolicySet};
use sigv4::{SignatureError, SignedRequest};

use crate::template::FunctionSpec;

/// The credentials a function's processes sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: String,
    /// `AWS_SECRET_ACCESS_KEY`, made up at each start.
    pub secret_access_key: String,
}

/// Who may call: a function (checked against its role) or the developer (allowed everything).
#[derive(Debug)]
struct Principal {
    /// The function's logical id; `None` for the developer.
    function: Option<String>,
    /// `arn:aws:sts::ACCOUNT:assumed-role/ROLE/FUNCTION`, as AWS names the caller in errors.
    caller_arn: String,
    secret: String,
    /// `None`: not checked (the developer, or a function the template gives no role).
    policies: Option<PolicySet>,
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The signature does not check out.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The request is not one whose permissions can be worked out.
    #[error(transparent)]
    Malformed(#[from] ActionError),
    /// No statement allows the access, or one denies it.
    #[error("User: {caller} is not authorized to perform: {} on resource: {} because {}", access.action, access.resource, reason(statement.as_deref(), &access.action))]
    Denied {
        /// The caller's assumed-role ARN.
        caller: String,
        /// What was asked.
        access: Access,
        /// The statement that denies it explicitly; `None` when nothing allows it.
        statement: Option<String>,
    },
}

fn reason(statement: Option<&str>, action: &str) -> String {
    match statement {
        Some(_) => "of an explicit deny in an identity-based policy".to_owned(),
        None => format!("no identity-based policy allows the {action} action"),
    }
}

/// A request that passed: the function that made it (`None` for the developer).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The function's logical id.
    pub function: Option<String>,
}

/// One refused access, as the gateway logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The function's logical id.
    pub function: String,
    /// The action asked for (`dynamodb:PutItem`).
    pub action: String,
    /// The resource it was asked on.
    pub resource: String,
}

/// The most denials kept for [`Guard::denials`]: enough for a test or a look after a run.
const DENIALS_KEPT: usize = 256;

/// Every principal by access key, and what the checks need to build ARNs.
#[derive(Debug)]
pub struct Guard {
    /// Replaced whole by a reload of the template; a function that stays keeps its credentials,
    /// so its running processes go on signing with them.
    principals: ArcSwap<HashMap<String, Principal>>,
    denials: Mutex<VecDeque<Denial>>,
    /// The ARNs of the local account and region.
    pub arns: Arns,
}

/// What the access key ids of functions start with (then 11 digits: 20 characters, as AWS's).
const KEY_PREFIX: &str = "ASIALOCAL";

/// The principals of `functions` (and the developer), reusing the credentials `previous`
/// gave each function it knew; one line per thing the checks cannot evaluate.
fn principals<'a>(
    functions: impl IntoIterator<Item = &'a FunctionSpec>,
    arns: &Arns,
    developer_key: &str,
    previous: &HashMap<String, Principal>,
) -> Result<(HashMap<String, Principal>, Vec<String>), RoleError> {
    let mut principals = HashMap::new();
    let mut notes = Vec::new();
    principals.insert(
        developer_key.to_owned(),
        Principal {
            function: None,
            caller_arn: format!("arn:aws:iam::{}:root", arns.account_id),
            secret: developer_key.to_owned(),
            policies: None,
        },
    );
    let known = |logical_id: &str| {
        previous
            .iter()
            .find(|(_, p)| p.function.as_deref() == Some(logical_id))
            .map(|(key, p)| (key.clone(), p.secret.clone()))
    };
    // Past every key handed out so far: a process of a removed function must not sign as a new one.
    let mut next_key = previous
        .keys()
        .filter_map(|key| key.strip_prefix(KEY_PREFIX)?.parse::<usize>().ok())
        .max()
        .unwrap_or(0);
    for function in functions {
        let (access_key_id, secret_access_key) = known(&function.logical_id).unwrap_or_else(|| {
            next_key += 1;
            (
                format!("{KEY_PREFIX}{next_key:011}"),
                Alphanumeric.sample_string(&mut rand::rng(), 40),
            )
        });
        let (caller_arn, policies) = match &function.role {
            Some(role) => {
                let set = PolicySet::parse(role.policies.iter().map(|(n, d)| (n.clone(), d)))
                    .map_err(|source| RoleError {
                        function: function.logical_id.clone(),
                        source,
                    })?;
                for line in set.unsupported_conditions() {
                    notes.push(format!("function {}: {line}", function.logical_id));
                }
                for arn in &role.managed_policy_arns {
                    notes.push(format!(
                        "function {}: managed policy {arn} is not in the template: what it grants is not allowed locally",
                        function.logical_id
                    ));
                }
                let caller = format!(
                    "arn:aws:sts::{}:assumed-role/{}/{}",
                    arns.account_id, role.name, function.name
                );
                (caller, Some(set))
            }
            None => {
                notes.push(format!(
                    "function {} has no role in the template: its AWS calls are not checked",
                    function.logical_id
                ));
                (format!("arn:aws:iam::{}:root", arns.account_id), None)
            }
        };
        principals.insert(
            access_key_id,
            Principal {
                function: Some(function.logical_id.clone()),
                caller_arn,
                secret: secret_access_key,
                policies,
            },
        );
    }
    Ok((principals, notes))
}

/// Why the roles cannot be enforced.
#[derive(Debug, thiserror::Error)]
#[error("function {function}: {source}")]
pub struct RoleError {
    function: String,
    source: PolicyError,
}

impl Guard {
    /// Credentials and policies for every function; `developer_key` signs with itself as its
    /// secret and is allowed everything. Returns the guard and one line per thing the checks
    /// cannot evaluate (conditions, AWS managed policies, functions without a role).
    pub fn new<'a>(
        functions: impl IntoIterator<Item = &'a FunctionSpec>,
        arns: Arns,
        developer_key: &str,
    ) -> Result<(Self, Vec<String>), RoleError> {
        let (principals, notes) = principals(functions, &arns, developer_key, &HashMap::new())?;
        Ok((
            Self {
                principals: ArcSwap::from_pointee(principals),
                denials: Mutex::new(VecDeque::new()),
                arns,
            },
            notes,
        ))
    }

    /// Checks calls against the roles of `functions` from now on (a reloaded template). A
    /// function the guard already knows keeps its credentials; a new one gets its own. Nothing
    /// changes when a role cannot be enforced.
    pub fn update<'a>(
        &self,
        functions: impl IntoIterator<Item = &'a FunctionSpec>,
        developer_key: &str,
    ) -> Result<Vec<String>, RoleError> {
        let current = self.principals.load();
        let (principals, notes) = principals(functions, &self.arns, developer_key, &current)?;
        self.principals.store(Arc::new(principals));
        Ok(notes)
    }

    /// The latest accesses refused for want of a permission, oldest first.
    pub fn denials(&self) -> Vec<Denial> {
        self.denials
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Whether the role of the function `logical_id` allows `access`, as a call asking for it
    /// would be checked; `None` when that function's calls are not checked (or it is unknown).
    pub fn allows(&self, logical_id: &str, access: &Access) -> Option<bool> {
        let principals = self.principals.load();
        let principal = principals
            .values()
            .find(|p| p.function.as_deref() == Some(logical_id))?;
        let decision = principal
            .policies
            .as_ref()?
            .evaluate(&access.action, &access.resource);
        Some(matches!(decision, Decision::Allow { .. }))
    }

    /// The credentials of the function `logical_id`'s processes.
    pub fn credentials(&self, logical_id: &str) -> Option<Credentials> {
        self.principals
            .load()
            .iter()
            .find(|(_, p)| p.function.as_deref() == Some(logical_id))
            .map(|(key, p)| Credentials {
                access_key_id: key.clone(),
                secret_access_key: p.secret.clone(),
            })
    }

    /// Verifies the request's signature for `service`, then checks every access it asks for
    /// against the signer's policies. A denial is logged once, naming function, action and
    /// resource.
    pub fn authorize(
        &self,
        request: &SignedRequest<'_>,
        service: &str,
        accesses: impl FnOnce() -> Result<Vec<Access>, ActionError>,
    ) -> Result<Caller, Refusal> {
        let principals = self.principals.load();
        let verified = sigv4::verify(
            request,
            &self.arns.region,
            service,
            SystemTime::now(),
            |key| principals.get(key).map(|p| p.secret.clone()),
        )?;
        let Some(principal) = principals.get(&verified.access_key_id) else {
            return Err(SignatureError::UnrecognizedClient.into());
        };
        let caller = Caller {
            function: principal.function.clone(),
        };
        let Some(policies) = &principal.policies else {
            return Ok(caller);
        };
        for access in accesses()? {
            let statement = match policies.evaluate(&access.action, &access.resource) {
                Decision::Allow { .. } => continue,
                Decision::ExplicitDeny { statement } => Some(statement),
                Decision::ImplicitDeny => None,
            };
            warn!(
                function = principal.function.as_deref().unwrap_or_default(),
                action = %access.action,
                resource = %access.resource,
                "AccessDenied: {}",
                match &statement {
                    Some(s) => format!("statement {s} denies it"),
                    None => "no statement of the function's role allows it".to_owned(),
                }
            );
            let function = principal.function.clone().unwrap_or_default();
            let mut denials = self
                .denials
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if denials.len() == DENIALS_KEPT {
                denials.pop_front();
            }
            denials.push_back(Denial {
                function,
                action: access.action.clone(),
                resource: access.resource.clone(),
            });
            drop(denials);
            return Err(Refusal::Denied {
                caller: principal.caller_arn.clone(),
                access,
                statement,
            });
        }
        Ok(caller)
    }
}
