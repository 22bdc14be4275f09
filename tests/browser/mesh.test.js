// Three participants in a mesh; screen share as an extra track; one leaves and the
// others drop its tile and its peer connection.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, appPage, expectMediaFlowing, until, roomName, ARTIFACTS } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

const small = { viewport: { width: 960, height: 600 } };

test('three pages in mesh, screen share, one leaves', async () => {
  const room = roomName('mesh');
  const pages = {};
  for (const name of ['Ann', 'Ben', 'Cid']) pages[name] = await appPage(browser, name, room, small);
  const names = Object.keys(pages);
  for (const a of names) {
    for (const b of names) if (a !== b) await expectMediaFlowing(pages[a], b.toLowerCase(), `${b} at ${a}`);
  }
  for (const a of names) {
    assert.equal(await pages[a].locator('.tile').count(), 3, `${a} shows three tiles`);
    assert.equal(await pages[a].evaluate(() => window.tandemApp.call.peers.size), 2);
  }

  // Screen share: a real getDisplayMedia capture (auto-selected by the launch flags)
  // arrives at the others as an extra video track with its own tile.
  await pages.Ann.click('#btn-screen');
  await until(() => pages.Ann.evaluate(() => window.tandemApp.call.screenSharing), { what: 'ann sharing', timeout: 10000 });
  for (const b of ['Ben', 'Cid']) {
    await until(
      () =>
        pages[b].evaluate(async () => {
          const peer = window.tandemApp.call.peers.get('ann');
          const screen = peer?.streams.get('screen');
          const tile = document.querySelector('.tile[data-key="ann:screen"] video');
          if (!screen || !tile || tile.srcObject !== screen) return false;
          const track = screen.getVideoTracks()[0];
          if (!track || track.readyState !== 'live') return false;
          let frames = 0;
          for (const s of (await peer.pc.getStats()).values()) {
            if (s.type === 'inbound-rtp' && s.kind === 'video' && s.trackIdentifier === track.id) frames = s.framesDecoded;
          }
          return frames > 3 && tile.videoWidth > 0;
        }),
      { what: `ann's screen at ${b}`, timeout: 20000 },
    );
    assert.equal(await pages[b].locator('.tile').count(), 4);
  }
  await pages.Ben.screenshot({ path: `${ARTIFACTS}/room-three-with-screen.png` });
  await pages.Ann.click('#btn-screen');
  for (const b of ['Ben', 'Cid']) {
    await until(() => pages[b].evaluate(() => !document.querySelector('.tile[data-key="ann:screen"]')), { what: `screen tile gone at ${b}` });
  }

  // Cid leaves: Ann and Ben drop its tile and connection; Ann and Ben keep talking.
  await pages.Cid.click('#btn-leave');
  for (const a of ['Ann', 'Ben']) {
    await until(
      () => pages[a].evaluate(() => !document.querySelector('.tile[data-key="cid"]') && !window.tandemApp.call.peers.has('cid') && window.tandemApp.room.participants.size === 1),
      { what: `cid cleaned up at ${a}` },
    );
    assert.equal(await pages[a].locator('.tile').count(), 2);
  }
  await expectMediaFlowing(pages.Ann, 'ben', 'ben at ann after cid left');

  // Closing a tab (no leave) is cleaned up too, through the data channel closing.
  await pages.Ben.context().close();
  await until(() => pages.Ann.evaluate(() => !document.querySelector('.tile[data-key="ben"]') && window.tandemApp.call.peers.size === 0), { what: 'ben cleaned up after tab close', timeout: 15000 });
  for (const p of Object.values(pages)) await p.context().close().catch(() => {});
});
