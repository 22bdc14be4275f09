// The minimal example page of docs/sdk.md works as documented: two tabs see each
// other and chat.
import { test, before, after } from 'node:test';
import { launch, newPage, until, roomName } from './lib.js';

let browser;
before(async () => (browser = await launch()));
after(async () => browser?.close());

test('examples/minimal.html in two tabs: video both ways and chat', async () => {
  const room = roomName('minimal');
  const a = await newPage(browser, `/examples/minimal.html?room=${room}`);
  await until(() => a.evaluate(() => document.getElementById('log').textContent.includes('joined')), { what: 'first tab joined' });
  const b = await newPage(browser, `/examples/minimal.html?room=${room}`);
  const playing = (p) =>
    p.evaluate(() => {
      const vids = [...document.querySelectorAll('video')];
      return vids.length === 2 && vids.every((v) => v.videoWidth > 0 && v.currentTime > 0);
    });
  await until(() => playing(a), { what: 'two playing videos in tab 1', timeout: 20000 });
  await until(() => playing(b), { what: 'two playing videos in tab 2', timeout: 20000 });
  await b.fill('#text', 'hello from tab 2');
  await b.press('#text', 'Enter');
  await until(() => a.evaluate(() => document.getElementById('log').textContent.includes(': hello from tab 2')), { what: 'chat in tab 1' });
  await a.context().close();
  await b.context().close();
});
