/**
 * What one Runner.Listener does to its registration files, as a probe script, and the
 * outcomes it must report when it has those files to itself: the JIT-config writes, the
 * reads, the `.runner` rewrite, attributes, times, an exclusive FileStream held until the
 * test says go on, a move and a delete.
 */

/** File names on which every listener must see only its own copy. */
export const LISTENER_FILES = ['.runner', '.credentials', '.credentials_rsaparams', '.credentials_migrated'] as const;

export const SET_MTIME = '2001-02-03T04:05:06Z';

function base64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64');
}

export function jitRunner(slot: number): string {
  return `{"agentId":${100 + slot},"agentName":"slot-${slot}","ephemeral":true}`;
}

export function savedRunner(slot: number): string {
  return `{"agentId":${100 + slot},"agentName":"slot-${slot}-renamed"}`;
}

export function credentials(slot: number): string {
  return `{"scheme":"OAuth","data":{"clientId":"client-${slot}"}}`;
}

export function rsaKey(slot: number): string {
  return `{"d":"secret-key-of-slot-${slot}"}`;
}

export interface ListenerScript {
  args: string[];
  /** What each command must report (see outcomes() in helpers.ts). */
  expected: unknown[];
}

const FILE_NOT_FOUND = { error: 'FileNotFoundException', hresult: -2147024894 };

/**
 * The script for listener `slot`, with `dir` the runner root as the probe is to spell it
 * ("/actions-runner", or "@root" for "the root my entry assembly says"). The script stops
 * at a "wait" while it holds an exclusive FileStream on `.runner` (after printing
 * `echo holding`); the test releases it.
 */
export function listenerScript(slot: number, dir: string): ListenerScript {
  const file = (name: string): string => `${dir}/${name}`;
  const steps: [string[], unknown][] = [
    // A fresh slot: nothing there yet, whatever the shared root holds.
    [['exists', file('.runner')], false],
    [['info-exists', file('.runner')], false],
    [['read-text', file('.credentials')], FILE_NOT_FOUND],
    // --jitconfig: File.WriteAllBytes of each decoded file.
    [['write-bytes', file('.runner'), base64(jitRunner(slot))], 'done'],
    [['write-bytes', file('.credentials'), base64(credentials(slot))], 'done'],
    [['write-bytes', file('.credentials_rsaparams'), base64(rsaKey(slot))], 'done'],
    [['exists', file('.runner')], true],
    [['info-exists', file('.credentials_rsaparams')], true],
    [['read-text', file('.runner')], jitRunner(slot)],
    [['read-bytes', file('.credentials_rsaparams')], base64(rsaKey(slot))],
    // ConfigurationStore.SaveSettings: exists, delete, WriteAllText (BOM), SetAttributes(Hidden).
    [['save-settings', file('.runner'), savedRunner(slot)], 'done'],
    [['read-text', file('.runner')], savedRunner(slot)],
    [['read-bytes', file('.runner')], Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(savedRunner(slot))]).toString('base64')],
    [['get-attributes', file('.runner')], 'Hidden'],
    [['set-attributes', file('.credentials'), 'ReadOnly'], 'done'],
    [['get-attributes', file('.credentials')], 'ReadOnly, Hidden'],
    [['set-mtime', file('.credentials_rsaparams'), SET_MTIME], 'done'],
    [['get-mtime', file('.credentials_rsaparams')], '2001-02-03T04:05:06.0000000Z'],
    // FileShare.None: an exclusive lock on the file it opened, held across the wait.
    [['lock', file('.runner')], 'locked'],
    [['echo', 'holding'], 'holding'],
    [['wait'], ''],
    [['unlock', file('.runner')], 'done'],
    [['delete', file('.credentials_rsaparams')], 'done'],
    [['exists', file('.credentials_rsaparams')], false],
    [['read-bytes', file('.credentials_rsaparams')], FILE_NOT_FOUND],
    // A migration-style move between two redirected names.
    [['move', file('.credentials'), file('.credentials_migrated')], 'done'],
    [['exists', file('.credentials')], false],
    [['read-text', file('.credentials_migrated')], credentials(slot)],
  ];
  return { args: steps.flatMap(([command]) => command), expected: steps.map(([, outcome]) => outcome) };
}

/** What a slot (or slot root) holds for LISTENER_FILES after the script: name -> content, or null for absent. */
export function filesAfterScript(slot: number): Record<(typeof LISTENER_FILES)[number], string | null> {
  return {
    '.runner': `\ufeff${savedRunner(slot)}`,
    '.credentials': null,
    '.credentials_rsaparams': null,
    '.credentials_migrated': credentials(slot),
  };
}
