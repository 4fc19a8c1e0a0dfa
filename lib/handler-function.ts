import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, CfnFunction, LoggingFormat, Tracing } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';

/** The CloudFormation metadata key through which the local gateway finds a function's binary. */
export const BINARY_METADATA_KEY = 'local:binary';

/** Lambda architectures a function may run on. */
export const ARCHITECTURES = ['arm64', 'x86_64'] as const;
/** A Lambda architecture name. */
export type ArchitectureName = (typeof ARCHITECTURES)[number];

/** Retention periods CloudWatch Logs accepts, in days (never-expire is deliberately not offered). */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;
/** A retention CloudWatch Logs accepts. */
export type LogRetentionDays = (typeof LOG_RETENTION_DAYS)[number];

/** Lambda's own cap on a function's timeout, in seconds. */
export const MAX_FUNCTION_TIMEOUT_SECONDS = 900;

/** What every handler function of a stage shares: its name, sizing and observability. */
export interface HandlerFunctionSettings {
  /** The stage's name: part of the function and log group names. */
  readonly name: string;
  /** Lambda architecture. */
  readonly architecture: ArchitectureName;
  /** Lambda memory in MB (128 to 10240). */
  readonly memoryMb: number;
  /** Lambda timeout in seconds, unless the function sets its own (`HandlerFunctionProps.timeoutSeconds`). */
  readonly timeoutSeconds: number;
  /** Retention of the function's log group. */
  readonly logRetentionDays: LogRetentionDays;
  /** X-Ray active tracing. */
  readonly tracing: boolean;
}

/** Properties of a HandlerFunction. */
export interface HandlerFunctionProps {
  /** Cargo binary (and package) name of the handler, e.g. `message`. */
  readonly binary: string;
  /** One line saying what the handler does (the Lambda description). */
  readonly description: string;
  /** The stage's sizing, tracing and log retention. */
  readonly settings: HandlerFunctionSettings;
  /** Path to the workspace Cargo.toml. */
  readonly manifestPath: string;
  /** Environment variables of the handler. */
  readonly environment: Readonly<Record<string, string>>;
  /** Fate of the log group on stack deletion. */
  readonly removalPolicy: RemovalPolicy;
  /**
   * Reserved concurrent executions: at most this many at once, and that many always available.
   * @default - none (unreserved)
   */
  readonly reservedConcurrency?: number;
  /**
   * This function's timeout in seconds (1 to 900), for a function no API Gateway route waits on.
   * @default settings.timeoutSeconds
   */
  readonly timeoutSeconds?: number;
}

/**
 * One Rust handler binary as a Lambda function, with its own log group and its own role.
 * The role starts with nothing but writing to that log group; `allow` adds each permission explicitly.
 */
export class HandlerFunction extends Construct {
  /** The Lambda function. */
  readonly function: RustFunction;
  /** The function's execution role. */
  readonly role: Role;
  /** The function's log group. */
  readonly logGroup: LogGroup;
  /** The cargo binary this function runs. */
  readonly binary: string;

  constructor(scope: Construct, id: string, props: HandlerFunctionProps) {
    super(scope, id);
    const { binary, settings } = props;
    this.binary = binary;
    const functionName = `realtime-${settings.name}-${binary}`;
    const timeoutSeconds = props.timeoutSeconds ?? settings.timeoutSeconds;
    if (
      !Number.isInteger(timeoutSeconds) ||
      timeoutSeconds < 1 ||
      timeoutSeconds > MAX_FUNCTION_TIMEOUT_SECONDS
    ) {
      throw new Error(
        `HandlerFunction ${binary}: timeoutSeconds must be an integer from 1 to ${MAX_FUNCTION_TIMEOUT_SECONDS}; got ${timeoutSeconds}.`,
      );
    }

    // An explicit log group: its retention follows the stage, and the role can be scoped to it
    // instead of the managed AWSLambdaBasicExecutionRole (logs:* on every group).
    this.logGroup = new LogGroup(this, 'LogGroup', {
      logGroupName: `/aws/lambda/${functionName}`,
      retention: settings.logRetentionDays as RetentionDays,
      removalPolicy: props.removalPolicy,
    });

    this.role = new Role(this, 'Role', {
      assumedBy: new ServicePrincipal('lambda.amazonaws.com'),
      description: `Execution role of ${functionName}`,
    });
    this.allow('WriteOwnLogGroup', ['logs:CreateLogStream', 'logs:PutLogEvents'], [this.logGroup.logGroupArn]);

    this.function = new RustFunction(this, 'Function', {
      functionName,
      description: props.description,
      manifestPath: props.manifestPath,
      binaryName: binary,
      // Build exactly what Cargo.lock pins, like every other build of the workspace.
      bundling: { cargoLambdaFlags: ['--locked'] },
      runtime: 'provided.al2023',
      architecture: settings.architecture === 'arm64' ? Architecture.ARM_64 : Architecture.X86_64,
      memorySize: settings.memoryMb,
      timeout: Duration.seconds(timeoutSeconds),
      environment: { ...props.environment },
      // JSON makes Lambda set AWS_LAMBDA_LOG_FORMAT=JSON, which switches the handlers' tracing output to JSON.
      loggingFormat: LoggingFormat.JSON,
      logGroup: this.logGroup,
      role: this.role,
      tracing: settings.tracing ? Tracing.ACTIVE : Tracing.DISABLED,
      reservedConcurrentExecutions: props.reservedConcurrency,
    });
    (this.function.node.defaultChild as CfnFunction).addMetadata(BINARY_METADATA_KEY, binary);
  }

  /** Grants exactly these actions on exactly these resources, as one named statement. */
  allow(sid: string, actions: readonly string[], resources: readonly string[]): void {
    this.role.addToPrincipalPolicy(new PolicyStatement({ sid, actions: [...actions], resources: [...resources] }));
  }
}
