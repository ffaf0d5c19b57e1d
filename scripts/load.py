#!/usr/bin/env python3
"""`make load`: many concurrent clients against the local stack, bounded in time and count,
on loopback only; then an audit of what they left in the tables.

Each client runs user journeys: register (now and then four clients race for one email), sign
in by email or username, read the profile, refresh in two parallel tabs, edit the profile,
reuse an old refresh token after the reuse interval, change or reset the password (the code read
from the local mail endpoint), log out one session or all, delete the account. Every token that
must be dead afterwards is remembered, and so is a live session per surviving user.

The audit, once the clients stop: no two users share an email or a username; every user has
its email and username records and every record its user; every remembered dead refresh token
is refused and every remembered live one still works; and no answer was a 5xx. Prints requests,
errors and latency percentiles per endpoint, and writes them to target/load/load.md and
load.json.

    LOAD_SECONDS=180 LOAD_CLIENTS=16 LOAD_MAX_REQUESTS=50000 make load
"""

import concurrent.futures
import json
import os
import random
import sys
import threading
import subprocess
import time

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack import ROOT, PASSWORD, Client, Ports, mails_to, start_stack, stop_with_ctrl_c, unique, wait_for_api  # noqa: E402

SECONDS = float(os.environ.get("LOAD_SECONDS", "180"))
CLIENTS = int(os.environ.get("LOAD_CLIENTS", "16"))
MAX_REQUESTS = int(os.environ.get("LOAD_MAX_REQUESTS", "50000"))
REUSE_INTERVAL = 2
NEW_PASSWORD = "a load-tested new passphrase"

# Every answer an operation may give under this load; anything else is an error.
EXPECTED = {
    "register": {201},
    "register (race)": {201, 409},
    "login": {200},
    "me": {200},
    "refresh": {200},
    "refresh (reused)": {401},
    "update me": {200},
    "change password": {200},
    "forgot password": {202},
    "reset password": {204},
    "logout": {204},
    "logout (global)": {204},
    "delete me": {204},
}


class Stats:
    def __init__(self, deadline):
        self.lock = threading.Lock()
        self.deadline = deadline
        self.latencies = {}
        self.statuses = {}
        self.errors = []
        self.count = 0

    def running(self):
        with self.lock:
            return time.monotonic() < self.deadline and self.count < MAX_REQUESTS

    def record(self, operation, status, seconds, detail=""):
        with self.lock:
            self.count += 1
            self.latencies.setdefault(operation, []).append(seconds)
            key = f"{operation} {status}"
            self.statuses[key] = self.statuses.get(key, 0) + 1
            if status not in EXPECTED[operation]:
                self.errors.append(f"{operation}: {status} {detail}")


class Ledger:
    """What the audit checks: tokens that must be dead, sessions that must live, users."""

    def __init__(self):
        self.lock = threading.Lock()
        self.dead = []  # (why, refresh token)
        self.live = {}  # user id -> refresh token of its newest live session
        self.deleted = set()
        self.race_winners = []  # (email, number of 201s)

    def kill(self, why, *tokens):
        with self.lock:
            self.dead.extend((why, t) for t in tokens if t)

    def keep(self, user_id, token):
        with self.lock:
            self.live[user_id] = token

    def forget(self, user_id):
        with self.lock:
            self.live.pop(user_id, None)


