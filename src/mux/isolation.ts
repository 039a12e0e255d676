/**
 * How listeners sharing one runner installation keep their config files apart: preload.so
 * (redirects `<root>/.runner` etc. to a slot directory) or, when that cannot be trusted,
 * a per-slot root of hard links. Decided once at start; the reason is logged.
 */
import type { ProbePreloadOptions, ProbePreloadResult } from '../preload/probe.js';

export type IsolationMode = 'auto' | 'preload' | 'hardlink';

export type IsolationChoice = { kind: 'preload'; preloadPath: string; reason: string } | { kind: 'hardlink'; reason: string };

export interface ChooseIsolationOptions {
  mode: IsolationMode;
  preloadPath: string;
  runnerRoot: string;
  workDir: string;
  probe: (options: ProbePreloadOptions) => Promise<ProbePreloadResult>;
}

export const IsolationErrorCode = { PreloadUnusable: 'MUX_PRELOAD_UNUSABLE' } as const;

/**
 * `hardlink`: no probe. `preload`: probe, and a failed probe is fatal (the operator asked
 * for it). `auto`: probe, fall back to hard links on failure.
 */
export async function chooseIsolation(options: ChooseIsolationOptions): Promise<IsolationChoice | { kind: 'fail'; reason: string }> {
  if (options.mode === 'hardlink') return { kind: 'hardlink', reason: 'mux.isolation is "hardlink"' };
  const result = await options.probe({ preloadPath: options.preloadPath, runnerRoot: options.runnerRoot, workDir: options.workDir });
  if (result.ok) {
    return { kind: 'preload', preloadPath: options.preloadPath, reason: `the probe of ${options.preloadPath} passed (mux.isolation is "${options.mode}")` };
  }
  if (options.mode === 'preload') return { kind: 'fail', reason: `mux.isolation is "preload" but ${result.reason}` };
  return { kind: 'hardlink', reason: `falling back to per-slot hard-link roots: ${result.reason}` };
}
