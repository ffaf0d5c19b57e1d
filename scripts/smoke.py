#!/usr/bin/env python3
"""Smoke test of a running service, local or deployed: `make smoke API_URL=https://...`.

Walks one throwaway account through every flow: register, login, me, the session list, signing
out the other session, refresh, verifying the address (asks you for the code it mails),
two-step sign-in (set up, confirm, sign in with a code, turn off with a recovery code),
logout, forgot password (asks you for the code it mails), reset,
login with the new password, delete. Needs only Python's standard library (it plays the
authenticator app with RFC 6238 on `hmac`).

    smoke.py API_URL [--email ADDRESS]

In the SES sandbox, mail reaches only verified addresses: pass one you can read with --email
(or SMOKE_EMAIL). The account is deleted at the end.
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import time
import urllib.error
import urllib.request
import uuid

PASSWORD = "smoke test passphrase " + uuid.uuid4().hex[:8]
NEW_PASSWORD = "another smoke passphrase " + uuid.uuid4().hex[:8]


def call(base, method, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base.rstrip("/") + path, data=data, method=method)
    if data is not None:
        request.add_header("content-type", "application/json")
    if token:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, {"raw": raw[:200].decode(errors="replace")}


def totp(secret, at):
    """The 6-digit RFC 6238 code of a base32 `secret` at Unix time `at` (SHA-1, 30 s)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(at) // 30), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    return f"{(struct.unpack('>I', mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("api_url", nargs="?", default=os.environ.get("API_URL", ""))
    parser.add_argument("--email", default=os.environ.get("SMOKE_EMAIL", ""))
    args = parser.parse_args()
    if not args.api_url:
        sys.exit("usage: make smoke API_URL=https://<api-id>.execute-api.<region>.amazonaws.com")
    base = args.api_url
    username = "smoke_" + uuid.uuid4().hex[:10]
    email = args.email or f"{username}@example.com"
    passed, failed = 0, 0
    state = {}

    def step(name, method, path, expected, body=None, token=None, keep=None):
        nonlocal passed, failed
        status, answer = call(base, method, path, body, token)
        if status == expected:
            passed += 1
            print(f"ok   {name} ({status})", flush=True)
            if keep:
                state.update(keep(answer))
            return True
        failed += 1
        print(f"FAIL {name}: expected {expected}, got {status}: {answer}", flush=True)
        return False

    tokens = lambda answer: {"access": answer["access_token"], "refresh": answer["refresh_token"]}
    ok = step("register", "POST", "/auth/register", 201,
              {"username": username, "email": email, "password": PASSWORD}, keep=tokens)
    if ok:
        step("login", "POST", "/auth/login", 200, {"identifier": email, "password": PASSWORD}, keep=tokens)
        step("me", "GET", "/auth/me", 200, token=state.get("access"))
        step("two sessions are listed", "GET", "/auth/sessions", 200, token=state.get("access"),
             keep=lambda answer: {"sessions": len(answer["sessions"])})
        if state.get("sessions") != 2:
            failed += 1
            print(f"FAIL the registration and the sign-in are two sessions: {state.get('sessions')}", flush=True)
        step("sign out the other session", "POST", "/auth/logout", 204,
             {"refresh_token": state.get("refresh"), "scope": "others"})
        step("refresh", "POST", "/auth/refresh", 200, {"refresh_token": state.get("refresh")}, keep=tokens)
        # A second factor goes only on a verified address.
        print(f"Enter the verification code mailed to {email}:", flush=True)
        step("verify the address", "POST", "/auth/email/verify", 200,
             {"email": email, "code": sys.stdin.readline().strip()})
        if step("set up two-step sign-in", "POST", "/auth/mfa/totp/setup", 200,
                {"current_password": PASSWORD}, token=state.get("access"),
                keep=lambda answer: {"secret": answer["secret"]}):
            step("confirm it with a code", "POST", "/auth/mfa/totp/confirm", 200,
                 {"code": totp(state["secret"], time.time())}, token=state.get("access"),
                 keep=lambda answer: {"recovery": answer["recovery_codes"]})
            step("sign-in asks for the second step", "POST", "/auth/login", 200,
                 {"identifier": email, "password": PASSWORD},
                 keep=lambda answer: {"mfa_token": answer.get("mfa_token")})
            # The confirmation spent this step's code: the next step's (one step of drift).
            step("sign in with the next code", "POST", "/auth/mfa/verify", 200,
                 {"mfa_token": state.get("mfa_token"), "code": totp(state["secret"], time.time() + 30)},
                 keep=tokens)
            step("turn it off with a recovery code", "DELETE", "/auth/mfa/totp", 204,
                 {"current_password": PASSWORD, "code": (state.get("recovery") or [""])[0]},
                 token=state.get("access"))
        step("logout", "POST", "/auth/logout", 204, {"refresh_token": state.get("refresh")})
        step("refresh after logout is refused", "POST", "/auth/refresh", 401, {"refresh_token": state.get("refresh")})
        if step("forgot password", "POST", "/auth/password/forgot", 202, {"email": email}):
            print(f"Enter the reset code mailed to {email}:", flush=True)
            code = sys.stdin.readline().strip()
            step("reset password", "POST", "/auth/password/reset", 204,
                 {"email": email, "code": code, "new_password": NEW_PASSWORD})
        step("login with the new password", "POST", "/auth/login", 200,
             {"identifier": username, "password": NEW_PASSWORD}, keep=tokens)
        step("delete the account", "DELETE", "/auth/me", 204, {"password": NEW_PASSWORD}, token=state.get("access"))
        step("the account is gone", "POST", "/auth/login", 401, {"identifier": username, "password": NEW_PASSWORD})
    print(f"smoke: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
