// The deployment stages: typed settings, validated from the raw `stages` context of cdk.json.
// Every error names the stage, the setting and the valid values, so a typo stops synth early.

/** Lambda architectures a stage may choose. */
export const ARCHITECTURES = ['arm64', 'x86_64'] as const;
/** A Lambda architecture name as written in cdk.json. */
export type ArchitectureName = (typeof ARCHITECTURES)[number];

/** What happens to stateful resources (tables, log groups) when the stack is deleted. */
export const REMOVAL_POLICIES = ['destroy', 'retain'] as const;
/** A removal policy name as written in cdk.json. */
export type RemovalPolicyName = (typeof REMOVAL_POLICIES)[number];

/** Retention periods CloudWatch Logs accepts, in days (never-expire is deliberately not offered). */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

/** API Gateway cuts every integration off at 29 s, so a route handler may not run longer. */
export const MAX_ROUTE_TIMEOUT_SECONDS = 29;

/** The stage used when no `-c stage=NAME` is given. */
export const DEFAULT_STAGE = 'dev';

/** Default bound on concurrent @connections posts per fan-out. */
export const DEFAULT_FANOUT_CONCURRENCY = 64;

/** How `$connect` authenticates clients: a JWT checked by the authorizer, or nobody (an open API). */
export const AUTH_MODES = ['hs256', 'jwks', 'none'] as const;
/** An auth mode name as written in cdk.json. */
export type AuthModeName = (typeof AUTH_MODES)[number];

/** The signature algorithms a JWKS stage may accept (one per stage: no algorithm confusion). */
export const JWT_ALGORITHMS = ['RS256', 'ES256'] as const;
/** A JWKS signature algorithm. */
export type JwtAlgorithmName = (typeof JWT_ALGORITHMS)[number];

/** The per-connection token bucket when cdk.json does not set one: 10 messages a second, bursts of 20. */
export const DEFAULT_CONNECTION_RATE_LIMIT: ConnectionRateLimitSettings = { perSecond: 10, burst: 20 };

/** Default bound on the rooms one connection may be in, the lobby included. */
export const DEFAULT_MAX_ROOMS_PER_CONNECTION = 50;

/** Default age, in seconds, under which a connection's 410 does not delete its records. */
export const DEFAULT_NEW_CONNECTION_GRACE_SECONDS = 30;

/** The functions a stage may reserve concurrency for, by cargo binary name. */
export const RESERVABLE_FUNCTIONS = ['connect', 'disconnect', 'message', 'authorizer'] as const;
/** A function a stage may reserve concurrency for. */
export type ReservableFunctionName = (typeof RESERVABLE_FUNCTIONS)[number];

/** The stage's auth when cdk.json does not set one: secure by default, never `none`. */
export const DEFAULT_AUTH: AuthSettings = { mode: 'hs256' };

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
  /** The one algorithm accepted. @default 'RS256' */
  readonly algorithm: JwtAlgorithmName;
}

/** No authorizer: anyone who knows the URL may connect (synth warns). */
export interface NoAuthSettings {
  readonly mode: 'none';
}

/** Who may connect to a stage. */
export type AuthSettings = Hs256AuthSettings | JwksAuthSettings | NoAuthSettings;

/** A custom domain for the WebSocket endpoint, with an ACM certificate in the stack's region. */
export interface CustomDomainSettings {
  /** The host name clients connect to, e.g. `ws.example.com`. */
  readonly domainName: string;
  /** ARN of a regional ACM certificate covering `domainName`. */
  readonly certificateArn: string;
}

/** Stage throttling applied to every route (API Gateway default route settings). */
export interface ThrottlingSettings {
  /** Steady-state requests per second. */
  readonly rateLimit: number;
  /** Burst bucket size in requests. */
  readonly burstLimit: number;
}

/** A token bucket per connection, enforced by the message handler on `sendmessage`, `whisper` and `join`. */
export interface ConnectionRateLimitSettings {
  /** Tokens refilled per second (fractions allowed: 0.5 is one every two seconds). */
  readonly perSecond: number;
  /** Bucket size: how many such actions a connection may send at once. */
  readonly burst: number;
}

/**
 * Lambda reserved concurrent executions per function: a cap that also guarantees that much
 * capacity. Reservations come out of the account's pool, which must keep 100 unreserved.
 */
