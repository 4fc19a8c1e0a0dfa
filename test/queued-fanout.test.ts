// The queued fan-out tier: its queues, its function and event source, what each role may do with
// them, the alarms and outputs, and how the stage settings reach the template.
import { App, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference';
import type { StageSettings } from '../cdk/stages';
import { HandlerFunction } from '../lib/handler-function';
import { postsPerSecondPerInvocation } from '../lib/queued-fanout';
import { roomShardsVariable } from '../lib/realtime-stack';
import {
  acknowledgedOn,
  arnOf,
  executeApiArn,
  type Json,
  logicalId,
  propertiesOf,
  resourcesOf,
  settingsOf,
  STAGES,
  stage,
  statementsOf,
  synthStage,
  type Synthesized,
} from './helpers';

/** The environment variables of a function, by its FunctionName. */
function environmentOf(s: Synthesized, functionName: string): Json {
  const [fn] = Object.values(resourcesOf(s.template, 'AWS::Lambda::Function')).filter(
    (each) => propertiesOf(each).FunctionName === functionName,
  );
  return (propertiesOf(fn).Environment as Json).Variables as Json;
}

describe.each(STAGES)('stage %s', (name) => {
  let s: Synthesized;
  let settings: StageSettings;
  let queueId: string;
  let deadLetterId: string;
  let functionId: string;
  beforeAll(() => {
    s = stage(name);
    settings = settingsOf(name);
    queueId = logicalId(s.stack, s.stack.queuedFanout.queue);
    deadLetterId = logicalId(s.stack, s.stack.queuedFanout.deadLetterQueue);
    functionId = logicalId(s.stack, s.stack.queuedFanout.handler.function);
  });

  describe('the queues', () => {
    test('GIVEN the stage THEN there are exactly the fan-out queue and its dead-letter queue', () => {
      expect(Object.keys(resourcesOf(s.template, 'AWS::SQS::Queue')).sort()).toEqual([deadLetterId, queueId].sort());
      // The logical ids say what they are, the same in every stage.
      expect(queueId).toMatch(/^FanoutQueue[0-9A-F]{8}$/);
      expect(deadLetterId).toMatch(/^FanoutDeadLetterQueue[0-9A-F]{8}$/);
    });

    test('GIVEN the fan-out timeout THEN the queue hides a job for 6 times it, and sends it to the DLQ after maxReceiveCount deliveries', () => {
      const queue = propertiesOf(s.template.toJSON().Resources[queueId] as Json);
      expect(queue).toEqual({
        QueueName: `realtime-${name}-fanout`,
        VisibilityTimeout: 6 * settings.queuedFanout.timeoutSeconds,
        MessageRetentionPeriod: 4 * 24 * 60 * 60,
        RedrivePolicy: { deadLetterTargetArn: arnOf(deadLetterId), maxReceiveCount: settings.queuedFanout.maxReceiveCount },
        // SQS-managed encryption: no customer key, so no KMS grant anywhere.
        SqsManagedSseEnabled: true,
        Tags: expect.any(Array),
      });
    });

    test('GIVEN the dead-letter queue THEN it keeps jobs 14 days, encrypted, with no redrive of its own', () => {
      const deadLetter = propertiesOf(s.template.toJSON().Resources[deadLetterId] as Json);
      expect(deadLetter).toEqual({
        QueueName: `realtime-${name}-fanout-dlq`,
        MessageRetentionPeriod: 14 * 24 * 60 * 60,
        SqsManagedSseEnabled: true,
        Tags: expect.any(Array),
      });
    });

    test.each(['queue', 'deadLetterQueue'] as const)('GIVEN the %s THEN its policy denies every request without TLS', (which) => {
      const id = logicalId(s.stack, s.stack.queuedFanout[which]);
      const policies = Object.values(resourcesOf(s.template, 'AWS::SQS::QueuePolicy'))
        .map(propertiesOf)
        .filter((policy) => JSON.stringify(policy.Queues) === JSON.stringify([{ Ref: id }]));
      expect(policies).toEqual([
        {
          Queues: [{ Ref: id }],
          PolicyDocument: {
            Version: '2012-10-17',
            Statement: [
              {
                Action: 'sqs:*',
                Condition: { Bool: { 'aws:SecureTransport': 'false' } },
                Effect: 'Deny',
                Principal: { AWS: '*' },
                Resource: arnOf(id),
              },
            ],
          },
        },
      ]);
    });

    test('GIVEN the stack THEN no KMS key or grant serves the queues', () => {
      s.template.resourceCountIs('AWS::KMS::Key', 0);
      expect(JSON.stringify(s.template.toJSON())).not.toContain('kms:');
    });
  });

  describe('the event source mapping', () => {
    test('GIVEN the stage THEN one mapping feeds the queue to the fan-out function in batches, at bounded concurrency, reporting failures per job', () => {
      const mappings = Object.values(resourcesOf(s.template, 'AWS::Lambda::EventSourceMapping')).map(propertiesOf);
      expect(mappings).toEqual([
        {
          EventSourceArn: arnOf(queueId),
          FunctionName: { Ref: functionId },
          BatchSize: settings.queuedFanout.batchSize,
          MaximumBatchingWindowInSeconds: 0,
          ScalingConfig: { MaximumConcurrency: settings.queuedFanout.maxConcurrency },
          FunctionResponseTypes: ['ReportBatchItemFailures'],
          Tags: expect.any(Array),
        },
      ]);
    });

    test('GIVEN the mapping THEN its logical id does not depend on the stage', () => {
      const [id] = Object.keys(resourcesOf(s.template, 'AWS::Lambda::EventSourceMapping'));
      expect(id).not.toContain(name);
    });
  });

  describe('the fan-out function', () => {
    test('GIVEN the stage THEN it runs the fanout binary with its own timeout and the stage sizing', () => {
      s.template.hasResource('AWS::Lambda::Function', {
        Metadata: Match.objectLike({ 'local:binary': 'fanout' }),
        Properties: Match.objectLike({
          FunctionName: `realtime-${name}-fanout`,
          Runtime: 'provided.al2023',
          MemorySize: settings.memoryMb,
          Timeout: settings.queuedFanout.timeoutSeconds,
          ReservedConcurrentExecutions: settings.reservedConcurrency.fanout ?? Match.absent(),
        }),
      });
    });

    test('GIVEN the stage THEN it paces each invocation to its share of the tier rate', () => {
      const expected = { dev: '250', prod: '500' }[name];
      expect(environmentOf(s, `realtime-${name}-fanout`).FANOUT_POSTS_PER_SECOND).toBe(expected);
    });

    test('GIVEN the stage THEN the message function hands rooms above the threshold to the queue', () => {
      expect(environmentOf(s, `realtime-${name}-message`)).toMatchObject({
        FANOUT_QUEUE_URL: { Ref: queueId },
        QUEUED_FANOUT_ABOVE: '1000',
      });
    });
  });

  describe('who may use the queue', () => {
    /** The statements of every role, by the function name the role serves. */
    function statementsByFunction(): Record<string, Json[]> {
      const byFunction: Record<string, Json[]> = {};
      for (const fn of Object.values(resourcesOf(s.template, 'AWS::Lambda::Function')).map(propertiesOf)) {
        const roleId = ((fn.Role as Json)['Fn::GetAtt'] as string[])[0];
        byFunction[fn.FunctionName as string] = statementsOf(s, roleId);
      }
      return byFunction;
    }

    test('GIVEN every role THEN only message and fanout may send jobs, and only fanout may consume them', () => {
      // GIVEN
      const byFunction = statementsByFunction();
      // WHEN
      const sqsActions = Object.fromEntries(
        Object.entries(byFunction).map(([fn, statements]) => [
          fn,
          statements
            .flatMap((statement) => [statement.Action].flat() as string[])
            .filter((action) => action.startsWith('sqs:'))
            .sort(),
        ]),
      );
      // THEN
      expect(sqsActions).toEqual({
        [`realtime-${name}-connect`]: [],
        [`realtime-${name}-disconnect`]: [],
        [`realtime-${name}-message`]: ['sqs:SendMessage'],
        [`realtime-${name}-fanout`]: [
          'sqs:ChangeMessageVisibility',
          'sqs:DeleteMessage',
          'sqs:GetQueueAttributes',
          'sqs:GetQueueUrl',
          'sqs:ReceiveMessage',
          'sqs:SendMessage',
        ],
        [`realtime-${name}-authorizer`]: [],
      });
      // Never on the dead-letter queue: nothing but SQS itself writes there.
      expect(JSON.stringify(byFunction)).not.toContain(deadLetterId);
    });

    test('GIVEN the message role THEN it may send to the fan-out queue alone', () => {
      const statements = statementsOf(s, logicalId(s.stack, s.stack.message.role));
      expect(statements.filter((statement) => statement.Sid === 'FanoutQueue')).toEqual([
        { Sid: 'FanoutQueue', Effect: 'Allow', Action: 'sqs:SendMessage', Resource: arnOf(queueId) },
      ]);
    });

    test('GIVEN the fan-out role THEN nothing reaches the audit table', () => {
      const statements = statementsOf(s, logicalId(s.stack, s.stack.queuedFanout.handler.role));
      expect(JSON.stringify(statements)).not.toContain(logicalId(s.stack, s.stack.auditTable));
    });

    test.each(['message', 'fanout'] as const)(
      'GIVEN the %s role THEN cdk-nag IAM5 is acknowledged for the @connections wildcard only, with a reason',
      (binary) => {
        // GIVEN
        const handler = binary === 'message' ? s.stack.message : s.stack.queuedFanout.handler;
        const apiId = logicalId(s.stack, s.stack.webSocket.api);
        const postArn = flattenCfnReference(executeApiArn(apiId, `/${name}/POST/@connections/*`));
        // WHEN
        const acknowledged = acknowledgedOn(handler.role);
        // THEN
        const expected = [`AwsSolutions-IAM5[Resource::${postArn}]`];
        if (settings.tracing) {
          expected.push('AwsSolutions-IAM5[Resource::*]');
        }
        expect(Object.keys(acknowledged).sort()).toEqual(expected.sort());
        expect(acknowledged[`AwsSolutions-IAM5[Resource::${postArn}]`]).toMatch(/POST on @connections of this API and stage/);
      },
    );
  });

  describe('the alarms', () => {
    test('GIVEN the dead-letter queue THEN any job in it raises an alarm', () => {
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: `realtime-${name}-fanout-dead-letters`,
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateNumberOfMessagesVisible',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [deadLetterId, 'QueueName'] } }],
        Statistic: 'Maximum',
        Period: 300,
        Threshold: 1,
        EvaluationPeriods: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'notBreaching',
      });
    });

    test('GIVEN the fan-out queue THEN a job older than ageAlarmSeconds raises an alarm', () => {
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: `realtime-${name}-fanout-queue-age`,
        Namespace: 'AWS/SQS',
        MetricName: 'ApproximateAgeOfOldestMessage',
        Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }],
        Statistic: 'Maximum',
        Period: 300,
        Threshold: settings.queuedFanout.ageAlarmSeconds,
        EvaluationPeriods: 1,
        ComparisonOperator: 'GreaterThanThreshold',
        TreatMissingData: 'notBreaching',
      });
    });
  });

  test('GIVEN the stack THEN its outputs give both queue URLs', () => {
    s.template.hasOutput('FanoutQueueUrl', { Value: { Ref: queueId } });
    s.template.hasOutput('FanoutDeadLetterQueueUrl', { Value: { Ref: deadLetterId } });
  });
});

