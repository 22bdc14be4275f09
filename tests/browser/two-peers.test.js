// Two participants in the demo app: video and audio both ways, chat both ways,
// presence updates, and a screenshot of the room kept under test-artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, appPage, expectMediaFlowing, until, roomName, ARTIFACTS } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

test('two pages: media both ways, chat both ways, presence, screenshot', async () => {
  const room = roomName('two');
  const alice = await appPage(browser, 'Alice', room);
  const bob = await appPage(browser, 'Bob', room);

  await expectMediaFlowing(alice, 'bob', 'bob at alice');
  await expectMediaFlowing(bob, 'alice', 'alice at bob');

  // Chat both ways, through the app's form.
  await alice.fill('#chat-input', 'Hi Bob, can you see me?');
  await alice.press('#chat-input', 'Enter');
  await until(() => bob.evaluate(() => document.querySelector('#messages').innerText.includes('Hi Bob, can you see me?')), { what: 'chat at bob' });
  await bob.fill('#chat-input', 'Loud and clear, Alice!');
  await bob.press('#chat-input', 'Enter');
  await until(() => alice.evaluate(() => document.querySelector('#messages').innerText.includes('Loud and clear, Alice!')), { what: 'chat at alice' });
  const aliceMsgs = await alice.$$eval('.msg .body', (els) => els.map((e) => e.textContent));
  assert.deepEqual(aliceMsgs, ['Hi Bob, can you see me?', 'Loud and clear, Alice!']);

  // Presence: Bob goes away (metadata update) and Alice's people list shows it.
  await bob.evaluate(() => window.tandemApp.room.setMetadata({ ...window.tandemApp.meta, status: 'away' }));
  await until(() => alice.evaluate(() => document.querySelector('#people li[data-identity="bob"]')?.classList.contains('away')), { what: 'away presence at alice' });
  await bob.evaluate(() => window.tandemApp.room.setMetadata({ ...window.tandemApp.meta, status: 'online' }));
  await until(() => alice.evaluate(() => window.tandemApp.room.participantByIdentity('bob')?.metadata.status === 'online'), { what: 'online presence at alice' });

  // Quality badge shows a direct path once stats came in.
  await until(() => alice.evaluate(() => /direct · \d+ ms · \d+ kb\/s/.test(document.querySelector('.tile[data-key="bob"] .badge')?.textContent || '')), { what: 'badge', timeout: 10000 });
  await alice.screenshot({ path: `${ARTIFACTS}/room-two-participants.png` });

  // Send a file from the people list; both sides show a progress bar, Bob a Save link.
  await alice.click('.tab[data-tab="people"]');
  const [chooser] = await Promise.all([alice.waitForEvent('filechooser'), alice.click('#people li[data-identity="bob"] .send-file')]);
  await chooser.setFiles({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('tandem '.repeat(150000)) });
  await until(() => bob.evaluate(() => /sha256 verified/.test(document.querySelector('.xfer[data-direction="receive"]')?.textContent || '')), { what: 'file at bob' });
  await until(() => alice.evaluate(() => /Delivered/.test(document.querySelector('.xfer[data-direction="send"]')?.textContent || '')), { what: 'file delivered at alice' });
  assert.equal(await bob.locator('.xfer a[download="notes.txt"]').count(), 1);
  await bob.screenshot({ path: `${ARTIFACTS}/room-file-received.png` });
  await alice.click('.tab[data-tab="chat"]');

  // The same room at phone width.
  await alice.setViewportSize({ width: 390, height: 844 });
  await alice.waitForTimeout(500);
  await alice.screenshot({ path: `${ARTIFACTS}/room-two-participants-phone.png` });
  await alice.click('#btn-side');
  await alice.waitForTimeout(400);
  await alice.screenshot({ path: `${ARTIFACTS}/room-phone-chat.png` });

  // A participant leaving is cleaned up on the other side.
  await bob.click('#btn-leave');
  await until(() => alice.evaluate(() => !document.querySelector('.tile[data-key="bob"]') && window.tandemApp.call.peers.size === 0), { what: 'bob cleaned up at alice' });
  await alice.context().close();
  await bob.context().close();
});
