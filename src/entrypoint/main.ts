// Placeholder until this command lands; it refuses loudly rather than pretending.
export async function runEntrypointCommand(): Promise<number> {
  throw new Error('runEntrypointCommand is not built yet');
}