describe('ROOM_SHARDS', () => {
  const FUNCTIONS = ['connect', 'disconnect', 'message', 'fanout'] as const;

  test('GIVEN rooms and prefixes WHEN written THEN name=count pairs sorted by name, by code unit', () => {
    expect(roomShardsVariable({ lobby: 8, 'live-*': 64, Zeta: 3, '*': 2, a_b: 5 })).toBe('*=2,Zeta=3,a_b=5,live-*=64,lobby=8');
    expect(roomShardsVariable({})).toBe('');
  });

  test('GIVEN a stage with several sharded rooms WHEN synthesized THEN every handler but the authorizer reads the same pairs', () => {
    // GIVEN / WHEN
    const s = synthStage('dev', { roomShards: { 'live-*': 64, lobby: 8, 'live-big': 128 } });
    // THEN
    for (const binary of FUNCTIONS) {
      expect(environmentOf(s, `realtime-dev-${binary}`).ROOM_SHARDS).toBe('live-*=64,live-big=128,lobby=8');
    }
    expect(environmentOf(s, 'realtime-dev-authorizer').ROOM_SHARDS).toBeUndefined();
  });

  test('GIVEN a stage that shards no room WHEN synthesized THEN ROOM_SHARDS is empty, not left out (the handlers would fall back to their own default)', () => {
    const s = synthStage('dev', { roomShards: {} });
    for (const binary of FUNCTIONS) {
      expect(environmentOf(s, `realtime-dev-${binary}`).ROOM_SHARDS).toBe('');
    }
  });
});

