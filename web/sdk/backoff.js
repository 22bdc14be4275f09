// Reconnect delays: exponential growth capped at `max`, with "equal jitter" so a
// crowd of clients cut at the same moment does not come back at the same moment,
// while each client still waits at least half of the nominal delay.

export const DEFAULT_BACKOFF = Object.freeze({ min: 250, max: 15000, factor: 2 });

/**
 * Delay in milliseconds before reconnect attempt `attempt` (0 = first retry).
 * @param {number} attempt
 * @param {{min?: number, max?: number, factor?: number}} [opts]
 * @param {() => number} [random] a uniform [0, 1) source (tests pass a fixed one)
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const { min, max, factor } = { ...DEFAULT_BACKOFF, ...opts };
  const nominal = Math.min(max, min * Math.pow(factor, Math.max(0, attempt)));
  const half = nominal / 2;
  return Math.round(half + random() * half);
}