export type ReservedConcurrencySettings = Readonly<Partial<Record<ReservableFunctionName, number>>>;

/** The validated settings of one stage. */
export interface StageSettings {
  /** Stage name; part of the stack name and of every resource name. */
  readonly name: string;
  /** AWS account to deploy to. @default - environment-agnostic (the CLI's credentials decide) */
  readonly account?: string;
  /** AWS region to deploy to. @default - environment-agnostic (the CLI's credentials decide) */
  readonly region?: string;
  /** Lambda architecture. @default 'arm64' */
  readonly architecture: ArchitectureName;
  /** Lambda memory in MB (128 to 10240). */
  readonly memoryMb: number;
  /** Lambda timeout in seconds (1 to 29: the API Gateway integration limit). */
  readonly timeoutSeconds: number;
  /** Retention of the function and access log groups, one of LOG_RETENTION_DAYS. */
  readonly logRetentionDays: number;
  /** Days an audit record lives before its TTL expires it (1 to 3650). */
  readonly auditRetentionDays: number;
  /** Stage-wide route throttling. */
  readonly throttling: ThrottlingSettings;
  /** Fate of tables and log groups on stack deletion. */
  readonly removalPolicy: RemovalPolicyName;
  /** DynamoDB point-in-time recovery on both tables. */
  readonly pointInTimeRecovery: boolean;
  /** DynamoDB deletion protection on both tables. */
  readonly deletionProtection: boolean;
  /** X-Ray active tracing on the functions. */
  readonly tracing: boolean;
  /** Bound on concurrent @connections posts in one fan-out. @default 64 */
  readonly fanoutConcurrency: number;
  /** Per-connection rate limit on `sendmessage`, `whisper` and `join`. @default { perSecond: 10, burst: 20 } */
  readonly connectionRateLimit: ConnectionRateLimitSettings;
  /** Rooms one connection may be in, the lobby included (1 to 500). @default 50 */
  readonly maxRoomsPerConnection: number;
  /**
   * Seconds after registration during which a @connections 410 does not delete a connection's
   * records: API Gateway answers 410 while a connection's `$connect` is still finishing (0 to 3600).
   * @default 30
   */
  readonly newConnectionGraceSeconds: number;
  /** Reserved concurrent executions of the functions named. @default {} - no function reserved */
  readonly reservedConcurrency: ReservedConcurrencySettings;
  /** E-mail address subscribed to the alarm topic. @default - alarms without a notification topic */
  readonly alarmEmail?: string;
  /** Custom domain of the WebSocket endpoint. @default - the execute-api endpoint only */
  readonly customDomain?: CustomDomainSettings;
  /**
   * Whether this stack sets API Gateway's account-wide CloudWatch Logs role, which WebSocket access
   * logging requires. Account-level: let one stage per account and region own it.
   * @default false
   */
  readonly manageApiGatewayAccountRole: boolean;
  /** Who may connect: the `$connect` authorizer's mode. @default { mode: 'hs256' } */
  readonly auth: AuthSettings;
}

/** Every key a stage may set in cdk.json. */
const SETTING_KEYS: readonly (keyof StageSettings)[] = [
  'account',
  'region',
  'architecture',
  'memoryMb',
  'timeoutSeconds',
  'logRetentionDays',
  'auditRetentionDays',
  'throttling',
  'removalPolicy',
  'pointInTimeRecovery',
  'deletionProtection',
  'tracing',
  'fanoutConcurrency',
  'connectionRateLimit',
  'maxRoomsPerConnection',
  'newConnectionGraceSeconds',
  'reservedConcurrency',
  'alarmEmail',
  'customDomain',
  'manageApiGatewayAccountRole',
  'auth',
];

const STAGE_NAME = /^[a-z][a-z0-9-]{0,19}$/;
const ACCOUNT = /^\d{12}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
// A claim value as written in a token: no whitespace, at most 1024 characters.
const CLAIM = /^\S{1,1024}$/;
const CLAIM_DESCRIPTION = 'a non-empty string without whitespace (at most 1024 characters)';
const CERTIFICATE_ARN = /^arn:aws[a-z-]*:acm:([a-z]{2}(-[a-z]+)+-\d):\d{12}:certificate\/[A-Za-z0-9-]+$/;

