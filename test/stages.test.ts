import { AUTH_MODES } from '../lib/connect-authorizer';
import { LOG_RETENTION_DAYS } from '../lib/handler-function';
import {
  DEFAULT_CONNECTION_RATE_LIMIT,
  DEFAULT_FANOUT_CONCURRENCY,
  DEFAULT_MAX_ROOMS_PER_CONNECTION,
  DEFAULT_NEW_CONNECTION_GRACE_SECONDS,
  DEFAULT_QUEUED_FANOUT,
  DEFAULT_ROOM_SHARDS,
  parseStageSettings,
  parseStages,
  resolveStage,
  StageSettingsError,
  withArchitecture,
} from '../cdk/stages';
import { RAW_STAGES, type Json } from './helpers';

/** A minimal valid stage, for tests that break one setting at a time. */
const VALID: Json = {
  memoryMb: 256,
  timeoutSeconds: 10,
  logRetentionDays: 7,
  auditRetentionDays: 30,
  throttling: { rateLimit: 50, burstLimit: 100 },
  removalPolicy: 'destroy',
  pointInTimeRecovery: false,
  deletionProtection: false,
  tracing: false,
};

describe('the stages of cdk.json', () => {
  test('GIVEN cdk.json WHEN its stages are parsed THEN dev and prod are valid', () => {
    // WHEN
    const stages = parseStages(RAW_STAGES);
    // THEN
    expect([...stages.keys()]).toEqual(expect.arrayContaining(['dev', 'prod']));
  });

  test('GIVEN dev THEN it is disposable: destroy, no PITR, no deletion protection', () => {
    const dev = resolveStage(RAW_STAGES, 'dev');
    expect(dev).toMatchObject({ removalPolicy: 'destroy', pointInTimeRecovery: false, deletionProtection: false });
  });

  test('GIVEN prod THEN it keeps its data: retain, PITR, deletion protection', () => {
    const prod = resolveStage(RAW_STAGES, 'prod');
    expect(prod).toMatchObject({ removalPolicy: 'retain', pointInTimeRecovery: true, deletionProtection: true });
  });

  test('GIVEN dev and prod THEN both authenticate with hs256: no stage of cdk.json is open', () => {
    for (const settings of parseStages(RAW_STAGES).values()) {
      expect(settings.auth.mode).not.toBe('none');
    }
    expect(resolveStage(RAW_STAGES, 'dev').auth).toEqual({ mode: 'hs256', issuer: undefined, audience: undefined });
    expect(resolveStage(RAW_STAGES, 'prod').auth).toEqual({ mode: 'hs256', issuer: undefined, audience: undefined });
  });

  test('GIVEN prod THEN every function has reserved concurrency; GIVEN dev THEN none has', () => {
    expect(resolveStage(RAW_STAGES, 'prod').reservedConcurrency).toEqual({
      connect: 100,
      disconnect: 100,
      message: 200,
      // As many as the queue may start at once.
      fanout: 10,
      authorizer: 100,
    });
    expect(resolveStage(RAW_STAGES, 'dev').reservedConcurrency).toEqual({});
  });

  test('GIVEN dev and prod THEN both use the default per-connection limits', () => {
    for (const settings of parseStages(RAW_STAGES).values()) {
      expect(settings).toMatchObject({
        connectionRateLimit: { perSecond: 10, burst: 20 },
        maxRoomsPerConnection: 50,
        newConnectionGraceSeconds: 30,
      });
    }
  });

  test('GIVEN dev and prod THEN both shard the lobby 8 ways', () => {
    for (const settings of parseStages(RAW_STAGES).values()) {
      expect(settings.roomShards).toEqual({ lobby: 8 });
    }
  });

  test('GIVEN prod THEN its queued fan-out spells out the defaults; GIVEN dev THEN it takes a tenth of the rate on 2 invocations', () => {
    expect(resolveStage(RAW_STAGES, 'prod').queuedFanout).toEqual(DEFAULT_QUEUED_FANOUT);
    expect(resolveStage(RAW_STAGES, 'dev').queuedFanout).toEqual({
      ...DEFAULT_QUEUED_FANOUT,
      postsPerSecond: 500,
      maxConcurrency: 2,
    });
  });

  test('GIVEN every stage THEN it runs on arm64 and within the 29 s integration limit', () => {
    for (const settings of parseStages(RAW_STAGES).values()) {
      expect(settings.architecture).toBe('arm64');
      expect(settings.timeoutSeconds).toBeLessThanOrEqual(29);
    }
  });
});

