import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds the .NET probe (dotnet publish) once per run, before any test file starts.
    globalSetup: ['test/dotnet/global-setup.ts'],
    // Process tests spawn the built binary and real child processes; keep the
    // pool small so two cores are not oversubscribed.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // The SDK's "Node 22 needed after January 2027" notice is for operators, not test output.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
