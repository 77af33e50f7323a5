"""A test Jetstream server speaking the v1 JSON protocol. No real Jetstream can run here (it
needs the public firehose), so this plays its part: it logs each connection's request path
(with `cursor=`) to LOG and streams the JSON lines appended to EVENTS, as Jetstream streams
commit events.

  jetstream_server.py PORT EVENTS LOG
"""
import asyncio
import json
import sys
import urllib.parse

import websockets

PORT, EVENTS, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]


async def handler(ws):
    path = ws.request.path if hasattr(ws, "request") else ws.path
    with open(LOG, "a") as f:
        f.write(path + "\n")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
    cursor = int(query.get("cursor", ["0"])[0])
    sent = 0
    while True:
        try:
            with open(EVENTS) as f:
                lines = [l for l in f.read().splitlines() if l.strip()]
        except FileNotFoundError:
            lines = []
        for line in lines[sent:]:
            # Like Jetstream, replay only what is newer than the cursor.
            if json.loads(line)["time_us"] > cursor:
                await ws.send(line)
        sent = len(lines)
        await asyncio.sleep(0.05)


async def main():
    async with websockets.serve(handler, "127.0.0.1", PORT):
        print("ready", flush=True)
        await asyncio.Future()


asyncio.run(main())