/** Raised for any invalid stage or setting; the message says what is valid. */
export class StageSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StageSettingsError';
  }
}

type RawObject = Readonly<Record<string, unknown>>;

function isObject(value: unknown): value is RawObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

/** Reads the settings of one stage, naming the stage and the setting in every error. */
class SettingReader {
  constructor(
    private readonly stage: string,
    private readonly raw: RawObject,
    private readonly prefix = '',
  ) {}

  fail(key: string, expected: string): never {
    throw new StageSettingsError(
      `Stage "${this.stage}": setting "${this.prefix}${key}" must be ${expected}; got ${show(this.raw[key])}.`,
    );
  }

  has(key: string): boolean {
    return this.raw[key] !== undefined;
  }

  integer(key: string, min: number, max: number, fallback?: number): number {
    const value = this.raw[key] ?? fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.fail(key, `an integer from ${min} to ${max}`);
    }
    return value;
  }

  positiveNumber(key: string, max: number): number {
    const value = this.raw[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max) {
      this.fail(key, `a number greater than 0 and at most ${max}`);
    }
    return value;
  }

  boolean(key: string, fallback?: boolean): boolean {
    const value = this.raw[key] ?? fallback;
    if (typeof value !== 'boolean') {
      this.fail(key, 'true or false');
    }
    return value;
  }

  oneOf<T extends string | number>(key: string, valid: readonly T[], fallback?: T): T {
    const value = this.raw[key] ?? fallback;
    const match = valid.find((candidate) => candidate === value);
    if (match === undefined) {
      this.fail(key, `one of ${valid.join(', ')}`);
    }
    return match;
  }

  pattern(key: string, regex: RegExp, description: string): string {
    const value = this.raw[key];
    if (typeof value !== 'string' || !regex.test(value)) {
      this.fail(key, description);
    }
    return value;
  }

  optionalPattern(key: string, regex: RegExp, description: string): string | undefined {
    return this.has(key) ? this.pattern(key, regex, description) : undefined;
  }

  /** `expected` replaces `an object with KEYS` when some keys are optional. */
  nested(key: string, keys: readonly string[], expected = `an object with ${keys.join(', ')}`): SettingReader {
    const value = this.raw[key];
    if (!isObject(value)) {
      this.fail(key, expected);
    }
    const reader = new SettingReader(this.stage, value, `${this.prefix}${key}.`);
    reader.rejectUnknown(keys);
    return reader;
  }

  /** `qualifier` says when the valid keys depend on another setting, e.g. `with mode "hs256"`. */
  rejectUnknown(keys: readonly string[], qualifier?: string): void {
    const unknown = Object.keys(this.raw).filter((key) => !keys.includes(key));
    if (unknown.length > 0) {
      throw new StageSettingsError(
        `Stage "${this.stage}": unknown setting "${this.prefix}${unknown[0]}"${
          qualifier === undefined ? '' : ` ${qualifier}`
        }; valid settings: ${keys.map((key) => this.prefix + key).join(', ')}.`,
      );
    }
  }

  httpsUrl(key: string, description: string): string {
    const value = this.raw[key];
    let url: URL | undefined;
    try {
      url = typeof value === 'string' ? new URL(value) : undefined;
    } catch {
      url = undefined;
    }
    if (
      typeof value !== 'string' ||
      url === undefined ||
      url.protocol !== 'https:' ||
      url.hostname === '' ||
      url.username !== '' ||
      url.password !== '' ||
      /\s/.test(value)
    ) {
      this.fail(key, description);
    }
    return value;
  }
}