describe('choosing a stage', () => {
  test('GIVEN no stage WHEN resolved THEN it is dev', () => {
    expect(resolveStage(RAW_STAGES, undefined).name).toBe('dev');
  });

  test('GIVEN an unknown stage WHEN resolved THEN the error names it and lists the valid stages', () => {
    expect(() => resolveStage(RAW_STAGES, 'nope')).toThrow(
      new StageSettingsError(
        'Unknown stage "nope"; valid stages: dev, prod (choose one with -c stage=NAME).',
      ),
    );
  });

  test('GIVEN a stage that is not a string WHEN resolved THEN it is rejected', () => {
    expect(() => resolveStage(RAW_STAGES, 42)).toThrow(/The stage must be a name \(-c stage=NAME\); got 42/);
  });

  test('GIVEN no stages context WHEN resolved THEN the error says cdk.json needs one', () => {
    expect(() => resolveStage(undefined, 'dev')).toThrow(/The "stages" context \(cdk.json\) must be an object/);
    expect(() => resolveStage({}, 'dev')).toThrow(/at least one stage/);
  });

  test('GIVEN a stage name unfit for resource names WHEN parsed THEN it is rejected', () => {
    expect(() => parseStageSettings('Prod_1', VALID)).toThrow(/Stage name "Prod_1" must be 1 to 20 lower-case/);
  });
});

