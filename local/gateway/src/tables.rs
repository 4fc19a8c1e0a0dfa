//! Creates the template's tables in DynamoDB Local, with their indexes and TTL.

use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use tracing::{debug, info};

use crate::template::{self, TableSpec};

/// The static credentials every local process uses; DynamoDB Local and the gateway accept any.
pub use realtime_aws::clients::LOCAL_ACCESS_KEY;

/// Why a table could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A key schema or attribute in the template is not valid for DynamoDB.
    #[error("table {table}: {problem}")]
    Invalid {
        /// The table name.
        table: String,
        /// What is wrong.
        problem: String,
    },
    /// DynamoDB Local refused the request.
    #[error("table {table}: {operation} failed: {message}")]
    Request {
        /// The table name.
        table: String,
        /// The operation.
        operation: &'static str,
        /// The error.
        message: String,
    },
}

/// A DynamoDB client for DynamoDB Local at `endpoint`, built as the handlers' adapters build theirs.
pub fn local_client(endpoint: &str, region: &str) -> Client {
    realtime_aws::clients::local_dynamodb(endpoint, region, Duration::from_secs(10))
}

/// Creates every table that does not exist yet (data kept on disk may already hold them).
pub async fn create_all(client: &Client, tables: &[TableSpec]) -> Result<(), TableError> {
    for table in tables {
        create(client, table).await?;
    }
    Ok(())
}

async fn create(client: &Client, table: &TableSpec) -> Result<(), TableError> {
    let invalid = |problem: String| TableError::Invalid {
        table: table.name.clone(),
        problem,
    };
    let mut request = client
        .create_table()
        .table_name(&table.name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_key_schema(Some(key_schema(&table.key_schema).map_err(invalid)?));
    for attribute in &table.attribute_definitions {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&attribute.attribute_name)
                .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                .build()
                .map_err(|e| invalid(e.to_string()))?,
        );
    }
    for index in &table.global_secondary_indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema).map_err(invalid)?))
                .projection(projection(&index.projection))
                .build()
                .map_err(|e| invalid(e.to_string()))?,
        );
    }
    for index in &table.local_secondary_indexes {
        request = request.local_secondary_indexes(
            LocalSecondaryIndex::builder()
                .index_name(&index.index_name)
                .set_key_schema(Some(key_schema(&index.key_schema).map_err(invalid)?))
                .projection(projection(&index.projection))
                .build()
                .map_err(|e| invalid(e.to_string()))?,
        );
    }
    match request.send().await {
        Ok(_) => info!(table = %table.name, "created table"),
        Err(SdkError::ServiceError(e)) if e.err().is_resource_in_use_exception() => {
            debug!(table = %table.name, "table exists already");
        }
        Err(error) => return Err(request_error(table, "CreateTable", &error)),
    }
    if let Some(attribute) = &table.ttl_attribute {
        let result = client
            .update_time_to_live()
            .table_name(&table.name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(attribute)
                    .enabled(true)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            )
            .send()
            .await;
        match result {
            Ok(_) => {}
            // Kept data already has TTL on: DynamoDB refuses to enable it twice.
            Err(SdkError::ServiceError(e))
                if e.err()
                    .message()
                    .is_some_and(|m| m.contains("already enabled")) => {}
            Err(error) => return Err(request_error(table, "UpdateTimeToLive", &error)),
        }
    }
    Ok(())
}

fn request_error<E: std::error::Error + 'static, R: std::fmt::Debug>(
    table: &TableSpec,
    operation: &'static str,
    error: &SdkError<E, R>,
) -> TableError {
    TableError::Request {
        table: table.name.clone(),
        operation,
        message: aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
    }
}

fn key_schema(elements: &[template::KeyElement]) -> Result<Vec<KeySchemaElement>, String> {
    elements
        .iter()
        .map(|e| {
            KeySchemaElement::builder()
                .attribute_name(&e.attribute_name)
                .key_type(KeyType::from(e.key_type.as_str()))
                .build()
                .map_err(|err| err.to_string())
        })
        .collect()
}

fn projection(p: &template::Projection) -> Projection {
    let kind = p.projection_type.as_deref().unwrap_or("ALL");
    let mut builder = Projection::builder().projection_type(ProjectionType::from(kind));
    for attribute in &p.non_key_attributes {
        builder = builder.non_key_attributes(attribute);
    }
    builder.build()
}
