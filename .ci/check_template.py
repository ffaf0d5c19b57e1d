#!/usr/bin/env python3
"""Checks on template.yaml that the linters do not make: one name per function in four places
(package, SAM Binary, local route, event file), the same routes in the template and the local
gateway, least-privilege policies, and the table settings the design relies on."""

import functools
import json
import os
import subprocess
import sys
import tomllib

from cfnlint.decode import decode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import template_env  # noqa: E402
results = {"passed": 0, "failed": 0}

# The functions that run Argon2, each with a reserved concurrency.
ARGON2_FUNCTIONS = {"register", "login", "update-me", "delete-me", "change-password", "reset-password",
                    "mfa-totp-setup", "mfa-totp-disable"}
# One Argon2id hash on a full vCPU (1769 MB), docs/performance.md.
ARGON2_HASH_SECONDS = 0.020
# A route's shared cap is at least this: a flood one client sends from one machine (tens of
# requests a second) cannot reach it (docs/security.md, "Route throttles").
MIN_SHARED_RATE = 200
# API Gateway's default throttle for an account in a region, over all its APIs.
ACCOUNT_RATE = 10_000


def check(name, condition, detail=""):
    if condition:
        results["passed"] += 1
    else:
        results["failed"] += 1
        print(f"FAIL {name} {detail}")


def template_routes_keys(routes):
    return {f"{method} {path}" for method, path, _ in routes}


