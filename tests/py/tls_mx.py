#!/usr/bin/env python3
"""A STARTTLS-capable recipient MX (aiosmtpd) that records, per message, whether TLS was on.

usage: tls_mx.py PORT DIR CERT KEY
Writes DIR/<n>.eml starting with X-Seen-TLS and X-Seen-Helo lines; prints "ready" when listening.
"""
import itertools, os, ssl, sys, threading
from aiosmtpd.controller import Controller

port, out, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
counter = itertools.count()


class Handler:
    async def handle_DATA(self, server, session, envelope):
        tls = "yes" if session.ssl is not None else "no"
        path = os.path.join(out, f"{next(counter)}.eml")
        with open(path, "wb") as f:
            f.write(f"X-Seen-TLS: {tls}\r\nX-Seen-Helo: {session.host_name}\r\n".encode())
            f.write(envelope.original_content)
        return "250 2.0.0 stored"


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=False)
controller.start()
print("ready", flush=True)
threading.Event().wait()  # the controller serves from its own thread until we are killed
