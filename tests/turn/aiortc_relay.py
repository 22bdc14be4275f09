"""Two aiortc peers open a data channel through Tandem's TURN server with
iceTransportPolicy "relay" and exchange messages.

usage: aiortc_relay.py TURN_URL SECRET [MESSAGES]
TURN_URL like turn:127.0.0.1:3478?transport=udp. Credentials are minted the
coturn REST way (as a backend would), independently of Tandem's code.
Exits 0 only if every message comes back and only relay candidates were used.
"""

import asyncio
import base64
import hashlib
import hmac
import sys
import time

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy


def rest_credentials(secret: str, identity: str, ttl: int = 3600):
    username = f"{int(time.time()) + ttl}:{identity}"
    password = base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()
    return username, password


def config(url: str, secret: str, identity: str) -> RTCConfiguration:
    user, password = rest_credentials(secret, identity)
    return RTCConfiguration(
        iceServers=[RTCIceServer(urls=[url], username=user, credential=password)],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )


def candidate_types(sdp: str):
    return {
        line.split(" typ ")[1].split()[0]
        for line in sdp.splitlines()
        if line.startswith("a=candidate:")
    }


async def main(url: str, secret: str, count: int) -> int:
    pc1 = RTCPeerConnection(config(url, secret, "alice"))
    pc2 = RTCPeerConnection(config(url, secret, "bob"))
    got = []
    done = asyncio.get_running_loop().create_future()
    opened = asyncio.get_running_loop().create_future()

    @pc2.on("datachannel")
    def on_datachannel(channel):
        @channel.on("message")
        def on_message(message):
            channel.send("echo:" + message)

    dc = pc1.createDataChannel("chat")

    @dc.on("open")
    def on_open():
        if not opened.done():
            opened.set_result(True)

    @dc.on("message")
    def on_message(message):
        got.append(message)
        if len(got) == count and not done.done():
            done.set_result(True)

    await pc1.setLocalDescription(await pc1.createOffer())
    await pc2.setRemoteDescription(pc1.localDescription)
    await pc2.setLocalDescription(await pc2.createAnswer())
    await pc1.setRemoteDescription(pc2.localDescription)

    types = candidate_types(pc1.localDescription.sdp) | candidate_types(
        pc2.localDescription.sdp
    )
    print(f"candidate types: {sorted(types)}")
    if types != {"relay"}:
        print("FAIL: expected only relay candidates")
        return 1

    await asyncio.wait_for(opened, 20)
    for i in range(count):
        dc.send(f"msg {i}")
    await asyncio.wait_for(done, 20)
    want = [f"echo:msg {i}" for i in range(count)]
    ok = got == want
    print(f"data channel: sent {count}, received {len(got)} echoes, in order: {ok}")
    await pc1.close()
    await pc2.close()
    return 0 if ok else 1


if __name__ == "__main__":
    url, secret = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 50
    sys.exit(asyncio.run(main(url, secret, count)))
