import * as path from 'node:path';
import { type App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { resolveStage, withArchitecture } from '../cdk/stages';
import { RealtimeStack, stackName } from './realtime-stack';

/** The Cargo workspace manifest at the repository root. */
export const WORKSPACE_MANIFEST = path.join(__dirname, '..', 'Cargo.toml');

/**
 * Builds the stack of the stage named by the `stage` context (default dev) from the `stages`
 * context, with cdk-nag's AWS Solutions checks on the whole app. The `architecture` context, when
 * set, overrides the stage's architecture (for machines that cannot build the stage's one).
 */
export function buildRealtimeApp(app: App, manifestPath: string = WORKSPACE_MANIFEST): RealtimeStack {
  const stage = resolveStage(app.node.tryGetContext('stages'), app.node.tryGetContext('stage'));
  const settings = withArchitecture(stage, app.node.tryGetContext('architecture'));
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return new RealtimeStack(app, stackName(settings.name), { settings, manifestPath });
}
