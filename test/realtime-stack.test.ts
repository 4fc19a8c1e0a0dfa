import { App } from 'aws-cdk-lib';
import { WebSocketRoute } from 'aws-cdk-lib/aws-apigatewayv2';
import { Annotations, Match } from 'aws-cdk-lib/assertions';
import type { ConnectAuthorizer } from '../lib/connect-authorizer';
import type { HandlerFunction } from '../lib/handler-function';
import { ACTIONS } from '../lib/routes';
import {
  acknowledgedOn,
  arnOf,
  buildStage,
  CDK_CONTEXT,
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
import type { StageSettings } from '../cdk/stages';

const BINARIES = ['connect', 'disconnect', 'message', 'fanout', 'authorizer'] as const;
type Binary = (typeof BINARIES)[number];

/** The stage's $connect authorizer; every stage of cdk.json has one. */
function authorizerOf(s: Synthesized): ConnectAuthorizer {
  if (s.stack.authorizer === undefined) {
    throw new Error(`expected stage ${s.stack.settings.name} to have a $connect authorizer`);
  }
  return s.stack.authorizer;
}

/** The HS256 secret of a stage; every stage of cdk.json is hs256. */
function secretOf(s: Synthesized) {
  const secret = authorizerOf(s).secret;
  if (secret === undefined) {
    throw new Error(`expected stage ${s.stack.settings.name} to have a JWT secret`);
  }
  return secret;
}

/** The logical id of the template's one AWS::ApiGatewayV2::Authorizer. */
function logicalIdOfAuthorizer(s: Synthesized): string {
  const ids = Object.keys(resourcesOf(s.template, 'AWS::ApiGatewayV2::Authorizer'));
  expect(ids).toHaveLength(1);
  return ids[0];
}

/** Every route of the stack's API by route key, with the rules acknowledged on it. */
function routeAcknowledgements(s: Synthesized): Map<string, Record<string, string>> {
  return new Map(
    s.stack.node
      .findAll()
      .filter((construct): construct is WebSocketRoute => construct instanceof WebSocketRoute)
      .map((route) => [route.routeKey, acknowledgedOn(route)]),
  );
}

function handlerOf(s: Synthesized, binary: Binary): HandlerFunction {
  switch (binary) {
    case 'authorizer':
      return authorizerOf(s).handler;
    case 'fanout':
      return s.stack.queuedFanout.handler;
    default:
      return s.stack[binary];
  }
}

describe.each(STAGES)('stage %s', (name) => {
  let s: Synthesized;
  let settings: StageSettings;
  let apiId: string;
  let connectionsId: string;
  let auditId: string;
  beforeAll(() => {
    s = stage(name);
    settings = settingsOf(name);
    apiId = logicalId(s.stack, s.stack.webSocket.api);
    connectionsId = logicalId(s.stack, s.stack.connectionsTable);
    auditId = logicalId(s.stack, s.stack.auditTable);
  });

  describe('the stack', () => {
    test('GIVEN the stage WHEN synthesized THEN the stack is named after it', () => {
      expect(s.stack.stackName).toBe(`Realtime-${name}`);
    });

    test('GIVEN the stage WHEN synthesized THEN every named resource carries the stage', () => {
      // `Name` covers the API, the authorizer and the secret.
      const nameKeys = ['TableName', 'FunctionName', 'LogGroupName', 'AlarmName', 'TopicName', 'QueueName', 'StageName', 'Name'];
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
      buildStage(app);
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
    ] as [string, Binary][])('GIVEN route %s THEN it invokes the %s function, authorized on $connect only', (routeKey, binary) => {
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
      if (routeKey === '$connect') {
        expect(propertiesOf(route).AuthorizationType).toBe('CUSTOM');
        expect(propertiesOf(route).AuthorizerId).toEqual({ Ref: logicalIdOfAuthorizer(s) });
      } else {
        expect(propertiesOf(route).AuthorizationType).toBe('NONE');
        expect(propertiesOf(route).AuthorizerId).toBeUndefined();
      }
    });

    /** A route by key, and the route responses that refer to it. */
    function routeWithResponses(routeKey: string): { routeId: string; route: Json; responses: Json[] } {
      const routes = s.template.findResources('AWS::ApiGatewayV2::Route', { Properties: { RouteKey: routeKey } });
      const [[routeId, route]] = Object.entries(routes) as [string, Json][];
      const responses = Object.values(resourcesOf(s.template, 'AWS::ApiGatewayV2::RouteResponse'))
        .map(propertiesOf)
        .filter((response) => JSON.stringify(response.RouteId) === JSON.stringify({ Ref: routeId }));
      return { routeId, route, responses };
    }

    test.each(['$default', ...ACTIONS])(
      'GIVEN message route %s THEN it is two-way: the response body goes back to the caller',
      (routeKey) => {
        const { routeId, route, responses } = routeWithResponses(routeKey);
        expect(propertiesOf(route).RouteResponseSelectionExpression).toBe('$default');
        expect(responses).toEqual([{ ApiId: { Ref: apiId }, RouteId: { Ref: routeId }, RouteResponseKey: '$default' }]);
      },
    );

    test.each(['$connect', '$disconnect'])('GIVEN route %s THEN it is one-way', (routeKey) => {
      const { route, responses } = routeWithResponses(routeKey);
      expect(propertiesOf(route).RouteResponseSelectionExpression).toBeUndefined();
      expect(responses).toEqual([]);
    });

    test('GIVEN the routes THEN the only route responses are those of the message routes', () => {
      s.template.resourceCountIs('AWS::ApiGatewayV2::RouteResponse', 1 + ACTIONS.length);
    });

    test('GIVEN the message function THEN one integration serves all its routes', () => {
      s.template.resourceCountIs('AWS::ApiGatewayV2::Integration', 3);
    });

    test('GIVEN each route and the authorizer THEN API Gateway may invoke their functions, nobody else', () => {
      const permissions = Object.values(resourcesOf(s.template, 'AWS::Lambda::Permission')).map(propertiesOf);
      // One per route, plus the authorizer's.
      expect(permissions).toHaveLength(3 + ACTIONS.length + 1);
      for (const permission of permissions) {
        expect(permission.Principal).toBe('apigateway.amazonaws.com');
        expect(permission.Action).toBe('lambda:InvokeFunction');
        expect(permission.SourceArn).toBeDefined();
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

  describe('the $connect authorizer', () => {
    let authorizerId: string;
    let functionId: string;
    beforeAll(() => {
      authorizerId = logicalIdOfAuthorizer(s);
      functionId = logicalId(s.stack, authorizerOf(s).handler.function);
    });

    test('GIVEN the stage THEN one REQUEST authorizer reads the token from the query string and runs the authorizer function', () => {
      const authorizer = propertiesOf(s.template.toJSON().Resources[authorizerId] as Json);
      expect(authorizer).toEqual({
        ApiId: { Ref: apiId },
        Name: `realtime-${name}-connect`,
        AuthorizerType: 'REQUEST',
        // Browsers cannot set headers on a WebSocket; without the parameter API Gateway answers 401 itself.
        IdentitySource: ['route.request.querystring.token'],
        AuthorizerUri: {
          'Fn::Join': [
            '',
            [
              'arn:',
              { Ref: 'AWS::Partition' },
              ':apigateway:',
              { Ref: 'AWS::Region' },
              ':lambda:path/2015-03-31/functions/',
              arnOf(functionId),
              '/invocations',
            ],
          ],
        },
      });
    });

    test('GIVEN the routes THEN only $connect names the authorizer', () => {
      const authorized = Object.values(resourcesOf(s.template, 'AWS::ApiGatewayV2::Route'))
        .map(propertiesOf)
        .filter((route) => route.AuthorizerId !== undefined || route.AuthorizationType !== 'NONE');
      expect(authorized).toEqual([
        expect.objectContaining({ RouteKey: '$connect', AuthorizationType: 'CUSTOM', AuthorizerId: { Ref: authorizerId } }),
      ]);
    });

    test('GIVEN the authorizer THEN API Gateway may invoke its function through this authorizer only', () => {
      // WHEN
      const permissions = Object.values(resourcesOf(s.template, 'AWS::Lambda::Permission'))
        .map(propertiesOf)
        .filter((permission) => JSON.stringify(permission.FunctionName) === JSON.stringify(arnOf(functionId)));
      // THEN
      expect(permissions).toEqual([
        {
          Action: 'lambda:InvokeFunction',
          FunctionName: arnOf(functionId),
          Principal: 'apigateway.amazonaws.com',
          SourceArn: executeApiArn(apiId, '/authorizers/', { Ref: authorizerId }),
        },
      ]);
    });

    test('GIVEN the authorizer THEN cdk-nag APIG4 is satisfied on $connect, acknowledged only on the other routes', () => {
      // WHEN
      const acknowledgements = routeAcknowledgements(s);
      // THEN
      expect([...acknowledgements.keys()].sort()).toEqual(['$connect', '$default', '$disconnect', ...ACTIONS].sort());
      for (const [routeKey, rules] of acknowledgements) {
        if (routeKey === '$connect') {
          expect(rules['AwsSolutions-APIG4']).toBeUndefined();
        } else {
          expect(rules['AwsSolutions-APIG4']).toMatch(/authorizes only on \$connect/);
        }
      }
    });

    test('GIVEN hs256 THEN a generated 64-character key lives in a secret named after the stage, kept or deleted like the tables', () => {
      // GIVEN
      const policy = settings.removalPolicy === 'retain' ? 'Retain' : 'Delete';
      // WHEN
      const secrets = resourcesOf(s.template, 'AWS::SecretsManager::Secret');
      // THEN
      expect(Object.keys(secrets)).toEqual([logicalId(s.stack, secretOf(s))]);
      s.template.hasResource('AWS::SecretsManager::Secret', {
        Properties: Match.objectLike({
          Name: `realtime-${name}-jwt-secret`,
          GenerateSecretString: { PasswordLength: 64, ExcludePunctuation: true },
          // The AWS-managed key: the authorizer needs no KMS permission to read it.
          KmsKeyId: Match.absent(),
        }),
        DeletionPolicy: policy,
        UpdateReplacePolicy: policy,
      });
      // Rotation is acknowledged, with its reason, on the secret alone.
      expect(acknowledgedOn(secretOf(s))['AwsSolutions-SMG4']).toMatch(/invalidates every issued token/);
    });

    test('GIVEN hs256 THEN no role but the authorizer’s may read a secret', () => {
      // WHEN
      const readers = Object.values(resourcesOf(s.template, 'AWS::IAM::Policy'))
        .map(propertiesOf)
        .filter((policy) => JSON.stringify(policy.PolicyDocument).includes('secretsmanager:'));
      // THEN
      expect(readers.map((policy) => policy.Roles)).toEqual([[{ Ref: logicalId(s.stack, authorizerOf(s).handler.role) }]]);
    });

    test('GIVEN hs256 THEN the secret ARN is an output, to fetch the key and mint tokens', () => {
      s.template.hasOutput('JwtSecretArn', { Value: { Ref: logicalId(s.stack, secretOf(s)) } });
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
          // The fan-out function answers no route: its timeout is its own, not the 29 s route cap.
          Timeout: binary === 'fanout' ? settings.queuedFanout.timeoutSeconds : settings.timeoutSeconds,
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
        // cdk.json's dev and prod shard the lobby alone.
        ROOM_SHARDS: 'lobby=8',
      };
      const fanoutQueueUrl = { Ref: logicalId(s.stack, s.stack.queuedFanout.queue) };
      const callbackUrl = {
        'Fn::Join': [
          '',
          ['https://', { Ref: apiId }, '.execute-api.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }, `/${name}`],
        ],
      };
      // The authorizer reads no table: only its auth settings (every stage of cdk.json is hs256).
      const byBinary: Record<Binary, Json> = {
        connect: common,
        disconnect: common,
        message: {
          ...common,
          CALLBACK_URL: callbackUrl,
          FANOUT_CONCURRENCY: String(settings.fanoutConcurrency),
          RATE_LIMIT_PER_SECOND: String(settings.connectionRateLimit.perSecond),
          RATE_LIMIT_BURST: String(settings.connectionRateLimit.burst),
          MAX_ROOMS_PER_CONNECTION: String(settings.maxRoomsPerConnection),
          NEW_CONNECTION_GRACE_SECONDS: String(settings.newConnectionGraceSeconds),
          FANOUT_QUEUE_URL: fanoutQueueUrl,
          QUEUED_FANOUT_ABOVE: String(settings.queuedFanout.aboveMembers),
        },
        fanout: {
          ...common,
          CALLBACK_URL: callbackUrl,
          FANOUT_QUEUE_URL: fanoutQueueUrl,
          // The tier's rate over the invocations the queue may run at once.
          FANOUT_POSTS_PER_SECOND: String(Math.floor(settings.queuedFanout.postsPerSecond / settings.queuedFanout.maxConcurrency)),
          FANOUT_CONCURRENCY: String(settings.fanoutConcurrency),
          NEW_CONNECTION_GRACE_SECONDS: String(settings.newConnectionGraceSeconds),
        },
        authorizer: { AUTH_MODE: 'hs256', JWT_SECRET_ARN: { Ref: logicalId(s.stack, secretOf(s)) } },
      };
      const expected = byBinary[binary];
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
      const postToConnections = executeApiArn(apiId, `/${name}/POST/@connections/*`);
      const fanoutQueueArn = arnOf(logicalId(s.stack, s.stack.queuedFanout.queue));
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
            ['dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'],
            arnOf(connectionsId),
          ),
          statement('AuditTable', ['dynamodb:PutItem', 'dynamodb:Query'], arnOf(auditId)),
          statement('PostToConnections', ['execute-api:ManageConnections'], postToConnections),
          statement('FanoutQueue', ['sqs:SendMessage'], fanoutQueueArn),
        ],
        fanout: [
          // What the event source mapping polls with (CDK's grantConsumeMessages): no Sid.
          {
            Effect: 'Allow',
            Action: [
              'sqs:ChangeMessageVisibility',
              'sqs:DeleteMessage',
              'sqs:GetQueueAttributes',
              'sqs:GetQueueUrl',
              'sqs:ReceiveMessage',
            ],
            Resource: fanoutQueueArn,
          },
          statement('ConnectionsTable', ['dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:BatchWriteItem'], arnOf(connectionsId)),
          statement('PostToConnections', ['execute-api:ManageConnections'], postToConnections),
          statement('FanoutQueue', ['sqs:SendMessage'], fanoutQueueArn),
        ],
        // The one call the authorizer makes, on the one secret; no table, no @connections.
        authorizer: [
          statement('ReadJwtSecret', ['secretsmanager:GetSecretValue'], { Ref: logicalId(s.stack, secretOf(s)) }),
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

    test('GIVEN the stage THEN its reserved concurrency is what the stage names for it, else none', () => {
      const reserved = settings.reservedConcurrency[binary];
      s.template.hasResourceProperties('AWS::Lambda::Function', {
        FunctionName: `realtime-${name}-${binary}`,
        ReservedConcurrentExecutions: reserved ?? Match.absent(),
      });
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

    test('GIVEN the message function THEN its internal replies, counted in embedded metric format, raise an alarm', () => {
      s.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        AlarmName: `realtime-${name}-message-internal-errors`,
        Namespace: 'Realtime',
        MetricName: 'InternalErrors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(s.stack, s.stack.message.function) } }],
        Statistic: 'Sum',
        Period: 300,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'notBreaching',
      });
    });

    test('GIVEN the stage has no alarm e-mail THEN alarms exist without a topic', () => {
      // Errors and throttles per function; internal replies, integration errors, dead letters, queue age.
      s.template.resourceCountIs('AWS::CloudWatch::Alarm', 2 * BINARIES.length + 4);
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

  test('GIVEN dev and prod THEN only prod reserves concurrency, with the values of cdk.json', () => {
    // GIVEN
    const reserved = (n: string) =>
      Object.fromEntries(
        Object.values(resourcesOf(stage(n).template, 'AWS::Lambda::Function')).map((fn) => [
          propertiesOf(fn).FunctionName,
          propertiesOf(fn).ReservedConcurrentExecutions,
        ]),
      );
    // WHEN
    const dev = reserved('dev');
    const prod = reserved('prod');
    // THEN
    expect(dev).toEqual({
      'realtime-dev-connect': undefined,
      'realtime-dev-disconnect': undefined,
      'realtime-dev-message': undefined,
      'realtime-dev-fanout': undefined,
      'realtime-dev-authorizer': undefined,
    });
    expect(prod).toEqual({
      'realtime-prod-connect': 100,
      'realtime-prod-disconnect': 100,
      'realtime-prod-message': 200,
      'realtime-prod-fanout': 10,
      'realtime-prod-authorizer': 100,
    });
  });

  test('GIVEN dev and prod THEN the same logical resources exist in both (stages differ in settings only)', () => {
    const types = (n: string) =>
      Object.entries(stage(n).template.toJSON().Resources as Record<string, Json>)
        .map(([id, resource]) => `${id} ${String(resource.Type)}`)
        .sort();
    expect(types('prod')).toEqual(types('dev'));
  });
});

describe('per-connection limits of the message function', () => {
  const LIMIT_VARIABLES = ['RATE_LIMIT_PER_SECOND', 'RATE_LIMIT_BURST', 'MAX_ROOMS_PER_CONNECTION'] as const;

  /** The environment variables of one function of a synthesized stage. */
  function environmentOf(s: Synthesized, binary: Binary): Json {
    const fn = propertiesOf(s.template.toJSON().Resources[logicalId(s.stack, handlerOf(s, binary).function)] as Json);
    return (fn.Environment as Json).Variables as Json;
  }

  test('GIVEN dev, which sets no limit WHEN synthesized THEN the message function gets the defaults', () => {
    // GIVEN / WHEN
    const s = stage('dev');
    // THEN
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: 'realtime-dev-message',
      Environment: {
        Variables: Match.objectLike({
          RATE_LIMIT_PER_SECOND: '10',
          RATE_LIMIT_BURST: '20',
          MAX_ROOMS_PER_CONNECTION: '50',
          NEW_CONNECTION_GRACE_SECONDS: '30',
        }),
      },
    });
  });

  test('GIVEN overridden limits WHEN synthesized THEN the message function carries them, fractions included', () => {
    // GIVEN / WHEN
    const s = synthStage('dev', { connectionRateLimit: { perSecond: 2.5, burst: 5 }, maxRoomsPerConnection: 7 });
    // THEN
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: 'realtime-dev-message',
      Environment: {
        Variables: Match.objectLike({
          RATE_LIMIT_PER_SECOND: '2.5',
          RATE_LIMIT_BURST: '5',
          MAX_ROOMS_PER_CONNECTION: '7',
          // Not overridden: the default stays.
          NEW_CONNECTION_GRACE_SECONDS: '30',
        }),
      },
    });
  });

  test('GIVEN a grace period of 0 WHEN synthesized THEN it is passed as "0", not dropped', () => {
    const s = synthStage('dev', { newConnectionGraceSeconds: 0 });
    expect(environmentOf(s, 'message').NEW_CONNECTION_GRACE_SECONDS).toBe('0');
  });

  test.each(STAGES)('GIVEN stage %s THEN only message and fanout get the grace period', (name) => {
    const s = stage(name);
    const holders = BINARIES.filter((binary) => 'NEW_CONNECTION_GRACE_SECONDS' in environmentOf(s, binary));
    expect(holders).toEqual(['message', 'fanout']);
  });

  test.each(STAGES)('GIVEN stage %s THEN no function but message gets the limits', (name) => {
    const s = stage(name);
    for (const binary of BINARIES.filter((each) => each !== 'message')) {
      const variables = Object.keys(environmentOf(s, binary));
      for (const variable of LIMIT_VARIABLES) {
        expect(variables).not.toContain(variable);
      }
    }
  });

  test.each(STAGES)('GIVEN stage %s THEN the message role may GetItem on the connections table, no other role may', (name) => {
    // GIVEN
    const s = stage(name);
    const messageRoleId = logicalId(s.stack, s.stack.message.role);
    // THEN
    s.template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: messageRoleId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Sid: 'ConnectionsTable',
            Effect: 'Allow',
            Action: Match.arrayWith(['dynamodb:GetItem']),
            Resource: arnOf(logicalId(s.stack, s.stack.connectionsTable)),
          }),
        ]),
      },
    });
    const readers = Object.values(resourcesOf(s.template, 'AWS::IAM::Policy'))
      .map(propertiesOf)
      .filter((policy) => JSON.stringify(policy.PolicyDocument).includes('dynamodb:GetItem'));
    expect(readers.map((policy) => policy.Roles)).toEqual([[{ Ref: messageRoleId }]]);
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

  test('GIVEN a reservation for message alone WHEN synthesized THEN only message is reserved', () => {
    // GIVEN / WHEN
    const s = synthStage('dev', { reservedConcurrency: { message: 5 } });
    // THEN
    s.template.hasResourceProperties('AWS::Lambda::Function', {
      FunctionName: 'realtime-dev-message',
      ReservedConcurrentExecutions: 5,
    });
    for (const binary of ['connect', 'disconnect', 'fanout', 'authorizer']) {
      s.template.hasResourceProperties('AWS::Lambda::Function', {
        FunctionName: `realtime-dev-${binary}`,
        ReservedConcurrentExecutions: Match.absent(),
      });
    }
  });

  test('GIVEN the architecture context override WHEN synthesized THEN every function is x86_64', () => {
    const s = synthStage('dev', {}, { architecture: 'x86_64' });
    s.template.allResourcesProperties('AWS::Lambda::Function', { Architectures: ['x86_64'] });
  });
});

describe('auth modes', () => {
  const JWKS = {
    mode: 'jwks',
    jwksUrl: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json',
    issuer: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123',
    audience: '1example23456789',
  };

  /** The authorizer function's environment variables. */
  function authorizerEnvironment(s: Synthesized): Json {
    const fn = propertiesOf(s.template.toJSON().Resources[logicalId(s.stack, authorizerOf(s).handler.function)] as Json);
    return (fn.Environment as Json).Variables as Json;
  }

  test('GIVEN hs256 with issuer and audience WHEN synthesized THEN the authorizer checks both', () => {
    // GIVEN / WHEN
    const s = synthStage('dev', { auth: { mode: 'hs256', issuer: 'realtime-dev', audience: 'chat' } });
    // THEN
    expect(authorizerEnvironment(s)).toEqual({
      AUTH_MODE: 'hs256',
      JWT_SECRET_ARN: { Ref: logicalId(s.stack, secretOf(s)) },
      JWT_ISSUER: 'realtime-dev',
      JWT_AUDIENCE: 'chat',
    });
  });

  describe('jwks', () => {
    let s: Synthesized;
    beforeAll(() => {
      s = synthStage('dev', { auth: { ...JWKS, algorithm: 'ES256' } });
    });

    test('GIVEN a JWKS stage WHEN synthesized THEN the authorizer gets the URL, issuer, audience and algorithm', () => {
      expect(authorizerEnvironment(s)).toEqual({
        AUTH_MODE: 'jwks',
        JWKS_URL: JWKS.jwksUrl,
        JWT_ISSUER: JWKS.issuer,
        JWT_AUDIENCE: JWKS.audience,
        JWT_ALGORITHM: 'ES256',
      });
    });

    test('GIVEN no algorithm WHEN synthesized THEN RS256 (what Cognito signs with)', () => {
      const rs = synthStage('dev', { auth: JWKS });
      expect(authorizerEnvironment(rs).JWT_ALGORITHM).toBe('RS256');
    });

    test('GIVEN a JWKS stage WHEN synthesized THEN the authorizer runs like the other functions', () => {
      s.template.hasResource('AWS::Lambda::Function', {
        Metadata: Match.objectLike({ 'local:binary': 'authorizer' }),
        Properties: Match.objectLike({
          FunctionName: 'realtime-dev-authorizer',
          Runtime: 'provided.al2023',
          Architectures: ['arm64'],
        }),
      });
    });

    test('GIVEN a JWKS stage WHEN synthesized THEN no secret exists and the authorizer role holds its log group only', () => {
      // GIVEN
      const handler = authorizerOf(s).handler;
      const roleId = logicalId(s.stack, handler.role);
      // WHEN
      const statements = statementsOf(s, roleId);
      // THEN
      expect(authorizerOf(s).secret).toBeUndefined();
      s.template.resourceCountIs('AWS::SecretsManager::Secret', 0);
      expect(Object.keys(s.template.toJSON().Outputs as Json)).not.toContain('JwtSecretArn');
      expect(statements).toEqual([
        {
          Sid: 'WriteOwnLogGroup',
          Effect: 'Allow',
          Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          Resource: arnOf(logicalId(s.stack, handler.logGroup)),
        },
      ]);
      expect(JSON.stringify(s.template.toJSON())).not.toContain('secretsmanager:');
    });

    test('GIVEN a JWKS stage WHEN synthesized THEN $connect is still authorized by the same REQUEST authorizer', () => {
      s.template.hasResourceProperties('AWS::ApiGatewayV2::Authorizer', {
        AuthorizerType: 'REQUEST',
        IdentitySource: ['route.request.querystring.token'],
      });
      s.template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: '$connect', AuthorizationType: 'CUSTOM' });
    });
  });

  describe('none', () => {
    let s: Synthesized;
    let printed: string;
    let annotations: Annotations;
    beforeAll(() => {
      // Synth prints its validation report (warnings included) on stderr: capture it.
      const stderr = jest.spyOn(console, 'error').mockImplementation(() => undefined);
      try {
        // Template.fromStack inside synthStage throws on any unacknowledged cdk-nag finding.
        s = synthStage('dev', { auth: { mode: 'none' } });
        annotations = Annotations.fromStack(s.stack);
        printed = stderr.mock.calls.map((call) => call.join(' ')).join('\n');
      } finally {
        stderr.mockRestore();
      }
    });

    test('GIVEN auth none WHEN synthesized THEN there is no authorizer, no authorizer function and no secret', () => {
      expect(s.stack.authorizer).toBeUndefined();
      s.template.resourceCountIs('AWS::ApiGatewayV2::Authorizer', 0);
      s.template.resourceCountIs('AWS::SecretsManager::Secret', 0);
      s.template.resourceCountIs('AWS::Lambda::Function', 4);
      s.template.resourceCountIs('AWS::CloudWatch::Alarm', 2 * 4 + 4);
      expect(Object.keys(s.template.toJSON().Outputs as Json)).not.toContain('JwtSecretArn');
      for (const route of Object.values(resourcesOf(s.template, 'AWS::ApiGatewayV2::Route'))) {
        expect(propertiesOf(route).AuthorizationType).toBe('NONE');
      }
    });

    test('GIVEN auth none WHEN synthesized THEN the stack carries a warning that the API is open to anyone, and synth prints it', () => {
      annotations.hasWarning(
        '/Realtime-dev',
        Match.stringLikeRegexp('Stage "dev" has auth mode "none".*open to anyone'),
      );
      expect(printed).toContain('WARNING Stage "dev" has auth mode "none": the WebSocket API has no authorizer and is open to anyone');
    });

    test('GIVEN auth none WHEN synthesized THEN APIG4 is acknowledged on $connect, naming the choice', () => {
      expect(routeAcknowledgements(s).get('$connect')?.['AwsSolutions-APIG4']).toMatch(/sets auth mode "none"/);
    });

    test.each(['dev', 'prod'])('GIVEN stage %s of cdk.json THEN it has no open-API warning', (name) => {
      Annotations.fromStack(stage(name).stack).hasNoWarning('*', Match.stringLikeRegexp('auth mode "none"'));
    });
  });
});

