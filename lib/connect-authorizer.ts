import { ArnFormat, type RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import {
  type IWebSocketApi,
  type IWebSocketRouteAuthorizer,
  WebSocketAuthorizer,
  WebSocketAuthorizerType,
  type WebSocketRouteAuthorizerConfig,
} from 'aws-cdk-lib/aws-apigatewayv2';
import { ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { Hs256AuthSettings, JwksAuthSettings, ReservableFunctionName, StageSettings } from '../cdk/stages';
import { HandlerFunction } from './handler-function';

/** The cargo binary of the `$connect` authorizer. */
export const AUTHORIZER_BINARY = 'authorizer' satisfies ReservableFunctionName;

/**
 * Where API Gateway looks for the token. Browsers cannot set headers on a WebSocket, so the token
 * travels in the query string; a request without it gets 401 without invoking the function.
 */
export const TOKEN_IDENTITY_SOURCE = 'route.request.querystring.token';

/** Length of the generated HS256 key: 64 letters and digits, about 380 bits (the authorizer needs ≥ 32 bytes). */
export const JWT_SECRET_LENGTH = 64;

/** Properties of a ConnectAuthorizer. */
export interface ConnectAuthorizerProps {
  /** The stage's validated settings: name, sizing, tracing, log retention. */
  readonly settings: StageSettings;
  /** The stage's auth (never `none`: then there is no authorizer at all). */
  readonly auth: Hs256AuthSettings | JwksAuthSettings;
  /** The WebSocket API whose `$connect` this authorizes. */
  readonly webSocketApi: IWebSocketApi;
  /** Path to the workspace Cargo.toml. */
  readonly manifestPath: string;
  /** Fate of the secret and the log group on stack deletion. */
  readonly removalPolicy: RemovalPolicy;
}

/**
 * The Lambda REQUEST authorizer of `$connect`: the `authorizer` binary, its identity source, and
 * in hs256 mode the signing key in Secrets Manager, which is the only thing its role may read.
 * In jwks mode the role has nothing beyond its log group: the keys are public.
 *
 * Attach it with `addRoute('$connect', integration, connectAuthorizer)`. It builds the authorizer
 * and its invoke permission itself rather than through WebSocketLambdaAuthorizer, whose permission's
 * logical id embeds the stack name: here every stage has the same logical resources.
 */
export class ConnectAuthorizer extends Construct implements IWebSocketRouteAuthorizer {
  /** The authorizer function, its role and its log group. */
  readonly handler: HandlerFunction;
  /** The API Gateway authorizer (AWS::ApiGatewayV2::Authorizer, type REQUEST). */
  readonly authorizer: WebSocketAuthorizer;
  /** The HS256 signing key, in hs256 mode. */
  readonly secret?: Secret;

  constructor(scope: Construct, id: string, props: ConnectAuthorizerProps) {
    super(scope, id);
    const { settings, auth } = props;
    const prefix = `realtime-${settings.name}`;

    let environment: Record<string, string>;
    if (auth.mode === 'hs256') {
      this.secret = new Secret(this, 'JwtSecret', {
        secretName: `${prefix}-jwt-secret`,
        description: `HS256 key of the ${prefix} $connect tokens; whoever reads it can sign tokens for any user.`,
        generateSecretString: { passwordLength: JWT_SECRET_LENGTH, excludePunctuation: true },
        removalPolicy: props.removalPolicy,
      });
      Validations.of(this.secret).acknowledge({
        id: 'AwsSolutions-SMG4',
        reason:
          'The HS256 signing key: rotating it invalidates every issued token at once, and no rotation Lambda can reissue them; rotate by hand (put a new random value, then reissue tokens) as the README documents.',
      });
      environment = {
        AUTH_MODE: 'hs256',
        JWT_SECRET_ARN: this.secret.secretArn,
        ...(auth.issuer === undefined ? {} : { JWT_ISSUER: auth.issuer }),
        ...(auth.audience === undefined ? {} : { JWT_AUDIENCE: auth.audience }),
      };
    } else {
      environment = {
        AUTH_MODE: 'jwks',
        JWKS_URL: auth.jwksUrl,
        JWT_ISSUER: auth.issuer,
        JWT_AUDIENCE: auth.audience,
        JWT_ALGORITHM: auth.algorithm,
      };
    }

    this.handler = new HandlerFunction(this, 'Handler', {
      binary: AUTHORIZER_BINARY,
      description: `Authorizes $connect: verifies the client's JWT (${auth.mode}) and allows exactly that connection.`,
      settings,
      manifestPath: props.manifestPath,
      environment,
      removalPolicy: props.removalPolicy,
      reservedConcurrency: settings.reservedConcurrency.authorizer,
    });
    if (this.secret !== undefined) {
      // Exactly the one call the authorizer makes at init; the AWS-managed key needs no KMS grant.
      this.handler.allow('ReadJwtSecret', ['secretsmanager:GetSecretValue'], [this.secret.secretArn]);
    }

    const stack = Stack.of(this);
    this.authorizer = new WebSocketAuthorizer(this, 'Authorizer', {
      webSocketApi: props.webSocketApi,
      authorizerName: `${prefix}-connect`,
      type: WebSocketAuthorizerType.LAMBDA,
      identitySource: [TOKEN_IDENTITY_SOURCE],
      authorizerUri: `arn:${stack.partition}:apigateway:${stack.region}:lambda:path/2015-03-31/functions/${this.handler.function.functionArn}/invocations`,
    });
    // API Gateway may invoke the function as this API's authorizer, for nothing else.
    this.handler.function.addPermission('InvokeAsAuthorizer', {
      principal: new ServicePrincipal('apigateway.amazonaws.com'),
      sourceArn: stack.formatArn({
        service: 'execute-api',
        resource: props.webSocketApi.apiId,
        resourceName: `authorizers/${this.authorizer.authorizerId}`,
        arnFormat: ArnFormat.SLASH_RESOURCE_NAME,
      }),
    });
  }

  /** Called by the `$connect` route: a Lambda authorizer is a CUSTOM authorization. */
  bind(): WebSocketRouteAuthorizerConfig {
    return { authorizerId: this.authorizer.authorizerId, authorizationType: 'CUSTOM' };
  }
}
