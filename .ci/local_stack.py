#!/usr/bin/env python3
"""Checks of how the local stacks give each function its environment and its requests: the
template resolver (scripts/template_env.py), the function runner (scripts/function-runner), the
gateway's routes, throttles, events and answers (scripts/gateway.py), and the template check
(.ci/check_template.py) against a template that forgets a variable, the bug class it exists for.
Runs no function and no service."""

import base64
import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, ".ci"))
import check_template  # noqa: E402
import gateway  # noqa: E402
import template_env  # noqa: E402
from stack import Checks  # noqa: E402

API = "http://127.0.0.1:9000"
RUNNER = os.path.join(ROOT, "scripts", "function-runner")


def resources(template):
    return {name: f"arn:local:{name}" for name in template["Resources"] if not name.startswith("Fn::ForEach::")}


def environments(template, environ=None, tuning=None):
    environ = {"PARAMETER_OVERRIDES": "MailFrom=no-reply@auth.test", **(environ or {})}
    resolver = template_env.local_resolver(template, resources(template), API, environ)
    return template_env.environments(template, resolver, tuning)


def run_runner(env_lines, environ, exec_lines=None):
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "probe.env"), "w") as f:
            f.writelines(f"{line}\n" for line in env_lines)
        if exec_lines is not None:
            with open(os.path.join(tmp, "probe.exec"), "w") as f:
                f.writelines(f"{line}\n" for line in exec_lines)
        os.symlink("/usr/bin/env", os.path.join(tmp, "probe"))
        return subprocess.run([RUNNER, os.path.join(tmp, "probe")], env={**environ, "FUNCTION_ENV_DIR": tmp},
                              capture_output=True, text=True, timeout=30)


