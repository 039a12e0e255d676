#!/usr/bin/env node
// Bundles the cbactions CLI into one ES module, dist/bundle/cbactions.mjs, for the container
// images (docker/*.Dockerfile copy it; they need no node_modules).
//
// Left out of the bundle: src/infra (init/deploy/diff/destroy and the AWS CDK libraries they
// load). Its imports stay dynamic and point at the compiled tree (dist/src/infra), so in a
// checkout every command works, and in an image the deploy commands say what is missing
// instead of the whole binary failing to start.
import { build } from 'esbuild';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'dist', 'bundle', 'cbactions.mjs');
const compiledInfra = join(root, 'dist', 'src', 'infra');

/** `../infra/x.js` (from src/cli) → external `../src/infra/x.js`, relative to the bundle. */
const infraStaysOut = {
  name: 'infra-stays-out',
  setup(builder) {
    builder.onResolve({ filter: /(^|\/)infra\/[^/]+\.js$/ }, (args) => {
      if (!args.importer.startsWith(join(root, 'src'))) return undefined;
      const target = join(compiledInfra, args.path.replace(/^.*infra\//, ''));
      let path = relative(dirname(outfile), target).split('\\').join('/');
      if (!path.startsWith('.')) path = `./${path}`;
      return { path, external: true };
    });
  },
};

await mkdir(dirname(outfile), { recursive: true });
const result = await build({
  entryPoints: [join(root, 'src', 'cli', 'main.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS dependencies call require(); give the ES module bundle one.
  banner: { js: "import { createRequire as __cbactionsCreateRequire } from 'node:module';\nconst require = __cbactionsCreateRequire(import.meta.url);" },
  plugins: [infraStaysOut],
  // The CDK libraries are only ever reached through src/infra; keep them out if anything else names them.
  external: ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs', 'cdk-nag', 'aws-cdk'],
  legalComments: 'none',
  logLevel: 'warning',
  metafile: true,
});
const size = (await stat(outfile)).size;
const inputs = Object.keys(result.metafile.inputs).length;
process.stdout.write(`bundle: ${relative(root, outfile)} (${(size / 1024 / 1024).toFixed(1)} MiB, ${inputs} inputs)\n`);
