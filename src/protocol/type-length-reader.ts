/** Both wires this project reads (the runner's pipe, the shim's socket) start each message so. */
export const TYPE_LENGTH_HEADER_BYTES = 8;

/**
 * Streaming reader of `type | length | body` messages behind an 8-byte header. Feed it chunks
 * split anywhere; it returns whole messages. The caller reads and checks each header (byte
 * order, known types, limits) and throws to refuse it. A body is copied into one buffer sized
 * from its header, so a 50 MB message costs one allocation, not a growing concatenation.
 */
export class TypeLengthReader<Type extends number> {
  readonly #header = Buffer.alloc(TYPE_LENGTH_HEADER_BYTES);
  #headerFilled = 0;
  #type: Type | undefined;
  #body: Buffer | undefined;
  #bodyFilled = 0;

  constructor(private readonly readHeader: (header: Buffer) => { type: Type; length: number }) {}

  /** Returns the messages completed by this chunk; throws what `readHeader` throws. */
  push(chunk: Buffer): { type: Type; body: Buffer }[] {
    const messages: { type: Type; body: Buffer }[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.#type === undefined) {
        const take = Math.min(TYPE_LENGTH_HEADER_BYTES - this.#headerFilled, chunk.length - offset);
        chunk.copy(this.#header, this.#headerFilled, offset, offset + take);
        this.#headerFilled += take;
        offset += take;
        if (this.#headerFilled < TYPE_LENGTH_HEADER_BYTES) break;
        const { type, length } = this.readHeader(this.#header);
        this.#type = type;
        this.#body = Buffer.allocUnsafe(length);
        this.#bodyFilled = 0;
        if (length === 0) this.#finish(messages);
        continue;
      }
      const body = this.#body as Buffer;
      const take = Math.min(body.length - this.#bodyFilled, chunk.length - offset);
      chunk.copy(body, this.#bodyFilled, offset, offset + take);
      this.#bodyFilled += take;
      offset += take;
      if (this.#bodyFilled === body.length) this.#finish(messages);
    }
    return messages;
  }

  /** True when no partial message is buffered. */
  get idle(): boolean {
    return this.#type === undefined && this.#headerFilled === 0;
  }

  /** What a partial message has so far, for the error at end of stream. */
  get received(): string {
    return this.#type === undefined
      ? `${this.#headerFilled} of ${TYPE_LENGTH_HEADER_BYTES} header bytes`
      : `${this.#bodyFilled} of ${this.#body?.length} body bytes`;
  }

  #finish(messages: { type: Type; body: Buffer }[]): void {
    messages.push({ type: this.#type as Type, body: this.#body as Buffer });
    this.#type = undefined;
    this.#body = undefined;
    this.#bodyFilled = 0;
    this.#headerFilled = 0;
  }
}