describe('stage settings', () => {
  test('GIVEN only the required settings WHEN parsed THEN the defaults apply', () => {
    // WHEN
    const settings = parseStageSettings('qa', VALID);
    // THEN
    expect(settings).toEqual({
      name: 'qa',
      account: undefined,
      region: undefined,
      architecture: 'arm64',
      memoryMb: 256,
      timeoutSeconds: 10,
      logRetentionDays: 7,
      auditRetentionDays: 30,
      throttling: { rateLimit: 50, burstLimit: 100 },
      removalPolicy: 'destroy',
      pointInTimeRecovery: false,
      deletionProtection: false,
      tracing: false,
      fanoutConcurrency: DEFAULT_FANOUT_CONCURRENCY,
      connectionRateLimit: { perSecond: 10, burst: 20 },
      maxRoomsPerConnection: 50,
      newConnectionGraceSeconds: 30,
      // No reservation: every function draws on the account's unreserved pool.
      reservedConcurrency: {},
      alarmEmail: undefined,
      customDomain: undefined,
      manageApiGatewayAccountRole: false,
      // Secure by default: a stage that says nothing about auth gets hs256, never none.
      auth: { mode: 'hs256' },
      roomShards: { lobby: 8 },
      queuedFanout: {
        aboveMembers: 1000,
        postsPerSecond: 5000,
        accountPostsPerSecond: 10000,
        maxConcurrency: 10,
        batchSize: 4,
        maxReceiveCount: 3,
        timeoutSeconds: 60,
        ageAlarmSeconds: 30,
      },
    });
  });

  test('GIVEN every optional setting WHEN parsed THEN each is kept', () => {
    const settings = parseStageSettings('qa', {
      ...VALID,
      account: '123456789012',
      region: 'eu-west-1',
      architecture: 'x86_64',
      fanoutConcurrency: 16,
      connectionRateLimit: { perSecond: 0.5, burst: 3 },
      maxRoomsPerConnection: 7,
      newConnectionGraceSeconds: 0,
      reservedConcurrency: { message: 20, authorizer: 5 },
      alarmEmail: 'ops@example.com',
      customDomain: {
        domainName: 'ws.example.com',
        certificateArn: 'arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab',
      },
      manageApiGatewayAccountRole: true,
      auth: { mode: 'hs256', issuer: 'realtime-qa', audience: 'chat' },
      roomShards: { 'live-*': 64 },
      queuedFanout: { aboveMembers: 200, postsPerSecond: 300 },
    });
    expect(settings).toMatchObject({
      account: '123456789012',
      region: 'eu-west-1',
      architecture: 'x86_64',
      fanoutConcurrency: 16,
      connectionRateLimit: { perSecond: 0.5, burst: 3 },
      maxRoomsPerConnection: 7,
      newConnectionGraceSeconds: 0,
      reservedConcurrency: { message: 20, authorizer: 5 },
      alarmEmail: 'ops@example.com',
      customDomain: { domainName: 'ws.example.com' },
      manageApiGatewayAccountRole: true,
      auth: { mode: 'hs256', issuer: 'realtime-qa', audience: 'chat' },
      // A stage's rooms replace the default: the lobby is not sharded unless named.
      roomShards: { 'live-*': 64 },
      // Each queued setting not given keeps its default.
      queuedFanout: { ...DEFAULT_QUEUED_FANOUT, aboveMembers: 200, postsPerSecond: 300 },
    });
    // Only the functions named are reserved.
    expect(settings.reservedConcurrency).toEqual({ message: 20, authorizer: 5 });
  });

  test('GIVEN the defaults THEN they are the documented ones', () => {
    expect(DEFAULT_CONNECTION_RATE_LIMIT).toEqual({ perSecond: 10, burst: 20 });
    expect(DEFAULT_MAX_ROOMS_PER_CONNECTION).toBe(50);
    expect(DEFAULT_NEW_CONNECTION_GRACE_SECONDS).toBe(30);
    expect(DEFAULT_ROOM_SHARDS).toEqual({ lobby: 8 });
    expect(DEFAULT_QUEUED_FANOUT).toEqual({
      aboveMembers: 1000,
      postsPerSecond: 5000,
      accountPostsPerSecond: 10000,
      maxConcurrency: 10,
      batchSize: 4,
      maxReceiveCount: 3,
      timeoutSeconds: 60,
      ageAlarmSeconds: 30,
    });
  });

  test.each<[string, Json, Json]>([
    ['the smallest rate', { connectionRateLimit: { perSecond: 0.001, burst: 1 } }, { connectionRateLimit: { perSecond: 0.001, burst: 1 } }],
    ['the largest rate', { connectionRateLimit: { perSecond: 1000, burst: 1000 } }, { connectionRateLimit: { perSecond: 1000, burst: 1000 } }],
    ['one room (the lobby alone)', { maxRoomsPerConnection: 1 }, { maxRoomsPerConnection: 1 }],
    ['500 rooms', { maxRoomsPerConnection: 500 }, { maxRoomsPerConnection: 500 }],
    ['no grace', { newConnectionGraceSeconds: 0 }, { newConnectionGraceSeconds: 0 }],
    ['an hour of grace', { newConnectionGraceSeconds: 3600 }, { newConnectionGraceSeconds: 3600 }],
    ['an empty reservation', { reservedConcurrency: {} }, { reservedConcurrency: {} }],
    [
      'every function reserved at the bounds',
      { reservedConcurrency: { connect: 1, disconnect: 10000, message: 200, fanout: 10, authorizer: 100 } },
      { reservedConcurrency: { connect: 1, disconnect: 10000, message: 200, fanout: 10, authorizer: 100 } },
    ],
  ])('GIVEN %s WHEN parsed THEN it is kept', (_, override, expected) => {
    expect(parseStageSettings('qa', { ...VALID, ...override })).toMatchObject(expected);
  });

  test('GIVEN auth none and no authorizer reservation WHEN parsed THEN the other reservations are kept', () => {
    const settings = parseStageSettings('qa', { ...VALID, auth: { mode: 'none' }, reservedConcurrency: { message: 5 } });
    expect(settings.reservedConcurrency).toEqual({ message: 5 });
  });

  test('GIVEN any CloudWatch retention WHEN parsed THEN it is accepted', () => {
    for (const days of LOG_RETENTION_DAYS) {
      expect(parseStageSettings('qa', { ...VALID, logRetentionDays: days }).logRetentionDays).toBe(days);
    }
  });

  // Each case breaks one setting; the error must name the stage, the setting and what is valid.
  test.each<[string, Json, string]>([
    ['architecture', { architecture: 'arm' }, 'setting "architecture" must be one of arm64, x86_64; got "arm"'],
    ['memoryMb too small', { memoryMb: 64 }, 'setting "memoryMb" must be an integer from 128 to 10240; got 64'],
    ['memoryMb fractional', { memoryMb: 256.5 }, 'setting "memoryMb" must be an integer from 128 to 10240; got 256.5'],
    ['memoryMb missing', { memoryMb: undefined }, 'setting "memoryMb" must be an integer from 128 to 10240; got undefined'],
    ['timeoutSeconds', { timeoutSeconds: 30 }, 'setting "timeoutSeconds" must be an integer from 1 to 29; got 30'],
    ['logRetentionDays', { logRetentionDays: 10 }, 'setting "logRetentionDays" must be one of 1, 3, 5, 7, 14, 30, 60'],
    ['auditRetentionDays', { auditRetentionDays: 0 }, 'setting "auditRetentionDays" must be an integer from 1 to 3650; got 0'],
    ['throttling missing', { throttling: undefined }, 'setting "throttling" must be an object with rateLimit, burstLimit'],
    ['throttling.rateLimit', { throttling: { rateLimit: -1, burstLimit: 10 } }, 'setting "throttling.rateLimit" must be a number greater than 0 and at most 10000; got -1'],
    ['throttling.burstLimit', { throttling: { rateLimit: 1, burstLimit: '10' } }, 'setting "throttling.burstLimit" must be an integer from 1 to 5000; got "10"'],
    ['throttling unknown key', { throttling: { rate: 1, burstLimit: 10 } }, 'unknown setting "throttling.rate"; valid settings: throttling.rateLimit, throttling.burstLimit'],
    ['removalPolicy', { removalPolicy: 'snapshot' }, 'setting "removalPolicy" must be one of destroy, retain; got "snapshot"'],
    ['pointInTimeRecovery', { pointInTimeRecovery: 'yes' }, 'setting "pointInTimeRecovery" must be true or false; got "yes"'],
    ['tracing', { tracing: 1 }, 'setting "tracing" must be true or false; got 1'],
    ['deletion protection with destroy', { deletionProtection: true }, 'setting "deletionProtection" must be false when removalPolicy is "destroy"'],
    ['fanoutConcurrency', { fanoutConcurrency: 0 }, 'setting "fanoutConcurrency" must be an integer from 1 to 1024; got 0'],
    ['connectionRateLimit not an object', { connectionRateLimit: 10 }, 'setting "connectionRateLimit" must be an object with perSecond, burst; got 10'],
    ['connectionRateLimit.perSecond 0', { connectionRateLimit: { perSecond: 0, burst: 20 } }, 'setting "connectionRateLimit.perSecond" must be a number greater than 0 and at most 1000; got 0'],
    ['connectionRateLimit.perSecond negative', { connectionRateLimit: { perSecond: -1, burst: 20 } }, 'setting "connectionRateLimit.perSecond" must be a number greater than 0 and at most 1000; got -1'],
    ['connectionRateLimit.perSecond a string', { connectionRateLimit: { perSecond: '10', burst: 20 } }, 'setting "connectionRateLimit.perSecond" must be a number greater than 0 and at most 1000; got "10"'],
    ['connectionRateLimit.perSecond too large', { connectionRateLimit: { perSecond: 1001, burst: 20 } }, 'setting "connectionRateLimit.perSecond" must be a number greater than 0 and at most 1000; got 1001'],
    ['connectionRateLimit.perSecond missing', { connectionRateLimit: { burst: 20 } }, 'setting "connectionRateLimit.perSecond" must be a number greater than 0 and at most 1000; got undefined'],
    ['connectionRateLimit.burst 0', { connectionRateLimit: { perSecond: 10, burst: 0 } }, 'setting "connectionRateLimit.burst" must be an integer from 1 to 1000; got 0'],
    ['connectionRateLimit.burst fractional', { connectionRateLimit: { perSecond: 10, burst: 2.5 } }, 'setting "connectionRateLimit.burst" must be an integer from 1 to 1000; got 2.5'],
    ['connectionRateLimit.burst too large', { connectionRateLimit: { perSecond: 10, burst: 1001 } }, 'setting "connectionRateLimit.burst" must be an integer from 1 to 1000; got 1001'],
    ['connectionRateLimit.burst missing', { connectionRateLimit: { perSecond: 10 } }, 'setting "connectionRateLimit.burst" must be an integer from 1 to 1000; got undefined'],
    ['connectionRateLimit unknown key', { connectionRateLimit: { perSecond: 10, burst: 20, perMinute: 600 } }, 'unknown setting "connectionRateLimit.perMinute"; valid settings: connectionRateLimit.perSecond, connectionRateLimit.burst'],
    ['maxRoomsPerConnection 0', { maxRoomsPerConnection: 0 }, 'setting "maxRoomsPerConnection" must be an integer from 1 to 500; got 0'],
    ['maxRoomsPerConnection too large', { maxRoomsPerConnection: 501 }, 'setting "maxRoomsPerConnection" must be an integer from 1 to 500; got 501'],
    ['maxRoomsPerConnection a string', { maxRoomsPerConnection: '50' }, 'setting "maxRoomsPerConnection" must be an integer from 1 to 500; got "50"'],
    ['newConnectionGraceSeconds negative', { newConnectionGraceSeconds: -1 }, 'setting "newConnectionGraceSeconds" must be an integer from 0 to 3600; got -1'],
    ['newConnectionGraceSeconds too large', { newConnectionGraceSeconds: 3601 }, 'setting "newConnectionGraceSeconds" must be an integer from 0 to 3600; got 3601'],
    ['newConnectionGraceSeconds fractional', { newConnectionGraceSeconds: 1.5 }, 'setting "newConnectionGraceSeconds" must be an integer from 0 to 3600; got 1.5'],
    ['reservedConcurrency not an object', { reservedConcurrency: 100 }, 'setting "reservedConcurrency" must be an object with any of connect, disconnect, message, fanout, authorizer; got 100'],
    ['reservedConcurrency unknown key', { reservedConcurrency: { foo: 1 } }, 'unknown setting "reservedConcurrency.foo"; valid settings: reservedConcurrency.connect, reservedConcurrency.disconnect, reservedConcurrency.message, reservedConcurrency.fanout, reservedConcurrency.authorizer'],
    ['fanout reservation a string', { reservedConcurrency: { fanout: '10' } }, 'setting "reservedConcurrency.fanout" must be an integer from 1 to 10000; got "10"'],
    ['reservedConcurrency 0', { reservedConcurrency: { message: 0 } }, 'setting "reservedConcurrency.message" must be an integer from 1 to 10000; got 0'],
    ['reservedConcurrency fractional', { reservedConcurrency: { connect: 1.5 } }, 'setting "reservedConcurrency.connect" must be an integer from 1 to 10000; got 1.5'],
    ['reservedConcurrency too large', { reservedConcurrency: { disconnect: 10001 } }, 'setting "reservedConcurrency.disconnect" must be an integer from 1 to 10000; got 10001'],
    ['reservedConcurrency a string', { reservedConcurrency: { authorizer: '100' } }, 'setting "reservedConcurrency.authorizer" must be an integer from 1 to 10000; got "100"'],
    [
      'authorizer reservation without an authorizer',
      { auth: { mode: 'none' }, reservedConcurrency: { authorizer: 10 } },
      'setting "reservedConcurrency.authorizer" must be absent when auth mode is "none" (the stage has no authorizer function); got 10',
    ],
    ['account', { account: '1234' }, 'setting "account" must be a 12-digit AWS account id; got "1234"'],
    ['region', { region: 'mars' }, 'setting "region" must be an AWS region name such as "eu-west-1"; got "mars"'],
    ['alarmEmail', { alarmEmail: 'ops' }, 'setting "alarmEmail" must be an e-mail address; got "ops"'],
    ['customDomain.domainName', { customDomain: { domainName: 'Not A Host', certificateArn: 'x' } }, 'setting "customDomain.domainName" must be a lower-case DNS host name'],
    ['customDomain.certificateArn', { customDomain: { domainName: 'ws.example.com', certificateArn: 'cert' } }, 'setting "customDomain.certificateArn" must be an ACM certificate ARN'],
    [
      'certificate in another region',
      {
        region: 'eu-west-1',
        customDomain: { domainName: 'ws.example.com', certificateArn: 'arn:aws:acm:us-east-1:123456789012:certificate/abc' },
      },
      `setting "customDomain.certificateArn" must be a certificate in the stage's region eu-west-1 (regional endpoint)`,
    ],
    ['manageApiGatewayAccountRole', { manageApiGatewayAccountRole: 'true' }, 'setting "manageApiGatewayAccountRole" must be true or false'],
    ['unknown setting', { memory: 256 }, 'unknown setting "memory"; valid settings: account, region, architecture, memoryMb'],
  ])('GIVEN a bad %s WHEN parsed THEN the error names stage, setting and valid values', (_, override, message) => {
    // GIVEN
    const raw = { ...VALID, ...override };
    // WHEN / THEN
    expect(() => parseStageSettings('qa', raw)).toThrow(StageSettingsError);
    expect(() => parseStageSettings('qa', raw)).toThrow(`Stage "qa": ${message}`);
  });

  test('GIVEN settings that are not an object WHEN parsed THEN the stage is named', () => {
    expect(() => parseStageSettings('qa', 'big')).toThrow('Stage "qa": settings must be an object; got "big".');
  });

  test('GIVEN a bad setting in one stage of many WHEN all are parsed THEN that stage is named', () => {
    const raw = { ...RAW_STAGES, staging: { ...VALID, memoryMb: 1 } };
    expect(() => parseStages(raw)).toThrow('Stage "staging": setting "memoryMb"');
  });
});

