"""The local stack, for the programs that drive it: start `scripts/dev` on free ports of its own,
wait for it, call it over HTTP, read its mail, and stop it as a person would (Ctrl-C).
Used by the end-to-end tests (.ci/e2e.py), the browser test (.ci/browser.py) and `make load`."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASSWORD = "correct horse battery staple"

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.raw = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    def header(self, name):
        return self.headers.get(name.lower())

    def cookies(self):
        return self.headers.get_all("set-cookie") or []


class Client:
    def __init__(self, base):
        self.base = base

    def call(self, method, path, body=None, headers=None, raw=None, content_type="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None and content_type:
            request.add_header("content-type", content_type)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return Response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as err:
            return Response(err.code, err.headers, err.read())

def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def mails_to(endpoint, address, at_least=0, seconds=10):
    """The mail the local endpoint sent to `address`: [{"subject", "body", "to"}]. Mail goes out
    after the answer (shared/src/outbox.rs), as a person reads it after the page says "sent":
    with `at_least`, waits up to `seconds` for that many mails to have arrived."""
    query = urllib.parse.urlencode({"to": address})
    deadline = time.monotonic() + seconds
    while True:
        with urllib.request.urlopen(f"{endpoint}/local/mail?{query}", timeout=30) as response:
            mails = json.load(response)
        if len(mails) >= at_least or time.monotonic() > deadline:
            return mails
        time.sleep(0.05)

def run_smoke(base, mail_endpoint, timeout=120, echo=False):
    """Runs `make smoke`'s program against `base`, answering its prompts for mailed codes (the
    verification code, the reset code) from the local mail, as a person reads their inbox.
    Returns (passed, its output)."""
    import sys

    email = f"{unique('smoke')}@example.com"
    smoke = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "smoke.py"), base, "--email", email],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    output = []
    for line in smoke.stdout:
        output.append(line)
        if echo:
            print(line, end="", flush=True)
        if line.startswith("Enter the ") and " code mailed to " in line:
            kind = line.removeprefix("Enter the ").split(" code mailed to ")[0]
            deadline = time.monotonic() + 30
            while not (mails := [m for m in mails_to(mail_endpoint, email) if f"{kind} code" in m["subject"]]):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            code = mails[-1]["body"].split("<strong>")[1][:8] if mails else "no mail"
            smoke.stdin.write(code + "\n")
            smoke.stdin.flush()
    status = smoke.wait(timeout=timeout)
    passed = status == 0 and bool(output) and output[-1].strip() == "smoke: 19 passed, 0 failed"
    return passed, "".join(output)


class Ports:
    """Free ports for one stack: the API, the mail (SES) endpoint, DynamoDB Local, and the
    functions' server behind the local gateway."""

    def __init__(self):
        self.api, self.aws, self.dynamodb, self.watch = free_port(), free_port(), free_port(), free_port()

    def env(self):
        return {"API_PORT": str(self.api), "AWS_PORT": str(self.aws), "DYNAMODB_PORT": str(self.dynamodb),
                "WATCH_PORT": str(self.watch), "APP_PORT": ""}

    def all(self):
        return [self.api, self.aws, self.dynamodb, self.watch]


def start_stack(ports, extra_env):
    # The tests write logs inside the project: no reload may restart a function mid-request.
    # Nothing of this shell's PATH is needed: the stack calls the project's tools by path.
    env = {**os.environ, "WATCH_FLAGS": "--ignore-changes", **ports.env(), **extra_env}
    log = open(os.path.join(ROOT, ".dev", f"e2e-{ports.api}.log"), "w")

    def interactive_signals():
        # As in a terminal: SIGINT is delivered, not ignored as for a background job.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        ["bash", "scripts/dev"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=interactive_signals,
    )
    return process, log


def wait_for_api(base, process, seconds=600):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the local stack exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the local stack did not start")


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def stop_with_ctrl_c(process):
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


class Checks:
    """Runs named checks, each a function that raises on failure, and counts them: a failure is
    reported and counted, never the end of the run."""

    def __init__(self):
        self.passed = self.failed = 0

    def run(self, name, fn):
        try:
            fn()
        except AssertionError as err:
            self.failed += 1
            print(f"FAIL {name}: {err}")
        except Exception as err:  # an unexpected error is a failure too, never a crash of the run
            self.failed += 1
            print(f"FAIL {name}: {type(err).__name__}: {err}")
        else:
            self.passed += 1
            print(f"ok   {name}")

    def summary(self, what):
        """Prints the closing line, `what: N passed, N failed`; returns the exit status."""
        print(f"{what}: {self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0
