import { Duration, type RemovalPolicy } from 'aws-cdk-lib';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { HandlerFunction, type HandlerFunctionSettings } from './handler-function';

/** The cargo binary of the queued fan-out function. */
export const FANOUT_BINARY = 'fanout';

/**
 * How long the fan-out queue keeps a job: SQS's default of four days, stated because the fan-out
 * function's delivery claims (5 days, `lambdas/core/src/queued.rs`) must outlive every copy of a job.
 */
export const FANOUT_QUEUE_RETENTION_SECONDS = 4 * 24 * 60 * 60;

/** How long the dead-letter queue keeps a job: SQS's longest, time to look at what failed. */
export const DEAD_LETTER_RETENTION_DAYS = 14;

/**
 * The queue's visibility timeout as a multiple of the function timeout, as AWS recommends for a
 * Lambda event source: a batch whose invocation was throttled or retried is not handed out again
 * while an earlier invocation may still be working on it.
 */
export const VISIBILITY_TIMEOUT_FACTOR = 6;

/** How rooms above a size are delivered: through a queue that feeds a paced fan-out function. */
export interface QueuedFanoutSettings {
  /** Rooms with more members than this are delivered through the queue; smaller ones by the sender's invocation. */
  readonly aboveMembers: number;
  /** @connections posts per second of the whole queued tier, shared by its concurrent invocations. */
  readonly postsPerSecond: number;
  /** The account's API Gateway throttle (requests per second), which `postsPerSecond` stays within. */
  readonly accountPostsPerSecond: number;
  /** Most concurrent fan-out invocations the queue starts (the event source's maximum concurrency, 2 to 1000). */
  readonly maxConcurrency: number;
  /** Jobs per invocation (1 to 10). */
  readonly batchSize: number;
  /** Deliveries of a job before it goes to the dead-letter queue. */
  readonly maxReceiveCount: number;
  /** The fan-out function's timeout in seconds (1 to 900: no API Gateway route waits on it). */
  readonly timeoutSeconds: number;
  /** Age in seconds of the oldest waiting job above which an alarm says delivery is late. */
  readonly ageAlarmSeconds: number;
}

/** Properties of a QueuedFanout. */
export interface QueuedFanoutProps {
  /** The stage's name, sizing, tracing and log retention (the timeout comes from `queuedFanout`). */
  readonly settings: HandlerFunctionSettings;
  /** The queued tier's sizing and pacing. */
  readonly queuedFanout: QueuedFanoutSettings;
  /** Path to the workspace Cargo.toml. */
  readonly manifestPath: string;
  /** What the function reads besides the queue URL and its pace, which this construct adds. */
  readonly environment: Readonly<Record<string, string>>;
  /** Fate of the function's log group on stack deletion (the queues hold only transient jobs: always deleted). */
  readonly removalPolicy: RemovalPolicy;
  /** Reserved concurrent executions of the fan-out function. @default - none (unreserved) */
  readonly reservedConcurrency?: number;
}

/**
 * Each invocation's share of the tier's post rate: the tier runs at most `maxConcurrency`
 * invocations at once, so each paces itself to this many posts a second (at least one).
 */
export function postsPerSecondPerInvocation(settings: QueuedFanoutSettings): number {
  return Math.max(1, Math.floor(settings.postsPerSecond / settings.maxConcurrency));
}

/**
 * The queued fan-out tier: an encrypted, TLS-only SQS queue of delivery jobs with a dead-letter
 * queue, and the `fanout` function that the queue invokes in batches, reporting per-job failures.
 * Who may send jobs, and what the function may touch, the stack grants.
 */
export class QueuedFanout extends Construct {
  /** The delivery jobs. */
  readonly queue: Queue;
  /** Jobs that failed `maxReceiveCount` deliveries. */
  readonly deadLetterQueue: Queue;
  /** The fan-out function, its role and its log group. */
  readonly handler: HandlerFunction;

  constructor(scope: Construct, id: string, props: QueuedFanoutProps) {
    super(scope, id);
    const { settings, queuedFanout } = props;
    const prefix = `realtime-${settings.name}`;

    // SQS-managed keys: no KMS key to pay for, and neither senders nor the consumer need a KMS grant.
    this.deadLetterQueue = new Queue(this, 'DeadLetterQueue', {
      queueName: `${prefix}-fanout-dlq`,
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(DEAD_LETTER_RETENTION_DAYS),
    });
    this.queue = new Queue(this, 'Queue', {
      queueName: `${prefix}-fanout`,
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.seconds(FANOUT_QUEUE_RETENTION_SECONDS),
      visibilityTimeout: Duration.seconds(VISIBILITY_TIMEOUT_FACTOR * queuedFanout.timeoutSeconds),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: queuedFanout.maxReceiveCount },
    });

    this.handler = new HandlerFunction(this, 'Handler', {
      binary: FANOUT_BINARY,
      description: 'Delivers messages to large rooms: posts each queued job to a page of members, paced.',
      settings,
      timeoutSeconds: queuedFanout.timeoutSeconds,
      manifestPath: props.manifestPath,
      environment: {
        ...props.environment,
        FANOUT_QUEUE_URL: this.queue.queueUrl,
        FANOUT_POSTS_PER_SECOND: String(postsPerSecondPerInvocation(queuedFanout)),
      },
      removalPolicy: props.removalPolicy,
      reservedConcurrency: props.reservedConcurrency,
    });
    // A mapping rather than SqsEventSource, whose logical id embeds the stack name: here every
    // stage has the same logical resources. No batching window: a job waits only for a free invocation.
    this.handler.function.addEventSourceMapping('Queue', {
      eventSourceArn: this.queue.queueArn,
      batchSize: queuedFanout.batchSize,
      maxBatchingWindow: Duration.seconds(0),
      maxConcurrency: queuedFanout.maxConcurrency,
      reportBatchItemFailures: true,
    });
    // What Lambda's poller does with the function's role: receive, delete, change visibility.
    this.queue.grantConsumeMessages(this.handler.function);
  }
}
