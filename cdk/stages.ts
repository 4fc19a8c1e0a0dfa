// The deployment stages: the schema of cdk.json's `stages` context, validated with zod before
// bin/app.ts builds a stack. Every error names the stage, the setting and the valid values, so a
// typo stops synth early. The stack's own types (lib/) say what it takes; this file says what a
// stage may write and what it gets when it writes nothing.
import type { App } from 'aws-cdk-lib';
import { z } from 'zod';
import { AUTH_MODES, JWT_ALGORITHMS } from '../lib/connect-authorizer';
import { ARCHITECTURES, LOG_RETENTION_DAYS, MAX_FUNCTION_TIMEOUT_SECONDS } from '../lib/handler-function';
import { FANOUT_QUEUE_RETENTION_SECONDS } from '../lib/queued-fanout';
import {
  type ConnectionRateLimitSettings,
  REMOVAL_POLICIES,
  RESERVABLE_FUNCTIONS,
  type RealtimeStackSettings,
} from '../lib/realtime-stack';
import { MAX_ROUTE_TIMEOUT_SECONDS } from '../lib/websocket-api';

/** The stage used when no `-c stage=NAME` is given. */
export const DEFAULT_STAGE = 'dev';

/** Default bound on concurrent @connections posts per fan-out. */
export const DEFAULT_FANOUT_CONCURRENCY = 64;

/** The per-connection token bucket when cdk.json does not set one: 10 messages a second, bursts of 20. */
export const DEFAULT_CONNECTION_RATE_LIMIT: ConnectionRateLimitSettings = { perSecond: 10, burst: 20 };

/** Default bound on the rooms one connection may be in, the lobby included. */
export const DEFAULT_MAX_ROOMS_PER_CONNECTION = 50;

/** Default age, in seconds, under which a connection's 410 does not delete its records. */
export const DEFAULT_NEW_CONNECTION_GRACE_SECONDS = 30;

/** The stage's auth when cdk.json does not set one: secure by default, never `none`. */
export const DEFAULT_AUTH = { mode: 'hs256' } as const;

/**
 * Room shards when cdk.json names none: the lobby, which every `$connect` writes, over 8 keys
 * (the handlers' own default, `lambdas/core/src/shards.rs`). A stage's `roomShards` replaces it.
 */
export const DEFAULT_ROOM_SHARDS: Readonly<Record<string, number>> = { lobby: 8 };

/** The most shards a room may have (`MAX_SHARDS` of `lambdas/core/src/shards.rs`). */
export const MAX_ROOM_SHARDS = 1000;

/** The queued fan-out tier when cdk.json does not size it. */
export const DEFAULT_QUEUED_FANOUT = {
  aboveMembers: 1000,
  postsPerSecond: 5000,
  // API Gateway's default account-wide throttle, in requests per second.
  accountPostsPerSecond: 10000,
  maxConcurrency: 10,
  batchSize: 4,
  maxReceiveCount: 3,
  timeoutSeconds: 60,
  ageAlarmSeconds: 30,
} as const;

const STAGE_NAME = /^[a-z][a-z0-9-]{0,19}$/;
const ACCOUNT = /^\d{12}$/;
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;
const DOMAIN_NAME = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
// A claim value as written in a token: no whitespace, at most 1024 characters.
const CLAIM = /^\S{1,1024}$/;
const CLAIM_DESCRIPTION = 'a non-empty string without whitespace (at most 1024 characters)';
const CERTIFICATE_ARN = /^arn:aws[a-z-]*:acm:([a-z]{2}(-[a-z]+)+-\d):\d{12}:certificate\/[A-Za-z0-9-]+$/;
// `Room::parse` (lambdas/core/src/model.rs): 1 to 64 of [A-Za-z0-9_-]. A trailing `*` makes it a
// prefix; `*` alone (the empty prefix) is every room, as `RoomShards::parse` accepts.
const ROOM_SHARD_KEY = /^(?:[A-Za-z0-9_-]{1,64}|[A-Za-z0-9_-]{0,64}\*)$/;
const ROOM_SHARD_KEY_DESCRIPTION =
  'room names of 1 to 64 letters, digits, "_" or "-", each optionally followed by "*" for every room that starts with it ("*" alone: every room)';

/** Raised for any invalid stage or setting; the message says what is valid. */
export class StageSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StageSettingsError';
  }
}

