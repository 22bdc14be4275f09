// Tandem browser SDK. Plain ES modules, no build step:
//   import { connect } from '/sdk/index.js';
//   const client = await connect(location.origin, token);
//   const room = await client.join('demo');
//   const call = await room.call();          // camera + mic, mesh
//   room.chat.on('message', (m) => console.log(m.from, m.text));

import { TandemClient } from './client.js';

export { TandemClient, Subscription, normalizeUrl, SDK_VERSION, PROTOCOL_VERSION } from './client.js';
export { TandemError } from './errors.js';
export { Room, Participant, Chat } from './room.js';
export { Call, Peer } from './call.js';
export { FileTransfer, chunkRanges } from './files.js';
export { summarizeStats, peerStats } from './stats.js';
export { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
export { ChannelCursor } from './cursor.js';
export { Sha256, sha256Hex } from './sha256.js';
export { Emitter } from './emitter.js';

/**
 * Connect to a Tandem server. Resolves with a connected client once authenticated.
 * @param {string} url `ws(s)://host:port/ws` or the server's http(s) origin
 * @param {string | (() => string | Promise<string>)} token JWT or a token provider
 * @param {object} [opts] ClientOptions
 */
export async function connect(url, token, opts = {}) {
  const client = new TandemClient(url, token, opts);
  await client.connect();
  return client;
}
