import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { WebSocketStage } from 'aws-cdk-lib/aws-apigatewayv2';
import { Alarm, ComparisonOperator, Metric, TreatMissingData } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import type { HandlerFunction } from './handler-function';

/** The window each alarm sums over. */
const PERIOD = Duration.minutes(5);

/** The namespace of the metrics the handlers log in embedded metric format (`lambdas/aws/src/metrics.rs`). */
export const METRICS_NAMESPACE = 'Realtime';

/** Properties of RealtimeAlarms. */
export interface RealtimeAlarmsProps {
  /** The stage's name: part of every alarm's name. */
  readonly stageName: string;
  /** E-mail address subscribed to the alarm topic. @default - alarms without a notification topic */
  readonly alarmEmail?: string;
  /** Functions whose errors and throttles raise an alarm. */
  readonly functions: readonly HandlerFunction[];
  /**
   * The function that answers storage failures with an `internal` frame and succeeds, counting
   * them as the `InternalErrors` metric: its Errors alarm never sees them.
   */
  readonly messageFunction: HandlerFunction;
  /** The API stage whose integration errors raise an alarm. */
  readonly apiStage: WebSocketStage;
  /** The queue of the queued fan-out: a job waiting longer than `fanoutAgeAlarmSeconds` raises an alarm. */
  readonly fanoutQueue: IQueue;
  /** Age in seconds of the fan-out queue's oldest job above which delivery counts as late. */
  readonly fanoutAgeAlarmSeconds: number;
  /** The fan-out queue's dead-letter queue: any job in it raises an alarm. */
  readonly fanoutDeadLetterQueue: IQueue;
  /** Fate of the topic's key on stack deletion. */
  readonly removalPolicy: RemovalPolicy;
}

/**
 * Alarms on every function's errors and throttles, on the message function's `internal` replies,
 * on the API's integration errors and on jobs in the fan-out dead-letter queue: any occurrence in
 * five minutes raises one; so does a fan-out job older than the stage's threshold. With an alarm
 * e-mail, they notify an encrypted SNS topic.
 */
export class RealtimeAlarms extends Construct {
  /** Every alarm this construct created. */
  readonly alarms: readonly Alarm[];
  /** The notification topic, when the stage has an alarm e-mail. */
  readonly topic?: Topic;

  constructor(scope: Construct, id: string, props: RealtimeAlarmsProps) {
    super(scope, id);
    const prefix = `realtime-${props.stageName}`;

    const alarms: Alarm[] = [];
    // By default any occurrence raises the alarm; `above` makes it "more than this".
    const alarm = (name: string, description: string, metric: Metric, above?: number): void => {
      alarms.push(
        new Alarm(this, name, {
          alarmName: `${prefix}-${name}`,
          alarmDescription: description,
          metric,
          threshold: above ?? 1,
          evaluationPeriods: 1,
          comparisonOperator:
            above === undefined
              ? ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
              : ComparisonOperator.GREATER_THAN_THRESHOLD,
          treatMissingData: TreatMissingData.NOT_BREACHING,
        }),
      );
    };
    for (const handler of props.functions) {
      alarm(
        `${handler.binary}-errors`,
        `The ${handler.binary} function failed (handler error, crash or timeout).`,
        handler.function.metricErrors({ period: PERIOD, statistic: 'Sum' }),
      );
      alarm(
        `${handler.binary}-throttles`,
        `The ${handler.binary} function was throttled (concurrency exhausted).`,
        handler.function.metricThrottles({ period: PERIOD, statistic: 'Sum' }),
      );
    }
    alarm(
      `${props.messageFunction.binary}-internal-errors`,
      `The ${props.messageFunction.binary} function answered clients "internal" (storage failed); the invocations succeeded, so its errors alarm does not count these.`,
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName: 'InternalErrors',
        dimensionsMap: { FunctionName: props.messageFunction.function.functionName },
        period: PERIOD,
        statistic: 'Sum',
      }),
    );
    alarm(
      'api-integration-errors',
      'API Gateway got an error from a route integration; clients saw "Internal server error".',
      props.apiStage.metric('IntegrationError', { period: PERIOD, statistic: 'Sum' }),
    );
    // Maximum: SQS reports a queue's gauges every minute; one minute over the line is enough.
    alarm(
      'fanout-dead-letters',
      'Fan-out jobs failed every delivery attempt and wait in the dead-letter queue: their room members missed messages.',
      props.fanoutDeadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: PERIOD, statistic: 'Maximum' }),
    );
    alarm(
      'fanout-queue-age',
      `A fan-out job waited more than ${props.fanoutAgeAlarmSeconds} s in the queue: large rooms get messages late (the fan-out function is behind, throttled or failing).`,
      props.fanoutQueue.metricApproximateAgeOfOldestMessage({ period: PERIOD, statistic: 'Maximum' }),
      props.fanoutAgeAlarmSeconds,
    );
    this.alarms = alarms;

    if (props.alarmEmail !== undefined) {
      // CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key: a customer key
      // whose policy lets CloudWatch use it is the only way to encrypt alarm notifications.
      const key = new Key(this, 'TopicKey', {
        alias: `alias/${prefix}-alarms`,
        description: `Encrypts the ${prefix} alarm topic`,
        enableKeyRotation: true,
        removalPolicy: props.removalPolicy,
      });
      key.grant(new ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
      const topic = new Topic(this, 'Topic', {
        topicName: `${prefix}-alarms`,
        displayName: `${prefix} alarms`,
        masterKey: key,
        enforceSSL: true,
      });
      topic.addSubscription(new EmailSubscription(props.alarmEmail));
      const action = new SnsAction(topic);
      for (const each of alarms) {
        each.addAlarmAction(action);
        each.addOkAction(action);
      }
      this.topic = topic;
    }
  }
}
