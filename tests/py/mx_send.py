#!/usr/bin/env python3
"""Send one message to an MX with Python's smtplib, the way a remote mail server would: no AUTH,
optional STARTTLS, any envelope sender (empty for bounces).

usage: mx_send.py HOST PORT FROM MESSAGE_FILE [--starttls] TO [TO ...]
Prints JSON: {"mail": [code, text], "rcpt": [[code, text], ...], "data": [code, text] | null}.
"""
import json
import smtplib
import ssl
import sys

host, port, sender, path = sys.argv[1:5]
rest = sys.argv[5:]
starttls = "--starttls" in rest
rcpts = [r for r in rest if r != "--starttls"]
with open(path, "rb") as f:
    body = f.read()

out = {"mail": None, "rcpt": [], "data": None}
with smtplib.SMTP(host, int(port), timeout=30) as s:
    s.ehlo("mx.remote.test")
    if starttls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the relay under test uses a self-signed certificate
        s.starttls(context=ctx)
        s.ehlo("mx.remote.test")
        out["tls"] = True
    code, text = s.mail(sender)
    out["mail"] = [code, text.decode()]
    if code == 250:
        for r in rcpts:
            code, text = s.rcpt(r)
            out["rcpt"].append([code, text.decode()])
        if any(c == 250 for c, _ in out["rcpt"]):
            try:
                code, text = s.data(body)
                out["data"] = [code, text.decode()]
            except smtplib.SMTPDataError as e:
                out["data"] = [e.smtp_code, e.smtp_error.decode()]
print(json.dumps(out))
