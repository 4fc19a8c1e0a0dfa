//! SQS and Lambda's SQS event source mapping, emulated from the template: the queues' settings
//! and intrinsics as the template reader gives them, the local SQS as aws-sdk-sqs sees it
//! (its errors decoded into the SDK's typed errors, every call checked against the caller's
//! role), and the mapping's poller as Lambda runs it (batch size, maximum concurrency, partial
//! batch failures, the visibility timeout, redrive to the dead-letter queue). Every test
//! asserts outcomes (counts, deliveries, states), never how long something took.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use local_gateway::template::{Template, TemplateError};
use local_gateway::{DynamoDb, Gateway, StartError};
use serde_json::{json, Value};
use support::*;

/// Long enough for a few visibility timeouts of two seconds on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(30);

const WORK_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:Realtime-dev-Work";

/// A stack of one WebSocket API whose `$default` route runs `Producer` (whose role may send
/// to `Work`), and the test handler as `Consumer`, fed from `Work` by the mapping `Mapping`
/// (batches reporting item failures), `Work` redriving to `Dead` after 3 receives; then each
/// `(resource, property, value)` of `changes` set.
fn stack(changes: &[(&str, &str, Value)]) -> Value {
    let handler = test_handler().display().to_string();
    let role = |statements: Value| {
        json!({"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "inline", "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}]
        }})
    };
    let mut template = json!({"Resources": {
        "Api": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {
            "Name": "queues", "ProtocolType": "WEBSOCKET", "RouteSelectionExpression": "$request.body.action"}},
        "DefaultRoute": {"Type": "AWS::ApiGatewayV2::Route", "Properties": {
            "ApiId": {"Ref": "Api"}, "RouteKey": "$default",
            "Target": {"Fn::Join": ["", ["integrations/", {"Ref": "ProducerIntegration"}]]}}},
        "ProducerIntegration": {"Type": "AWS::ApiGatewayV2::Integration", "Properties": {
            "ApiId": {"Ref": "Api"}, "IntegrationType": "AWS_PROXY",
            "IntegrationUri": {"Fn::Join": ["", ["arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/", {"Fn::GetAtt": ["Producer", "Arn"]}, "/invocations"]]}}},
        // Two seconds: more than a batch may wait for its window (1 s) and run (at most 1 s).
        "Work": {"Type": "AWS::SQS::Queue", "Properties": {
            "VisibilityTimeout": 2,
            "SqsManagedSseEnabled": true,
            "RedrivePolicy": redrive_after(3)}},
        "WorkPolicy": {"Type": "AWS::SQS::QueuePolicy", "Properties": {
            "Queues": [{"Ref": "Work"}],
            "PolicyDocument": {"Statement": [{"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:*", "Resource": {"Fn::GetAtt": ["Work", "Arn"]}, "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]}}},
        "Dead": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 1_209_600}},
        "ProducerRole": role(json!([{"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes"], "Resource": {"Fn::GetAtt": ["Work", "Arn"]}}])),
        "Producer": {"Type": "AWS::Lambda::Function", "Properties": {
            "Role": {"Fn::GetAtt": ["ProducerRole", "Arn"]}, "Timeout": 1,
            "Environment": {"Variables": {"FANOUT_QUEUE_URL": {"Ref": "Work"}}}},
            "Metadata": {"local:binary": handler}},
        "ConsumerRole": role(json!([{"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], "Resource": {"Fn::GetAtt": ["Work", "Arn"]}}])),
        "Consumer": {"Type": "AWS::Lambda::Function", "Properties": {
            "Role": {"Fn::GetAtt": ["ConsumerRole", "Arn"]}, "Timeout": 1,
            "Environment": {"Variables": {
                "QUEUE_NAME": {"Fn::GetAtt": ["Work", "QueueName"]},
                "QUEUE_URL": {"Fn::GetAtt": ["Work", "QueueUrl"]},
                "DEAD_LETTER_ARN": {"Fn::GetAtt": ["Dead", "Arn"]}}}},
            "Metadata": {"local:binary": handler}},
        "Mapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Work", "Arn"]},
            "FunctionName": {"Ref": "Consumer"},
            "BatchSize": 10,
            "MaximumBatchingWindowInSeconds": 1,
            "FunctionResponseTypes": ["ReportBatchItemFailures"]}}
    }});
    for (id, key, value) in changes {
        template["Resources"][*id]["Properties"][*key] = value.clone();
    }
    template
}

