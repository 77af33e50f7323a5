"""An independent atproto label client (ecdsa + cbor2 + websockets), for the labeler tests.

  labels.py verify BASE_URL
      Fetches the DID document and every label from queryLabels, verifies each signature over
      the canonical DAG-CBOR of the label without `sig` (re-encoded here with cbor2), checks
      low-S, and checks that a tampered copy fails. Prints a JSON summary.
  labels.py subscribe BASE_URL CURSOR COUNT OUT
      Subscribes to subscribeLabels (CURSOR "-" for none), writes each frame as a JSON line to
      OUT as it arrives, verifying label signatures; stops after COUNT frames, an error frame
      or the socket closing.
"""
import asyncio
import base64
import hashlib
import io
import json
import sys
import urllib.request

import base58
import cbor2
import ecdsa
import websockets

SECP256K1_PREFIX = b"\xe7\x01"
N = ecdsa.SECP256k1.order


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def label_key(base):
    doc = get_json(base + "/.well-known/did.json")
    method = next(m for m in doc["verificationMethod"] if m["id"].endswith("#atproto_label"))
    assert method["type"] == "Multikey", method
    raw = base58.b58decode(method["publicKeyMultibase"][1:])
    assert raw[:2] == SECP256K1_PREFIX, raw[:2]
    key = ecdsa.VerifyingKey.from_string(raw[2:], curve=ecdsa.SECP256k1, hashfunc=hashlib.sha256)
    return doc, key


def check(label, key):
    """True when `label` (sig as raw bytes) verifies and is low-S."""
    unsigned = {k: v for k, v in label.items() if k != "sig"}
    sig = label["sig"]
    if len(sig) != 64 or int.from_bytes(sig[32:], "big") > N // 2:
        return False
    try:
        return key.verify(sig, cbor2.dumps(unsigned, canonical=True), sigdecode=ecdsa.util.sigdecode_string)
    except ecdsa.BadSignatureError:
        return False


def from_json(label):
    out = dict(label)
    b64 = label["sig"]["$bytes"]
    out["sig"] = base64.b64decode(b64 + "=" * (-len(b64) % 4))
    return out


def verify(base):
    doc, key = label_key(base)
    labels = get_json(base + "/xrpc/com.atproto.label.queryLabels?uriPatterns=*&limit=250")["labels"]
    good = sum(check(from_json(l), key) for l in labels)
    tampered = 0
    for l in labels:
        t = from_json(l)
        t["val"] = t["val"] + "x"
        tampered += not check(t, key)
    print(json.dumps({"did": doc["id"], "labels": len(labels), "verified": good,
                      "tampered_rejected": tampered,
                      "all_src_match": all(l["src"] == doc["id"] for l in labels)}))


def jsonable(v):
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


async def subscribe(base, cursor, count, out):
    _, key = label_key(base)
    url = base.replace("http://", "ws://") + "/xrpc/com.atproto.label.subscribeLabels"
    if cursor != "-":
        url += "?cursor=" + cursor
    seen = 0
    with open(out, "a") as f:
        async with websockets.connect(url, max_size=None) as ws:
            f.write(json.dumps({"connected": True}) + "\n")
            f.flush()
            while seen < count:
                try:
                    msg = await ws.recv()
                except websockets.ConnectionClosed:
                    f.write(json.dumps({"closed": True}) + "\n")
                    return
                dec = cbor2.CBORDecoder(io.BytesIO(msg))
                header, body = dec.decode(), dec.decode()
                frame = {"header": header, "body": jsonable(body)}
                if header.get("t") == "#labels":
                    frame["verified"] = all(check(l, key) for l in body["labels"])
                f.write(json.dumps(frame) + "\n")
                f.flush()
                seen += 1
                if header.get("op") == -1:
                    try:
                        await asyncio.wait_for(ws.recv(), 5)
                    except websockets.ConnectionClosed:
                        f.write(json.dumps({"closed": True}) + "\n")
                    except asyncio.TimeoutError:
                        pass
                    return


if __name__ == "__main__":
    if sys.argv[1] == "verify":
        verify(sys.argv[2])
    else:
        asyncio.run(subscribe(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
