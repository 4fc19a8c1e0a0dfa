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
import { HandlerFunction, type HandlerFunctionSettings } from './handler-function';

/** The cargo binary of the `$connect` authorizer. */
export const AUTHORIZER_BINARY = 'authorizer';

/** How `$connect` authenticates clients: a JWT checked by the authorizer, or nobody (an open API). */
export const AUTH_MODES = ['hs256', 'jwks', 'none'] as const;
/** An auth mode name. */
export type AuthModeName = (typeof AUTH_MODES)[number];

/** The signature algorithms a JWKS stage may accept (one per stage: no algorithm confusion). */
export const JWT_ALGORITHMS = ['RS256', 'ES256'] as const;
/** A JWKS signature algorithm. */
export type JwtAlgorithmName = (typeof JWT_ALGORITHMS)[number];

/** HS256 tokens signed with a key the stack generates and keeps in Secrets Manager. */
export interface Hs256AuthSettings {
  readonly mode: 'hs256';
  /** Required `iss` claim. @default - not checked */
  readonly issuer?: string;
  /** Required `aud` claim. @default - not checked */
  readonly audience?: string;
}

/** RS256 or ES256 tokens of an identity provider that publishes its keys (e.g. a Cognito user pool). */
export interface JwksAuthSettings {
  readonly mode: 'jwks';
  /** The https:// URL of the provider's JSON Web Key Set. */
  readonly jwksUrl: string;
  /** Required `iss` claim. */
  readonly issuer: string;
  /** Required `aud` claim (for Cognito: the app client id). */
  readonly audience: string;
  /** The one algorithm accepted. */
  readonly algorithm: JwtAlgorithmName;
}

/** No authorizer: anyone who knows the URL may connect (synth warns). */
export interface NoAuthSettings {
  readonly mode: 'none';
}

/** Who may connect to a stage. */
export type AuthSettings = Hs256AuthSettings | JwksAuthSettings | NoAuthSettings;

/**
 * Where API Gateway looks for the token. Browsers cannot set headers on a WebSocket, so the token
 * travels in the query string; a request without it gets 401 without invoking the function.
 */
export const TOKEN_IDENTITY_SOURCE = 'route.request.querystring.token';

/** Length of the generated HS256 key: 64 letters and digits, about 380 bits (the authorizer needs ≥ 32 bytes). */
export const JWT_SECRET_LENGTH = 64;

/** Properties of a ConnectAuthorizer. */
export interface ConnectAuthorizerProps {
  /** The stage's name, sizing, tracing and log retention. */
  readonly settings: HandlerFunctionSettings;
  /** The stage's auth (never `none`: then there is no authorizer at all). */
  readonly auth: Hs256AuthSettings | JwksAuthSettings;
  /** The WebSocket API whose `$connect` this authorizes. */
  readonly webSocketApi: IWebSocketApi;
  /** Path to the workspace Cargo.toml. */
  readonly manifestPath: string;
  /** Fate of the secret and the log group on stack deletion. */
  readonly removalPolicy: RemovalPolicy;
  /** Reserved concurrent executions of the authorizer function. @default - none (unreserved) */
  readonly reservedConcurrency?: number;
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
      reservedConcurrency: props.reservedConcurrency,
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
