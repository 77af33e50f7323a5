#!/usr/bin/env python3
"""Submit one message with Python's smtplib: STARTTLS, then AUTH with the given mechanism.

usage: submit.py HOST PORT USER PASSWORD MECH FROM TO TEST_ID
Prints the DATA reply as JSON; exits 1 on any SMTP error.
"""
import json
import smtplib
import ssl
import sys

host, port, user, password, mech, sender, rcpt, test_id = sys.argv[1:9]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # the relay under test uses a self-signed certificate

msg = (
    f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: smtplib {test_id}\r\n"
    f"X-Test-Id: {test_id}\r\n\r\nsent by smtplib with AUTH {mech}\r\n"
)
try:
    with smtplib.SMTP(host, int(port), timeout=30) as s:
        s.ehlo("smtplib.test")
        s.starttls(context=ctx)
        s.ehlo("smtplib.test")
        s.user, s.password = user, password
        auth = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login}[mech]
        s.auth(mech, auth, initial_response_ok=(mech == "PLAIN"))
        code, resp = s.mail(sender)
        assert code == 250, (code, resp)
        code, resp = s.rcpt(rcpt)
        assert code == 250, (code, resp)
        code, resp = s.data(msg.encode())
        print(json.dumps({"code": code, "reply": resp.decode()}))
        sys.exit(0 if code == 250 else 1)
except (smtplib.SMTPException, AssertionError) as e:
    print(json.dumps({"error": str(e)}))
    sys.exit(1)