describe('the architecture override', () => {
  const dev = resolveStage(RAW_STAGES, 'dev');

  test('GIVEN no override THEN the stage keeps its architecture', () => {
    expect(withArchitecture(dev, undefined)).toBe(dev);
  });

  test('GIVEN x86_64 THEN the stage builds x86_64', () => {
    expect(withArchitecture(dev, 'x86_64').architecture).toBe('x86_64');
  });

  test('GIVEN an unknown architecture THEN the error lists the valid ones', () => {
    expect(() => withArchitecture(dev, 'riscv')).toThrow(
      'Stage "dev": context override "architecture" must be one of arm64, x86_64; got "riscv".',
    );
  });
});

describe('the auth setting', () => {
  const JWKS: Json = {
    mode: 'jwks',
    jwksUrl: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json',
    issuer: 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123',
    audience: '1example23456789',
  };

  test('GIVEN hs256 alone WHEN parsed THEN issuer and audience are unchecked', () => {
    expect(parseStageSettings('qa', { ...VALID, auth: { mode: 'hs256' } }).auth).toEqual({
      mode: 'hs256',
      issuer: undefined,
      audience: undefined,
    });
  });

  test('GIVEN jwks without an algorithm WHEN parsed THEN RS256', () => {
    expect(parseStageSettings('qa', { ...VALID, auth: JWKS }).auth).toEqual({ ...JWKS, algorithm: 'RS256' });
  });

  test('GIVEN jwks with ES256 WHEN parsed THEN ES256 is kept', () => {
    expect(parseStageSettings('qa', { ...VALID, auth: { ...JWKS, algorithm: 'ES256' } }).auth).toMatchObject({
      algorithm: 'ES256',
    });
  });

  test('GIVEN none WHEN parsed THEN it is accepted (the stack warns about it)', () => {
    expect(parseStageSettings('qa', { ...VALID, auth: { mode: 'none' } }).auth).toEqual({ mode: 'none' });
  });

  test('GIVEN the modes THEN they are hs256, jwks and none', () => {
    expect(AUTH_MODES).toEqual(['hs256', 'jwks', 'none']);
  });

  // Each case breaks the auth setting one way; the error names the stage, the setting and what is valid.
  test.each<[string, unknown, string]>([
    ['auth not an object', 'hs256', 'setting "auth" must be an object with mode, jwksUrl, issuer, audience, algorithm; got "hs256"'],
    ['mode missing', {}, 'setting "auth.mode" must be one of hs256, jwks, none; got undefined'],
    ['unknown mode', { mode: 'oidc' }, 'setting "auth.mode" must be one of hs256, jwks, none; got "oidc"'],
    ['mode in capitals', { mode: 'HS256' }, 'setting "auth.mode" must be one of hs256, jwks, none; got "HS256"'],
    // The mode is read first, so an unknown key is named with the keys of that mode.
    ['unknown key', { mode: 'hs256', secret: 'x' }, 'unknown setting "auth.secret" with mode "hs256"; valid settings: auth.mode, auth.issuer, auth.audience'],
    ['unknown key in jwks mode', { ...JWKS, secret: 'x' }, 'unknown setting "auth.secret" with mode "jwks"; valid settings: auth.mode, auth.jwksUrl, auth.issuer, auth.audience, auth.algorithm'],
    ['jwks key in hs256 mode', { mode: 'hs256', jwksUrl: JWKS.jwksUrl }, 'unknown setting "auth.jwksUrl" with mode "hs256"; valid settings: auth.mode, auth.issuer, auth.audience'],
    ['algorithm in hs256 mode', { mode: 'hs256', algorithm: 'RS256' }, 'unknown setting "auth.algorithm" with mode "hs256"; valid settings: auth.mode, auth.issuer, auth.audience'],
    ['issuer in none mode', { mode: 'none', issuer: 'x' }, 'unknown setting "auth.issuer" with mode "none"; valid settings: auth.mode'],
    ['empty hs256 issuer', { mode: 'hs256', issuer: '' }, 'setting "auth.issuer" must be a non-empty string without whitespace (at most 1024 characters); got ""'],
    ['hs256 audience with a space', { mode: 'hs256', audience: 'my app' }, 'setting "auth.audience" must be a non-empty string without whitespace'],
    ['jwks without jwksUrl', { ...JWKS, jwksUrl: undefined }, 'setting "auth.jwksUrl" must be an https:// URL of a JSON Web Key Set, such as "https://cognito-idp.eu-west-1.amazonaws.com/POOL_ID/.well-known/jwks.json", when mode is "jwks"; got undefined'],
    ['jwks over http', { ...JWKS, jwksUrl: 'http://idp.example.com/jwks.json' }, 'setting "auth.jwksUrl" must be an https:// URL of a JSON Web Key Set'],
    ['jwksUrl not a URL', { ...JWKS, jwksUrl: 'cognito' }, 'setting "auth.jwksUrl" must be an https:// URL of a JSON Web Key Set'],
    ['jwksUrl with credentials', { ...JWKS, jwksUrl: 'https://user:pw@idp.example.com/jwks.json' }, 'setting "auth.jwksUrl" must be an https:// URL'],
    ['jwks without issuer', { ...JWKS, issuer: undefined }, 'setting "auth.issuer" must be a non-empty string without whitespace (at most 1024 characters) when mode is "jwks" (the required "iss" claim); got undefined'],
    ['jwks without audience', { ...JWKS, audience: undefined }, 'setting "auth.audience" must be a non-empty string without whitespace (at most 1024 characters) when mode is "jwks" (the required "aud" claim); got undefined'],
    ['jwks with HS256', { ...JWKS, algorithm: 'HS256' }, 'setting "auth.algorithm" must be one of RS256, ES256; got "HS256"'],
  ])('GIVEN %s WHEN parsed THEN the error names stage, setting and valid values', (_, auth, message) => {
    // GIVEN
    const raw = { ...VALID, auth };
    // WHEN / THEN
    expect(() => parseStageSettings('qa', raw)).toThrow(StageSettingsError);
    expect(() => parseStageSettings('qa', raw)).toThrow(`Stage "qa": ${message}`);
  });
});

