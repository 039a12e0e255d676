// Placeholder until this command lands; it refuses loudly rather than pretending.
export async function runBuildServiceCommand(_options: Record<string, string | undefined>): Promise<number> {
  throw new Error('runBuildServiceCommand is not built yet');
}
