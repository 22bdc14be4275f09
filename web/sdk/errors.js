// Every SDK failure is a TandemError with a protocol error code (see docs/protocol.md)
// or one of the SDK's own: `timeout`, `connection_lost`, `closed`, `cancelled`,
// `transfer_failed`, `participant_not_found`.

export class TandemError extends Error {
  /**
   * @param {string} code protocol error code, or an SDK one: `timeout`,
   *   `connection_lost`, `closed`
   * @param {string} message
   * @param {object} [extra] extra fields of the error frame (`retry_after_ms` …)
   */
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = 'TandemError';
    this.code = code;
    if (extra.retry_after_ms !== undefined) this.retryAfterMs = extra.retry_after_ms;
  }
}

