// Placeholder until this command lands; it refuses loudly rather than pretending.
export async function runInstallWorkerCommand(_runnerRoot: string): Promise<number> {
  throw new Error('runInstallWorkerCommand is not built yet');
}
