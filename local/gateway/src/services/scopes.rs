//! The template's tables and their global secondary indexes, as the DynamoDB proxy meets them
//! in requests: by name or ARN, each with its partition key attribute. An index has partitions
//! of its own, so its keys are counted apart from the table's.

use std::collections::HashMap;

use crate::template::TableSpec;

/// What the counts are kept under: a table, or a global secondary index (its own partitions).
#[derive(Debug)]
pub(crate) struct Scope {
    /// `table`, or `table/index/name`: how reports and warnings name it.
    pub(crate) label: String,
    /// The table's name.
    pub(crate) table: String,
    /// The partition key attribute.
    pub(crate) hash_key: String,
    /// The table's or index's ARN, the `resource` of a throttling reason.
    pub(crate) arn: String,
    /// An index: its throttling reasons say `Index...`.
    pub(crate) index: bool,
    /// Billed per request: DynamoDB names its throttle `ThrottlingException` then.
    pub(crate) on_demand: bool,
}

/// The template's tables and indexes, found by the names requests give.
#[derive(Debug, Default)]
pub(crate) struct Scopes {
    list: Vec<Scope>,
    by_table: HashMap<String, usize>,
    /// By table scope: each global secondary index's name and scope, and each local one's name
    /// (the table's own partitions).
    indexes: HashMap<usize, Vec<(String, usize)>>,
}

impl Scopes {
    /// The scopes of `tables`, with ARNs from `table_arn`.
    pub(crate) fn new(tables: &[TableSpec], table_arn: impl Fn(&str) -> String) -> Self {
        let mut scopes = Self::default();
        let hash = |keys: &[crate::template::KeyElement]| {
            keys.iter()
                .find(|k| k.key_type == "HASH")
                .map(|k| k.attribute_name.clone())
        };
        for table in tables {
            let Some(hash_key) = hash(&table.key_schema) else {
                continue;
            };
            let arn = table_arn(&table.name);
            let id = scopes.push(Scope {
                label: table.name.clone(),
                table: table.name.clone(),
                hash_key,
                arn: arn.clone(),
                index: false,
                on_demand: table.on_demand,
            });
            scopes.by_table.insert(table.name.clone(), id);
            let mut indexes = Vec::new();
            for index in &table.global_secondary_indexes {
                let Some(hash_key) = hash(&index.key_schema) else {
                    continue;
                };
                let scope = scopes.push(Scope {
                    label: format!("{}/index/{}", table.name, index.index_name),
                    table: table.name.clone(),
                    hash_key,
                    arn: format!("{arn}/index/{}", index.index_name),
                    index: true,
                    on_demand: table.on_demand,
                });
                indexes.push((index.index_name.clone(), scope));
            }
            for index in &table.local_secondary_indexes {
                indexes.push((index.index_name.clone(), id));
            }
            scopes.indexes.insert(id, indexes);
        }
        scopes
    }

    fn push(&mut self, scope: Scope) -> usize {
        self.list.push(scope);
        self.list.len() - 1
    }

    /// The table a request's `TableName` (a name or an ARN) names.
    pub(crate) fn table(&self, name: &str) -> Option<usize> {
        let name = name.rsplit_once(":table/").map_or(name, |(_, n)| n);
        self.by_table.get(name).copied()
    }

    /// The scope of index `name` of `table`.
    pub(crate) fn index(&self, table: usize, name: &str) -> Option<usize> {
        self.indexes
            .get(&table)?
            .iter()
            .find_map(|(n, scope)| (n == name).then_some(*scope))
    }

    pub(crate) fn get(&self, id: usize) -> &Scope {
        &self.list[id]
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::fixtures::{index, key, table};

    /// The shared test table, with a local index `byTime` too, provisioned.
    fn table_with_local_index(name: &str) -> TableSpec {
        TableSpec {
            local_secondary_indexes: vec![index(
                "byTime",
                vec![key("pk", "HASH"), key("t", "RANGE")],
            )],
            on_demand: false,
            ..table(name)
        }
    }

    #[test]
    fn scopes_find_tables_by_name_or_arn_and_indexes_by_name() {
        let scopes = Scopes::new(&[table_with_local_index("chat")], |n| {
            format!("arn:aws:dynamodb:r:a:table/{n}")
        });
        assert_eq!(scopes.table("chat"), Some(0));
        assert_eq!(scopes.table("arn:aws:dynamodb:r:a:table/chat"), Some(0));
        assert_eq!(scopes.table("other"), None);
        let index = scopes.index(0, "byUser").expect("the index");
        assert_eq!(scopes.get(index).label, "chat/index/byUser");
        assert_eq!(scopes.get(index).hash_key, "user");
        assert_eq!(
            scopes.get(index).arn,
            "arn:aws:dynamodb:r:a:table/chat/index/byUser"
        );
        assert!(scopes.get(index).index);
        // A local index reads the table's own partitions.
        assert_eq!(scopes.index(0, "byTime"), Some(0));
        assert_eq!(scopes.index(0, "missing"), None);
    }
}
