import { App } from 'aws-cdk-lib';
import { Match } from 'aws-cdk-lib/assertions';
import { buildRealtimeApp } from '../lib/realtime-app';
import type { HandlerFunction } from '../lib/handler-function';
import { ACTIONS } from '../lib/routes';
import {
  arnOf,
  CDK_CONTEXT,
  type Json,
  logicalId,
  propertiesOf,
  resourcesOf,
  synthStage,
  type Synthesized,
} from './helpers';
import { resolveStage, type StageSettings } from './stages';

const STAGES = ['dev', 'prod'] as const;
const BINARIES = ['connect', 'disconnect', 'message'] as const;
type Binary = (typeof BINARIES)[number];

// Synthesizing takes seconds: each variant once, shared by the tests that read it.
const synthesized = new Map<string, Synthesized>();
function stage(name: string): Synthesized {
  let result = synthesized.get(name);
  if (result === undefined) {
    result = synthStage(name);
    synthesized.set(name, result);
  }
  return result;
}

function handlerOf(s: Synthesized, binary: Binary): HandlerFunction {
  return s.stack[binary];
}

/** Every IAM statement that reaches a role: its inline policies and every AWS::IAM::Policy naming it. */
function statementsOf(s: Synthesized, roleId: string): Json[] {
  const role = s.template.toJSON().Resources[roleId] as Json;
  const inline = ((propertiesOf(role).Policies ?? []) as Json[]).flatMap(
    (policy) => (policy.PolicyDocument as Json).Statement as Json[],
  );
  const attached = Object.values(resourcesOf(s.template, 'AWS::IAM::Policy'))
    .filter((policy) => JSON.stringify(propertiesOf(policy).Roles).includes(`"${roleId}"`))
    .flatMap((policy) => (propertiesOf(policy).PolicyDocument as Json).Statement as Json[]);
  return [...inline, ...attached];
}