describe('the roomShards setting', () => {
  const LONGEST = 'r'.repeat(64);

  test.each<[string, Json]>([
    ['an exact room', { lobby: 8 }],
    ['a prefix', { 'live-*': 64 }],
    ['"*" alone: every room', { '*': 2 }],
    ['the longest room name, and as a prefix', { [LONGEST]: 1, [`${LONGEST}*`]: 1000 }],
    ['every character a room may have', { 'Az09_-': 3, 'Az09_-*': 4 }],
    ['no room sharded', {}],
  ])('GIVEN %s WHEN parsed THEN it is kept as written', (_, roomShards) => {
    expect(parseStageSettings('qa', { ...VALID, roomShards }).roomShards).toEqual(roomShards);
  });

  test('GIVEN no roomShards WHEN parsed THEN the lobby has 8 shards', () => {
    expect(parseStageSettings('qa', VALID).roomShards).toEqual({ lobby: 8 });
  });

  const KEYS =
    'keyed by room names of 1 to 64 letters, digits, "_" or "-", each optionally followed by "*" for every room that starts with it ("*" alone: every room)';
  // Room::parse (lambdas/core/src/model.rs) accepts no dot, space or other punctuation.
  test.each<[string, unknown, string]>([
    ['not an object', 8, 'setting "roomShards" must be an object of room name (or prefix*) to shard count, such as {"lobby":8,"live-*":64}; got 8.'],
    ['a list', ['lobby'], 'setting "roomShards" must be an object of room name (or prefix*) to shard count, such as {"lobby":8,"live-*":64}; got ["lobby"].'],
    ['a dot in a name', { 'lob.by': 2 }, `setting "roomShards" must be ${KEYS}; got "lob.by".`],
    ['a space in a prefix', { 'li ve*': 2 }, `setting "roomShards" must be ${KEYS}; got "li ve*".`],
    ['an empty name', { '': 2 }, `setting "roomShards" must be ${KEYS}; got "".`],
    ['a name of 65 characters', { [LONGEST + 'x']: 2 }, `setting "roomShards" must be ${KEYS}; got "${LONGEST}x".`],
    ['a star inside a name', { 'li*ve': 2 }, `setting "roomShards" must be ${KEYS}; got "li*ve".`],
    ['two stars', { 'live**': 2 }, `setting "roomShards" must be ${KEYS}; got "live**".`],
    ['0 shards', { lobby: 0 }, 'setting "roomShards.lobby" must be an integer from 1 to 1000; got 0.'],
    ['1001 shards', { 'live-*': 1001 }, 'setting "roomShards.live-*" must be an integer from 1 to 1000; got 1001.'],
    ['a fraction of a shard', { lobby: 2.5 }, 'setting "roomShards.lobby" must be an integer from 1 to 1000; got 2.5.'],
    ['a count as a string', { lobby: '8' }, 'setting "roomShards.lobby" must be an integer from 1 to 1000; got "8".'],
  ])('GIVEN %s WHEN parsed THEN the error names stage, setting and valid values', (_, roomShards, message) => {
    const raw = { ...VALID, roomShards };
    expect(() => parseStageSettings('qa', raw)).toThrow(StageSettingsError);
    expect(() => parseStageSettings('qa', raw)).toThrow(`Stage "qa": ${message}`);
  });
});

