// Tiny typed-event emitter shared by every SDK object.
export class Emitter {
  #handlers = new Map();

  /** Subscribe; returns a function that unsubscribes. */
  on(event, fn) {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(fn);
    return () => this.off(event, fn);
  }

  once(event, fn) {
    const off = this.on(event, (...args) => {
      off();
      fn(...args);
    });
    return off;
  }

  off(event, fn) {
    this.#handlers.get(event)?.delete(fn);
  }

  /** Resolves with the first emission of `event` (its first argument). */
  wait(event, { timeout = 0, filter } = {}) {
    return new Promise((resolve, reject) => {
      let timer;
      const off = this.on(event, (value) => {
        if (filter && !filter(value)) return;
        off();
        clearTimeout(timer);
        resolve(value);
      });
      if (timeout > 0) {
        timer = setTimeout(() => {
          off();
          reject(new Error(`timed out waiting for '${event}'`));
        }, timeout);
      }
    });
  }

  emit(event, ...args) {
    const set = this.#handlers.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A broken app handler must not break the SDK's state machine.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }
}
