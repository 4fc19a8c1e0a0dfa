import { ArnFormat, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import { AccessLogField, AccessLogFormat, CfnAccount } from 'aws-cdk-lib/aws-apigateway';
import {
  DomainName,
  type IWebSocketRouteAuthorizer,
  LogGroupLogDestination,
  WebSocketApi,
  type WebSocketRoute,
  WebSocketRouteIntegration,
  WebSocketStage,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { Certificate } from 'aws-cdk-lib/aws-certificatemanager';
import { ManagedPolicy, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { flattenCfnReference } from 'cdk-nag/lib/utils/flatten-cfn-reference';
import { Construct } from 'constructs';
import type { LogRetentionDays } from './handler-function';
import { ROUTE_SELECTION_EXPRESSION } from './routes';

/** API Gateway cuts every integration off at 29 s, so a route handler may not run longer. */
export const MAX_ROUTE_TIMEOUT_SECONDS = 29;

/** The connection's lifecycle routes: one-way, since nothing they return is meant for the client. */
const CONNECTION_ROUTES: readonly string[] = ['$connect', '$disconnect'];

/** Stage throttling applied to every route (API Gateway default route settings). */
export interface ThrottlingSettings {
  /** Steady-state requests per second. */
  readonly rateLimit: number;
  /** Burst bucket size in requests. */
  readonly burstLimit: number;
}

/** A custom domain for the WebSocket endpoint, with an ACM certificate in the stack's region. */
export interface CustomDomainSettings {
  /** The host name clients connect to, e.g. `ws.example.com`. */
  readonly domainName: string;
  /** ARN of a regional ACM certificate covering `domainName`. */
  readonly certificateArn: string;
}

/** What the API takes from the stage. */
export interface WebSocketApiSettings {
  /** The stage's name: the API stage's name and part of the API and log group names. */
  readonly name: string;
  /** Stage-wide route throttling. */
  readonly throttling: ThrottlingSettings;
  /** Retention of the access log group. */
  readonly logRetentionDays: LogRetentionDays;
  /** Custom domain of the WebSocket endpoint. @default - the execute-api endpoint only */
  readonly customDomain?: CustomDomainSettings;
  /**
   * Whether this stack sets API Gateway's account-wide CloudWatch Logs role, which WebSocket access
   * logging requires. Account-level: let one stage per account and region own it.
   */
  readonly manageApiGatewayAccountRole: boolean;
}

/** Properties of a RealtimeWebSocketApi. */
export interface RealtimeWebSocketApiProps {
  /** The stage's name, throttling, log retention, custom domain and account role choice. */
  readonly settings: WebSocketApiSettings;
  /** Fate of the access log group on stack deletion. */
  readonly removalPolicy: RemovalPolicy;
}

/** One JSON object per line: what API Gateway did with each connection event and frame. */
function accessLogFormat(): AccessLogFormat {
  return AccessLogFormat.custom(
    JSON.stringify({
      requestId: AccessLogField.contextRequestId(),
      extendedRequestId: AccessLogField.contextExtendedRequestId(),
      requestTimeEpoch: AccessLogField.contextRequestTimeEpoch(),
      connectionId: AccessLogField.contextConnectionId(),
      eventType: AccessLogField.contextEventType(),
      routeKey: AccessLogField.contextRouteKey(),
      messageId: '$context.messageId',
      status: AccessLogField.contextStatus(),
      sourceIp: AccessLogField.contextIdentitySourceIp(),
      userAgent: AccessLogField.contextIdentityUserAgent(),
      errorMessage: AccessLogField.contextErrorMessage(),
      integrationError: '$context.integration.error',
      integrationStatus: AccessLogField.contextIntegrationStatus(),
      integrationLatency: AccessLogField.contextIntegrationLatency(),
    }),
  );
}

/**
 * The WebSocket API with its one stage (named after the deployment stage), throttled and
 * access-logged as JSON. Routes are added by the stack once the handler functions exist.
 */
export class RealtimeWebSocketApi extends Construct {
  /** The WebSocket API. */
  readonly api: WebSocketApi;
  /** The API's stage; its name is the deployment stage's name. */
  readonly stage: WebSocketStage;
  /** The stage's access log group. */
  readonly accessLogGroup: LogGroup;
  /** The custom domain, when the stage has one. */
  readonly domainName?: DomainName;

  constructor(scope: Construct, id: string, props: RealtimeWebSocketApiProps) {
    super(scope, id);
    const { settings } = props;

    this.api = new WebSocketApi(this, 'Api', {
      apiName: `realtime-${settings.name}`,
      description: `Real-time WebSocket API (${settings.name})`,
      routeSelectionExpression: ROUTE_SELECTION_EXPRESSION,
    });
    this.accessLogGroup = new LogGroup(this, 'AccessLogs', {
      logGroupName: `/aws/apigateway/realtime-${settings.name}/access`,
      retention: settings.logRetentionDays as RetentionDays,
      removalPolicy: props.removalPolicy,
    });

    if (settings.customDomain !== undefined) {
      this.domainName = new DomainName(this, 'DomainName', {
        domainName: settings.customDomain.domainName,
        certificate: Certificate.fromCertificateArn(this, 'Certificate', settings.customDomain.certificateArn),
      });
    }

    this.stage = new WebSocketStage(this, 'Stage', {
      webSocketApi: this.api,
      stageName: settings.name,
      description: `Stage ${settings.name}`,
      autoDeploy: true,
      throttle: { rateLimit: settings.throttling.rateLimit, burstLimit: settings.throttling.burstLimit },
      accessLogSettings: {
        destination: new LogGroupLogDestination(this.accessLogGroup),
        format: accessLogFormat(),
      },
      domainMapping: this.domainName === undefined ? undefined : { domainName: this.domainName },
    });

    if (settings.manageApiGatewayAccountRole) {
      this.setAccountLogRole();
    }
  }

  /**
   * WebSocket access logging needs API Gateway's account-wide CloudWatch Logs role; without it the stage
   * fails to deploy. Kept on stack deletion, since other stages in the account rely on it.
   */
  private setAccountLogRole(): void {
    const policy = ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonAPIGatewayPushToCloudWatchLogs');
    const role = new Role(this, 'AccountLogRole', {
      assumedBy: new ServicePrincipal('apigateway.amazonaws.com'),
      description: 'API Gateway account-wide role for writing CloudWatch Logs',
      managedPolicies: [policy],
    });
    role.applyRemovalPolicy(RemovalPolicy.RETAIN);
    Validations.of(role).acknowledge({
      id: `AwsSolutions-IAM4[Policy::${flattenCfnReference(Stack.of(this).resolve(policy.managedPolicyArn))}]`,
      reason:
        'The AWS-maintained policy API Gateway documents for its account-wide logging role; API Gateway names the log groups itself, so no narrower resource exists.',
    });
    const account = new CfnAccount(this, 'Account', { cloudWatchRoleArn: role.roleArn });
    account.applyRemovalPolicy(RemovalPolicy.RETAIN);
    this.stage.node.addDependency(account);
  }

  /**
   * Routes this route key (`$connect`, `$disconnect`, `$default` or an action) to the integration.
   * Only `$connect` may have an authorizer (CDK rejects one elsewhere: API Gateway checks nothing
   * after the upgrade); without one it is open, which the stage must have chosen with `auth: none`.
   * Every MESSAGE route is two-way (a `$default` route response): the handler answers the caller
   * in its response body, and only deliveries to other connections go through @connections.
   */
  addRoute(
    routeKey: string,
    integration: WebSocketRouteIntegration,
    authorizer?: IWebSocketRouteAuthorizer,
  ): WebSocketRoute {
    const returnResponse = !CONNECTION_ROUTES.includes(routeKey);
    const route = this.api.addRoute(routeKey, { integration, authorizer, returnResponse });
    if (routeKey !== '$connect') {
      Validations.of(route).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason:
          'A WebSocket API authorizes only on $connect: every later frame travels on that already-accepted connection, and API Gateway offers no authorizer for other routes.',
      });
    } else if (authorizer === undefined) {
      Validations.of(route).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason: `Stage "${this.stage.stageName}" sets auth mode "none" in cdk.json: anyone may connect, deliberately (synth warns about it).`,
      });
    }
    return route;
  }

  /** The @connections endpoint: the execute-api host of the stage, never a custom domain. */
  get callbackUrl(): string {
    return this.stage.callbackUrl;
  }

  /** ARN of POST on every connection of this stage: what a function needs to send to clients. */
  get postToConnectionArn(): string {
    return Stack.of(this).formatArn({
      service: 'execute-api',
      resource: this.api.apiId,
      resourceName: `${this.stage.stageName}/POST/@connections/*`,
      arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
    });
  }
}
