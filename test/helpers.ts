// Shared by the stack tests: synthesize a stage from cdk.json's real context, bundling skipped.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { App, type CfnElement, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { resolveStage, type StageSettings, stageSettingsFromContext } from '../cdk/stages';
import { buildRealtimeApp } from '../lib/realtime-app';
import type { RealtimeStack } from '../lib/realtime-stack';

/** A JSON object as read from cdk.json or a template. */
export type Json = Record<string, unknown>;

/** cdk.json's context, exactly as the CLI would pass it. */
export const CDK_CONTEXT: Json = (JSON.parse(readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8')) as Json)
  .context as Json;

/** The raw `stages` object of cdk.json. */
export const RAW_STAGES = CDK_CONTEXT.stages as Record<string, Json>;

/** What bin/app.ts does: the stage the app's context names, validated, built into its stack. */
export function buildStage(app: App): RealtimeStack {
  return buildRealtimeApp(app, stageSettingsFromContext(app));
}

/** A synthesized stage: its app, stack and template. */
export interface Synthesized {
  readonly app: App;
  readonly stack: RealtimeStack;
  readonly template: Template;
}

/**
 * Synthesizes one stage with cdk-nag on (Template.fromStack throws on any unacknowledged finding).
 * `overrides` replace settings of that stage; `context` adds context values such as `architecture`.
 */
export function synthStage(stage: string, overrides: Json = {}, context: Json = {}): Synthesized {
  const stages = { ...RAW_STAGES, [stage]: { ...RAW_STAGES[stage], ...overrides } };
  const app = new App({
    context: { ...CDK_CONTEXT, ...context, stages, stage, 'aws:cdk:bundling-stacks': [] },
  });
  const stack = buildStage(app);
  return { app, stack, template: Template.fromStack(stack) };
}

/** The stages of cdk.json that the stack tests run over. */
export const STAGES = ['dev', 'prod'] as const;

// Synthesizing takes seconds: each stage once per test file, shared by the tests that read it.
const synthesized = new Map<string, Synthesized>();

/** Stage `name` exactly as cdk.json has it, synthesized (see `synthStage`) the first time it is asked for. */
export function stage(name: string): Synthesized {
  let result = synthesized.get(name);
  if (result === undefined) {
    result = synthStage(name);
    synthesized.set(name, result);
  }
  return result;
}

/** The settings of stage `name`, resolved from cdk.json's context apart from any stack. */
export function settingsOf(name: string): StageSettings {
  return resolveStage(CDK_CONTEXT.stages, name);
}

/** The logical id of a construct's CloudFormation resource. */
export function logicalId(stack: RealtimeStack, construct: IConstruct): string {
  return stack.getLogicalId(construct.node.defaultChild as CfnElement);
}

/** The `Fn::GetAtt [id, Arn]` of a resource. */
export function arnOf(id: string): Json {
  return { 'Fn::GetAtt': [id, 'Arn'] };
}

/** Every resource of a type in the template, by logical id. */
export function resourcesOf(template: Template, type: string): Record<string, Json> {
  return template.findResources(type) as Record<string, Json>;
}

/** The Properties of a resource. */
export function propertiesOf(resource: Json): Json {
  return resource.Properties as Json;
}

/** The rule ids acknowledged on a construct itself (cdk-nag findings, warnings), with their reasons. */
export function acknowledgedOn(construct: IConstruct): Record<string, string> {
  const rules: Record<string, string> = {};
  for (const entry of construct.node.metadata) {
    if (entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY) {
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        // Acknowledgements are recorded as annotation rules: `Annotation::AwsSolutions-APIG4`.
        rules[id.replace(/^Annotation::/, '')] = reason;
      }
    }
  }
  return rules;
}

/** The synthesized ARN of something in API `apiId` of this stack's account and region. */
export function executeApiArn(apiId: string, ...tail: unknown[]): Json {
  return {
    'Fn::Join': [
      '',
      [
        'arn:',
        { Ref: 'AWS::Partition' },
        ':execute-api:',
        { Ref: 'AWS::Region' },
        ':',
        { Ref: 'AWS::AccountId' },
        ':',
        { Ref: apiId },
        ...tail,
      ],
    ],
  };
}

/** Every IAM statement that reaches a role: its inline policies and every AWS::IAM::Policy naming it. */
export function statementsOf(s: Synthesized, roleId: string): Json[] {
  const role = s.template.toJSON().Resources[roleId] as Json;
  const inline = ((propertiesOf(role).Policies ?? []) as Json[]).flatMap(
    (policy) => (policy.PolicyDocument as Json).Statement as Json[],
  );
  const attached = Object.values(resourcesOf(s.template, 'AWS::IAM::Policy'))
    .filter((policy) => JSON.stringify(propertiesOf(policy).Roles).includes(`"${roleId}"`))
    .flatMap((policy) => (propertiesOf(policy).PolicyDocument as Json).Statement as Json[]);
  return [...inline, ...attached];
}
