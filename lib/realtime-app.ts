import * as path from 'node:path';
import { type App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { RealtimeStack, type RealtimeStackSettings, stackName } from './realtime-stack';

/** The Cargo workspace manifest at the repository root. */
export const WORKSPACE_MANIFEST = path.join(__dirname, '..', 'Cargo.toml');

/** Builds the stack of one stage, with cdk-nag's AWS Solutions checks on the whole app. */
export function buildRealtimeApp(
  app: App,
  settings: RealtimeStackSettings,
  manifestPath: string = WORKSPACE_MANIFEST,
): RealtimeStack {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return new RealtimeStack(app, stackName(settings.name), { settings, manifestPath });
}
