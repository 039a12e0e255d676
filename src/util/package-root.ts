import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * This installation's root (`bin/cbactions`, `buildspec.yml`, `docker/`). Three levels above
 * the module both as compiled (dist/src/<part>/*.js) and as bundled into the images
 * (the bundle sits at dist/src/cli/main.js).
 */
export const PACKAGE_ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');
