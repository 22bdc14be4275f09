"""An aiortc participant through Tandem's SFU (an independent WebRTC stack: aioice,
OpenSSL DTLS, libsrtp, libvpx/opus via PyAV).

A publishes aiortc's synthetic video and audio and opens a 'chat' data channel; B only
receives. B must decode A's video frames and receive audio frames, get the `tracks`
push naming A, and receive A's chat message relayed by the SFU.

Usage: python3 aiortc_participant.py <path to tandem binary>
All traffic stays on 127.0.0.1 (aioice is limited to the loopback address).
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import aioice.ice
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

KEY = "aiortckey"
SECRET = "aiortc-test-secret-0123456789abcdefgh"
results = []


def check(name, ok, detail=None):
    results.append(ok)
    print(("ok - " if ok else "not ok - ") + name)
    if not ok and detail is not None:
        print(f"  {detail}")


class Participant:
    def __init__(self, url, token, publish):
        self.url, self.token, self.publish = url, token, publish
        self.pc = RTCPeerConnection()
        self.next_id = 1
        self.waiting = {}
        self.tracks_push = []
        self.frames = {"video": 0, "audio": 0}
        self.video_size = None
        # (label, sender sid, text): the SFU puts the sender's sid and a newline
        # before every relayed message.
        self.messages = []
        self.sid = None
        self.own_offer_id = None
        self.channel = None
        # Negotiation steps run one at a time (own offer + its answer, server offers).
        self.negotiating = asyncio.Lock()
        self.closing = False

    async def request(self, kind, **body):
        rid = self.next_id
        self.next_id += 1
        if kind == "sfu_offer":
            self.own_offer_id = rid
        fut = asyncio.get_running_loop().create_future()
        self.waiting[rid] = fut
        await self.ws.send(json.dumps({"id": rid, "type": kind, **body}))
        return await fut

    async def reader(self):
        try:
            await self.read_frames()
        except websockets.ConnectionClosed:
            pass

    async def read_frames(self):
        async for text in self.ws:
            msg = json.loads(text)
            if msg["type"] in ("reply", "error") and msg.get("id") in self.waiting:
                if msg["id"] == self.own_offer_id:
                    self.own_offer_id = None
                fut = self.waiting.pop(msg["id"])
                if msg["type"] == "reply":
                    fut.set_result(msg["result"])
                else:
                    fut.set_exception(RuntimeError(f'{msg["code"]}: {msg["message"]}'))
            elif msg["type"] == "ping":
                await self.ws.send('{"type":"pong"}')
            else:
                # A server offer read before the reply to our own offer was voided by it.
                voided = msg["type"] == "sfu_offer" and self.own_offer_id is not None
                asyncio.create_task(self.on_push(msg, voided))

    async def on_push(self, msg, voided):
        try:
            await self.handle_push(msg, voided)
        except Exception as e:  # noqa: BLE001
            if not self.closing:
                print(f"# push {msg['type']} failed: {e!r}")

    async def handle_push(self, msg, voided):
        if msg["type"] == "tracks":
            self.tracks_push = msg["tracks"]
        elif msg["type"] == "sfu_offer" and not voided:
            async with self.negotiating:
                await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self.request(
                    "sfu_answer",
                    room="call",
                    sdp=self.pc.localDescription.sdp,
                    revision=msg["revision"],
                )

    async def consume(self, track):
        try:
            while True:
                frame = await track.recv()
                self.frames[track.kind] += 1
                if track.kind == "video":
                    self.video_size = (frame.width, frame.height)
        except MediaStreamError:
            pass

    async def start(self):
        self.ws = await websockets.connect(self.url)
        asyncio.create_task(self.reader())
        self.sid = (await self.request("connect", token=self.token, protocol=1))["client_id"]
        await self.request("join", room="call")
        self.pc.on("track", lambda track: asyncio.create_task(self.consume(track)))

        def relayed(label, m):
            sender, _, text = m.partition("\n")
            self.messages.append((label, sender, text))

        @self.pc.on("datachannel")
        def on_datachannel(channel):
            channel.on("message", lambda m: relayed(channel.label, m))

        self.channel = self.pc.createDataChannel("chat")
        self.channel.on("message", lambda m: relayed("chat", m))
        if self.publish:
            self.pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
            self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        async with self.negotiating:
            await self.pc.setLocalDescription(await self.pc.createOffer())
            sdp = self.pc.localDescription.sdp
            reply = await self.request("sfu_offer", room="call", sdp=sdp)
            await self.pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], "answer"))

    async def close(self):
        self.closing = True
        await self.pc.close()
        await self.ws.close()


async def until(seconds, predicate):
    for _ in range(int(seconds * 10)):
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


async def main(tandem):
    workdir = tempfile.mkdtemp(prefix="tandem-sfu-aiortc-")
    config = os.path.join(workdir, "tandem.toml")
    with open(config, "w") as f:
        f.write(
            f'[server]\nbind = "127.0.0.1:0"\ndata_dir = "{workdir}/data"\n'
            f'[keys]\n{KEY} = "{SECRET}"\n'
            '[sfu]\nenabled = true\nudp_bind = "127.0.0.1:0"\n'
        )
    env = dict(os.environ, TANDEM_LOG=os.environ.get("TANDEM_LOG", "warn"))
    server = subprocess.Popen(
        [tandem, "serve", "--config", config], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        addr = None
        for line in server.stdout:
            m = re.match(r"^tandem listening on (.+)$", line.strip())
            if m:
                addr = m.group(1)
                break
        assert addr, "tandem did not start"

        def token(identity):
            return subprocess.check_output(
                [tandem, "token", "--config", config, "--identity", identity, "--room", "*"],
                text=True,
            ).strip()

        url = f"ws://{addr}/ws"
        a = Participant(url, token("aio-a"), publish=True)
        b = Participant(url, token("aio-b"), publish=False)
        await a.start()
        await b.start()
        ok = await until(30, lambda: b.frames["video"] >= 10 and b.frames["audio"] >= 10)
        check(
            "an aiortc subscriber decodes an aiortc publisher's video and audio via the SFU",
            ok,
            f"frames {b.frames}, tracks {b.tracks_push}, a {a.pc.connectionState} "
            f"{a.pc.signalingState}, b {b.pc.connectionState} {b.pc.signalingState} "
            f"{[t.currentDirection for t in b.pc.getTransceivers()]}, metrics "
            + " ".join(
                line
                for line in urllib.request.urlopen(f"http://{addr}/metrics").read().decode().split("\n")
                if line.startswith("tandem_sfu_") and not line.endswith(" 0")
            ),
        )
        print(f"# aiortc subscriber: {b.frames}, video size {b.video_size}")
        check(
            "the tracks push lists the publisher's audio and video",
            sorted(t["kind"] for t in b.tracks_push) == ["audio", "video"],
            b.tracks_push,
        )
        await until(10, lambda: a.channel.readyState == "open" and b.channel.readyState == "open")
        await asyncio.sleep(0.3)
        # A payload posing as another sender stays payload: the SFU's prefix comes first.
        a.channel.send("Cforged\nhello from aiortc")
        ok = await until(10, lambda: ("chat", a.sid, "Cforged\nhello from aiortc") in b.messages)
        check("a data channel message reaches the other aiortc peer with its real sender", ok, b.messages)
        await a.close()
        ok = await until(15, lambda: b.tracks_push == [])
        check("the publisher's tracks are removed when it leaves", ok, b.tracks_push)
        await b.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(sys.argv[1]), 120))
    except Exception as e:  # noqa: BLE001 - report any failure as a failed check
        check(f"aiortc test crashed: {e!r}", False)
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 and passed > 0 else 1)
