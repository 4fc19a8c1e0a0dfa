#!/usr/bin/env node
// The CDK app: `npx cdk synth|diff|deploy -c stage=NAME` (default dev). Only this file reads the environment.
import { App } from 'aws-cdk-lib';
import { StageSettingsError, stageSettingsFromContext } from '../cdk/stages';
import { buildRealtimeApp } from '../lib/realtime-app';
import { authNoneWarning } from '../lib/realtime-stack';

// SKIP_BUNDLING=1 skips the cargo lambda builds (the CLI always asks for bundling, and rejects -c aws:...).
const skipBundling = process.env.SKIP_BUNDLING === '1';
const app = new App(skipBundling ? { postCliContext: { 'aws:cdk:bundling-stacks': [] } } : {});

try {
  // The stage's settings are validated here, before any construct sees them.
  const settings = stageSettingsFromContext(app);
  const stack = buildRealtimeApp(app, settings);
  const requested = app.node.tryGetContext('architecture');
  if (requested !== undefined) {
    process.stderr.write(`NOTE: architecture overridden by context: ${stack.stackName} builds ${stack.settings.architecture}.\n`);
  }
  // Also a warning annotation on the stack; said here too so that it is never missed.
  if (stack.settings.auth.mode === 'none') {
    process.stderr.write(`WARNING: ${authNoneWarning(stack.settings.name)}\n`);
  }
  if (skipBundling) {
    process.stderr.write(
      `NOTE: SKIP_BUNDLING=1: ${stack.stackName}'s function code points at source folders; for tests and the local gateway only, never deploy it.\n`,
    );
  }
} catch (error) {
  if (error instanceof StageSettingsError) {
    process.stderr.write(`error: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}
