#!/usr/bin/env python3
"""`make bench`: measures every function and prints one table.

- cold start: spawn -> first response, through a Lambda Runtime API stand-in, beside a bare
  lambda_http hello-world built with the same (release) profile in the same run, and beside
  that hello-world reading one secret at start (the floor of a function that must);
- the first request after a cold start beside warm ones, and peak resident memory;
- stripped release binary sizes;
- server time per endpoint against the local DynamoDB endpoint, beside the floors measured in
  the same run (one Argon2id verification, one access token (RS256) verification, DynamoDB round trips), and
  DynamoDB calls per endpoint (counted by an SDK interceptor): `shared/benches/programs/endpoint_costs.rs`;
- the criterion benches of `shared/benches/hot.rs`.

Writes target/bench/bench.md and target/bench/bench.json. Loopback only, bounded in count.

`--baseline REV` instead compares the server time per endpoint of REV and the working tree, in
one run (target/bench/compare.md).
"""

import contextlib
import http.server
import json
import os
import platform
import urllib.parse
import urllib.request
import signal
import socket
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import template_env  # noqa: E402
RELEASE = os.path.join(ROOT, "target", "release")
OUT = os.path.join(ROOT, "target", "bench")
COLD_RUNS = 9
WARM_RUNS = 6
# The functions behind routes (rotate-keys runs once a month, invoked by Secrets Manager).
FUNCTIONS = sorted(name for name in os.listdir(os.path.join(ROOT, "functions")) if name != "rotate-keys")
# Argon2id computations (hash or verification, the same work) per request of each endpoint, as
# the benchmark drives it (update-me changes only the full name: no password).
ARGON2_WORK = {"register": 1, "login": 1, "change-password": 2, "reset-password": 1, "delete-me": 1}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RuntimeApi:
    """The part of the Lambda Runtime API a function uses: it hands out queued events and
    records when each response arrives."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()
        self.served = {}
        self.responses = {}
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                if not self.path.endswith("/runtime/invocation/next"):
                    return self.reply(404, b"{}")
                with api.cond:
                    while not api.events:
                        api.cond.wait()
                    request_id, body = api.events.pop(0)
                    api.served[request_id] = time.perf_counter()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length)
                parts = self.path.split("/")
                if "invocation" in parts:
                    request_id = parts[parts.index("invocation") + 1]
                    with api.cond:
                        api.responses[request_id] = (time.perf_counter(), parts[-1], payload)
                        api.cond.notify_all()
                self.reply(202, b"{}")

            def reply(self, status, body):
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event, timeout=60):
        request_id = str(uuid.uuid4())
        with self.cond:
            self.events.append((request_id, json.dumps(event).encode()))
            self.cond.notify_all()
            deadline = time.monotonic() + timeout
            while request_id not in self.responses:
                if not self.cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError("no response from the function")
            done, kind, payload = self.responses.pop(request_id)
        if kind != "response":
            raise RuntimeError(f"the function reported an error: {payload[:300]!r}")
        return done, self.served.pop(request_id), json.loads(payload)


def sample_event(name, method=None, body=None, headers=None):
    with open(os.path.join(ROOT, "events", f"{name}.json")) as f:
        event = json.load(f)
    if method:
        event["requestContext"]["http"]["method"] = method
    if body is not None:
        event["body"] = json.dumps(body)
    if headers:
        event["headers"].update(headers)
    return event


# Each function's environment as template.yaml declares it (scripts/template_env.py), filled in
# by main(); the baseline programs, which imitate a token-issuing function, get login's.
FUNCTION_ENVS = {}


def function_env(binary):
    name = os.path.basename(binary)
    return FUNCTION_ENVS.get(name, FUNCTION_ENVS.get("login", {}))


def spawn(binary, env):
    """Starts a function with a Runtime API stand-in of its own (a dead process's pending
    `next` must not swallow the next process's event), with its template environment and the
    local endpoints and credentials of `env`. Logs at WARN: the figures are not about logging."""
    api = RuntimeApi()
    plumbing = {k: v for k, v in env.items() if k.startswith("AWS_") or k == "PATH"}
    environment = dict(
        plumbing,
        **function_env(binary),
        AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{api.port}",
        AWS_LAMBDA_FUNCTION_NAME=os.path.basename(binary),
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_STREAM_NAME="bench",
        AWS_LAMBDA_LOG_GROUP_NAME="bench",
        AWS_LAMBDA_LOG_LEVEL="WARN",
    )
    process = subprocess.Popen([binary], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, api


def stop(process, api):
    process.send_signal(signal.SIGKILL)
    _, _, usage = os.wait4(process.pid, 0)
    api.server.shutdown()
    return usage.ru_maxrss / 1024  # KiB -> MiB


def cold_start(binary, event, env):
    samples = []
    for _ in range(COLD_RUNS):
        started = time.perf_counter()
        process, api = spawn(binary, env)
        done, _, _ = api.invoke(event)
        samples.append((done - started) * 1e3)
        stop(process, api)
    return samples


def warm_series(binary, events, env):
    """One process: the first request after its cold start, then warm ones."""
    process, api = spawn(binary, env)
    durations, answers = [], []
    for event in events:
        done, served, answer = api.invoke(event)
        durations.append((done - served) * 1e3)
        answers.append(answer)
    return durations, answers, stop(process, api)


def summary(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def run(command, env=None, **kwargs):
    print("+", " ".join(command), file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=ROOT, env=env, check=True, **kwargs)


def main():
    os.makedirs(OUT, exist_ok=True)
    env = dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    if len(sys.argv) == 3 and sys.argv[1] == "--baseline":
        compare_with(sys.argv[2], env)
        return
    run(["cargo", "build", "--release", "--workspace", "--bins"], env)
    run(["cargo", "build", "--release", "-p", "shared", "--example", "baseline_hello", "--example", "baseline_secret",
         "--example", "cold_start_steps"], env)
    with local_aws_services(env) as endpoint:
        first_keys(env, endpoint)
        report = measure(env)
    write(report)


@contextlib.contextmanager
def local_aws_services(env):
    """DynamoDB Local and the local SES / Secrets Manager endpoint on free ports, their tables
    and secrets made as `make dev` makes them, and each function's template environment read;
    `env` gets the endpoints and resource names. Yields the SES / Secrets Manager endpoint."""
    endpoint, dynamodb = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    env.update(AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local", AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL=endpoint, AWS_ENDPOINT_URL_DYNAMODB=dynamodb)
    local_aws = os.path.join(ROOT, "scripts", "local_aws.py")
    services = [
        subprocess.Popen([sys.executable, local_aws, service, "--port", url.rsplit(":", 1)[1]],
                         cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for service, url in (("dynamodb", dynamodb), ("mail", endpoint))
    ]
    try:
        run([sys.executable, local_aws, "wait", dynamodb, f"{endpoint}/local/mail"], env)
        resources_file = os.path.join(OUT, "resources.json")
        setup = run([sys.executable, local_aws, "setup", "--dynamodb", dynamodb, "--ses", endpoint, "--prefix", "bench",
                     "--resources", resources_file], env, capture_output=True, text=True).stdout
        env.update(dict(line.split("=", 1) for line in setup.split()))
        # Secrets as deployed: the functions read them from the local Secrets Manager at start,
        # and the signing keys are made by the rotation function's first rotation. Forgot
        # password answers at once here (its floor is a timing, not work).
        env.update(FORGOT_MIN_RESPONSE_MS="0")
        with open(resources_file) as f:
            template = template_env.load_template()
            resolver = template_env.local_resolver(template, json.load(f), "http://127.0.0.1:9000",
                                                   {"PARAMETER_OVERRIDES": "MailFrom=no-reply@auth.test"})
        FUNCTION_ENVS.update(template_env.environments(template, resolver, {"FORGOT_MIN_RESPONSE_MS": "0"}))
        yield endpoint
    finally:
        for service in services:
            service.terminate()
            service.wait()


# Rounds of the baseline comparison: each runs the old program, then the new one.
COMPARE_ROUNDS = 3


def compare_with(baseline, env):
    """`make bench BASELINE=<rev>`: server time per endpoint of the program in
    shared/benches/programs/endpoint_costs.rs as it is at <rev> and as it is now, run in turns
    against the same local DynamoDB, and each endpoint's ratio new / old. A ratio is the median
    of the rounds' ratios; its spread (min-max) is the noise to read it against."""
    tree = os.path.join(ROOT, ".dev", "bench-baseline")
    if os.path.exists(tree):
        run(["git", "worktree", "remove", "--force", tree], env)
    run(["git", "worktree", "add", "--detach", tree, baseline], env, stdout=subprocess.DEVNULL)
    programs = {}
    rounds = []
    # The tree stays until the runs are over: a program reads its tree's sample events.
    try:
        for label, manifest in (("old", os.path.join(tree, "Cargo.toml")), ("new", os.path.join(ROOT, "Cargo.toml"))):
            # One target directory: the dependencies are built once; only the shared crate of
            # each tree is compiled. The program is copied out before the other build replaces it.
            run(["cargo", "build", "--release", "-q", "--manifest-path", manifest, "-p", "shared", "--features",
                 "integration", "--example", "endpoint_costs"], dict(env, CARGO_TARGET_DIR=os.path.join(ROOT, "target")))
            programs[label] = os.path.join(OUT, f"endpoint_costs-{label}")
            shutil.copy2(os.path.join(RELEASE, "examples", "endpoint_costs"), programs[label])
        with local_aws_services(env):
            for _ in range(COMPARE_ROUNDS):
                rounds.append({label: json.loads(run([program], env, stdout=subprocess.PIPE, text=True).stdout
                                                 .strip().splitlines()[-1])["endpoints"]
                               for label, program in programs.items()})
    finally:
        run(["git", "worktree", "remove", "--force", tree], env)
    lines = [f"Server time per endpoint, {baseline} (old) and the working tree (new), {COMPARE_ROUNDS} rounds "
             f"of old then new in one run on {machine()['cpu']}.", "",
             "| endpoint | old ms | new ms | new / old (median of rounds) | min-max of rounds |", "|---|---|---|---|---|"]
    for name in rounds[0]["new"]:
        if name not in rounds[0]["old"]:
            continue
        old = statistics.median(r["old"][name]["median_ms"] for r in rounds)
        new = statistics.median(r["new"][name]["median_ms"] for r in rounds)
        ratios = [r["new"][name]["median_ms"] / r["old"][name]["median_ms"] for r in rounds]
        lines.append(f"| {name} | {old:.2f} | {new:.2f} | {statistics.median(ratios):.2f} | "
                     f"{min(ratios):.2f}-{max(ratios):.2f} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(OUT, "compare.md"), "w") as f:
        f.write(table + "\n")


def first_keys(env, endpoint):
    """Runs rotate-keys through the four steps of a first rotation, as the deployment does."""
    start = urllib.request.Request(
        f"{endpoint}/local/rotation/start?{urllib.parse.urlencode({'secret': env['SIGNING_KEYS_SECRET_ID']})}",
        method="POST")
    with urllib.request.urlopen(start, timeout=30) as response:
        token = json.load(response)["token"]
    process, api = spawn(os.path.join(RELEASE, "rotate-keys"), env)
    try:
        for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
            api.invoke({"SecretId": env["SIGNING_KEYS_SECRET_ID"], "ClientRequestToken": token, "Step": step})
    finally:
        stop(process, api)


def measure(env):
    report = {"machine": machine(), "functions": {}, "first_request": {}}

    # Cold start: every function answers its cheapest path (a method it does not serve).
    hello = cold_start(os.path.join(RELEASE, "examples", "baseline_hello"), sample_event("me", method="OPTIONS"), env)
    report["hello"] = {"cold_ms": summary(hello), "size_mib": os.path.getsize(os.path.join(RELEASE, "examples", "baseline_hello")) / 2**20}
    # The floor of a function that must read a secret at start: the hello-world plus one read.
    secret = cold_start(os.path.join(RELEASE, "examples", "baseline_secret"), sample_event("me", method="OPTIONS"), env)
    report["secret_floor"] = {"cold_ms": summary(secret), "cold_ratio": statistics.median(secret) / statistics.median(hello),
                              "size_mib": os.path.getsize(os.path.join(RELEASE, "examples", "baseline_secret")) / 2**20}
    for name in FUNCTIONS:
        binary = os.path.join(RELEASE, name)
        cold = cold_start(binary, sample_event(name, method="OPTIONS"), env)
        report["functions"][name] = {
            "cold_ms": summary(cold),
            "cold_ratio": statistics.median(cold) / report["hello"]["cold_ms"]["median"],
            "secret_floor_ratio": statistics.median(cold) / report["secret_floor"]["cold_ms"]["median"],
            "size_mib": os.path.getsize(binary) / 2**20,
        }

    # Where the time of a cold start goes, step by step.
    steps_binary = os.path.join(RELEASE, "examples", "cold_start_steps")
    steps_env = dict({k: v for k, v in env.items() if k.startswith("AWS_") or k == "PATH"}, **function_env(steps_binary))
    steps = [json.loads(subprocess.run([steps_binary], env=steps_env, capture_output=True,
                                       text=True, check=True).stdout) for _ in range(COLD_RUNS)]
    report["init_ms"] = {key: statistics.median(s[key] for s in steps) for key in steps[0]}

    # First request after a cold start beside warm ones, and peak memory, on real requests.
    users = []
    register_events = []
    for i in range(WARM_RUNS):
        name = f"bench{uuid.uuid4().hex[:10]}"
        users.append(name)
        register_events.append(sample_event("register", body={
            "username": name, "email": f"{name}@example.com", "password": "correct horse battery staple"}))
    durations, answers, rss = warm_series(os.path.join(RELEASE, "register"), register_events, env)
    tokens = [json.loads(a["body"]) for a in answers]
    series = {"register": (durations, rss)}
    series["login"] = warm_series(os.path.join(RELEASE, "login"), [
        sample_event("login", body={"identifier": u, "password": "correct horse battery staple"}) for u in users
    ], env)[::2]
    series["me"] = warm_series(os.path.join(RELEASE, "me"), [
        sample_event("me", headers={"authorization": f"Bearer {tokens[0]['access_token']}"}) for _ in range(WARM_RUNS)
    ], env)[::2]
    series["refresh"] = warm_series(os.path.join(RELEASE, "refresh"), [
        sample_event("refresh", body={"refresh_token": t["refresh_token"]}) for t in tokens
    ], env)[::2]
    for name, (durations, rss) in series.items():
        warm = statistics.median(durations[1:])
        report["first_request"][name] = {"first_ms": durations[0], "warm_ms": warm, "ratio": durations[0] / warm}
        report["functions"][name]["peak_rss_mib"] = rss
    for name in FUNCTIONS:
        if "peak_rss_mib" not in report["functions"][name]:
            process, api = spawn(os.path.join(RELEASE, name), env)
            api.invoke(sample_event(name))
            report["functions"][name]["peak_rss_mib"] = stop(process, api)

    # Server time per endpoint, in process, against the same local endpoint.
    output = run(["cargo", "run", "--release", "-q", "-p", "shared", "--features", "integration",
                  "--example", "endpoint_costs"], env, capture_output=True, text=True).stdout
    report["server"] = json.loads(output.strip().splitlines()[-1])

    # Criterion benches of the hot pieces.
    run(["cargo", "bench", "-q", "-p", "shared", "--bench", "hot", "--", "--warm-up-time", "1",
         "--measurement-time", "2"], env, stdout=subprocess.DEVNULL)
    report["criterion"] = criterion()
    return report


def criterion():
    results = {}
    base = os.path.join(ROOT, "target", "criterion")
    for root, _, files in os.walk(base):
        if root.endswith(os.path.join("new")) and "estimates.json" in files:
            with open(os.path.join(root, "estimates.json")) as f:
                estimate = json.load(f)
            name = os.path.relpath(os.path.dirname(root), base).replace(os.sep, "/")
            results[name] = estimate["median"]["point_estimate"] / 1e3  # ns -> µs
    return results


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "system": platform.platform(), "date": time.strftime("%Y-%m-%d")}


def write(report):
    floors = report["server"]["floors"]
    lines = [f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, {report['machine']['system']}, {report['machine']['date']}", ""]
    lines += ["| function | cold start ms (median, min-max) | x hello-world | x hello-world + one secret read | stripped size MiB | peak RSS MiB |",
              "|---|---|---|---|---|---|"]
    h, s = report["hello"], report["secret_floor"]
    lines.append(f"| hello-world | {h['cold_ms']['median']:.1f} ({h['cold_ms']['min']:.1f}-{h['cold_ms']['max']:.1f}) | 1.00 | | {h['size_mib']:.1f} | |")
    lines.append(f"| hello-world + one secret read | {s['cold_ms']['median']:.1f} ({s['cold_ms']['min']:.1f}-{s['cold_ms']['max']:.1f}) | "
                 f"{s['cold_ratio']:.2f} | 1.00 | {s['size_mib']:.1f} | |")
    for name, f in report["functions"].items():
        c = f["cold_ms"]
        lines.append(f"| {name} | {c['median']:.1f} ({c['min']:.1f}-{c['max']:.1f}) | {f['cold_ratio']:.2f} | {f['secret_floor_ratio']:.2f} | "
                     f"{f['size_mib']:.1f} | {f['peak_rss_mib']:.1f} |")
    lines += ["", "Cold start, step by step (median ms): " + ", ".join(f"{k.removesuffix('_ms')} {v:.2f}" for k, v in report["init_ms"].items()) + "."]
    lines += ["", "| first request after a cold start | first ms | warm ms (median) | first / warm |", "|---|---|---|---|"]
    for name, f in report["first_request"].items():
        lines.append(f"| {name} | {f['first_ms']:.2f} | {f['warm_ms']:.2f} | {f['ratio']:.2f} |")
    lines += ["", f"Floors in this run: Argon2id verification {floors['argon2id_verify_ms']:.1f} ms, "
              f"RS256 access token verification {floors['access_verify_ms'] * 1e3:.1f} µs, DynamoDB round trip {floors['dynamodb_round_trip_ms']:.2f} ms.",
              f"GET /auth/me in memory: {report['server']['me_in_memory_ms'] * 1e3:.1f} µs, "
              f"{(report['server']['me_in_memory_ms'] - floors['access_verify_ms']) * 1e3:.1f} µs beyond the access token verification.", ""]
    lines += ["| endpoint | server ms (median) | DynamoDB calls | floor ms | server / floor |", "|---|---|---|---|---|"]
    for name, e in report["server"]["endpoints"].items():
        calls = e["dynamodb_calls"]
        trips = sum(calls.values()) * floors["dynamodb_round_trip_ms"]
        floor = trips + ARGON2_WORK.get(name, 0) * floors["argon2id_verify_ms"]
        calls_text = ", ".join(f"{k} {v}" for k, v in calls.items()) or "none"
        lines.append(f"| {name} | {e['median_ms']:.2f} | {calls_text} | {floor:.2f} | {e['median_ms'] / floor if floor else 0:.2f} |")
    lines += ["", "| criterion bench | median µs |", "|---|---|"]
    for name, value in sorted(report["criterion"].items()):
        lines.append(f"| {name} | {value:.2f} |")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(OUT, "bench.md"), "w") as f:
        f.write(table + "\n")
    with open(os.path.join(OUT, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
