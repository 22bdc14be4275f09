// What the server API does to a browser client: removing a participant from a room,
// and disconnecting it for good (4003) — the demo app shows both and the others
// clean up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, appPage, expectMediaFlowing, until, roomName, serverApi, BASE } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

const small = { viewport: { width: 960, height: 600 } };

test('removed from the room, then disconnected for good', async () => {
  const room = roomName('actions');
  const alice = await appPage(browser, 'Alice', room, small);
  const bob = await appPage(browser, 'Bob', room, small);
  await expectMediaFlowing(alice, 'bob');

  // DELETE /api/v1/rooms/{room}/participants/{identity}
  const res = await fetch(`${BASE}/api/v1/rooms/${room}/participants/bob`, {
    method: 'DELETE',
    headers: { authorization: 'Basic ' + Buffer.from('devkey:secret').toString('base64') },
  });
  assert.equal(res.status, 200, await res.text());
  await until(() => bob.evaluate(() => !document.getElementById('lobby').hidden), { what: 'bob back in the lobby' });
  await until(() => alice.evaluate(() => !document.querySelector('.tile[data-key="bob"]') && window.tandemApp.call.peers.size === 0), { what: 'bob cleaned up at alice' });

  // Bob joins again, then is disconnected without reconnect (close 4003).
  await bob.click('#join');
  await until(() => bob.evaluate(() => window.tandemApp.room?.state === 'joined'), { what: 'bob rejoined' });
  await expectMediaFlowing(alice, 'bob', 'bob after rejoining');
  await serverApi('/api/v1/connections/disconnect', { identity: 'bob', reconnect: false });
  await until(() => bob.evaluate(() => !document.getElementById('lobby').hidden && /disconnected by the server/.test(document.getElementById('lobby-error').textContent)), { what: 'bob told why' });
  await until(() => alice.evaluate(() => !document.querySelector('.tile[data-key="bob"]') && window.tandemApp.call.peers.size === 0), { what: 'bob cleaned up at alice again', timeout: 15000 });
  // And it stays disconnected (no reconnect loop).
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await alice.evaluate(() => window.tandemApp.room.participants.size), 0);
  await alice.context().close();
  await bob.context().close();
});