describe('queued fan-out settings in the template', () => {
  test.each<[number, number, string]>([
    [5000, 10, '500'],
    [5000, 3, '1666'],
    [10000, 1000, '10'],
    // Fewer posts than invocations: each still posts once a second.
    [5, 10, '1'],
    [1, 2, '1'],
  ])('GIVEN %i posts/s over %i invocations WHEN synthesized THEN FANOUT_POSTS_PER_SECOND is %s', (postsPerSecond, maxConcurrency, expected) => {
    // GIVEN
    const queuedFanout = { postsPerSecond, maxConcurrency };
    // WHEN
    const s = synthStage('dev', { queuedFanout });
    // THEN
    expect(environmentOf(s, 'realtime-dev-fanout').FANOUT_POSTS_PER_SECOND).toBe(expected);
    expect(String(postsPerSecondPerInvocation({ ...s.stack.settings.queuedFanout }))).toBe(expected);
    s.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', { ScalingConfig: { MaximumConcurrency: maxConcurrency } });
  });

  test('GIVEN every queued setting overridden WHEN synthesized THEN each lands where it belongs', () => {
    // GIVEN
    const queuedFanout = {
      aboveMembers: 250,
      postsPerSecond: 900,
      accountPostsPerSecond: 2000,
      maxConcurrency: 3,
      batchSize: 10,
      maxReceiveCount: 7,
      timeoutSeconds: 900,
      ageAlarmSeconds: 120,
    };
    // WHEN
    const s = synthStage('dev', { queuedFanout, fanoutConcurrency: 16, newConnectionGraceSeconds: 5 });
    // THEN
    const queueId = logicalId(s.stack, s.stack.queuedFanout.queue);
    s.template.hasResourceProperties('AWS::SQS::Queue', {
      QueueName: 'realtime-dev-fanout',
      // The longest function timeout: 6 × 900 s, within SQS's 12 hours.
      VisibilityTimeout: 5400,
      RedrivePolicy: Match.objectLike({ maxReceiveCount: 7 }),
    });
    s.template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 10,
      ScalingConfig: { MaximumConcurrency: 3 },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    // Not capped at the 29 s of a route: no route waits on this function.
    s.template.hasResourceProperties('AWS::Lambda::Function', { FunctionName: 'realtime-dev-fanout', Timeout: 900 });
    s.template.hasResourceProperties('AWS::Lambda::Function', { FunctionName: 'realtime-dev-message', Timeout: 10 });
    s.template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmName: 'realtime-dev-fanout-queue-age', Threshold: 120 });
    expect(environmentOf(s, 'realtime-dev-fanout')).toMatchObject({
      FANOUT_QUEUE_URL: { Ref: queueId },
      FANOUT_POSTS_PER_SECOND: '300',
      FANOUT_CONCURRENCY: '16',
      NEW_CONNECTION_GRACE_SECONDS: '5',
    });
    expect(environmentOf(s, 'realtime-dev-message').QUEUED_FANOUT_ABOVE).toBe('250');
  });

  test('GIVEN a fan-out reservation WHEN synthesized THEN the fan-out function reserves it', () => {
    const s = synthStage('dev', { reservedConcurrency: { fanout: 12 } });
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: 'realtime-dev-fanout',
      ReservedConcurrentExecutions: 12,
    });
  });

  test('GIVEN posts above the account throttle WHEN the app is built THEN it fails naming stage, setting and the rule', () => {
    expect(() => synthStage('prod', { queuedFanout: { postsPerSecond: 12000 } })).toThrow(
      'Stage "prod": setting "queuedFanout.postsPerSecond" must be at most queuedFanout.accountPostsPerSecond (10000)',
    );
  });

  test('GIVEN tracing WHEN synthesized THEN the fan-out function traces too and nag stays clean', () => {
    const s = synthStage('dev', { tracing: true });
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: 'realtime-dev-fanout',
      TracingConfig: { Mode: 'Active' },
    });
  });
});

describe('HandlerFunction', () => {
  const SETTINGS = {
    name: 'qa',
    architecture: 'arm64',
    memoryMb: 128,
    timeoutSeconds: 10,
    logRetentionDays: 7,
    tracing: false,
  } as const;

  test.each([0, 901, 1.5])('GIVEN an own timeout of %s WHEN built THEN it fails naming the valid range', (timeoutSeconds) => {
    const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), 'Test');
    expect(
      () =>
        new HandlerFunction(stack, 'Fn', {
          binary: 'fanout',
          description: 'test',
          settings: SETTINGS,
          manifestPath: 'Cargo.toml',
          environment: {},
          removalPolicy: RemovalPolicy.DESTROY,
          timeoutSeconds,
        }),
    ).toThrow(`HandlerFunction fanout: timeoutSeconds must be an integer from 1 to 900; got ${timeoutSeconds}.`);
  });
});
