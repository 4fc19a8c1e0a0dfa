//! What the services' unit tests share: a table keyed as the handlers' tables are, and the
//! scopes and consumption plans read from it.

use crate::services::consumption::{plan, Plan};
use crate::services::scopes::Scopes;
use crate::template::{KeyElement, SecondaryIndex, TableSpec};

/// The key element `name` of type `key_type` (`HASH` or `RANGE`).
pub(crate) fn key(name: &str, key_type: &str) -> KeyElement {
    KeyElement {
        attribute_name: name.into(),
        key_type: key_type.into(),
    }
}

/// Index `name` over `key_schema`, projecting the default.
pub(crate) fn index(name: &str, key_schema: Vec<KeyElement>) -> SecondaryIndex {
    SecondaryIndex {
        index_name: name.into(),
        key_schema,
        projection: Default::default(),
    }
}

/// Table `name` (also its logical id), on demand: key `pk` and `sk`, a global index `byUser`
/// on `user`, no local index.
pub(crate) fn table(name: &str) -> TableSpec {
    TableSpec {
        logical_id: name.into(),
        name: name.into(),
        key_schema: vec![key("pk", "HASH"), key("sk", "RANGE")],
        attribute_definitions: vec![],
        global_secondary_indexes: vec![index("byUser", vec![key("user", "HASH")])],
        local_secondary_indexes: vec![],
        ttl_attribute: None,
        on_demand: true,
    }
}

/// The scopes of two such tables, `conns` and `audit`, whose ARNs are `arn:table/NAME`.
pub(crate) fn scopes() -> Scopes {
    Scopes::new(&[table("conns"), table("audit")], |n| {
        format!("arn:table/{n}")
    })
}

/// The plan of operation `op` with request `body`, which must be one that is counted.
pub(crate) fn plan_of<'a>(scopes: &Scopes, op: &str, body: &'a str) -> Plan<'a> {
    plan(scopes, op, body.as_bytes()).unwrap_or_else(|| panic!("{op} is counted: {body}"))
}