describe.each(STAGES)('stage %s', (name) => {
  let s: Synthesized;
  let settings: StageSettings;
  let apiId: string;
  let connectionsId: string;
  let auditId: string;
  beforeAll(() => {
    s = stage(name);
    settings = resolveStage(CDK_CONTEXT.stages, name);
    apiId = logicalId(s.stack, s.stack.webSocket.api);
    connectionsId = logicalId(s.stack, s.stack.connectionsTable);
    auditId = logicalId(s.stack, s.stack.auditTable);
  });

  describe('the stack', () => {
    test('GIVEN the stage WHEN synthesized THEN the stack is named after it', () => {
      expect(s.stack.stackName).toBe(`Realtime-${name}`);
    });

    test('GIVEN the stage WHEN synthesized THEN every named resource carries the stage', () => {
      const nameKeys = ['TableName', 'FunctionName', 'LogGroupName', 'AlarmName', 'TopicName', 'StageName'];
      const resources = s.template.toJSON().Resources as Record<string, Json>;
      let checked = 0;
      for (const resource of Object.values(resources)) {
        const properties = (resource.Properties ?? {}) as Json;
        for (const key of nameKeys) {
          if (typeof properties[key] === 'string') {
            expect(properties[key]).toContain(name);
            checked += 1;
          }
        }
      }
      expect(checked).toBeGreaterThan(10);
      s.template.hasResourceProperties('AWS::ApiGatewayV2::Api', { Name: `realtime-${name}` });
    });

    test('GIVEN the stage WHEN synthesized THEN cdk-nag reports no unacknowledged finding', () => {
      // Template.fromStack already threw on any finding; the report must show the plugin ran clean.
      const app = new App({
        context: { ...CDK_CONTEXT, stage: name, 'aws:cdk:bundling-stacks': [] },
      });
      buildRealtimeApp(app);
      expect(() => app.synth()).not.toThrow();
    });

    test('GIVEN the stage WHEN synthesized THEN no data or API action is granted on "*"', () => {
      for (const policy of Object.values(resourcesOf(s.template, 'AWS::IAM::Policy'))) {
        for (const statement of (propertiesOf(policy).PolicyDocument as Json).Statement as Json[]) {
          if (statement.Resource === '*') {
            // X-Ray has no resource-level permissions; nothing else may use "*".
            expect(statement.Action).toEqual(['xray:PutTelemetryRecords', 'xray:PutTraceSegments']);
          }
        }
      }
    });
  });

  describe('the WebSocket API', () => {
    test('GIVEN the stack THEN it has one WebSocket API selecting routes by $request.body.action', () => {
      s.template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
      s.template.hasResourceProperties('AWS::ApiGatewayV2::Api', {
        ProtocolType: 'WEBSOCKET',
        RouteSelectionExpression: '$request.body.action',
      });
    });

    test('GIVEN the stack THEN it routes $connect, $disconnect, $default and every action, nothing else', () => {
      const routeKeys = Object.values(resourcesOf(s.template, 'AWS::ApiGatewayV2::Route')).map(
        (route) => propertiesOf(route).RouteKey,
      );
      expect(routeKeys.sort()).toEqual(['$connect', '$default', '$disconnect', ...ACTIONS].sort());
    });

    test.each([
      ['$connect', 'connect'],
      ['$disconnect', 'disconnect'],
      ['$default', 'message'],
      ...ACTIONS.map((action) => [action, 'message']),
    ] as [string, Binary][])('GIVEN route %s THEN it invokes the %s function', (routeKey, binary) => {
      // GIVEN
      const routes = s.template.findResources('AWS::ApiGatewayV2::Route', { Properties: { RouteKey: routeKey } });
      const [route] = Object.values(routes) as Json[];
      const target = JSON.stringify(propertiesOf(route).Target);
      const integrationId = /"Ref":"([^"]+)"/.exec(target)?.[1] ?? '';
      // WHEN
      const integration = propertiesOf(s.template.toJSON().Resources[integrationId] as Json);
      // THEN
      expect(integration.IntegrationType).toBe('AWS_PROXY');
      expect(JSON.stringify(integration.IntegrationUri)).toContain(
        JSON.stringify(arnOf(logicalId(s.stack, handlerOf(s, binary).function))),
      );
      expect(propertiesOf(route).AuthorizationType).toBe('NONE');
    });

    test('GIVEN the message function THEN one integration serves all its routes', () => {
      s.template.resourceCountIs('AWS::ApiGatewayV2::Integration', 3);
    });

    test('GIVEN each route THEN API Gateway may invoke its function for that route only', () => {
      const permissions = Object.values(resourcesOf(s.template, 'AWS::Lambda::Permission')).map(propertiesOf);
      expect(permissions).toHaveLength(3 + ACTIONS.length);
      for (const permission of permissions) {
        expect(permission.Principal).toBe('apigateway.amazonaws.com');
        expect(permission.Action).toBe('lambda:InvokeFunction');
      }
    });

    test('GIVEN the stage settings THEN the API stage is named after it, auto-deployed and throttled', () => {
      s.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
        ApiId: { Ref: apiId },
        StageName: name,
        AutoDeploy: true,
        DefaultRouteSettings: {
          ThrottlingRateLimit: settings.throttling.rateLimit,
          ThrottlingBurstLimit: settings.throttling.burstLimit,
        },
      });
    });

    test('GIVEN the stage THEN access logs are JSON lines in their own log group', () => {
      // GIVEN
      const [stageResource] = Object.values(resourcesOf(s.template, 'AWS::ApiGatewayV2::Stage'));
      const accessLog = propertiesOf(stageResource).AccessLogSettings as Json;
      // WHEN
      const format = JSON.parse(accessLog.Format as string) as Json;
      // THEN
      expect(accessLog.DestinationArn).toEqual(arnOf(logicalId(s.stack, s.stack.webSocket.accessLogGroup)));
      expect(format).toMatchObject({
        requestId: '$context.requestId',
        connectionId: '$context.connectionId',
        eventType: '$context.eventType',
        routeKey: '$context.routeKey',
        status: '$context.status',
        integrationError: '$context.integration.error',
      });
      s.template.hasResourceProperties('AWS::Logs::LogGroup', {
        LogGroupName: `/aws/apigateway/realtime-${name}/access`,
        RetentionInDays: settings.logRetentionDays,
      });
    });
  });

  describe.each(BINARIES)('the %s function', (binary) => {
    let functionId: string;
    beforeAll(() => {
      functionId = logicalId(s.stack, handlerOf(s, binary).function);
    });

    test('GIVEN the stage THEN it runs the binary on provided.al2023 with the stage sizing', () => {
      s.template.hasResource('AWS::Lambda::Function', {
        Metadata: Match.objectLike({ 'local:binary': binary }),
        Properties: Match.objectLike({
          FunctionName: `realtime-${name}-${binary}`,
          Runtime: 'provided.al2023',
          Handler: 'bootstrap',
          Architectures: ['arm64'],
          MemorySize: settings.memoryMb,
          Timeout: settings.timeoutSeconds,
          // Without tracing the property is left out: Lambda's default (PassThrough) applies.
          TracingConfig: settings.tracing ? { Mode: 'Active' } : Match.absent(),
        }),
      });
    });

    test('GIVEN the stage THEN it logs JSON into its own log group with the stage retention', () => {
      const logGroupId = logicalId(s.stack, handlerOf(s, binary).logGroup);
      s.template.hasResourceProperties('AWS::Lambda::Function', {
        FunctionName: `realtime-${name}-${binary}`,
        LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: logGroupId } },
      });
      s.template.hasResource('AWS::Logs::LogGroup', {
        Properties: { LogGroupName: `/aws/lambda/realtime-${name}-${binary}`, RetentionInDays: settings.logRetentionDays },
        DeletionPolicy: settings.removalPolicy === 'retain' ? 'Retain' : 'Delete',
      });
    });

    test('GIVEN the tables THEN its environment holds exactly the names and settings it reads', () => {
      // GIVEN
      const common = {
        CONNECTIONS_TABLE: { Ref: connectionsId },
        AUDIT_TABLE: { Ref: auditId },
        AUDIT_RETENTION_DAYS: String(settings.auditRetentionDays),
      };
      const callbackUrl = {
        'Fn::Join': [
          '',
          ['https://', { Ref: apiId }, '.execute-api.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }, `/${name}`],
        ],
      };
      const expected =
        binary === 'message'
          ? { ...common, CALLBACK_URL: callbackUrl, FANOUT_CONCURRENCY: String(settings.fanoutConcurrency) }
          : common;
      // WHEN
      const fn = propertiesOf(s.template.toJSON().Resources[functionId] as Json);
      // THEN
      expect(fn.Environment).toEqual({ Variables: expected });
    });

    test('GIVEN its role THEN it has no managed policy and exactly the statements its code needs', () => {
      // GIVEN
      const roleId = logicalId(s.stack, handlerOf(s, binary).role);
      const logGroupId = logicalId(s.stack, handlerOf(s, binary).logGroup);
      const statement = (sid: string, actions: string[], resource: unknown): Json => ({
        Sid: sid,
        Effect: 'Allow',
        // minimizePolicies (cdk.json) sorts the actions of a statement.
        Action: actions.length === 1 ? actions[0] : [...actions].sort(),
        Resource: resource,
      });
      const postToConnections = {
        'Fn::Join': [
          '',
          [
            'arn:',
            { Ref: 'AWS::Partition' },
            ':execute-api:',
            { Ref: 'AWS::Region' },
            ':',
            { Ref: 'AWS::AccountId' },
            ':',
            { Ref: apiId },
            `/${name}/POST/@connections/*`,
          ],
        ],
      };
      const byBinary: Record<Binary, Json[]> = {
        connect: [
          statement('ConnectionsTable', ['dynamodb:PutItem'], arnOf(connectionsId)),
          statement('AuditTable', ['dynamodb:PutItem'], arnOf(auditId)),
        ],
        disconnect: [
          statement('ConnectionsTable', ['dynamodb:Query', 'dynamodb:BatchWriteItem'], arnOf(connectionsId)),
          statement('AuditTable', ['dynamodb:PutItem'], arnOf(auditId)),
        ],
        message: [
          statement(
            'ConnectionsTable',
            ['dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'],
            arnOf(connectionsId),
          ),
          statement('AuditTable', ['dynamodb:PutItem', 'dynamodb:Query'], arnOf(auditId)),
          statement('PostToConnections', ['execute-api:ManageConnections'], postToConnections),
        ],
      };
      const xray: Json[] = settings.tracing
        ? [{ Effect: 'Allow', Action: ['xray:PutTelemetryRecords', 'xray:PutTraceSegments'], Resource: '*' }]
        : [];
      // WHEN
      const role = propertiesOf(s.template.toJSON().Resources[roleId] as Json);
      const statements = statementsOf(s, roleId);
      // THEN
      expect(role.ManagedPolicyArns).toBeUndefined();
      expect(role.AssumeRolePolicyDocument).toEqual({
        Version: '2012-10-17',
        Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } }],
      });
      expect(statements).toEqual([
        statement('WriteOwnLogGroup', ['logs:CreateLogStream', 'logs:PutLogEvents'], arnOf(logGroupId)),
        ...xray,
        ...byBinary[binary],
      ]);
    });

    test('GIVEN the function THEN its errors and throttles raise alarms', () => {
      for (const [suffix, metric] of [
        ['errors', 'Errors'],
        ['throttles', 'Throttles'],
      ]) {
        s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
          AlarmName: `realtime-${name}-${binary}-${suffix}`,
          Namespace: 'AWS/Lambda',
          MetricName: metric,
          Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionId } }],
          Statistic: 'Sum',
          Period: 300,
          Threshold: 1,
          ComparisonOperator: 'GreaterThanOrEqualToThreshold',
          TreatMissingData: 'notBreaching',
        });
      }
    });
  });

  describe.each([
    ['connections', 'connectionsTable'],
    ['audit', 'auditTable'],
  ] as const)('the %s table', (purpose, property) => {
    test('GIVEN the stage THEN it is keyed by pk/sk strings, expires by expiresAt, on demand, encrypted, no index', () => {
      const id = logicalId(s.stack, s.stack[property]);
      const table = propertiesOf(s.template.toJSON().Resources[id] as Json);
      expect(table).toMatchObject({
        TableName: `realtime-${name}-${purpose}`,
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
        AttributeDefinitions: [
          { AttributeName: 'pk', AttributeType: 'S' },
          { AttributeName: 'sk', AttributeType: 'S' },
        ],
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        BillingMode: 'PAY_PER_REQUEST',
        SSESpecification: { SSEEnabled: true },
      });
      expect(table.GlobalSecondaryIndexes).toBeUndefined();
      expect(table.LocalSecondaryIndexes).toBeUndefined();
    });

    test('GIVEN the stage THEN PITR, deletion protection and removal policy follow its settings', () => {
      const id = logicalId(s.stack, s.stack[property]);
      const policy = settings.removalPolicy === 'retain' ? 'Retain' : 'Delete';
      s.template.hasResource('AWS::DynamoDB::Table', {
        Properties: Match.objectLike({
          TableName: `realtime-${name}-${purpose}`,
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: settings.pointInTimeRecovery },
          DeletionProtectionEnabled: settings.deletionProtection,
        }),
        DeletionPolicy: policy,
        UpdateReplacePolicy: policy,
      });
      expect(id).toBeTruthy();
    });
  });

  describe('the alarms', () => {
    test('GIVEN the API stage THEN its integration errors raise an alarm', () => {
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: `realtime-${name}-api-integration-errors`,
        Namespace: 'AWS/ApiGateway',
        MetricName: 'IntegrationError',
        Dimensions: [
          { Name: 'ApiId', Value: { Ref: apiId } },
          { Name: 'Stage', Value: name },
        ],
        Threshold: 1,
      });
    });

    test('GIVEN the stage has no alarm e-mail THEN alarms exist without a topic', () => {
      s.template.resourceCountIs('AWS::CloudWatch::Alarm', 2 * BINARIES.length + 1);
      if (settings.alarmEmail === undefined) {
        s.template.resourceCountIs('AWS::SNS::Topic', 0);
      }
    });
  });

  test('GIVEN the stack THEN its outputs give the WebSocket URL, the callback URL and the table names', () => {
    s.template.hasOutput('WebSocketUrl', {
      Value: {
        'Fn::Join': [
          '',
          ['wss://', { Ref: apiId }, '.execute-api.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }, `/${name}`],
        ],
      },
    });
    s.template.hasOutput('CallbackUrl', {});
    s.template.hasOutput('ConnectionsTableName', { Value: { Ref: connectionsId } });
    s.template.hasOutput('AuditTableName', { Value: { Ref: auditId } });
  });
});