def main():
    template = template_env.load_template()
    checks = Checks()

    def each_function_gets_the_globals_and_its_own_variables():
        envs = environments(template)
        for name in ("register", "login", "refresh", "change-password", "mfa-verify"):
            assert envs[name]["SIGNING_KEYS_SECRET_ID"] == "arn:local:SigningKeys", name
        assert "SIGNING_KEYS_SECRET_ID" not in envs["me"], "me reads no signing key"
        assert envs["mfa-verify"]["MFA_KEY_SECRET_ID"] == "arn:local:MfaKey"
        assert "MFA_KEY_SECRET_ID" not in envs["login"]
        assert envs["me"]["USERS_TABLE"] == "arn:local:UsersTable" and envs["me"]["JWT_AUDIENCE"] == "auth"
        # What Lambda derives from the function's configuration.
        assert envs["login"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1769"
        assert envs["me"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
        assert envs["me"]["AWS_LAMBDA_LOG_FORMAT"] == "JSON"

    def conditions_and_parameters_resolve_as_deployed():
        envs = environments(template)
        assert envs["rotate-keys"]["JWT_ISSUER"] == API, "no JwtIssuer: the API's own URL"
        assert envs["login"]["JWT_ISSUER"] == "", "routed functions read the issuer from the keys"
        assert envs["login"]["JWT_SECRET_ACCEPT_PREVIOUS"] == "false"
        given = environments(template, {"PARAMETER_OVERRIDES": "MailFrom=a@b.example JwtIssuer=https://auth.example.com "
                                                               "JwtSecretRotation=accept-previous"})
        assert given["rotate-keys"]["JWT_ISSUER"] == "https://auth.example.com"
        assert given["login"]["JWT_SECRET_ACCEPT_PREVIOUS"] == "true"
        assert given["forgot-password"]["MAIL_FROM"] == "a@b.example"
        by_name = environments(template, {"COOKIE_SAMESITE": "Lax", "REQUIRE_VERIFIED_EMAIL": "true"})
        assert by_name["login"]["COOKIE_SAMESITE"] == "Lax" and by_name["login"]["REQUIRE_VERIFIED_EMAIL"] == "true"

    def a_parameter_outside_its_allowed_values_is_refused():
        for overrides in ("CookieSameSite=Sometimes", "JwtIssuer=http://plain.example", "Nonsense=1"):
            try:
                environments(template, {"PARAMETER_OVERRIDES": f"MailFrom=a@b.example {overrides}"})
            except template_env.TemplateError:
                continue
            raise AssertionError(f"{overrides} was accepted")

    def the_caller_sets_tuning_but_never_a_resource():
        envs = environments(template, {"USERS_TABLE": "mine", "SIGNING_KEYS_SECRET_ID": "mine"},
                            tuning={"ACCESS_TOKEN_TTL_SECONDS": "60"})
        assert envs["login"]["USERS_TABLE"] == "arn:local:UsersTable"
        assert "SIGNING_KEYS_SECRET_ID" not in envs["me"]
        assert all(env["ACCESS_TOKEN_TTL_SECONDS"] == "60" for env in envs.values())

    def no_value_leaves_a_variable_out():
        changed = copy.deepcopy(template)
        variables = changed["Globals"]["Function"]["Environment"]["Variables"]
        variables["OPTIONAL"] = {"Fn::If": ["HasJwtIssuer", "set", {"Ref": "AWS::NoValue"}]}
        assert "OPTIONAL" not in environments(changed)["me"]
        assert environments(changed, {"PARAMETER_OVERRIDES": "MailFrom=a@b.example JwtIssuer=https://x.example"}
                            )["me"]["OPTIONAL"] == "set"

    def the_template_check_names_the_function_and_the_variable_it_lacks():
        broken = copy.deepcopy(template)
        del broken["Resources"]["LoginFunction"]["Properties"]["Environment"]["Variables"]["SIGNING_KEYS_SECRET_ID"]
        functions = {k: v for k, v in broken["Resources"].items()
                     if isinstance(v, dict) and v.get("Type") == "AWS::Serverless::Function"}
        before = dict(check_template.results)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            check_template.check_environments(broken, functions)
        check_template.results.update(before)
        assert "login lacks SIGNING_KEYS_SECRET_ID" in out.getvalue(), out.getvalue()

    def the_template_check_catches_a_role_that_may_write_the_published_keys():
        functions = {k: v for k, v in template["Resources"].items()
                     if isinstance(v, dict) and v.get("Type") == "AWS::Serverless::Function"}
        broken = copy.deepcopy(functions)
        for policy in broken["LoginFunction"]["Properties"]["Policies"]:
            policy["Statement"] = [s for s in policy.get("Statement", []) if s.get("Effect") != "Deny"]
        before = dict(check_template.results)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            check_template.check_published_keys_are_the_rotations(functions)
            clean = out.getvalue()
            check_template.check_published_keys_are_the_rotations(broken)
        check_template.results.update(before)
        assert "FAIL" not in clean, clean
        assert "FAIL login may not write the published keys" in out.getvalue(), out.getvalue()

    def the_runner_gives_only_the_template_environment_and_the_plumbing():
        environ = {"PATH": os.environ["PATH"], "LEAK": "1", "JWT_SECRET": "never", "USERS_TABLE": "callers",
                   "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:1", "AWS_ENDPOINT_URL": "http://127.0.0.1:2",
                   "AWS_REGION": "us-east-1", "HOME": "/root"}
        result = run_runner(["USERS_TABLE=template", "A=b=c"], environ)
        assert result.returncode == 0, result.stderr
        seen = dict(line.split("=", 1) for line in result.stdout.splitlines())
        assert seen["USERS_TABLE"] == "template" and seen["A"] == "b=c", seen
        assert seen["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:1" and seen["AWS_ENDPOINT_URL"] == "http://127.0.0.1:2"
        assert not {"LEAK", "JWT_SECRET", "HOME", "FUNCTION_ENV_DIR"} & set(seen), sorted(seen)

    def the_runner_refuses_a_function_the_template_does_not_declare():
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run([RUNNER, os.path.join(tmp, "ghost")], env={"FUNCTION_ENV_DIR": tmp, "PATH": "/usr/bin:/bin"},
                                    capture_output=True, text=True, timeout=30)
        assert result.returncode != 0 and "no environment for ghost" in result.stderr, result.stderr

    def the_runner_runs_the_built_bootstrap_when_told():
        result = run_runner(["X=1"], {"PATH": "/usr/bin:/bin"}, exec_lines=["/bin/sh", "-c", "echo bootstrap $X"])
        assert result.returncode == 0 and result.stdout.strip() == "bootstrap 1", (result.stdout, result.stderr)

    def the_gateway_routes_the_template_and_refuses_the_rest():
        api = gateway.Gateway(template, "127.0.0.1:1", "", throttled=False)
        route, parameters = api.route("DELETE", "/auth/sessions/abc-1")
        assert route.function == "revoke-session" and parameters == {"id": "abc-1"}, (route, parameters)
        assert api.route("PATCH", "/auth/me")[0].function == "update-me"
        for method, path in (("GET", "/auth/login"), ("POST", "/auth/sessions/a/b"), ("POST", "/nope"),
                             ("HEAD", "/auth/me")):
            assert api.route(method, path) == (None, None), (method, path)
            # Refused before any function runs (nothing listens on the functions' address).
            status, headers, body = api.serve(method, path, [], b"", "127.0.0.1")
            assert (status, json.loads(body)) == (404, {"message": "Not Found"}), (method, path, status, body)

    def throttles_are_the_templates_and_a_bucket_refills():
        default = template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"]
        buckets = gateway.throttles(template)
        assert set(buckets) == {route.key for route in gateway.routes(template)}
        login = buckets["POST /auth/login"]
        assert (login.rate, login.burst) == (default["ThrottlingRateLimit"], default["ThrottlingBurstLimit"])
        now = [0.0]
        bucket = gateway.Bucket(rate=2, burst=3, clock=lambda: now[0])
        assert [bucket.take() for _ in range(4)] == [True, True, True, False]
        now[0] = 0.5  # one token back at 2 a second
        assert [bucket.take(), bucket.take()] == [True, False]
        now[0] = 60.0  # never more than the burst
        assert [bucket.take() for _ in range(4)] == [True, True, True, False]

    def the_event_is_api_gateways_payload_with_raw_bytes_in_base64():
        route = gateway.Route("POST", "/auth/sessions/{id}", "revoke-session")
        headers = [("Content-Type", "application/json"), ("Cookie", "a=1; b=2"), ("Cookie", "c=3"),
                   ("X-Many", "1"), ("X-Many", "2")]
        text = gateway.event(route, {"id": "s1"}, "POST", "/auth/sessions/s1?x=1&x=2&y=",
                             headers, '{"é": 1}'.encode(), "127.0.0.7")
        assert text["routeKey"] == "POST /auth/sessions/{id}" and text["pathParameters"] == {"id": "s1"}
        assert text["rawPath"] == "/auth/sessions/s1" and text["rawQueryString"] == "x=1&x=2&y="
        assert text["queryStringParameters"] == {"x": "1,2", "y": ""}
        assert text["cookies"] == ["a=1", "b=2", "c=3"] and "cookie" not in text["headers"]
        assert text["headers"]["x-many"] == "1,2"
        assert text["requestContext"]["http"]["sourceIp"] == "127.0.0.7"
        assert (text["body"], text["isBase64Encoded"]) == ('{"é": 1}', False)
        # Declared JSON, not UTF-8: handed over as bytes, for the function to refuse (a 400).
        raw = gateway.event(route, {}, "POST", "/x", headers[:1], b'{"a":"\xff\xfe"}', "127.0.0.1")
        assert raw["isBase64Encoded"] and base64.b64decode(raw["body"]) == b'{"a":"\xff\xfe"}', raw
        binary = gateway.event(route, {}, "POST", "/x", [("content-type", "application/octet-stream")], b"ab", "::1")
        assert (binary["body"], binary["isBase64Encoded"]) == ("YWI=", True)

    def the_functions_answer_becomes_http_and_a_failure_api_gateways_500():
        response = {"statusCode": 201, "headers": {"content-type": "application/json", "x-one": "1"},
                    "multiValueHeaders": {"x-one": ["1", "2"]}, "cookies": ["a=1; HttpOnly", "b=2"],
                    "body": "eyJvayI6dHJ1ZX0=", "isBase64Encoded": True}
        status, headers, body = gateway.answer(200, json.dumps(response).encode())
        assert (status, body) == (201, b'{"ok":true}'), (status, body)
        assert [v for n, v in headers if n == "set-cookie"] == ["a=1; HttpOnly", "b=2"], headers
        assert [v for n, v in headers if n == "x-one"] == ["1", "2"], headers
        for failed in ((500, b'{"errorType":"Panic"}'), (200, b"not json"), (200, b'{"body":"x"}'), (502, b"")):
            status, _, body = gateway.answer(*failed)
            assert (status, json.loads(body)) == (500, {"message": "Internal Server Error"}), failed

    for name, fn in list(locals().items()):
        if callable(fn):
            checks.run(name, fn)
    sys.exit(checks.summary("local stack"))


if __name__ == "__main__":
    main()