type Path = readonly PropertyKey[];

function show(value: unknown): string {
  return JSON.stringify(value) ?? String(value);
}

function settingName(path: Path): string {
  return path.map(String).join('.');
}

/** The sentence every invalid value gets (after `Stage "NAME": `). */
function mustBe(path: Path, expected: string, got: unknown): string {
  return `setting "${settingName(path)}" must be ${expected}; got ${show(got)}.`;
}

/** Zod's error option: whatever is wrong with the value, say the setting must be `expected`. */
function expecting(expected: string): { error: z.core.$ZodErrorMap } {
  return { error: (issue) => mustBe(issue.path ?? [], expected, issue.input) };
}

function integer(min: number, max: number) {
  const e = expecting(`an integer from ${min} to ${max}`);
  return z.int(e).min(min, e).max(max, e);
}

function atLeast(min: number) {
  const e = expecting(`an integer of at least ${min}`);
  return z.int(e).min(min, e);
}

function positiveNumber(max: number) {
  const e = expecting(`a number greater than 0 and at most ${max}`);
  return z.number(e).gt(0, e).max(max, e);
}

function boolean() {
  return z.boolean(expecting('true or false'));
}

function pattern(regex: RegExp, description: string) {
  const e = expecting(description);
  return z.string(e).regex(regex, e);
}

function isHttpsUrl(value: string): boolean {
  try {
    const url = new URL(value);
    const credentials = url.username !== '' || url.password !== '';
    return url.protocol === 'https:' && url.hostname !== '' && !credentials && !/\s/.test(value);
  } catch {
    return false;
  }
}

/**
 * An object of settings that rejects unknown keys, naming the valid ones. `expected` replaces
 * `an object with KEYS` when some keys are optional; `qualifier` says when the valid keys depend
 * on another setting, e.g. `with mode "hs256"`.
 */
function settingsObject<Shape extends z.core.$ZodLooseShape>(
  shape: Shape,
  options: { readonly expected?: string; readonly qualifier?: string } = {},
) {
  const keys = Object.keys(shape);
  const expected = options.expected ?? `an object with ${keys.join(', ')}`;
  return z.strictObject(shape, {
    error: (issue) => {
      const path = issue.path ?? [];
      if (issue.code !== 'unrecognized_keys') {
        return mustBe(path, expected, issue.input);
      }
      const prefix = path.length === 0 ? '' : `${settingName(path)}.`;
      const qualifier = options.qualifier === undefined ? '' : ` ${options.qualifier}`;
      return `unknown setting "${prefix}${issue.keys[0]}"${qualifier}; valid settings: ${keys
        .map((key) => prefix + key)
        .join(', ')}.`;
    },
  });
}

const claim = (when = '') => pattern(CLAIM, `${CLAIM_DESCRIPTION}${when}`);

const hs256Auth = settingsObject(
  { mode: z.literal('hs256'), issuer: claim().optional(), audience: claim().optional() },
  { qualifier: 'with mode "hs256"' },
);

const jwksUrlDescription =
  'an https:// URL of a JSON Web Key Set, such as "https://cognito-idp.eu-west-1.amazonaws.com/POOL_ID/.well-known/jwks.json", when mode is "jwks"';
const jwksAuth = settingsObject(
  {
    mode: z.literal('jwks'),
    jwksUrl: z.string(expecting(jwksUrlDescription)).refine(isHttpsUrl, expecting(jwksUrlDescription)),
    issuer: claim(' when mode is "jwks" (the required "iss" claim)'),
    audience: claim(' when mode is "jwks" (the required "aud" claim)'),
    algorithm: z.enum(JWT_ALGORITHMS, expecting(`one of ${JWT_ALGORITHMS.join(', ')}`)).default('RS256'),
  },
  { qualifier: 'with mode "jwks"' },
);

const noAuth = settingsObject({ mode: z.literal('none') }, { qualifier: 'with mode "none"' });

// The mode is read first, so that a bad one is named as such; it then decides which keys exist.
const auth = z
  .looseObject(
    { mode: z.enum(AUTH_MODES, expecting(`one of ${AUTH_MODES.join(', ')}`)) },
    expecting('an object with mode, jwksUrl, issuer, audience, algorithm'),
  )
  .pipe(z.discriminatedUnion('mode', [hs256Auth, jwksAuth, noAuth]));

