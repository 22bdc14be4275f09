// Per-channel position bookkeeping: what the app has seen, so that after any
// reconnect it sees every publication exactly once and in offset order.
// Pure logic, no I/O (unit-tested in test/cursor.test.js).

export class ChannelCursor {
  /** @type {string|null} epoch of the log the offsets belong to */
  epoch = null;
  /** last offset handed to the app (or the channel head when we first subscribed) */
  offset = 0;

  /** The `since` to send on (re)subscribe, or undefined on the first subscribe. */
  since() {
    return this.epoch === null ? undefined : { offset: this.offset, epoch: this.epoch };
  }

  /**
   * Classify a live publication.
   * @returns {'deliver'|'duplicate'|'gap'}
   */
  classify(pub) {
    if (pub.offset <= this.offset) return 'duplicate';
    if (pub.offset === this.offset + 1) return 'deliver';
    return 'gap';
  }

  /** Record a delivered publication. */
  advance(pub) {
    if (pub.offset > this.offset) this.offset = pub.offset;
  }

  /**
   * Apply a `subscribe` reply.
   * @returns {{deliver: object[], gap: null|{reason: string, from: number, to: number, epoch: string},
   *            page: null|{since: number, until: number}}}
   *  - deliver: publications to hand to the app now, in order
   *  - gap: messages that can never be recovered (reported to the app)
   *  - page: history still to fetch with `history({since})` before live ones
   */
  applySubscribe(result) {
    const out = { deliver: [], gap: null, page: null };
    const head = result.offset;
    if (this.epoch === null) {
      this.epoch = result.epoch;
      this.offset = head;
      for (const p of result.publications || []) if (p.offset > this.offset) out.deliver.push(p);
      return out;
    }
    if (result.epoch !== this.epoch || result.reason === 'epoch_changed') {
      out.gap = { reason: 'epoch_changed', from: this.offset + 1, to: null, epoch: result.epoch };
      this.epoch = result.epoch;
      this.offset = head;
      return out;
    }
    const pubs = (result.publications || []).filter((p) => p.offset > this.offset);
    if (result.recovered === false && result.reason === 'too_many') {
      if (head > this.offset) out.page = { since: this.offset, until: head };
      return out;
    }
    if (result.recovered === false) {
      // history_expired (or a reason this SDK does not know yet): whatever was
      // still retained is delivered, the rest is reported as lost.
      const firstKept = pubs.length ? pubs[0].offset : head + 1;
      if (firstKept > this.offset + 1) {
        out.gap = {
          reason: result.reason || 'unknown',
          from: this.offset + 1,
          to: firstKept - 1,
          epoch: this.epoch,
        };
      }
      out.deliver = pubs;
      this.offset = Math.max(this.offset, head, pubs.length ? pubs[pubs.length - 1].offset : 0);
      return out;
    }
    out.deliver = pubs;
    const last = pubs.length ? pubs[pubs.length - 1].offset : this.offset;
    if (head > last) {
      // The server said it recovered but the list stops short: fetch the rest.
      out.page = { since: last, until: head };
      this.offset = last;
    } else {
      this.offset = Math.max(this.offset, head, last);
    }
    return out;
  }

  /**
   * Apply one page of `history({since})` fetched to fill a gap.
   * @returns {{deliver: object[], gap: null|object, done: boolean}}
   */
  applyPage(result, until) {
    const out = { deliver: [], gap: null, done: false };
    if (result.epoch !== this.epoch) {
      out.gap = { reason: 'epoch_changed', from: this.offset + 1, to: null, epoch: result.epoch };
      this.epoch = result.epoch;
      this.offset = result.offset;
      out.done = true;
      return out;
    }
    const pubs = (result.publications || []).filter((p) => p.offset > this.offset);
    if (pubs.length && pubs[0].offset > this.offset + 1) {
      out.gap = {
        reason: 'history_expired',
        from: this.offset + 1,
        to: pubs[0].offset - 1,
        epoch: this.epoch,
      };
    } else if (!pubs.length && result.offset > this.offset && (result.earliest || 0) > this.offset + 1) {
      out.gap = {
        reason: 'history_expired',
        from: this.offset + 1,
        to: Math.min(until, result.offset),
        epoch: this.epoch,
      };
      this.offset = Math.min(until, result.offset);
    }
    out.deliver = pubs;
    if (pubs.length) this.offset = pubs[pubs.length - 1].offset;
    out.done = !pubs.length || this.offset >= until;
    return out;
  }
}