describe('bad input stops synth', () => {
  test('GIVEN an unknown stage WHEN the app is built THEN it fails naming the valid stages', () => {
    const app = new App({ context: { ...CDK_CONTEXT, stage: 'nope', 'aws:cdk:bundling-stacks': [] } });
    expect(() => buildStage(app)).toThrow('Unknown stage "nope"; valid stages: dev, prod');
  });

  test('GIVEN a bad setting in cdk.json WHEN the app is built THEN it fails naming stage and setting', () => {
    expect(() => synthStage('prod', { timeoutSeconds: 60 })).toThrow(
      'Stage "prod": setting "timeoutSeconds" must be an integer from 1 to 29; got 60.',
    );
  });

  test('GIVEN a reservation for an unknown function WHEN the app is built THEN it fails naming the valid ones', () => {
    expect(() => synthStage('prod', { reservedConcurrency: { foo: 1 } })).toThrow(
      'Stage "prod": unknown setting "reservedConcurrency.foo"; valid settings: reservedConcurrency.connect, reservedConcurrency.disconnect, reservedConcurrency.message, reservedConcurrency.fanout, reservedConcurrency.authorizer.',
    );
  });

  test('GIVEN a JWKS URL over http WHEN the app is built THEN it fails naming stage, setting and what is valid', () => {
    expect(() =>
      synthStage('prod', { auth: { mode: 'jwks', jwksUrl: 'http://idp.example.com/jwks.json', issuer: 'i', audience: 'a' } }),
    ).toThrow('Stage "prod": setting "auth.jwksUrl" must be an https:// URL of a JSON Web Key Set');
  });
});
