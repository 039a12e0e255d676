/**
 * Entry point for the AWS CDK CLI (`cdk.json`: `node dist/src/infra/main.js`), for those who
 * drive CDK themselves: `CBACTIONS_CONFIG=cbactions.yml npx cdk deploy`. The config file comes
 * from CBACTIONS_CONFIG or `-c config=FILE`; `cbactions deploy` is the usual way.
 */
import { synthesize } from './synth.js';

function contextConfig(json: string | undefined): string | undefined {
  if (json === undefined) return undefined;
  try {
    const value = (JSON.parse(json) as Record<string, unknown>).config;
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

const configPath = process.env.CBACTIONS_CONFIG ?? contextConfig(process.env.CDK_CONTEXT_JSON);
if (configPath === undefined) {
  process.stderr.write('cbactions CDK app: set CBACTIONS_CONFIG=FILE (or pass -c config=FILE)\n');
  process.exitCode = 2;
} else {
  try {
    await synthesize(configPath, { outdir: process.env.CDK_OUTDIR ?? 'cdk.out' });
  } catch (error) {
    process.stderr.write(`cbactions CDK app: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
