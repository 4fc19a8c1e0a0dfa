import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import { PolicyStatement, Role, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Architecture, CfnFunction, LoggingFormat, Tracing } from 'aws-cdk-lib/aws-lambda';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { RustFunction } from 'cargo-lambda-cdk';
import { Construct } from 'constructs';
import type { StageSettings } from '../cdk/stages';

/** The CloudFormation metadata key through which the local gateway finds a function's binary. */
export const BINARY_METADATA_KEY = 'local:binary';

/** Properties of a HandlerFunction. */
export interface HandlerFunctionProps {
  /** Cargo binary (and package) name of the handler, e.g. `message`. */
  readonly binary: string;
  /** One line saying what the handler does (the Lambda description). */
  readonly description: string;
  /** The stage's validated settings: architecture, memory, timeout, tracing, log retention. */
  readonly settings: StageSettings;
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
      timeout: Duration.seconds(settings.timeoutSeconds),
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
