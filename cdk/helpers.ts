// Shared by the stack tests: synthesize a stage from cdk.json's real context, bundling skipped.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { App, type CfnElement } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { buildRealtimeApp } from '../lib/realtime-app';
import type { RealtimeStack } from '../lib/realtime-stack';

/** A JSON object as read from cdk.json or a template. */
export type Json = Record<string, unknown>;

/** cdk.json's context, exactly as the CLI would pass it. */
export const CDK_CONTEXT: Json = (JSON.parse(readFileSync(path.join(__dirname, '..', 'cdk.json'), 'utf8')) as Json)
  .context as Json;

/** The raw `stages` object of cdk.json. */
export const RAW_STAGES = CDK_CONTEXT.stages as Record<string, Json>;

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
  const stack = buildRealtimeApp(app);
  return { app, stack, template: Template.fromStack(stack) };
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
