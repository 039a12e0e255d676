import { resolve } from 'node:path';
import { ExitCode } from '../protocol/exit-codes.js';
import { createLocalKeyFile } from '../seal/local-key-service.js';
import { describeError, isCbactionsError } from '../util/errors.js';

export interface CommandOutput {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/**
 * `cbactions create-local-key FILE`: a new random 256-bit payload key for
 * `payloads.key.local.file`, mode 0600, never replacing an existing one (payloads sealed
 * under it would become unreadable). Prints the key's id, never the key.
 */
export async function runCreateLocalKeyCommand(file: string, output: CommandOutput): Promise<number> {
  const path = resolve(file);
  try {
    const { keyId } = await createLocalKeyFile(path);
    output.stdout(`created local payload key ${path} (mode 0600, key id ${keyId})\nuse it in the config as: payloads: { key: { local: { file: ${path} } } }\n`);
    return ExitCode.Ok;
  } catch (error) {
    output.stderr(`cbactions create-local-key: ${isCbactionsError(error) ? `${error.message} (${error.code})` : describeError(error)}\n`);
    return ExitCode.InfrastructureFailure;
  }
}