describe('the queuedFanout setting', () => {
  test('GIVEN an empty object WHEN parsed THEN every default applies', () => {
    expect(parseStageSettings('qa', { ...VALID, queuedFanout: {} }).queuedFanout).toEqual(DEFAULT_QUEUED_FANOUT);
  });

  test.each<[string, Json]>([
    ['the lowest values', { aboveMembers: 1, postsPerSecond: 1, accountPostsPerSecond: 1, maxConcurrency: 2, batchSize: 1, maxReceiveCount: 1, timeoutSeconds: 1, ageAlarmSeconds: 1 }],
    ['the highest values', { maxConcurrency: 1000, batchSize: 10, maxReceiveCount: 1000, timeoutSeconds: 900, ageAlarmSeconds: 345600 }],
    ['posts at exactly the account throttle', { postsPerSecond: 10000, accountPostsPerSecond: 10000 }],
    ['a raised account throttle', { postsPerSecond: 20000, accountPostsPerSecond: 25000 }],
  ])('GIVEN %s WHEN parsed THEN they are kept', (_, queuedFanout) => {
    expect(parseStageSettings('qa', { ...VALID, queuedFanout }).queuedFanout).toEqual({
      ...DEFAULT_QUEUED_FANOUT,
      ...queuedFanout,
    });
  });

  test('GIVEN a fan-out reservation of exactly maxConcurrency WHEN parsed THEN it is kept', () => {
    const settings = parseStageSettings('qa', { ...VALID, queuedFanout: { maxConcurrency: 20 }, reservedConcurrency: { fanout: 20 } });
    expect(settings.reservedConcurrency).toEqual({ fanout: 20 });
  });

  const KEYS = 'aboveMembers, postsPerSecond, accountPostsPerSecond, maxConcurrency, batchSize, maxReceiveCount, timeoutSeconds, ageAlarmSeconds';
  test.each<[string, Json, string]>([
    ['not an object', { queuedFanout: true }, `setting "queuedFanout" must be an object with any of ${KEYS}; got true.`],
    ['an unknown key', { queuedFanout: { postsPerMinute: 60 } }, `unknown setting "queuedFanout.postsPerMinute"; valid settings: ${KEYS.split(', ').map((key) => `queuedFanout.${key}`).join(', ')}.`],
    ['aboveMembers 0', { queuedFanout: { aboveMembers: 0 } }, 'setting "queuedFanout.aboveMembers" must be an integer of at least 1; got 0.'],
    ['aboveMembers fractional', { queuedFanout: { aboveMembers: 10.5 } }, 'setting "queuedFanout.aboveMembers" must be an integer of at least 1; got 10.5.'],
    ['postsPerSecond 0', { queuedFanout: { postsPerSecond: 0 } }, 'setting "queuedFanout.postsPerSecond" must be an integer of at least 1; got 0.'],
    ['postsPerSecond a string', { queuedFanout: { postsPerSecond: '5000' } }, 'setting "queuedFanout.postsPerSecond" must be an integer of at least 1; got "5000".'],
    ['accountPostsPerSecond 0', { queuedFanout: { accountPostsPerSecond: 0 } }, 'setting "queuedFanout.accountPostsPerSecond" must be an integer of at least 1; got 0.'],
    ['maxConcurrency 1', { queuedFanout: { maxConcurrency: 1 } }, 'setting "queuedFanout.maxConcurrency" must be an integer from 2 to 1000; got 1.'],
    ['maxConcurrency 1001', { queuedFanout: { maxConcurrency: 1001 } }, 'setting "queuedFanout.maxConcurrency" must be an integer from 2 to 1000; got 1001.'],
    ['batchSize 0', { queuedFanout: { batchSize: 0 } }, 'setting "queuedFanout.batchSize" must be an integer from 1 to 10; got 0.'],
    ['batchSize 11', { queuedFanout: { batchSize: 11 } }, 'setting "queuedFanout.batchSize" must be an integer from 1 to 10; got 11.'],
    ['maxReceiveCount 0', { queuedFanout: { maxReceiveCount: 0 } }, 'setting "queuedFanout.maxReceiveCount" must be an integer from 1 to 1000; got 0.'],
    ['maxReceiveCount 1001', { queuedFanout: { maxReceiveCount: 1001 } }, 'setting "queuedFanout.maxReceiveCount" must be an integer from 1 to 1000; got 1001.'],
    ['timeoutSeconds 0', { queuedFanout: { timeoutSeconds: 0 } }, 'setting "queuedFanout.timeoutSeconds" must be an integer from 1 to 900; got 0.'],
    ['timeoutSeconds 901', { queuedFanout: { timeoutSeconds: 901 } }, 'setting "queuedFanout.timeoutSeconds" must be an integer from 1 to 900; got 901.'],
    ['ageAlarmSeconds 0', { queuedFanout: { ageAlarmSeconds: 0 } }, 'setting "queuedFanout.ageAlarmSeconds" must be an integer from 1 to 345600; got 0.'],
    ['ageAlarmSeconds beyond the queue retention', { queuedFanout: { ageAlarmSeconds: 345601 } }, 'setting "queuedFanout.ageAlarmSeconds" must be an integer from 1 to 345600; got 345601.'],
    [
      'postsPerSecond above the default account throttle',
      { queuedFanout: { postsPerSecond: 10001 } },
      `setting "queuedFanout.postsPerSecond" must be at most queuedFanout.accountPostsPerSecond (10000): the account's API Gateway throttle, which every @connections post and route request shares; got 10001.`,
    ],
    [
      'postsPerSecond above a lowered account throttle',
      { queuedFanout: { postsPerSecond: 5000, accountPostsPerSecond: 4000 } },
      `setting "queuedFanout.postsPerSecond" must be at most queuedFanout.accountPostsPerSecond (4000): the account's API Gateway throttle, which every @connections post and route request shares; got 5000.`,
    ],
    [
      'a fan-out reservation below maxConcurrency',
      { reservedConcurrency: { fanout: 5 } },
      'setting "reservedConcurrency.fanout" must be at least queuedFanout.maxConcurrency (10), or Lambda throttles the invocations the queue starts; got 5.',
    ],
  ])('GIVEN %s WHEN parsed THEN the error names stage, setting and valid values', (_, override, message) => {
    const raw = { ...VALID, ...override };
    expect(() => parseStageSettings('qa', raw)).toThrow(StageSettingsError);
    expect(() => parseStageSettings('qa', raw)).toThrow(`Stage "qa": ${message}`);
  });
});

describe('unknown settings', () => {
  test('GIVEN an unknown top-level key WHEN parsed THEN every valid setting is listed, the new ones included', () => {
    expect(() => parseStageSettings('qa', { ...VALID, shards: {} })).toThrow(
      'Stage "qa": unknown setting "shards"; valid settings: account, region, architecture, memoryMb, timeoutSeconds, logRetentionDays, auditRetentionDays, throttling, removalPolicy, pointInTimeRecovery, deletionProtection, tracing, fanoutConcurrency, connectionRateLimit, maxRoomsPerConnection, newConnectionGraceSeconds, reservedConcurrency, alarmEmail, customDomain, manageApiGatewayAccountRole, auth, roomShards, queuedFanout.',
    );
  });

  test('GIVEN a misspelt required key WHEN parsed THEN the misspelling is named, not the key it hides', () => {
    const { memoryMb: _, ...withoutMemory } = VALID;
    expect(() => parseStageSettings('qa', { ...withoutMemory, memoryMB: 256 })).toThrow(
      'Stage "qa": unknown setting "memoryMB"; valid settings:',
    );
  });
});
