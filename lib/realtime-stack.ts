import { Annotations, CfnOutput, RemovalPolicy, Stack, type StackProps, Tags, Validations } from 'aws-cdk-lib';
import { WebSocketLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { AttributeType, BillingMode, Table, TableEncryption } from 'aws-cdk-lib/aws-dynamodb';
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference';
import type { Construct } from 'constructs';
import { RealtimeAlarms } from './alarms';
import { AUTHORIZER_BINARY, type AuthSettings, ConnectAuthorizer } from './connect-authorizer';
import { HandlerFunction, type HandlerFunctionSettings } from './handler-function';
import { FANOUT_BINARY, QueuedFanout, type QueuedFanoutSettings } from './queued-fanout';
import { ACTIONS } from './routes';
import { RealtimeWebSocketApi, type WebSocketApiSettings } from './websocket-api';

/** The TTL attribute of both tables (epoch seconds). */
export const TTL_ATTRIBUTE = 'expiresAt';

/** The id of the synth warning a stage with `auth: none` gets. */
export const AUTH_NONE_WARNING_ID = 'realtime:authNone';

/** What happens to stateful resources (tables, log groups) when the stack is deleted. */
export const REMOVAL_POLICIES = ['destroy', 'retain'] as const;
/** A removal policy name. */
export type RemovalPolicyName = (typeof REMOVAL_POLICIES)[number];

/** The functions a stage may reserve concurrency for, by cargo binary name. */
export const RESERVABLE_FUNCTIONS = ['connect', 'disconnect', 'message', FANOUT_BINARY, AUTHORIZER_BINARY] as const;
/** A function a stage may reserve concurrency for. */
export type ReservableFunctionName = (typeof RESERVABLE_FUNCTIONS)[number];

/**
 * Lambda reserved concurrent executions per function: a cap that also guarantees that much
 * capacity. Reservations come out of the account's pool, which must keep 100 unreserved.
 */
export type ReservedConcurrencySettings = Readonly<Partial<Record<ReservableFunctionName, number>>>;

/** A token bucket per connection, enforced by the message handler on `sendmessage`, `whisper` and `join`. */
export interface ConnectionRateLimitSettings {
  /** Tokens refilled per second (fractions allowed: 0.5 is one every two seconds). */
  readonly perSecond: number;
  /** Bucket size: how many such actions a connection may send at once. */
  readonly burst: number;
}

/**
 * Shard counts of room memberships, by exact room name or by `prefix*` (every room starting with
 * the prefix; `*` alone is every room). Rooms not named have one shard.
 */
export type RoomShardsSettings = Readonly<Record<string, number>>;

/** What a RealtimeStack builds from: one stage's settings, validated before they get here. */
export interface RealtimeStackSettings extends HandlerFunctionSettings, WebSocketApiSettings {
  /** Stage name; part of the stack name and of every resource name. */
  readonly name: string;
  /** AWS account to deploy to. @default - environment-agnostic (the CLI's credentials decide) */
  readonly account?: string;
  /** AWS region to deploy to. @default - environment-agnostic (the CLI's credentials decide) */
  readonly region?: string;
  /** Days an audit record lives before its TTL expires it. */
  readonly auditRetentionDays: number;
  /** Fate of tables and log groups on stack deletion. */
  readonly removalPolicy: RemovalPolicyName;
  /** DynamoDB point-in-time recovery on both tables. */
  readonly pointInTimeRecovery: boolean;
  /** DynamoDB deletion protection on both tables. */
  readonly deletionProtection: boolean;
  /** Bound on concurrent @connections posts in one fan-out (message and fanout functions). */
  readonly fanoutConcurrency: number;
  /** Per-connection rate limit on `sendmessage`, `whisper` and `join`. */
  readonly connectionRateLimit: ConnectionRateLimitSettings;
  /** Rooms one connection may be in, the lobby included. */
  readonly maxRoomsPerConnection: number;
  /**
   * Seconds after registration during which a @connections 410 does not delete a connection's
   * records: API Gateway answers 410 while a connection's `$connect` is still finishing.
   */
  readonly newConnectionGraceSeconds: number;
  /** Reserved concurrent executions of the functions named. */
  readonly reservedConcurrency: ReservedConcurrencySettings;
  /** E-mail address subscribed to the alarm topic. @default - alarms without a notification topic */
  readonly alarmEmail?: string;
  /** Who may connect: the `$connect` authorizer's mode. */
  readonly auth: AuthSettings;
  /** Shard counts of room memberships (every function but the authorizer reads them). */
  readonly roomShards: RoomShardsSettings;
  /** The queued fan-out tier of large rooms. */
  readonly queuedFanout: QueuedFanoutSettings;
}

/** What synth says about a stage with `auth: none`. */
export function authNoneWarning(stage: string): string {
  return `Stage "${stage}" has auth mode "none": the WebSocket API has no authorizer and is open to anyone who knows its URL. Set "auth" in cdk.json (hs256 or jwks) unless that is intended.`;
}

/** The name of a stage's stack. */
export function stackName(stage: string): string {
  return `Realtime-${stage}`;
}

/** `ROOM_SHARDS` as the handlers read it: `name=count` pairs by name, e.g. `live-*=64,lobby=8`. */
export function roomShardsVariable(roomShards: RoomShardsSettings): string {
  // Sorted by code unit, not locale: the template stays the same on every machine.
  return Object.keys(roomShards)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((room) => `${room}=${roomShards[room]}`)
    .join(',');
}

/** Properties of a RealtimeStack. */
export interface RealtimeStackProps extends StackProps {
  /** The validated settings of the stage this stack deploys. */
  readonly settings: RealtimeStackSettings;
  /** Path to the workspace Cargo.toml holding the handler binaries. */
  readonly manifestPath: string;
}

/** One stage of the real-time backend: WebSocket API, handler functions, tables, fan-out queue, alarms. */
export class RealtimeStack extends Stack {
  /** The settings this stack was built from. */
  readonly settings: RealtimeStackSettings;
  /** Connections and room memberships. */
  readonly connectionsTable: Table;
  /** The audit log. */
  readonly auditTable: Table;
  /** The WebSocket API and its stage. */
  readonly webSocket: RealtimeWebSocketApi;
  /** Handles `$connect`. */
  readonly connect: HandlerFunction;
  /** Handles `$disconnect`. */
  readonly disconnect: HandlerFunction;
  /** Handles `$default` and every action route. */
  readonly message: HandlerFunction;
  /** The queued fan-out tier: its queues and the `fanout` function. */
  readonly queuedFanout: QueuedFanout;
  /** Authorizes `$connect`; absent when the stage's auth mode is `none`. */
  readonly authorizer?: ConnectAuthorizer;
  /** The alarms and their optional notification topic. */
  readonly alarms: RealtimeAlarms;

  constructor(scope: Construct, id: string, props: RealtimeStackProps) {
    const { settings } = props;
    super(scope, id, {
      ...props,
      env: props.env ?? { account: settings.account, region: settings.region },
      description: `Real-time WebSocket backend, stage ${settings.name}`,
    });
    this.settings = settings;
    Tags.of(this).add('project', 'realtime');
    Tags.of(this).add('stage', settings.name);
    const removalPolicy = settings.removalPolicy === 'retain' ? RemovalPolicy.RETAIN : RemovalPolicy.DESTROY;

    this.connectionsTable = this.table('ConnectionsTable', 'connections', removalPolicy);
    this.auditTable = this.table('AuditTable', 'audit', removalPolicy);

    this.webSocket = new RealtimeWebSocketApi(this, 'WebSocket', { settings, removalPolicy });

    const environment = {
      CONNECTIONS_TABLE: this.connectionsTable.tableName,
      AUDIT_TABLE: this.auditTable.tableName,
      AUDIT_RETENTION_DAYS: String(settings.auditRetentionDays),
      // Every function that reads or writes memberships must agree on where a member is.
      ROOM_SHARDS: roomShardsVariable(settings.roomShards),
    };
    const handler = (
      id: string,
      binary: 'connect' | 'disconnect' | 'message',
      description: string,
      extra: Record<string, string> = {},
    ) =>
      new HandlerFunction(this, id, {
        binary,
        description,
        settings,
        manifestPath: props.manifestPath,
        environment: { ...environment, ...extra },
        removalPolicy,
        reservedConcurrency: settings.reservedConcurrency[binary],
      });

    this.queuedFanout = new QueuedFanout(this, 'Fanout', {
      settings,
      queuedFanout: settings.queuedFanout,
      manifestPath: props.manifestPath,
      environment: {
        ...environment,
        CALLBACK_URL: this.webSocket.callbackUrl,
        FANOUT_CONCURRENCY: String(settings.fanoutConcurrency),
        NEW_CONNECTION_GRACE_SECONDS: String(settings.newConnectionGraceSeconds),
      },
      removalPolicy,
      reservedConcurrency: settings.reservedConcurrency.fanout,
    });
    const fanoutQueue = this.queuedFanout.queue;

    // Each grant below is the exact set of DynamoDB actions the handler's code calls.
    this.connect = handler('Connect', 'connect', 'Accepts a connection: records it and audits it.');
    // TransactWriteItems is authorized per item action: its Puts need PutItem, nothing else.
    this.connect.allow('ConnectionsTable', ['dynamodb:PutItem'], [this.connectionsTable.tableArn]);
    this.connect.allow('AuditTable', ['dynamodb:PutItem'], [this.auditTable.tableArn]);

    this.disconnect = handler('Disconnect', 'disconnect', 'Forgets a connection and its room memberships.');
    this.disconnect.allow(
      'ConnectionsTable',
      ['dynamodb:Query', 'dynamodb:BatchWriteItem'],
      [this.connectionsTable.tableArn],
    );
    this.disconnect.allow('AuditTable', ['dynamodb:PutItem'], [this.auditTable.tableArn]);

    this.message = handler('Message', 'message', 'Serves every action and $default; fans messages out.', {
      CALLBACK_URL: this.webSocket.callbackUrl,
      FANOUT_CONCURRENCY: String(settings.fanoutConcurrency),
      RATE_LIMIT_PER_SECOND: String(settings.connectionRateLimit.perSecond),
      RATE_LIMIT_BURST: String(settings.connectionRateLimit.burst),
      MAX_ROOMS_PER_CONNECTION: String(settings.maxRoomsPerConnection),
      NEW_CONNECTION_GRACE_SECONDS: String(settings.newConnectionGraceSeconds),
      FANOUT_QUEUE_URL: fanoutQueue.queueUrl,
      QUEUED_FANOUT_ABOVE: String(settings.queuedFanout.aboveMembers),
    });
    // GetItem: strongly consistent reads of the caller's own membership item and rate-limit item.
    this.message.allow(
      'ConnectionsTable',
      ['dynamodb:Query', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem'],
      [this.connectionsTable.tableArn],
    );
    this.message.allow('AuditTable', ['dynamodb:PutItem', 'dynamodb:Query'], [this.auditTable.tableArn]);
    this.message.allow('PostToConnections', ['execute-api:ManageConnections'], [this.webSocket.postToConnectionArn]);
    // Rooms above the queued threshold: one job per shard, for the fan-out function.
    this.message.allow('FanoutQueue', ['sqs:SendMessage'], [fanoutQueue.queueArn]);
    // cdk-nag names the finding after the flattened ARN, which differs with and without account/region.
    const flatPostArn = flattenCfnReference(this.resolve(this.webSocket.postToConnectionArn));
    Validations.of(this.message.role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${flatPostArn}]`,
      reason:
        'Fan-out and whispers post to other connections whose ids are only known at run time (the caller is answered by the route response); the wildcard is limited to POST on @connections of this API and stage.',
    });

    const fanout = this.queuedFanout.handler;
    // Query: a page of a shard's members. PutItem: the claim of each delivery job, so that a job
    // delivered twice posts once. BatchWriteItem: forgetting the memberships of gone connections.
    fanout.allow(
      'ConnectionsTable',
      ['dynamodb:Query', 'dynamodb:PutItem', 'dynamodb:BatchWriteItem'],
      [this.connectionsTable.tableArn],
    );
    fanout.allow('PostToConnections', ['execute-api:ManageConnections'], [this.webSocket.postToConnectionArn]);
    // The job for a shard's next page, and retry jobs for throttled members.
    fanout.allow('FanoutQueue', ['sqs:SendMessage'], [fanoutQueue.queueArn]);
    Validations.of(fanout.role).acknowledge({
      id: `AwsSolutions-IAM5[Resource::${flatPostArn}]`,
      reason:
        'A fan-out job posts to the members of a room page it reads at run time; the wildcard is limited to POST on @connections of this API and stage.',
    });

    if (settings.auth.mode === 'none') {
      Annotations.of(this).addWarningV2(AUTH_NONE_WARNING_ID, authNoneWarning(settings.name));
    } else {
      this.authorizer = new ConnectAuthorizer(this, 'ConnectAuthorizer', {
        settings,
        auth: settings.auth,
        webSocketApi: this.webSocket.api,
        manifestPath: props.manifestPath,
        removalPolicy,
        reservedConcurrency: settings.reservedConcurrency.authorizer,
      });
    }

    const handlers = [this.connect, this.disconnect, this.message, fanout];
    if (this.authorizer !== undefined) {
      handlers.push(this.authorizer.handler);
    }
    if (settings.tracing) {
      for (const each of handlers) {
        Validations.of(each.role).acknowledge({
          id: 'AwsSolutions-IAM5[Resource::*]',
          reason: 'X-Ray PutTraceSegments and PutTelemetryRecords support no resource-level permissions.',
        });
      }
    }

    this.webSocket.addRoute(
      '$connect',
      new WebSocketLambdaIntegration('Connect', this.connect.function),
      this.authorizer,
    );
    this.webSocket.addRoute('$disconnect', new WebSocketLambdaIntegration('Disconnect', this.disconnect.function));
    // One integration serves $default and every action, each a two-way route: a new action is one entry in ACTIONS.
    const messageIntegration = new WebSocketLambdaIntegration('Message', this.message.function);
    for (const routeKey of ['$default', ...ACTIONS]) {
      this.webSocket.addRoute(routeKey, messageIntegration);
    }

    this.alarms = new RealtimeAlarms(this, 'Alarms', {
      stageName: settings.name,
      alarmEmail: settings.alarmEmail,
      functions: handlers,
      messageFunction: this.message,
      apiStage: this.webSocket.stage,
      fanoutQueue,
      fanoutAgeAlarmSeconds: settings.queuedFanout.ageAlarmSeconds,
      fanoutDeadLetterQueue: this.queuedFanout.deadLetterQueue,
      removalPolicy,
    });

    new CfnOutput(this, 'WebSocketUrl', { value: this.webSocket.stage.url, description: 'wss:// URL clients connect to' });
    new CfnOutput(this, 'CallbackUrl', { value: this.webSocket.callbackUrl, description: '@connections endpoint' });
    new CfnOutput(this, 'ConnectionsTableName', { value: this.connectionsTable.tableName });
    new CfnOutput(this, 'AuditTableName', { value: this.auditTable.tableName });
    new CfnOutput(this, 'FanoutQueueUrl', { value: fanoutQueue.queueUrl, description: 'Delivery jobs of large rooms' });
    new CfnOutput(this, 'FanoutDeadLetterQueueUrl', {
      value: this.queuedFanout.deadLetterQueue.queueUrl,
      description: 'Fan-out jobs that failed every delivery attempt',
    });
    if (this.authorizer?.secret !== undefined) {
      new CfnOutput(this, 'JwtSecretArn', {
        value: this.authorizer.secret.secretArn,
        description: 'Secrets Manager secret holding the HS256 key that signs $connect tokens',
      });
    }
    if (this.webSocket.domainName !== undefined) {
      new CfnOutput(this, 'CustomDomainTarget', {
        value: this.webSocket.domainName.regionalDomainName,
        description: `DNS target (CNAME or alias) for ${settings.customDomain?.domainName}`,
      });
    }
  }

  /** A table keyed by pk/sk (strings), expiring items through the TTL attribute. */
  private table(id: string, purpose: string, removalPolicy: RemovalPolicy): Table {
    const { settings } = this;
    const table = new Table(this, id, {
      tableName: `realtime-${settings.name}-${purpose}`,
      partitionKey: { name: 'pk', type: AttributeType.STRING },
      sortKey: { name: 'sk', type: AttributeType.STRING },
      timeToLiveAttribute: TTL_ATTRIBUTE,
      billingMode: BillingMode.PAY_PER_REQUEST,
      encryption: TableEncryption.AWS_MANAGED,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: settings.pointInTimeRecovery },
      deletionProtection: settings.deletionProtection,
      removalPolicy,
    });
    if (!settings.pointInTimeRecovery) {
      Validations.of(table).acknowledge({
        id: 'AwsSolutions-DDB3',
        reason: `Stage "${settings.name}" turns point-in-time recovery off in cdk.json: its data is disposable.`,
      });
    }
    return table;
  }
}