const reservation = integer(1, 10000).optional();

// zod reports a bad key as the record's issue, at roomShards.KEY with the key as input.
const roomShards = z
  .record(z.string().regex(ROOM_SHARD_KEY), integer(1, MAX_ROOM_SHARDS), {
    error: (issue) => {
      const path = issue.path ?? [];
      return issue.code === 'invalid_key'
        ? mustBe(path.slice(0, -1), `keyed by ${ROOM_SHARD_KEY_DESCRIPTION}`, issue.input)
        : mustBe(
            path,
            'an object of room name (or prefix*) to shard count, such as {"lobby":8,"live-*":64}',
            issue.input,
          );
    },
  })
  .default({ ...DEFAULT_ROOM_SHARDS });

const queuedFanout = settingsObject(
  {
    aboveMembers: atLeast(1).default(DEFAULT_QUEUED_FANOUT.aboveMembers),
    postsPerSecond: atLeast(1).default(DEFAULT_QUEUED_FANOUT.postsPerSecond),
    accountPostsPerSecond: atLeast(1).default(DEFAULT_QUEUED_FANOUT.accountPostsPerSecond),
    // Lambda's limits on an SQS event source's maximum concurrency.
    maxConcurrency: integer(2, 1000).default(DEFAULT_QUEUED_FANOUT.maxConcurrency),
    batchSize: integer(1, 10).default(DEFAULT_QUEUED_FANOUT.batchSize),
    maxReceiveCount: integer(1, 1000).default(DEFAULT_QUEUED_FANOUT.maxReceiveCount),
    timeoutSeconds: integer(1, MAX_FUNCTION_TIMEOUT_SECONDS).default(DEFAULT_QUEUED_FANOUT.timeoutSeconds),
    // An age the queue can reach: it keeps a job no longer than this.
    ageAlarmSeconds: integer(1, FANOUT_QUEUE_RETENTION_SECONDS).default(DEFAULT_QUEUED_FANOUT.ageAlarmSeconds),
  },
  { expected: `an object with any of ${Object.keys(DEFAULT_QUEUED_FANOUT).join(', ')}` },
);

