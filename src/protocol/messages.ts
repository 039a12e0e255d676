/**
 * Listener → worker message types (actions/runner `MessageType` in ProcessChannel.cs).
 * -1 (NotInitialized) is never sent on the wire and is rejected like any unknown type.
 */
export const MessageType = {
  NewJobRequest: 1,
  CancelRequest: 2,
  RunnerShutdown: 3,
  OperatingSystemShutdown: 4,
} as const;

export type MessageType = (typeof MessageType)[keyof typeof MessageType];

const KNOWN_TYPES = new Set<number>(Object.values(MessageType));

export function isKnownMessageType(type: number): type is MessageType {
  return KNOWN_TYPES.has(type);
}

export function messageTypeName(type: number): string {
  const entry = Object.entries(MessageType).find(([, value]) => value === type);
  return entry ? entry[0] : `unknown(${type})`;
}

/** A decoded frame. `body` is the raw UTF-16LE bytes, kept as-is so a job arrives byte-identical. */
export interface Frame {
  type: MessageType;
  body: Buffer;
}

export function frameText(frame: Frame): string {
  return frame.body.toString('utf16le');
}