def journey(api, aws, stats, ledger, rng):
    def call(operation, method, path, body=None, token=None):
        headers = {"authorization": f"Bearer {token}"} if token else None
        started = time.perf_counter()
        response = api.call(method, path, body, headers=headers)
        # Only the problem code goes into the report: a body may hold tokens.
        code = (response.json or {}).get("code", "") if isinstance(response.json, dict) else ""
        stats.record(operation, response.status, time.perf_counter() - started, code)
        return response

    username = unique("load")
    email = f"{username}@example.com"
    if rng.random() < 0.1:
        # Four clients race for one email: exactly one may win.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            bodies = [{"username": f"{username}{i}", "email": email, "password": PASSWORD} for i in range(4)]
            raced = list(pool.map(lambda b: call("register (race)", "POST", "/auth/register", b), bodies))
        winners = [(b, r) for b, r in zip(bodies, raced) if r.status == 201]
        with ledger.lock:
            ledger.race_winners.append((email, len(winners)))
        if not winners:
            return
        username, first = winners[0][0]["username"], winners[0][1]
    else:
        first = call("register", "POST", "/auth/register", {"username": username, "email": email, "password": PASSWORD})
        if first.status != 201:
            return
    user_id = first.json["user"]["id"]
    sessions = [first.json]  # token responses of this user's sessions, newest last
    password = PASSWORD

    identifier = email if rng.random() < 0.5 else username.upper()
    signed_in = call("login", "POST", "/auth/login", {"identifier": identifier, "password": password})
    if signed_in.status != 200:
        return
    sessions.append(signed_in.json)
    call("me", "GET", "/auth/me", token=signed_in.json["access_token"])

    # Two tabs refresh the same session at once: both get tokens (the reuse interval).
    spent = signed_in.json["refresh_token"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        tabs = list(pool.map(lambda _: call("refresh", "POST", "/auth/refresh", {"refresh_token": spent}), range(2)))
    fresh = [t.json for t in tabs if t.status == 200]
    if fresh:
        sessions[-1] = fresh[-1]

    if rng.random() < 0.3:
        call("update me", "PATCH", "/auth/me", {"full_name": f"Load {rng.randrange(10**6)}"}, token=sessions[-1]["access_token"])

    if rng.random() < 0.12:
        # A stolen token replayed after the reuse interval: refused, and its session revoked.
        # Past the interval, with a margin for the whole seconds the service compares.
        time.sleep(REUSE_INTERVAL + 1.2)
        call("refresh (reused)", "POST", "/auth/refresh", {"refresh_token": spent})
        ledger.kill("the session of a reused token", *(s["refresh_token"] for s in sessions[-1:]))
        sessions.pop()
        if not sessions:
            return

    roll = rng.random()
    if roll < 0.2:
        changed = call(
            "change password", "POST", "/auth/password/change",
            {"current_password": password, "new_password": NEW_PASSWORD}, token=sessions[-1]["access_token"],
        )
        if changed.status == 200:
            ledger.kill("a session before a password change", *(s["refresh_token"] for s in sessions))
            sessions, password = [changed.json], NEW_PASSWORD
    elif roll < 0.4:
        before = len(mails_to(aws, email))
        call("forgot password", "POST", "/auth/password/forgot", {"email": email})
        mails = [m for m in mails_to(aws, email, at_least=before + 1) if "reset code" in m["subject"]]
        if mails:
            code = mails[-1]["body"].split("<strong>")[1][:8]
            reset = call("reset password", "POST", "/auth/password/reset", {"email": email, "code": code, "new_password": NEW_PASSWORD})
            if reset.status == 204:
                ledger.kill("a session before a password reset", *(s["refresh_token"] for s in sessions))
                password = NEW_PASSWORD
                again = call("login", "POST", "/auth/login", {"identifier": email, "password": password})
                sessions = [again.json] if again.status == 200 else []
        else:
            with stats.lock:
                stats.errors.append(f"no reset mail reached {email}")

    if not sessions:
        return
    roll = rng.random()
    if roll < 0.1:
        deleted = call("delete me", "DELETE", "/auth/me", {"password": password}, token=sessions[-1]["access_token"])
        if deleted.status == 204:
            ledger.kill("a session of a deleted account", *(s["refresh_token"] for s in sessions))
            with ledger.lock:
                ledger.deleted.add(user_id)
            return
    elif roll < 0.25:
        call("logout (global)", "POST", "/auth/logout", {"refresh_token": sessions[-1]["refresh_token"], "scope": "global"})
        ledger.kill("a session before a global logout", *(s["refresh_token"] for s in sessions))
        return
    if len(sessions) > 1:
        call("logout", "POST", "/auth/logout", {"refresh_token": sessions[0]["refresh_token"]})
        ledger.kill("a logged-out session", sessions[0]["refresh_token"])
    ledger.keep(user_id, sessions[-1]["refresh_token"])


def client(api, aws, stats, ledger, seed):
    rng = random.Random(seed)
    while stats.running():
        try:
            journey(api, aws, stats, ledger, rng)
        except Exception as err:  # a broken connection is an error of the run, not a crash
            with stats.lock:
                stats.errors.append(f"client error: {type(err).__name__}: {err}")


def audit(api, dynamodb_endpoint, ledger, users_table):
    problems = []
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name="us-east-1")
    items = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=users_table):
        items.extend(page["Items"])
    text = lambda item, name: item.get(name, {}).get("S", "")  # noqa: E731
    users = {text(i, "id"): i for i in items if text(i, "pk").startswith("USER#")}
    emails = {text(i, "pk")[len("EMAIL#"):]: text(i, "user_id") for i in items if text(i, "pk").startswith("EMAIL#")}
    names = {text(i, "pk")[len("USERNAME#"):]: text(i, "user_id") for i in items if text(i, "pk").startswith("USERNAME#")}

    seen_emails, seen_names = {}, {}
    for user_id, user in users.items():
        email, name = text(user, "email"), text(user, "username").lower()
        for seen, key, what in ((seen_emails, email, "email"), (seen_names, name, "username")):
            if key in seen:
                problems.append(f"two users share the {what} {key}: {seen[key]} and {user_id}")
            seen[key] = user_id
        if emails.get(email) != user_id:
            problems.append(f"user {user_id} lacks its email record")
        if names.get(name) != user_id:
            problems.append(f"user {user_id} lacks its username record")
    for kind, records, field in (("email", emails, "email"), ("username", names, "username")):
        for key, owner in records.items():
            user = users.get(owner)
            if user is None or text(user, field).lower() != key:
                problems.append(f"the {kind} record {key} names no user of that {kind} ({owner})")
    for user_id in ledger.deleted:
        if user_id in users:
            problems.append(f"deleted user {user_id} is still there")
    for email, wins in ledger.race_winners:
        if wins != 1:
            problems.append(f"{wins} registrations of {email} succeeded")

    def refresh(token):
        return api.call("POST", "/auth/refresh", {"refresh_token": token}).status

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        dead = list(pool.map(lambda d: (d[0], refresh(d[1])), ledger.dead))
        live = list(pool.map(lambda item: (item[0], refresh(item[1])), ledger.live.items()))
    problems += [f"{why}: refresh answered {status}" for why, status in dead if status != 401]
    problems += [f"a live session of {user_id}: refresh answered {status}" for user_id, status in live if status != 200]
    checked = {"users": len(users), "email records": len(emails), "username records": len(names),
               "dead tokens refused": sum(1 for _, s in dead if s == 401), "dead tokens checked": len(dead),
               "live sessions working": sum(1 for _, s in live if s == 200), "live sessions checked": len(live),
               "registration races": len(ledger.race_winners)}
    return problems, checked


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def report(stats, elapsed, checked, problems):
    total = stats.count
    fives = sum(n for key, n in stats.statuses.items() if key.rsplit(" ", 1)[1].startswith("5"))
    lines = [
        f"{total} requests in {elapsed:.0f} s ({total / elapsed:.1f}/s) from {CLIENTS} clients; "
        f"{len(stats.errors)} errors, {fives} 5xx; audit: {len(problems)} problems",
        "",
        "| operation | requests | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for operation in EXPECTED:
        values = stats.latencies.get(operation)
        if values:
            ms = [v * 1000 for v in values]
            lines.append(
                f"| {operation} | {len(ms)} | {percentile(ms, 50):.0f} | {percentile(ms, 95):.0f} | "
                f"{percentile(ms, 99):.0f} | {max(ms):.0f} |"
            )
    lines += ["", "Audit: " + ", ".join(f"{k} {v}" for k, v in checked.items())]
    text = "\n".join(lines)
    out = os.path.join(ROOT, "target", "load")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "load.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "load.json"), "w") as f:
        json.dump({"requests": total, "seconds": elapsed, "statuses": stats.statuses, "errors": stats.errors,
                   "audit": checked, "problems": problems}, f, indent=2)
    print(text)
    return fives


# One cheap request per function: each is refused (401, 415 or 422) after a full invocation.
ROUTES = [
    ("POST", "/auth/register"), ("POST", "/auth/login"), ("POST", "/auth/refresh"), ("POST", "/auth/logout"),
    ("GET", "/auth/me"), ("PATCH", "/auth/me"), ("DELETE", "/auth/me"), ("POST", "/auth/password/change"),
    ("POST", "/auth/password/forgot"), ("POST", "/auth/password/reset"),
]


def warm_every_instance(api, instances):
    """Starts every instance of every function before the clock runs. `cargo lambda watch`
    starts an instance when all running ones are busy; one that starts during the run holds its
    first requests back by the start-up time, which is an artefact of the local runner (a
    deployed function has cold starts of its own, measured by `make bench`), not load."""
    with concurrent.futures.ThreadPoolExecutor(instances) as pool:
        for method, path in ROUTES:
            for _ in range(2):
                answers = list(pool.map(lambda _: api.call(method, path, raw=b"[]"), range(instances)))
                assert all(400 <= a.status < 500 for a in answers), (method, path, [a.status for a in answers])


def main():
    for name, value in (("AWS_ACCESS_KEY_ID", "local"), ("AWS_SECRET_ACCESS_KEY", "local"), ("AWS_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    os.makedirs(os.path.join(ROOT, ".dev"), exist_ok=True)
    subprocess.run(["cargo", "build", "--workspace", "--bins"], cwd=ROOT, check=True)
    ports = Ports()
    base, endpoint = f"http://127.0.0.1:{ports.api}", f"http://127.0.0.1:{ports.aws}"
    users_table = "load-UsersTable"
    stack_env = {
        "STACK_NAME": "load",
        "CONCURRENCY": str(max(4, CLIENTS // 2)),
        "REFRESH_REUSE_INTERVAL_SECONDS": str(REUSE_INTERVAL),
        # Every client is 127.0.0.1 here: the per-client limits would stop the run, not test it.
        "LOGIN_CLIENT_LIMIT": "1000000",
        "FORGOT_CLIENT_LIMIT": "1000000",
        "PROBE_CLIENT_LIMIT": "1000000",
    }
    process, log = start_stack(ports, stack_env)
    try:
        wait_for_api(base, process)
        api = Client(base)
        warm_every_instance(api, int(stack_env["CONCURRENCY"]))
        print(f"load: {CLIENTS} clients for up to {SECONDS:.0f} s or {MAX_REQUESTS} requests against {base}")
        started = time.monotonic()
        stats, ledger = Stats(started + SECONDS), Ledger()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            for future in [pool.submit(client, api, endpoint, stats, ledger, seed) for seed in range(CLIENTS)]:
                future.result()
        elapsed = time.monotonic() - started
        problems, checked = audit(api, f"http://127.0.0.1:{ports.dynamodb}", ledger, users_table)
    finally:
        if process.poll() is None:
            stop_with_ctrl_c(process)
        log.close()
    fives = report(stats, elapsed, checked, problems)
    for line in (stats.errors[:20] + problems[:20]):
        print(f"FAIL {line}")
    sys.exit(1 if (stats.errors or problems or fives) else 0)


if __name__ == "__main__":
    main()