/** One stage's settings as cdk.json writes them (the stage's name is its key there). */
const STAGE_SETTINGS = settingsObject({
  account: pattern(ACCOUNT, 'a 12-digit AWS account id').optional(),
  region: pattern(REGION, 'an AWS region name such as "eu-west-1"').optional(),
  architecture: z.enum(ARCHITECTURES, expecting(`one of ${ARCHITECTURES.join(', ')}`)).default('arm64'),
  memoryMb: integer(128, 10240),
  timeoutSeconds: integer(1, MAX_ROUTE_TIMEOUT_SECONDS),
  logRetentionDays: z.literal(LOG_RETENTION_DAYS, expecting(`one of ${LOG_RETENTION_DAYS.join(', ')}`)),
  auditRetentionDays: integer(1, 3650),
  // The account-wide API Gateway quota is 10,000 requests/s with a burst of 5,000.
  throttling: settingsObject({ rateLimit: positiveNumber(10000), burstLimit: integer(1, 5000) }),
  removalPolicy: z.enum(REMOVAL_POLICIES, expecting(`one of ${REMOVAL_POLICIES.join(', ')}`)),
  pointInTimeRecovery: boolean(),
  deletionProtection: boolean(),
  tracing: boolean(),
  fanoutConcurrency: integer(1, 1024).default(DEFAULT_FANOUT_CONCURRENCY),
  connectionRateLimit: settingsObject({ perSecond: positiveNumber(1000), burst: integer(1, 1000) }).default({
    ...DEFAULT_CONNECTION_RATE_LIMIT,
  }),
  maxRoomsPerConnection: integer(1, 500).default(DEFAULT_MAX_ROOMS_PER_CONNECTION),
  newConnectionGraceSeconds: integer(0, 3600).default(DEFAULT_NEW_CONNECTION_GRACE_SECONDS),
  reservedConcurrency: settingsObject(
    {
      connect: reservation,
      disconnect: reservation,
      message: reservation,
      fanout: reservation,
      authorizer: reservation,
    },
    { expected: `an object with any of ${RESERVABLE_FUNCTIONS.join(', ')}` },
  ).default({}),
  alarmEmail: pattern(EMAIL, 'an e-mail address').optional(),
  customDomain: settingsObject({
    domainName: pattern(DOMAIN_NAME, 'a lower-case DNS host name such as "ws.example.com"'),
    certificateArn: pattern(
      CERTIFICATE_ARN,
      'an ACM certificate ARN such as "arn:aws:acm:eu-west-1:123456789012:certificate/UUID"',
    ),
  }).optional(),
  manageApiGatewayAccountRole: boolean().default(false),
  auth: auth.default({ ...DEFAULT_AUTH }),
  roomShards,
  queuedFanout: queuedFanout.prefault({}),
}).superRefine((stage, ctx) => {
  // Rules between settings; each names the setting to change and why.
  const fail = (path: Path, expected: string, got: unknown) =>
    ctx.addIssue({ code: 'custom', path: [...path], input: got, message: mustBe(path, expected, got) });

  const certificateRegion =
    stage.customDomain === undefined ? undefined : CERTIFICATE_ARN.exec(stage.customDomain.certificateArn)?.[1];
  if (stage.region !== undefined && certificateRegion !== undefined && certificateRegion !== stage.region) {
    fail(
      ['customDomain', 'certificateArn'],
      `a certificate in the stage's region ${stage.region} (regional endpoint)`,
      stage.customDomain?.certificateArn,
    );
  }
  // A reservation for a function the stage does not have is a leftover: say so rather than drop it.
  if (stage.auth.mode === 'none' && stage.reservedConcurrency.authorizer !== undefined) {
    fail(
      ['reservedConcurrency', 'authorizer'],
      'absent when auth mode is "none" (the stage has no authorizer function)',
      stage.reservedConcurrency.authorizer,
    );
  }
  const { maxConcurrency, postsPerSecond, accountPostsPerSecond } = stage.queuedFanout;
  // Lambda throttles what the event source starts beyond the function's reservation.
  const fanoutReserved = stage.reservedConcurrency.fanout;
  if (fanoutReserved !== undefined && fanoutReserved < maxConcurrency) {
    fail(
      ['reservedConcurrency', 'fanout'],
      `at least queuedFanout.maxConcurrency (${maxConcurrency}), or Lambda throttles the invocations the queue starts`,
      fanoutReserved,
    );
  }
  if (postsPerSecond > accountPostsPerSecond) {
    fail(
      ['queuedFanout', 'postsPerSecond'],
      `at most queuedFanout.accountPostsPerSecond (${accountPostsPerSecond}): the account's API Gateway throttle, which every @connections post and route request shares`,
      postsPerSecond,
    );
  }
  if (stage.deletionProtection && stage.removalPolicy === 'destroy') {
    fail(
      ['deletionProtection'],
      'false when removalPolicy is "destroy" (a protected table would make every stack deletion fail)',
      stage.deletionProtection,
    );
  }
});

/** The validated settings of one stage. */
export type StageSettings = z.infer<typeof STAGE_SETTINGS> & {
  /** Stage name; part of the stack name and of every resource name. */
  readonly name: string;
};

// The schema yields exactly what the stack takes: a setting the stack does not read, or one it
// reads that the schema lacks, fails type-checking here.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
/** Type-level proof that StageSettings and lib's RealtimeStackSettings are the same shape. */
export type StageSettingsMatchStack = [
  Assert<Same<StageSettings, RealtimeStackSettings>>,
  Assert<Same<keyof StageSettings, keyof RealtimeStackSettings>>,
];

function isObject(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
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
  const result = STAGE_SETTINGS.safeParse(raw);
  if (!result.success) {
    // A misspelt key explains the missing one it was meant to be: report it first.
    const { issues } = result.error;
    const issue = issues.find((each) => each.code === 'unrecognized_keys') ?? issues[0];
    throw new StageSettingsError(`Stage "${name}": ${issue.message}`);
  }
  return { name, ...result.data };
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

/**
 * The settings of the stage the app's context names (`-c stage=NAME`, default dev), from the
 * `stages` context of cdk.json, with the `architecture` context override applied when set (for
 * machines that cannot build the stage's architecture).
 */
export function stageSettingsFromContext(app: App): StageSettings {
  const stage = resolveStage(app.node.tryGetContext('stages'), app.node.tryGetContext('stage'));
  return withArchitecture(stage, app.node.tryGetContext('architecture'));
}