/** The `auth` setting: its mode decides which other keys exist and which are required. */
function parseAuth(read: SettingReader): AuthSettings {
  if (!read.has('auth')) {
    return DEFAULT_AUTH;
  }
  const auth = read.nested('auth', ['mode', 'jwksUrl', 'issuer', 'audience', 'algorithm']);
  const mode = auth.oneOf('mode', AUTH_MODES);
  const qualifier = `with mode "${mode}"`;
  switch (mode) {
    case 'hs256': {
      auth.rejectUnknown(['mode', 'issuer', 'audience'], qualifier);
      return {
        mode,
        issuer: auth.has('issuer') ? auth.pattern('issuer', CLAIM, CLAIM_DESCRIPTION) : undefined,
        audience: auth.has('audience') ? auth.pattern('audience', CLAIM, CLAIM_DESCRIPTION) : undefined,
      };
    }
    case 'jwks': {
      auth.rejectUnknown(['mode', 'jwksUrl', 'issuer', 'audience', 'algorithm'], qualifier);
      return {
        mode,
        jwksUrl: auth.httpsUrl(
          'jwksUrl',
          'an https:// URL of a JSON Web Key Set, such as "https://cognito-idp.eu-west-1.amazonaws.com/POOL_ID/.well-known/jwks.json", when mode is "jwks"',
        ),
        issuer: auth.pattern('issuer', CLAIM, `${CLAIM_DESCRIPTION} when mode is "jwks" (the required "iss" claim)`),
        audience: auth.pattern('audience', CLAIM, `${CLAIM_DESCRIPTION} when mode is "jwks" (the required "aud" claim)`),
        algorithm: auth.oneOf('algorithm', JWT_ALGORITHMS, 'RS256'),
      };
    }
    case 'none': {
      auth.rejectUnknown(['mode'], qualifier);
      return { mode };
    }
  }
}

/** The `connectionRateLimit` setting: both keys, or the default when absent. */
function parseConnectionRateLimit(read: SettingReader): ConnectionRateLimitSettings {
  if (!read.has('connectionRateLimit')) {
    return DEFAULT_CONNECTION_RATE_LIMIT;
  }
  const limit = read.nested('connectionRateLimit', ['perSecond', 'burst']);
  return {
    perSecond: limit.positiveNumber('perSecond', 1000),
    burst: limit.integer('burst', 1, 1000),
  };
}

/** The `reservedConcurrency` setting: only the functions it names, each within Lambda's range. */
function parseReservedConcurrency(read: SettingReader, auth: AuthSettings): ReservedConcurrencySettings {
  if (!read.has('reservedConcurrency')) {
    return {};
  }
  const reader = read.nested(
    'reservedConcurrency',
    RESERVABLE_FUNCTIONS,
    `an object with any of ${RESERVABLE_FUNCTIONS.join(', ')}`,
  );
  const reserved: Partial<Record<ReservableFunctionName, number>> = {};
  for (const name of RESERVABLE_FUNCTIONS) {
    if (reader.has(name)) {
      reserved[name] = reader.integer(name, 1, 10000);
    }
  }
  // A reservation for a function the stage does not have is a leftover: say so rather than drop it.
  if (auth.mode === 'none' && reserved.authorizer !== undefined) {
    reader.fail('authorizer', 'absent when auth mode is "none" (the stage has no authorizer function)');
  }
  return reserved;
}