def users_table_actions(function, effect):
    """The DynamoDB actions `function`'s statements of `effect` name on the users table, with
    their statements."""
    for policy in function["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []):
            if statement.get("Effect") == effect and "UsersTable" in json.dumps(statement["Resource"]):
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                yield statement, {a.removeprefix("dynamodb:") for a in actions}


def check_published_keys_are_the_rotations(functions):
    """The published keys (KEYS#public, in the users table) are written by the rotation alone:
    every other role that may write the users table is denied that partition (JWT-17)."""
    only_keys = {"ForAnyValue:StringLike": {"dynamodb:LeadingKeys": ["KEYS#*"]}}
    for function in functions.values():
        binary = function["Metadata"]["BuildProperties"]["Binary"]
        writes = set().union(*(a for _, a in users_table_actions(function, "Allow"))) & {"PutItem", "UpdateItem", "DeleteItem"}
        if not writes or binary == "rotate-keys":
            continue
        denied = set().union(*(a for s, a in users_table_actions(function, "Deny") if s.get("Condition") == only_keys))
        check(f"{binary} may not write the published keys", writes <= denied, sorted(writes - denied))


def main():
    template, problems = decode(os.path.join(ROOT, "template.yaml"))
    if problems:
        sys.exit(f"template.yaml does not parse: {problems}")
    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        cargo = tomllib.load(f)
    # Fn::ForEach entries (AWS::LanguageExtensions) are expanded at deploy; they are checked below.
    loops = {k: v for k, v in template["Resources"].items() if k.startswith("Fn::ForEach::")}
    resources = {k: v for k, v in template["Resources"].items() if k not in loops}
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    packages = sorted(os.listdir(os.path.join(ROOT, "functions")))

    template_routes = set()
    mailers = set()
    binaries = set()
    for logical_id, function in functions.items():
        binary = function.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        check(f"{logical_id} builds with cargo-lambda", function["Metadata"].get("BuildMethod") == "rust-cargolambda")
        check(f"{logical_id} names its Binary", binary in packages, binary)
        binaries.add(binary)
        check(f"{logical_id} builds from the workspace root", "CodeUri" not in function["Properties"])
        check(f"events/{binary}.json exists", os.path.exists(os.path.join(ROOT, "events", f"{binary}.json")))
        routes = set()
        for event in function["Properties"].get("Events", {}).values():
            props = event["Properties"]
            routes.add(f"{props['Method'].upper()} {props['Path']}")
            template_routes.add((props["Method"].upper(), props["Path"], binary))
        sample = os.path.join(ROOT, "events", f"{binary}.json")
        if os.path.exists(sample):
            with open(sample) as f:
                route_key = json.load(f).get("routeKey")
            check(f"events/{binary}.json is an event of one of its routes", route_key in routes or not routes, route_key)
        statements = [s for p in function["Properties"].get("Policies", []) for s in p.get("Statement", [])]
        policy_names = [p for p in function["Properties"].get("Policies", []) if isinstance(p, dict) and "Statement" not in p]
        check(f"{logical_id} uses no managed policy templates", not policy_names, policy_names)
        for statement in statements:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            check(
                f"{logical_id} grants no wildcard, scan or batch action",
                not any(a.endswith("*") or a in ("dynamodb:Scan", "dynamodb:BatchWriteItem") for a in actions),
                actions,
            )
            check(f"{logical_id} scopes its resources", statement.get("Resource") not in ("*", None))
            if any(a.startswith("ses:") for a in actions):
                check(f"{logical_id} may only send mail", actions == ["ses:SendEmail"], actions)
                check(f"{logical_id} sends only from the sender", "ses:FromAddress" in json.dumps(statement.get("Condition")))
                mailers.add(binary)

    # The functions that build a mailer at start (their needs in their feature's FUNCTIONS).
    mailing = {name for name, needs in what_functions_read()["functions"].items() if "MAIL_FROM" in needs["variables"]}
    check("exactly the functions that mail may send mail", mailers == mailing, sorted(mailers ^ mailing))
    check("every function package is deployed", binaries == set(packages), (binaries, packages))
    # The local stack routes from the template itself (scripts/gateway.py); a router of
    # `cargo lambda watch` of its own would be a second list to drift.
    import gateway
    local_routes = {(r.method, r.path, r.function) for r in gateway.routes(template)}
    check("the local gateway serves exactly the template's routes", local_routes == template_routes,
          (sorted(local_routes ^ template_routes)))
    check("no router of the functions' server besides the template's",
          "router" not in cargo.get("workspace", {}).get("metadata", {}).get("lambda", {}).get("watch", {}))

    import yaml
    with open(os.path.join(ROOT, "openapi.yaml")) as f:
        openapi = yaml.safe_load(f)
    documented = {(method.upper(), path) for path, item in openapi["paths"].items()
                  for method in item if method in ("get", "put", "post", "patch", "delete")}
    check("the OpenAPI document, the template and the local gateway have the same routes",
          documented == {r[:2] for r in template_routes} == {r[:2] for r in local_routes},
          sorted(documented ^ {r[:2] for r in template_routes}))

    globals_ = template["Globals"]["Function"]
    memory = {f["Metadata"]["BuildProperties"]["Binary"]: f["Properties"].get("MemorySize", globals_["MemorySize"])
              for f in functions.values()}
    for name in ("me", "refresh", "logout", "forgot-password", "verify-email", "resend-verification",
                 "list-sessions", "revoke-session", "mfa-totp-confirm", "mfa-verify", "mfa-totp-undo"):
        check(f"{name} (no password hashing) fits the smallest Lambda", memory[name] == 128, memory[name])
    for name in ("register", "login", "change-password", "reset-password", "delete-me",
                 "mfa-totp-setup", "mfa-totp-disable"):
        check(f"{name} hashes on a full vCPU", memory[name] >= 1769, memory[name])
    check("glibc returns Argon2 memory", globals_["Environment"]["Variables"].get("MALLOC_MMAP_THRESHOLD_") == "131072")
    check("functions time out within 10 s (RL-01)", globals_["Timeout"] <= 10)
    check("arm64 on provided.al2023", globals_["Architectures"] == ["arm64"] and globals_["Runtime"] == "provided.al2023")
    check("logs are JSON", globals_["LoggingConfig"]["LogFormat"] == "JSON")
    check("CodeUri is the workspace root", globals_["CodeUri"] == ".")
    env = globals_["Environment"]["Variables"]
    check("no secret value in any environment", not {"JWT_SECRET", "HASH_KEY", "MFA_KEY"} & set(env)
          and "resolve:secretsmanager" not in json.dumps(template))
    check("every function reads the hash key by its ARN", env.get("HASH_KEY_SECRET_ID") == {"Ref": "HashKey"})
    check("no function gets the refresh-token key from the globals", "JWT_SECRET_ID" not in env)
    readers = {f["Metadata"]["BuildProperties"]["Binary"]: {json.dumps(s["Resource"]) for p in f["Properties"].get("Policies", []) for s in p.get("Statement", []) if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])}
               for f in functions.values()}
    signers = {name for name, arns in readers.items() if '{"Ref": "SigningKeys"}' in arns}
    check("only the token issuers (and the rotation) read the signing keys", signers == {"register", "login", "refresh", "change-password", "mfa-verify", "rotate-keys"}, signers)
    for name in ("discovery", "jwks"):
        check(f"{name} reads no secret", not readers[name], readers[name])
    # Issue and spend refresh tokens: nobody else holds the key that would mint one.
    refresh_readers = {name for name, arns in readers.items() if '{"Ref": "JwtSecret"}' in arns}
    check("only the functions that issue or spend refresh tokens read the refresh-token key", refresh_readers ==
          {"register", "login", "refresh", "logout", "change-password", "mfa-verify"}, refresh_readers)
    for function in functions.values():
        name = function["Metadata"]["BuildProperties"]["Binary"]
        own = (function["Properties"].get("Environment") or {}).get("Variables", {})
        check(f"{name}: the refresh-token key's id exactly where its policy reads it",
              ("JWT_SECRET_ID" in own) == (name in refresh_readers), sorted(own))
    mfa_readers = {name for name, arns in readers.items() if '{"Ref": "MfaKey"}' in arns}
    check("only the two-step functions read the MFA key", mfa_readers ==
          {"mfa-totp-setup", "mfa-totp-confirm", "mfa-verify", "mfa-totp-disable"}, mfa_readers)
    check("the MFA key outlives the stack, as the users table does",
          resources["MfaKey"].get("DeletionPolicy") == "Retain" and resources["MfaKey"].get("UpdateReplacePolicy") == "Retain")
    check("the MFA key is generated at deploy time",
          resources["MfaKey"]["Properties"].get("GenerateSecretString", {}).get("PasswordLength", 0) >= 32)
    tokens = resources["TokensTable"]["Properties"]
    check("the tokens table expires items by TTL (DB-02)", tokens["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True})
    sessions = resources["SessionsTable"]["Properties"]
    check("the sessions table expires items by TTL", sessions["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True})
    check("a user's sessions are one partition, listed by a Query (SS-01)", sessions["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    users = resources["UsersTable"]
    check("users table has point-in-time recovery (DB-05)",
          users["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True)
    check("users table is retained on stack deletion", users.get("DeletionPolicy") == "Retain")
    for name, parameter in template.get("Parameters", {}).items():
        secret_like = any(word in name.lower() for word in ("secret", "password", "key", "token"))
        free_form = "AllowedValues" not in parameter
        check(f"parameter {name} carries no secret default", not (secret_like and free_form and parameter.get("Default")))
    # What each function's code calls, by table (the store's operations per endpoint): DynamoDB
    # Local does not check IAM, so a missing grant would only show deployed.
    needs = {
        "register": {"Users": {"PutItem"}, "Tokens": {"UpdateItem"}, "Sessions": {"PutItem"}},
        "login": {"Users": {"GetItem", "BatchGetItem", "UpdateItem"}, "Tokens": {"BatchGetItem", "UpdateItem", "PutItem"},
                  "Sessions": {"PutItem"}},
        "refresh": {"Users": {"GetItem"}, "Tokens": {"GetItem", "PutItem", "ConditionCheckItem"},
                    "Sessions": {"UpdateItem", "DeleteItem"}},
        "logout": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"GetItem", "PutItem"},
                   "Sessions": {"Query", "DeleteItem"}},
        "me": {"Users": {"GetItem"}},
        "update-me": {"Users": {"GetItem", "UpdateItem", "PutItem", "DeleteItem"}, "Tokens": {"UpdateItem", "PutItem"}},
        "delete-me": {"Users": {"GetItem", "DeleteItem"}, "Tokens": {"UpdateItem"}, "Sessions": {"Query", "DeleteItem"}},
        "change-password": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"UpdateItem"}, "Sessions": {"PutItem"}},
        "list-sessions": {"Users": {"GetItem"}, "Sessions": {"Query"}},
        "revoke-session": {"Users": {"GetItem"}, "Tokens": {"PutItem"}, "Sessions": {"GetItem", "DeleteItem"}},
        "forgot-password": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"UpdateItem"}},
        "reset-password": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"UpdateItem"}},
        "verify-email": {"Users": {"GetItem", "UpdateItem", "PutItem", "DeleteItem"}, "Tokens": {"GetItem", "UpdateItem", "DeleteItem"}},
        "resend-verification": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"GetItem", "UpdateItem", "PutItem"}},
        "mfa-totp-setup": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"UpdateItem"}},
        "mfa-totp-confirm": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"UpdateItem"}},
        "mfa-verify": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"BatchGetItem", "UpdateItem", "DeleteItem"},
                       "Sessions": {"PutItem"}},
        "mfa-totp-disable": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"BatchGetItem", "UpdateItem"}},
        "mfa-totp-undo": {"Users": {"GetItem", "UpdateItem"}, "Tokens": {"UpdateItem"}},
    }
    for function in functions.values():
        binary = function["Metadata"]["BuildProperties"]["Binary"]
        granted = {}
        for policy in function["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                if statement.get("Effect") != "Allow":
                    continue
                table = json.dumps(statement["Resource"])
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                for name in ("Users", "Tokens", "Sessions"):
                    if f'"{name}Table.Arn"' in table or f'"{name}Table", "Arn"' in table:
                        granted.setdefault(name, set()).update(a.removeprefix("dynamodb:") for a in actions)
        for table, actions in needs.get(binary, {}).items():
            check(f"{binary} may do what its code does on the {table.lower()} table",
                  actions <= granted.get(table, set()), sorted(actions - granted.get(table, set())))

    check_published_keys_are_the_rotations(functions)
    # Route throttles (AB-05 in docs/requirements.md): API Gateway's cap is shared by every
    # client, so it must be out of one client's reach and within what the function behind it can
    # take. The Argon2 functions have a reserved concurrency, and a browser app may read
    # Retry-After.
    api = resources["HttpApi"]["Properties"]
    default = api["DefaultRouteSettings"]
    caps = {route: {**default, **api.get("RouteSettings", {}).get(route, {})}
            for route in template_routes_keys(template_routes)}
    argon2_routes = {f"{m} {p}" for m, p, b in template_routes if b in ARGON2_FUNCTIONS}
    argon2_capacity = int(template["Parameters"]["Argon2Concurrency"]["Default"]) / ARGON2_HASH_SECONDS
    for route, cap in sorted(caps.items()):
        rate, burst = cap.get("ThrottlingRateLimit", 0), cap.get("ThrottlingBurstLimit", 0)
        check(f"{route}: its shared cap is out of one client's reach ({rate}/s >= {MIN_SHARED_RATE}/s)",
              rate >= MIN_SHARED_RATE and burst >= rate, cap)
        if route in argon2_routes:
            check(f"{route}: its cap is within what its reserved concurrency hashes ({argon2_capacity:.0f}/s)",
                  rate <= argon2_capacity, cap)
    total = sum(cap["ThrottlingRateLimit"] for cap in caps.values())
    check(f"the routes' caps together ({total}/s) stay below the account's regional limit ({ACCOUNT_RATE}/s)",
          total <= ACCOUNT_RATE)
    for binary in sorted(ARGON2_FUNCTIONS):
        function = next(f for f in functions.values() if f["Metadata"]["BuildProperties"]["Binary"] == binary)
        reserved = function["Properties"].get("ReservedConcurrentExecutions")
        check(f"{binary} (Argon2) has a reserved concurrency", json.dumps(reserved) ==
              '{"Fn::If": ["HasArgon2Concurrency", {"Ref": "Argon2Concurrency"}, {"Ref": "AWS::NoValue"}]}', reserved)
    # Mail (SES-03): through a configuration set that suppresses bouncing and complaining
    # addresses, with bounces and complaints alarmed; every sender may use it and names it.
    mail_set = resources["MailConfigurationSet"]["Properties"]
    check("mail suppresses addresses that bounced or complained",
          sorted(mail_set["SuppressionOptions"]["SuppressedReasons"]) == ["BOUNCE", "COMPLAINT"])
    events = [r["Properties"]["EventDestination"] for r in resources.values()
              if r["Type"] == "AWS::SES::ConfigurationSetEventDestination"
              and r["Properties"]["ConfigurationSetName"] == {"Ref": "MailConfigurationSet"}]
    check("bounces and complaints are counted", any({"bounce", "complaint"} <= set(e["MatchingEventTypes"]) for e in events))
    alarmed = {r["Properties"]["MetricName"] for r in resources.values()
               if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("Namespace") == "AWS/SES"}
    check("bounces and complaints raise alarms", {"Bounce", "Complaint"} <= alarmed, alarmed)
    check("the mailers are given the configuration set",
          globals_["Environment"]["Variables"].get("MAIL_CONFIGURATION_SET") == {"Ref": "MailConfigurationSet"})
    for function in functions.values():
        for policy in function["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                if statement.get("Action") == "ses:SendEmail":
                    check(f"{function['Metadata']['BuildProperties']['Binary']} may send through the configuration set",
                          "configuration-set/${MailConfigurationSet}" in json.dumps(statement["Resource"]))
    cors = api["CorsConfiguration"]["Fn::If"][1]
    check("CORS exposes Retry-After", [h.lower() for h in cors.get("ExposeHeaders", [])] == ["retry-after"])
    for secret in ("JwtSecret", "HashKey"):
        check(f"{secret} is generated at deploy time",
              resources[secret]["Properties"].get("GenerateSecretString", {}).get("PasswordLength", 0) >= 32)
    check("token reuse raises an alarm", any(
        r["Type"] == "AWS::Logs::MetricFilter" and "token_reused" in r["Properties"]["FilterPattern"]
        for r in resources.values()))
    name, names, fragment = loops["Fn::ForEach::FunctionErrors"]
    check("every function has an errors alarm", {f"{n}Function" for n in names} == set(functions),
          sorted({f"{n}Function" for n in names} ^ set(functions)))
    with open(os.path.join(ROOT, "samconfig.toml"), "rb") as f:
        samconfig = tomllib.load(f)
    check("sam build and deploy expand the ForEach loops", "AWS::LanguageExtensions" in template["Transform"]
          and samconfig["default"]["global"]["parameters"].get("language_extensions") is True)
    alarm = fragment["${" + name + "}ErrorsAlarm"]["Properties"]
    check("the errors alarm watches the looped function", alarm["MetricName"] == "Errors"
          and alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Fn::Sub": "${${" + name + "}Function}"}}]
          and alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], alarm)

    check_environments(template, functions)

    print(f"template: {results['passed']} passed, {results['failed']} failed")
    sys.exit(1 if results["failed"] else 0)


@functools.cache
def what_functions_read():
    """The code's own list of what each function reads (shared/src/handlers/registry.rs), as
    JSON."""
    result = subprocess.run(["cargo", "run", "--quiet", "-p", "shared", "--example", "function-env"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def check_environments(template, functions):
    """Each function is given every variable its code reads, and may read exactly the secrets
    its code reads: a variable missing from a function's template entry makes it refuse to start
    deployed, a missing grant makes it fail deployed, an extra grant is privilege it never uses.
    The environments are resolved as the local stack resolves them (scripts/template_env.py),
    so a `!If` that leaves a variable out counts as missing."""
    reads = what_functions_read()["functions"]
    by_binary = {f["Metadata"]["BuildProperties"]["Binary"]: (logical_id, f) for logical_id, f in functions.items()}
    check("the code's list and the template name the same functions", set(reads) == set(by_binary),
          sorted(set(reads) ^ set(by_binary)))
    resources = {name: f"local-{name}" for name in template["Resources"] if not name.startswith("Fn::ForEach::")}
    environ = {"PARAMETER_OVERRIDES": "MailFrom=no-reply@auth.test"}
    resolver = template_env.local_resolver(template, resources, "http://127.0.0.1:9000", environ)
    environments = template_env.environments(template, resolver)
    rotated = {res["Properties"]["RotationLambdaARN"]["Fn::GetAtt"][0]: res["Properties"]["SecretId"]["Ref"]
               for res in template["Resources"].values()
               if isinstance(res, dict) and res.get("Type") == "AWS::SecretsManager::RotationSchedule"}
    globals_ = template["Globals"]["Function"]["Environment"]["Variables"]
    for binary, needs in sorted(reads.items()):
        if binary not in by_binary:
            continue
        logical_id, function = by_binary[binary]
        env = environments[binary]
        missing = [name for name in needs["variables"] if name not in env]
        check(f"{binary} is given every variable its code reads", not missing,
              f"{binary} lacks {', '.join(missing)} (template.yaml, {logical_id}: Environment)")
        declared = {**globals_, **function["Properties"].get("Environment", {}).get("Variables", {})}
        read = set()
        for name in needs["secrets"]:
            node = declared.get(name)
            if isinstance(node, dict) and "Ref" in node:
                read.add(node["Ref"])
        if logical_id in rotated:
            read.add(rotated[logical_id])
        granted = set()
        for policy in function["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                if "secretsmanager:GetSecretValue" in json.dumps(statement["Action"]):
                    granted.add(statement["Resource"].get("Ref") if isinstance(statement["Resource"], dict)
                                else json.dumps(statement["Resource"]))
        check(f"{binary} may read the secrets its code reads", read <= granted,
              f"{binary} reads {sorted(read - granted)} without a grant")
        check(f"{binary} may read no secret its code does not read", granted <= read,
              f"{binary} is granted {sorted(granted - read)} and never reads it")


if __name__ == "__main__":
    main()