/// The change of [`stack`] that switches the mapping off: nothing consumes `Work`.
fn mapping_disabled() -> (&'static str, &'static str, Value) {
    ("Mapping", "Enabled", json!(false))
}

/// A redrive policy of `Work`: to `Dead` after `max_receive_count` receives.
fn redrive_after(max_receive_count: u32) -> Value {
    json!({"deadLetterTargetArn": {"Fn::GetAtt": ["Dead", "Arn"]}, "maxReceiveCount": max_receive_count})
}

/// The one statement of role `role`'s inline policy in `template`.
fn statement<'t>(template: &'t mut Value, role: &str) -> &'t mut Value {
    &mut template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]
}

/// What the consumer's test handler logs: each event, then an end line after each batch.
struct EventLog(PathBuf);

impl EventLog {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "local-gateway-queues-{name}-{}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        Self(path)
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.0)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The records of each SQS batch delivered so far, in order.
    fn batches(&self) -> Vec<Vec<Value>> {
        self.lines()
            .into_iter()
            .filter_map(|l| l["Records"].as_array().cloned())
            .collect()
    }

    /// The bodies of each batch, in order.
    fn bodies(&self) -> Vec<Vec<String>> {
        self.batches()
            .iter()
            .map(|b| {
                b.iter()
                    .map(|r| r["body"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .collect()
    }

    /// The most batches the handler worked on at once.
    fn most_at_once(&self) -> usize {
        let (mut now, mut most) = (0usize, 0usize);
        for line in self.lines() {
            if line["Records"].is_array() {
                now += 1;
                most = most.max(now);
            } else if line["end"] == "sqs" {
                now = now.saturating_sub(1);
            }
        }
        most
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts the gateway on `template`; the consumer logs to `log`. The template has no table:
/// the DynamoDB of `with-dynamodb` serves, when there is one.
async fn start_stack(template: &Value, log: Option<&EventLog>) -> Gateway {
    start(write_template(template), |options| {
        if let Ok(endpoint) = std::env::var("TEST_DYNAMODB_ENDPOINT") {
            options.dynamodb = DynamoDb::External(endpoint);
        }
        if let Some(log) = log {
            options
                .extra_env
                .insert("TEST_EVENT_LOG".into(), log.0.display().to_string());
        }
    })
    .await
}

/// An SQS client signing as the function `logical_id`, at the gateway's SQS.
fn sqs(gateway: &Gateway, logical_id: &str) -> aws_sdk_sqs::Client {
    let own = gateway
        .function_credentials(logical_id)
        .unwrap_or_else(|| panic!("{logical_id} has credentials"));
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            own.access_key_id,
            own.secret_access_key,
            None,
            None,
            "queues",
        ))
        .endpoint_url(gateway.secrets_manager_endpoint())
        .http_client(realtime_aws::clients::http_client())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Sends each body in one `SendMessageBatch` as `Producer`.
async fn send_batch(gateway: &Gateway, bodies: &[&str]) {
    let entries = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(*body)
                .build()
                .expect("entry")
        })
        .collect();
    let sent = sqs(gateway, "Producer")
        .send_message_batch()
        .queue_url(gateway.queue_url("Work").expect("Work"))
        .set_entries(Some(entries))
        .send()
        .await
        .expect("the producer may send");
    assert_eq!(sent.successful().len(), bodies.len(), "{sent:?}");
}

/// Waits until `check` gives something, within [`PATIENCE`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the queue `id` holds nothing at all.
async fn drained(gateway: &Gateway, id: &str) {
    eventually(&format!("{id} empty"), || {
        let counts = gateway.queue_counts(id).expect("queue");
        (counts.visible + counts.in_flight + counts.delayed == 0).then_some(())
    })
    .await;
}

fn ctx() -> local_gateway::template::LocalContext {
    local_gateway::template::LocalContext {
        services_endpoint: "http://127.0.0.1:4566".into(),
        ..local_context()
    }
}

fn read(template: &Value) -> Result<local_gateway::template::ApiModel, TemplateError> {
    let bytes = serde_json::to_vec(template).expect("JSON");
    Template::from_slice(Path::new("Realtime-dev.template.json"), &bytes)?.api("dev", &ctx())
}

// ---------- the template ----------

#[test]
fn queues_and_mappings_are_read_with_their_local_values() {
    let template = stack(&[("Dead", "QueueName", json!("dead-letters"))]);
    let api = read(&template).expect("the stack reads");

    let work = api
        .queues
        .iter()
        .find(|q| q.logical_id == "Work")
        .expect("Work");
    assert_eq!(work.name, "Realtime-dev-Work", "a stable stand-in name");
    assert_eq!(
        work.url,
        "http://127.0.0.1:4566/000000000000/Realtime-dev-Work"
    );
    assert_eq!(work.arn, WORK_ARN);
    assert_eq!(work.visibility_timeout, Duration::from_secs(2));
    let redrive = work.redrive.as_ref().expect("a redrive policy");
    assert_eq!(
        (
            redrive.dead_letter_queue.as_str(),
            redrive.max_receive_count
        ),
        ("Dead", 3)
    );

    let dead = api
        .queues
        .iter()
        .find(|q| q.logical_id == "Dead")
        .expect("Dead");
    assert_eq!(dead.name, "dead-letters");
    assert_eq!(dead.arn, "arn:aws:sqs:us-east-1:000000000000:dead-letters");
    assert_eq!(dead.retention, Duration::from_secs(1_209_600));
    // SQS's defaults for what the queue leaves out.
    assert_eq!(dead.visibility_timeout, Duration::from_secs(30));
    assert_eq!(dead.delay, Duration::ZERO);
    assert_eq!(dead.max_message_bytes, 1_048_576);
    assert_eq!(dead.redrive, None);

    // `Ref` of a queue is its URL; its name and URL are attributes too.
    let producer = &api.functions["Producer"];
    assert_eq!(producer.environment["FANOUT_QUEUE_URL"], work.url);
    let consumer = &api.functions["Consumer"];
    assert_eq!(consumer.environment["QUEUE_NAME"], "Realtime-dev-Work");
    assert_eq!(consumer.environment["QUEUE_URL"], work.url);
    assert_eq!(consumer.environment["DEAD_LETTER_ARN"], dead.arn);

    // The mapped function runs though no route invokes it.
    let [mapping] = api.event_source_mappings.as_slice() else {
        panic!("one mapping: {:?}", api.event_source_mappings);
    };
    assert_eq!(
        (mapping.queue.as_str(), mapping.function.as_str()),
        ("Work", "Consumer")
    );
    assert_eq!(mapping.batch_size, 10);
    assert_eq!(mapping.batching_window, Duration::from_secs(1));
    assert!(mapping.report_batch_item_failures && mapping.enabled);
    assert_eq!(mapping.max_concurrency, None);

    // Lambda's defaults for what the mapping leaves out; a redrive policy as a JSON string.
    let mut template = stack(&[(
        "Work",
        "RedrivePolicy",
        json!({"Fn::Join": ["", ["{\"deadLetterTargetArn\":\"", {"Fn::GetAtt": ["Dead", "Arn"]}, "\",\"maxReceiveCount\":\"5\"}"]]}),
    )]);
    let properties = json!({"EventSourceArn": {"Fn::GetAtt": ["Work", "Arn"]}, "FunctionName": "Realtime-dev-Consumer"});
    template["Resources"]["Mapping"]["Properties"] = properties;
    let api = read(&template).expect("the stack reads");
    let mapping = &api.event_source_mappings[0];
    assert_eq!(mapping.function, "Consumer", "found by its name");
    assert_eq!(mapping.batch_size, 10);
    assert_eq!(mapping.batching_window, Duration::ZERO);
    assert!(!mapping.report_batch_item_failures && mapping.enabled);
    let work = api
        .queues
        .iter()
        .find(|q| q.logical_id == "Work")
        .expect("Work");
    assert_eq!(work.redrive.as_ref().map(|r| r.max_receive_count), Some(5));

    // A template without queues reads as before.
    let mut template = stack(&[]);
    statement(&mut template, "ProducerRole")["Resource"] = json!("*");
    let resources = template["Resources"].as_object_mut().expect("resources");
    resources.retain(|_, r| {
        !matches!(
            r["Type"].as_str(),
            Some("AWS::SQS::Queue" | "AWS::SQS::QueuePolicy" | "AWS::Lambda::EventSourceMapping")
        )
    });
    if let Some(env) =
        resources["Producer"]["Properties"]["Environment"]["Variables"].as_object_mut()
    {
        env.clear();
    }
    resources.remove("Consumer");
    let api = read(&template).expect("the stack reads");
    assert!(api.queues.is_empty() && api.event_source_mappings.is_empty());
}

#[test]
fn settings_aws_refuses_fail_to_start_naming_the_resource() {
    // (the resource named, the properties set: resource, property, value; what the error says)
    let redrive_to = |target: Value| json!({"deadLetterTargetArn": target, "maxReceiveCount": 3});
    let cases = [
        (
            "Work",
            vec![("Work", "VisibilityTimeout", json!(43_201))],
            "VisibilityTimeout must be a whole number from 0 to 43200",
        ),
        (
            "Work",
            vec![("Work", "DelaySeconds", json!("soon"))],
            "DelaySeconds",
        ),
        (
            "Work",
            vec![("Work", "MessageRetentionPeriod", json!(59))],
            "MessageRetentionPeriod",
        ),
        ("Work", vec![("Work", "FifoQueue", json!(true))], "FIFO"),
        (
            "Work",
            vec![("Work", "QueueName", json!("no spaces"))],
            "QueueName",
        ),
        (
            "Work",
            vec![(
                "Work",
                "RedrivePolicy",
                redrive_to(json!("arn:aws:sqs:us-east-1:000000000000:elsewhere")),
            )],
            "not a queue of the template",
        ),
        (
            "Work",
            vec![(
                "Work",
                "RedrivePolicy",
                json!({"deadLetterTargetArn": {"Fn::GetAtt": ["Dead", "Arn"]}}),
            )],
            "maxReceiveCount",
        ),
        (
            "Work",
            vec![("Work", "RedrivePolicy", json!(["not", "an", "object"]))],
            "RedrivePolicy must be an object",
        ),
        (
            "Mapping",
            vec![("Mapping", "BatchSize", json!(0))],
            "BatchSize",
        ),
        (
            "Mapping",
            vec![
                ("Mapping", "BatchSize", json!(100)),
                ("Mapping", "MaximumBatchingWindowInSeconds", json!(0)),
            ],
            "MaximumBatchingWindowInSeconds of at least 1",
        ),
        (
            "Mapping",
            vec![("Mapping", "ScalingConfig", json!({"MaximumConcurrency": 1}))],
            "MaximumConcurrency",
        ),
        (
            "Mapping",
            vec![("Mapping", "FunctionResponseTypes", json!(["Everything"]))],
            "FunctionResponseTypes",
        ),
        (
            "Mapping",
            vec![("Mapping", "Enabled", json!("maybe"))],
            "Enabled",
        ),
        (
            "Mapping",
            vec![("Mapping", "FunctionName", json!("not-in-this-stack"))],
            "not a function of the template",
        ),
        (
            "Mapping",
            vec![("Consumer", "Timeout", json!(3))],
            "Queue visibility timeout: 2 seconds is less than Function timeout: 3 seconds",
        ),
    ];
    for (resource, changes, wanted) in cases {
        let error = read(&stack(&changes)).expect_err(wanted).to_string();
        assert!(
            error.contains(&format!("resource {resource}")) && error.contains(wanted),
            "{wanted}: {error}"
        );
    }
    // A mapping of another source is not ours: left out, not refused.
    let template = stack(&[(
        "Mapping",
        "EventSourceArn",
        json!("arn:aws:kinesis:us-east-1:000000000000:stream/s"),
    )]);
    let api = read(&template).expect("the stack reads");
    assert!(api.event_source_mappings.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapping_whose_role_cannot_receive_is_refused_at_start() {
    let mut template = stack(&[]);
    statement(&mut template, "ConsumerRole")["Action"] =
        json!(["sqs:ReceiveMessage", "sqs:GetQueueAttributes"]);
    let path = write_template(&template);
    let mut options = local_gateway::Options::new(path.clone());
    options.port = 0;
    options.stage = Some("dev".into());
    options.bin_dir = bin_dir();
    let error = Gateway::start(options)
        .await
        .expect_err("Lambda refuses the mapping");
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(matches!(error, StartError::Mapping(_)), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("Mapping") && text.contains("sqs:DeleteMessage") && text.contains(WORK_ARN),
        "{text}"
    );
}

// ---------- the local SQS, as aws-sdk-sqs sees it ----------

#[tokio::test(flavor = "multi_thread")]
async fn sending_needs_sqs_send_message_in_the_callers_role() {
    let gateway = start_stack(&stack(&[mapping_disabled()]), None).await;
    let url = gateway.queue_url("Work").expect("Work");

    // The producer may: SQS's answer, with the body's MD5.
    let sent = sqs(&gateway, "Producer")
        .send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .expect("the producer may send");
    assert_eq!(
        sent.md5_of_message_body(),
        Some("5d41402abc4b2a76b9719d911017c592")
    );
    assert!(sent.message_id().is_some_and(|id| !id.is_empty()));

    // The consumer's role grants no sqs:SendMessage: refused, for the batch form too.
    let consumer = sqs(&gateway, "Consumer");
    let error = consumer
        .send_message()
        .queue_url(&url)
        .message_body("hello")
        .send()
        .await
        .expect_err("the consumer may not send");
    assert_eq!(error.code(), Some("AccessDenied"), "{error:?}");
    let text = error.message().unwrap_or_default();
    assert!(text.contains("is not authorized to perform: sqs:SendMessage on resource: arn:aws:sqs:us-east-1:000000000000:Realtime-dev-Work"), "{text}");
    let entry = SendMessageBatchRequestEntry::builder()
        .id("a")
        .message_body("hello")
        .build()
        .expect("entry");
    let error = consumer
        .send_message_batch()
        .queue_url(&url)
        .entries(entry)
        .send()
        .await
        .expect_err("nor in a batch");
    assert_eq!(error.code(), Some("AccessDenied"));

    let denials = gateway.denials();
    assert_eq!(denials.len(), 2, "{denials:?}");
    for denial in &denials {
        assert_eq!(
            (
                denial.function.as_str(),
                denial.action.as_str(),
                denial.resource.as_str()
            ),
            ("Consumer", "sqs:SendMessage", WORK_ARN)
        );
    }
    assert_eq!(gateway.queue_counts("Work").map(|c| c.visible), Some(1));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_errors_decode_as_the_sdks_typed_errors() {
    let mut template = stack(&[mapping_disabled()]);
    // The producer may send anywhere: what fails below is SQS's refusal, not IAM's.
    statement(&mut template, "ProducerRole")["Resource"] = json!("*");
    let gateway = start_stack(&template, None).await;
    let client = sqs(&gateway, "Producer");
    let url = gateway.queue_url("Work").expect("Work");
    let missing = url.replace("Realtime-dev-Work", "nothing-here");

    let error = client
        .send_message()
        .queue_url(&missing)
        .message_body("x")
        .send()
        .await
        .expect_err("no such queue");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist()),
        "{error:?}"
    );
    let error = client
        .get_queue_attributes()
        .queue_url(&missing)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .expect_err("no such queue");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist()),
        "{error:?}"
    );

    // 1 MiB is the most (since 2025); one byte more is refused.
    let most = "x".repeat(1_048_576);
    client
        .send_message()
        .queue_url(&url)
        .message_body(&most)
        .send()
        .await
        .expect("1 MiB fits");
    let error = client
        .send_message()
        .queue_url(&url)
        .message_body(format!("{most}x"))
        .send()
        .await
        .expect_err("over 1 MiB");
    assert_eq!(error.code(), Some("InvalidParameterValue"), "{error:?}");
    assert!(error
        .message()
        .unwrap_or_default()
        .contains("1048576 bytes"));

    let entry = |id: &str| {
        SendMessageBatchRequestEntry::builder()
            .id(id)
            .message_body("x")
            .build()
            .expect("entry")
    };
    let batch = |entries: Vec<SendMessageBatchRequestEntry>| {
        client
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
    };
    let error = batch(vec![]).await.expect_err("empty");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_empty_batch_request()),
        "{error:?}"
    );
    let eleven = (0..11).map(|i| entry(&format!("e{i}"))).collect();
    let error = batch(eleven).await.expect_err("eleven");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_too_many_entries_in_batch_request()),
        "{error:?}"
    );
    let error = batch(vec![entry("same"), entry("same")])
        .await
        .expect_err("twice");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_batch_entry_ids_not_distinct()),
        "{error:?}"
    );
    let error = batch(vec![entry("not valid!")]).await.expect_err("bad id");
    assert!(
        error
            .as_service_error()
            .is_some_and(|e| e.is_invalid_batch_entry_id()),
        "{error:?}"
    );

    // Nothing refused was kept.
    assert_eq!(gateway.queue_counts("Work").map(|c| c.visible), Some(1));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_reports_each_entry_and_delays_hold_messages_back() {
    let gateway = start_stack(&stack(&[mapping_disabled()]), None).await;
    let client = sqs(&gateway, "Producer");
    let url = gateway.queue_url("Work").expect("Work");

    let attribute = MessageAttributeValue::builder()
        .data_type("String")
        .string_value("blue")
        .build()
        .expect("attribute");
    let entries = vec![
        SendMessageBatchRequestEntry::builder()
            .id("now")
            .message_body("now")
            .message_attributes("colour", attribute)
            .build()
            .expect("entry"),
        SendMessageBatchRequestEntry::builder()
            .id("later")
            .message_body("later")
            .delay_seconds(2)
            .build()
            .expect("entry"),
        SendMessageBatchRequestEntry::builder()
            .id("too-late")
            .message_body("too late")
            .delay_seconds(901)
            .build()
            .expect("entry"),
        SendMessageBatchRequestEntry::builder()
            .id("control")
            .message_body("bell \u{7}")
            .build()
            .expect("entry"),
    ];
    let sent = client
        .send_message_batch()
        .queue_url(&url)
        .set_entries(Some(entries))
        .send()
        .await
        .expect("the batch is taken");
    let ok: Vec<&str> = sent.successful().iter().map(|e| e.id()).collect();
    assert_eq!(ok, ["now", "later"]);
    let with_attributes = &sent.successful()[0];
    assert_eq!(with_attributes.md5_of_message_body(), md5_hex("now"));
    assert!(with_attributes.md5_of_message_attributes().is_some());
    let failed: Vec<(&str, &str, bool)> = sent
        .failed()
        .iter()
        .map(|e| (e.id(), e.code(), e.sender_fault()))
        .collect();
    assert_eq!(
        failed,
        [
            ("too-late", "InvalidParameterValue", true),
            ("control", "InvalidMessageContents", true)
        ]
    );

    // The delayed one is counted apart until its delay has passed.
    let attributes = |gateway: &Gateway| {
        let client = sqs(gateway, "Producer");
        let url = url.clone();
        async move {
            let answer = client
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .expect("GetQueueAttributes is granted");
            answer.attributes().cloned().unwrap_or_default()
        }
    };
    let now = attributes(&gateway).await;
    let count = |a: &std::collections::HashMap<QueueAttributeName, String>, name| {
        a.get(&name).cloned().unwrap_or_default()
    };
    assert_eq!(
        count(&now, QueueAttributeName::ApproximateNumberOfMessages),
        "1"
    );
    assert_eq!(
        count(&now, QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        "1"
    );
    assert_eq!(
        count(
            &now,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible
        ),
        "0"
    );
    assert_eq!(count(&now, QueueAttributeName::VisibilityTimeout), "2");
    assert_eq!(count(&now, QueueAttributeName::QueueArn), WORK_ARN);
    assert!(count(&now, QueueAttributeName::RedrivePolicy).contains("\"maxReceiveCount\":3"));
    eventually("the delayed message visible", || {
        let counts = gateway.queue_counts("Work").expect("Work");
        (counts.visible == 2 && counts.delayed == 0).then_some(())
    })
    .await;
    let later = attributes(&gateway).await;
    assert_eq!(
        count(&later, QueueAttributeName::ApproximateNumberOfMessages),
        "2"
    );

    let messages = gateway.queue_messages("Work").expect("Work");
    let now = messages.iter().find(|m| m.body == "now").expect("now");
    assert_eq!(
        now.attributes["colour"].string_value.as_deref(),
        Some("blue")
    );
    assert_eq!(now.sender_id, "AROALOCAL:Producer");
    gateway.shutdown().await;
}

// ---------- the event source mapping ----------

#[tokio::test(flavor = "multi_thread")]
async fn batches_hold_at_most_batch_size_records_and_carry_lambdas_fields() {
    let template = stack(&[("Mapping", "BatchSize", json!(3))]);
    let log = EventLog::new("batch-size");
    let gateway = start_stack(&template, Some(&log)).await;
    let bodies: Vec<String> = (0..10).map(|i| format!("job {i}")).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    send_batch(&gateway, &refs).await;
    drained(&gateway, "Work").await;

    let batches = log.bodies();
    assert!(
        batches.iter().all(|b| (1..=3).contains(&b.len())),
        "{batches:?}"
    );
    assert!(
        batches.iter().any(|b| b.len() == 3),
        "the window fills batches: {batches:?}"
    );
    let mut delivered: Vec<String> = batches.concat();
    delivered.sort();
    let mut sent = bodies.clone();
    sent.sort();
    assert_eq!(delivered, sent, "each message once");
    assert_eq!(
        gateway.event_source_invocations("Mapping"),
        Some(batches.len() as u64)
    );

    let record = &log.batches()[0][0];
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(record["eventSourceARN"], WORK_ARN);
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
    assert_eq!(record["attributes"]["SenderId"], "AROALOCAL:Producer");
    for key in ["SentTimestamp", "ApproximateFirstReceiveTimestamp"] {
        assert!(
            record["attributes"][key]
                .as_str()
                .is_some_and(|t| t.parse::<i64>().is_ok()),
            "{record}"
        );
    }
    let body = record["body"].as_str().expect("body");
    assert_eq!(record["md5OfBody"], md5_hex(body));
    assert!(record["receiptHandle"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    assert!(record["messageAttributes"].is_object());
    gateway.shutdown().await;
}

/// The hex MD5 of `text`, as SQS gives `MD5OfMessageBody`.
fn md5_hex(text: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(text.as_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn no_more_batches_at_once_than_maximum_concurrency() {
    let template = stack(&[
        ("Mapping", "BatchSize", json!(1)),
        ("Mapping", "MaximumBatchingWindowInSeconds", json!(0)),
        ("Mapping", "ScalingConfig", json!({"MaximumConcurrency": 2})),
    ]);
    let log = EventLog::new("concurrency");
    // Four processes could run: the mapping's bound is what holds.
    let gateway = start_stack(&template, Some(&log)).await;
    send_batch(&gateway, &["sleep:300"; 8]).await;
    drained(&gateway, "Work").await;
    assert_eq!(log.batches().len(), 8);
    assert_eq!(log.most_at_once(), 2, "two at once, never more");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reported_failure_alone_comes_back_after_the_visibility_timeout() {
    let log = EventLog::new("partial");
    let gateway = start_stack(&stack(&[]), Some(&log)).await;
    send_batch(&gateway, &["a", "fail", "b"]).await;
    eventually("the failed record delivered again", || {
        (log.batches().len() >= 2).then_some(())
    })
    .await;

    let batches = log.bodies();
    let mut first = batches[0].clone();
    first.sort();
    assert_eq!(first, ["a", "b", "fail"]);
    assert_eq!(batches[1], ["fail"], "only the failed record comes back");
    let again = &log.batches()[1][0];
    assert_eq!(again["attributes"]["ApproximateReceiveCount"], "2");
    assert_eq!(
        again["messageId"],
        log.batches()[0]
            .iter()
            .find(|r| r["body"] == "fail")
            .expect("fail")["messageId"]
    );
    let counts = gateway.queue_counts("Work").expect("Work");
    assert_eq!(
        counts.visible + counts.in_flight + counts.delayed,
        1,
        "{counts:?}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_failing_max_receive_count_times_goes_to_the_dead_letter_queue() {
    let log = EventLog::new("redrive");
    let gateway = start_stack(&stack(&[]), Some(&log)).await;
    send_batch(&gateway, &["fail"]).await;
    let dead = eventually("the message in the dead-letter queue", || {
        gateway.queue_messages("Dead").filter(|m| !m.is_empty())
    })
    .await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "fail");
    assert_eq!(dead[0].receive_count, 3, "received maxReceiveCount times");
    assert_eq!(dead[0].dead_letter_source_arn.as_deref(), Some(WORK_ARN));
    assert_eq!(
        log.batches().len(),
        3,
        "delivered maxReceiveCount times, not once more"
    );
    assert_eq!(gateway.queue_counts("Work"), Some(Default::default()));
    let dead_counts = gateway.queue_counts("Dead").expect("Dead");
    assert_eq!(
        (dead_counts.visible, dead_counts.in_flight),
        (1, 0),
        "nothing polls the dead-letter queue"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_fails_the_whole_batch() {
    let template = stack(&[("Work", "RedrivePolicy", redrive_after(2))]);
    let log = EventLog::new("crash");
    let gateway = start_stack(&template, Some(&log)).await;
    send_batch(&gateway, &["fine", "crash"]).await;
    let dead = eventually("both in the dead-letter queue", || {
        gateway.queue_messages("Dead").filter(|m| m.len() == 2)
    })
    .await;
    let mut bodies: Vec<&str> = dead.iter().map(|m| m.body.as_str()).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        ["crash", "fine"],
        "the record that was fine was not deleted either"
    );
    let batches = log.bodies();
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert!(batches.iter().all(|b| b.len() == 2), "{batches:?}");
    assert_eq!(gateway.queue_counts("Work"), Some(Default::default()));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_naming_no_record_of_the_batch_fails_the_whole_batch() {
    let template = stack(&[("Work", "RedrivePolicy", redrive_after(2))]);
    let log = EventLog::new("invalid-answer");
    let gateway = start_stack(&template, Some(&log)).await;
    for (step, invalid) in ["unknown-id", "empty-id"].into_iter().enumerate() {
        send_batch(&gateway, &["fine", invalid]).await;
        let dead = eventually(&format!("{invalid}: both in the dead-letter queue"), || {
            gateway
                .queue_messages("Dead")
                .filter(|m| m.len() == 2 * (step + 1))
        })
        .await;
        let fine = dead.iter().filter(|m| m.body == "fine").count();
        assert_eq!(
            fine,
            step + 1,
            "{invalid}: the record that was fine was not deleted either"
        );
    }
    // The same answer is a partial failure only when the mapping reads it so: without
    // ReportBatchItemFailures any success deletes the whole batch.
    gateway.shutdown().await;
    let mut template = stack(&[]);
    template["Resources"]["Mapping"]["Properties"]
        .as_object_mut()
        .expect("properties")
        .remove("FunctionResponseTypes");
    let log = EventLog::new("no-report");
    let gateway = start_stack(&template, Some(&log)).await;
    send_batch(&gateway, &["fine", "unknown-id", "fail"]).await;
    drained(&gateway, "Work").await;
    assert_eq!(log.batches().len(), 1, "delivered once: {:?}", log.bodies());
    assert_eq!(gateway.queue_messages("Dead").map(|m| m.len()), Some(0));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_error_fails_the_whole_batch() {
    let log = EventLog::new("error");
    let gateway = start_stack(&stack(&[]), Some(&log)).await;
    send_batch(&gateway, &["fine", "error"]).await;
    eventually("the batch delivered again", || {
        (log.batches().len() >= 2).then_some(())
    })
    .await;
    let batches = log.bodies();
    assert!(batches[..2].iter().all(|b| b.len() == 2), "{batches:?}");
    gateway.shutdown().await;
}