describe('differences between stages', () => {
  test('GIVEN dev and prod THEN only prod keeps its tables and protects them', () => {
    // GIVEN
    const tables = (n: string) => Object.values(resourcesOf(stage(n).template, 'AWS::DynamoDB::Table'));
    // WHEN
    const dev = tables('dev');
    const prod = tables('prod');
    // THEN
    for (const table of dev) {
      expect(table.DeletionPolicy).toBe('Delete');
      expect(propertiesOf(table).DeletionProtectionEnabled).toBe(false);
      expect(propertiesOf(table).PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: false });
    }
    for (const table of prod) {
      expect(table.DeletionPolicy).toBe('Retain');
      expect(propertiesOf(table).DeletionProtectionEnabled).toBe(true);
      expect(propertiesOf(table).PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    }
  });

  test('GIVEN dev and prod THEN the same logical resources exist in both (stages differ in settings only)', () => {
    const types = (n: string) =>
      Object.entries(stage(n).template.toJSON().Resources as Record<string, Json>)
        .map(([id, resource]) => `${id} ${String(resource.Type)}`)
        .sort();
    expect(types('prod')).toEqual(types('dev'));
  });
});

describe('optional settings', () => {
  test('GIVEN an alarm e-mail WHEN synthesized THEN alarms and recoveries notify it through an encrypted topic', () => {
    // GIVEN / WHEN
    const s = synthStage('dev', { alarmEmail: 'ops@example.com' });
    const topic = s.stack.alarms.topic;
    if (topic === undefined) {
      throw new Error('expected an alarm topic');
    }
    const topicId = logicalId(s.stack, topic);
    // THEN
    s.template.hasResourceProperties('AWS::SNS::Topic', {
      TopicName: 'realtime-dev-alarms',
      KmsMasterKeyId: Match.anyValue(),
    });
    s.template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
      TopicArn: { Ref: topicId },
    });
    s.template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    for (const alarm of Object.values(resourcesOf(s.template, 'AWS::CloudWatch::Alarm'))) {
      expect(propertiesOf(alarm).AlarmActions).toEqual([{ Ref: topicId }]);
      expect(propertiesOf(alarm).OKActions).toEqual([{ Ref: topicId }]);
    }
  });

  test('GIVEN a custom domain WHEN synthesized THEN the stage is mapped on it and the DNS target is output', () => {
    // GIVEN
    const certificateArn = 'arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab';
    // WHEN
    const s = synthStage('dev', {
      region: 'eu-west-1',
      account: '123456789012',
      customDomain: { domainName: 'ws.example.com', certificateArn },
    });
    // THEN
    s.template.hasResourceProperties('AWS::ApiGatewayV2::DomainName', {
      DomainName: 'ws.example.com',
      DomainNameConfigurations: [Match.objectLike({ CertificateArn: certificateArn, EndpointType: 'REGIONAL' })],
    });
    s.template.hasResourceProperties('AWS::ApiGatewayV2::ApiMapping', { Stage: Match.anyValue() });
    s.template.hasOutput('CustomDomainTarget', {});
    // The callback URL still names the execute-api host, never the custom domain.
    const fn = propertiesOf(
      s.template.toJSON().Resources[logicalId(s.stack, s.stack.message.function)] as Json,
    );
    expect(JSON.stringify((fn.Environment as Json).Variables)).not.toContain('ws.example.com');
  });

  test('GIVEN account and region WHEN synthesized THEN the stack is bound to them', () => {
    const s = synthStage('dev', { account: '123456789012', region: 'eu-west-1' });
    expect(s.stack.account).toBe('123456789012');
    expect(s.stack.region).toBe('eu-west-1');
  });

  test('GIVEN the account role setting WHEN on or off THEN API Gateway’s logging role is set or left alone', () => {
    const on = synthStage('dev', { manageApiGatewayAccountRole: true });
    const off = synthStage('dev', { manageApiGatewayAccountRole: false });
    on.template.hasResource('AWS::ApiGateway::Account', { DeletionPolicy: 'Retain' });
    on.template.hasResource('AWS::IAM::Role', {
      Properties: Match.objectLike({
        AssumeRolePolicyDocument: Match.objectLike({
          Statement: [Match.objectLike({ Principal: { Service: 'apigateway.amazonaws.com' } })],
        }),
      }),
      DeletionPolicy: 'Retain',
    });
    off.template.resourceCountIs('AWS::ApiGateway::Account', 0);
  });

  test('GIVEN tracing on dev WHEN synthesized THEN the functions trace and nag accepts the X-Ray wildcard', () => {
    const s = synthStage('dev', { tracing: true });
    s.template.allResourcesProperties('AWS::Lambda::Function', { TracingConfig: { Mode: 'Active' } });
  });

  test('GIVEN the architecture context override WHEN synthesized THEN every function is x86_64', () => {
    const s = synthStage('dev', {}, { architecture: 'x86_64' });
    s.template.allResourcesProperties('AWS::Lambda::Function', { Architectures: ['x86_64'] });
  });
});

describe('bad input stops synth', () => {
  test('GIVEN an unknown stage WHEN the app is built THEN it fails naming the valid stages', () => {
    const app = new App({ context: { ...CDK_CONTEXT, stage: 'nope', 'aws:cdk:bundling-stacks': [] } });
    expect(() => buildRealtimeApp(app)).toThrow('Unknown stage "nope"; valid stages: dev, prod');
  });

  test('GIVEN a bad setting in cdk.json WHEN the app is built THEN it fails naming stage and setting', () => {
    expect(() => synthStage('prod', { timeoutSeconds: 60 })).toThrow(
      'Stage "prod": setting "timeoutSeconds" must be an integer from 1 to 29; got 60.',
    );
  });
});
