// Placeholder until this command lands; it refuses loudly rather than pretending.
export async function runWorkerCommand(_args: { mode: string; readFd: string; writeFd: string }): Promise<number> {
  throw new Error('runWorkerCommand is not built yet');
}
