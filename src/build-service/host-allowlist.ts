import { networkInterfaces } from 'node:os';

/** Bind addresses that mean "every interface". */
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '[::]']);

export interface HostAllowlistOptions {
  /** The address the service was told to bind (config `host`). */
  host: string;
  /** The port it actually listens on. */
  port: number;
  /** Further names (config `allowedHosts`), with or without `:port`. */
  extra: string[];
  /** This machine's interface addresses; used when bound to every interface. */
  interfaceAddresses?: () => string[];
}

function withBrackets(address: string): string {
  return address.includes(':') && !address.startsWith('[') ? `[${address}]` : address;
}

export function machineAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((entries) => (entries ?? []).map((entry) => entry.address));
}

/**
 * The Host header values the service answers: its own address and the loopback names, with
 * its port. A browser page on another origin that resolves its own name to 127.0.0.1 (DNS
 * rebinding) still sends its own name as Host, so it is refused before anything else.
 */
export class HostAllowlist {
  private readonly allowed: Set<string>;

  constructor(options: HostAllowlistOptions) {
    const names = new Set(['127.0.0.1', 'localhost', '[::1]', withBrackets(options.host.toLowerCase())]);
    if (WILDCARD_HOSTS.has(options.host)) for (const address of (options.interfaceAddresses ?? machineAddresses)()) names.add(withBrackets(address.toLowerCase()));
    this.allowed = new Set();
    for (const name of names) {
      this.allowed.add(`${name}:${options.port}`);
      // A client leaves out the default port.
      if (options.port === 80) this.allowed.add(name);
    }
    for (const name of options.extra) {
      const lower = name.toLowerCase();
      if (/:\d+$/.test(lower) && !lower.endsWith(']')) this.allowed.add(lower);
      else {
        this.allowed.add(`${withBrackets(lower)}:${options.port}`);
        if (options.port === 80) this.allowed.add(withBrackets(lower));
      }
    }
  }

  allows(hostHeader: string | undefined): boolean {
    return hostHeader !== undefined && this.allowed.has(hostHeader.trim().toLowerCase());
  }

  /** For the refusal message: what a caller may use instead. */
  examples(): string[] {
    return [...this.allowed].slice(0, 6);
  }
}