/** Validates the raw settings of one stage and returns them typed, or throws a StageSettingsError. */
export function parseStageSettings(name: string, raw: unknown): StageSettings {
  if (!STAGE_NAME.test(name)) {
    throw new StageSettingsError(
      `Stage name "${name}" must be 1 to 20 lower-case letters, digits or hyphens, starting with a letter (it is part of every resource name).`,
    );
  }
  if (!isObject(raw)) {
    throw new StageSettingsError(`Stage "${name}": settings must be an object; got ${show(raw)}.`);
  }
  const read = new SettingReader(name, raw);
  read.rejectUnknown(SETTING_KEYS);

  const throttlingReader = read.nested('throttling', ['rateLimit', 'burstLimit']);
  // The account-wide API Gateway quota is 10,000 requests/s with a burst of 5,000.
  const throttling: ThrottlingSettings = {
    rateLimit: throttlingReader.positiveNumber('rateLimit', 10000),
    burstLimit: throttlingReader.integer('burstLimit', 1, 5000),
  };

  const region = read.optionalPattern('region', REGION, 'an AWS region name such as "eu-west-1"');
  let customDomain: CustomDomainSettings | undefined;
  if (read.has('customDomain')) {
    const domainReader = read.nested('customDomain', ['domainName', 'certificateArn']);
    const domainName = domainReader.pattern('domainName', DOMAIN_NAME, 'a lower-case DNS host name such as "ws.example.com"');
    const certificateArn = domainReader.pattern(
      'certificateArn',
      CERTIFICATE_ARN,
      'an ACM certificate ARN such as "arn:aws:acm:eu-west-1:123456789012:certificate/UUID"',
    );
    const certificateRegion = CERTIFICATE_ARN.exec(certificateArn)?.[1];
    if (region !== undefined && certificateRegion !== region) {
      domainReader.fail('certificateArn', `a certificate in the stage's region ${region} (regional endpoint)`);
    }
    customDomain = { domainName, certificateArn };
  }

  const auth = parseAuth(read);
  const settings: StageSettings = {
    name,
    account: read.optionalPattern('account', ACCOUNT, 'a 12-digit AWS account id'),
    region,
    architecture: read.oneOf('architecture', ARCHITECTURES, 'arm64'),
    memoryMb: read.integer('memoryMb', 128, 10240),
    timeoutSeconds: read.integer('timeoutSeconds', 1, MAX_ROUTE_TIMEOUT_SECONDS),
    logRetentionDays: read.oneOf('logRetentionDays', LOG_RETENTION_DAYS),
    auditRetentionDays: read.integer('auditRetentionDays', 1, 3650),
    throttling,
    removalPolicy: read.oneOf('removalPolicy', REMOVAL_POLICIES),
    pointInTimeRecovery: read.boolean('pointInTimeRecovery'),
    deletionProtection: read.boolean('deletionProtection'),
    tracing: read.boolean('tracing'),
    fanoutConcurrency: read.integer('fanoutConcurrency', 1, 1024, DEFAULT_FANOUT_CONCURRENCY),
    connectionRateLimit: parseConnectionRateLimit(read),
    maxRoomsPerConnection: read.integer('maxRoomsPerConnection', 1, 500, DEFAULT_MAX_ROOMS_PER_CONNECTION),
    newConnectionGraceSeconds: read.integer('newConnectionGraceSeconds', 0, 3600, DEFAULT_NEW_CONNECTION_GRACE_SECONDS),
    reservedConcurrency: parseReservedConcurrency(read, auth),
    alarmEmail: read.optionalPattern('alarmEmail', EMAIL, 'an e-mail address'),
    customDomain,
    manageApiGatewayAccountRole: read.boolean('manageApiGatewayAccountRole', false),
    auth,
  };

  if (settings.deletionProtection && settings.removalPolicy === 'destroy') {
    read.fail(
      'deletionProtection',
      'false when removalPolicy is "destroy" (a protected table would make every stack deletion fail)',
    );
  }
  return settings;
}

/** Validates every stage of the raw `stages` context and returns them by name. */
export function parseStages(raw: unknown): ReadonlyMap<string, StageSettings> {
  if (!isObject(raw) || Object.keys(raw).length === 0) {
    throw new StageSettingsError(
      `The "stages" context (cdk.json) must be an object with at least one stage; got ${show(raw)}.`,
    );
  }
  return new Map(Object.entries(raw).map(([name, settings]) => [name, parseStageSettings(name, settings)]));
}

/** Picks the requested stage (default `dev`) out of the raw `stages` context, validated. */
export function resolveStage(rawStages: unknown, requested: unknown): StageSettings {
  const name = requested ?? DEFAULT_STAGE;
  if (typeof name !== 'string') {
    throw new StageSettingsError(`The stage must be a name (-c stage=NAME); got ${show(name)}.`);
  }
  const stages = parseStages(rawStages);
  const settings = stages.get(name);
  if (settings === undefined) {
    throw new StageSettingsError(
      `Unknown stage "${name}"; valid stages: ${[...stages.keys()].join(', ')} (choose one with -c stage=NAME).`,
    );
  }
  return settings;
}

/** Replaces a stage's architecture, validating the override like any setting. */
export function withArchitecture(settings: StageSettings, override: unknown): StageSettings {
  if (override === undefined) {
    return settings;
  }
  const architecture = ARCHITECTURES.find((candidate) => candidate === override);
  if (architecture === undefined) {
    throw new StageSettingsError(
      `Stage "${settings.name}": context override "architecture" must be one of ${ARCHITECTURES.join(', ')}; got ${show(override)}.`,
    );
  }
  return { ...settings, architecture };
}
