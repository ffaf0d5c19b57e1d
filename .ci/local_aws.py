#!/usr/bin/env python3
"""Runs and prepares the local AWS endpoint (moto) for the functions.

`serve` runs moto's server with each request applied atomically, and one route of its own:
`GET /local/mail?to=<address>` lists the mail sent to an address (moto's `/moto-api/data.json`
holds it too, but serializes every table with it, which grows slow as tests fill the tables). Moto applies a transaction
by snapshotting the table and, on a failed condition, restoring that snapshot: with requests
handled concurrently, a restore can erase writes that another request committed meanwhile,
which real DynamoDB never does. Applying one request at a time restores DynamoDB's guarantee
(every request is atomic) while clients still race to be first, so a read-then-write race in
the code under test still shows.

`setup` creates every DynamoDB table that template.yaml declares, from the template's own definitions
(key schema, attributes, TTL), and verifies the mail sender identity in SES. Prints the
environment (`NAME=value` lines) that points the functions at what it created.

    local_aws.py serve --port 4566
    local_aws.py wait --endpoint http://127.0.0.1:4566
    local_aws.py setup --endpoint http://127.0.0.1:4566 [--prefix auth]
"""

import argparse
import os
import sys
import threading
import time
import urllib.request

import boto3
from cfnlint.decode import decode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "template.yaml")
REGION = os.environ.get("AWS_REGION", "us-east-1")


def load_template():
    template, problems = decode(TEMPLATE)
    if problems:
        sys.exit(f"template.yaml does not parse: {problems}")
    return template


def table_env_vars(template):
    """Maps each table's logical id to the environment variable that carries its name."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    tables = {
        name: res
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::DynamoDB::Table"
    }
    mapping = {}
    for var, value in variables.items():
        if isinstance(value, dict) and value.get("Ref") in tables:
            mapping[value["Ref"]] = var
    missing = set(tables) - set(mapping)
    if missing:
        sys.exit(f"no environment variable carries the name of {sorted(missing)}")
    return tables, mapping


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
        dynamodb.create_table(**args)
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )


def setup(endpoint, prefix):
    template = load_template()
    tables, mapping = table_env_vars(template)
    dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    env = {}
    for logical_id, resource in tables.items():
        var = mapping[logical_id]
        name = os.environ.get(var) or f"{prefix}-{logical_id}"
        create_table(dynamodb, name, resource["Properties"])
        env[var] = name
    sender = os.environ.get("MAIL_FROM") or "no-reply@auth.test"
    ses = boto3.client("sesv2", endpoint_url=endpoint, region_name=REGION)
    ses.create_email_identity(EmailIdentity=sender)
    env["MAIL_FROM"] = sender
    for var, value in env.items():
        print(f"{var}={value}")


def snapshot_only_touched_items():
    """moto rolls a failed transaction back by deep-copying every table it names beforehand:
    time in proportion to the table, which made each registration slower than the last under
    load. With one request applied at a time, a copy of just the items the transaction names
    rolls back exactly as well."""
    import copy
    import types

    from moto.dynamodb import models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    original = models.DynamoDBBackend.transact_write_items
    # Tables are no longer copied (their "restore" is then a no-op); everything else still is.
    models.copy = types.SimpleNamespace(
        deepcopy=lambda value, memo=None: value if isinstance(value, Table) else copy.deepcopy(value, memo)
    )

    def transact_write_items(self, transact_items):
        saved = []
        for entry in transact_items:
            _, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            if table.hash_key_attr not in key:
                continue
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
            current = table.get_item(hash_value, range_value) if (range_value or not table.has_range_key) else None
            saved.append((table, hash_value, range_value, copy.deepcopy(current)))
        try:
            return original(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(saved):
                table.delete_item(hash_value, range_value)
                if item is not None:
                    if range_value:
                        table.items[hash_value][range_value] = item
                    else:
                        table.items[hash_value] = item
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


def serve(port):
    snapshot_only_touched_items()
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        create_backend_app,
    )
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from werkzeug.serving import run_simple

    os.environ.setdefault("MOTO_PORT", str(port))
    moto_app = DomainDispatcherApplication(create_backend_app)
    one_at_a_time = threading.Lock()

    def atomic_app(environ, start_response):
        with one_at_a_time:
            if environ.get("PATH_INFO") == "/local/mail":
                return mail_to(environ, start_response)
            return list(moto_app(environ, start_response))

    run_simple(
        "127.0.0.1",
        port,
        atomic_app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


def mail_to(environ, start_response):
    import json
    from urllib.parse import parse_qs

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    to = parse_qs(environ.get("QUERY_STRING", "")).get("to", [""])[0]
    sent = ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    mails = [
        {"subject": m.subject, "body": m.body, "to": m.destinations.get("ToAddresses", [])}
        for m in sent
        if to in (getattr(m, "destinations", None) or {}).get("ToAddresses", [])
    ]
    body = json.dumps(mails).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def wait(endpoint, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the local AWS endpoint did not answer at {endpoint} within {seconds} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "wait", "setup"])
    parser.add_argument("--endpoint")
    parser.add_argument("--port", type=int)
    parser.add_argument("--prefix", default="auth")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.port or 4566)
    elif not args.endpoint:
        parser.error("--endpoint is required")
    elif args.command == "wait":
        wait(args.endpoint)
    else:
        setup(args.endpoint, args.prefix)


if __name__ == "__main__":
    main()
