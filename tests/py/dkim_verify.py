#!/usr/bin/env python3
"""Verify every DKIM-Signature of a message with dkimpy, fetching keys from a test DNS server.

usage: dkim_verify.py DNS_PORT MESSAGE_FILE
Prints a JSON list [{"d":..., "s":..., "a":..., "ok": bool, "error": ...}] for each signature.
"""
import json
import re
import sys

import dkim
import dns.resolver

port, path = int(sys.argv[1]), sys.argv[2]
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = port
dns.resolver.default_resolver = r

raw = open(path, "rb").read()
# smtp-sink stores LF line endings; DKIM is defined on CRLF.
raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
d = dkim.DKIM(raw)
headers = [v for (k, v) in d.headers if k.lower() == b"dkim-signature"]
out = []
for i, value in enumerate(headers):
    tags = dict(
        (t.split(b"=", 1)[0].strip().decode(), t.split(b"=", 1)[1].strip().decode())
        for t in re.sub(rb"\s+", b"", value).split(b";")
        if b"=" in t
    )
    item = {"d": tags.get("d"), "s": tags.get("s"), "a": tags.get("a")}
    try:
        item["ok"] = bool(d.verify(idx=i))
    except Exception as e:  # dkimpy raises on body-hash mismatch and similar
        item["ok"] = False
        item["error"] = str(e)
    out.append(item)
print(json.dumps(out))
