#!/usr/bin/env python3
"""The local stand-in for the HTTP API (API Gateway) of template.yaml, in front of the functions'
server (`cargo lambda watch`).

It does locally what the deployed API does, from the template itself, so that what ships is what
runs here:
  - routes: each function's `HttpApi` events (method and path, `{name}` parameters); any other
    route is API Gateway's 404 `{"message":"Not Found"}`, before any function runs;
  - throttles: the API's DefaultRouteSettings and RouteSettings, a token bucket per route (rate
    and burst); a request over it is API Gateway's 429 `{"message":"Too Many Requests"}`;
  - the event: payload format 2.0, built here (headers, cookies, query, path parameters, the
    client's address as `requestContext.http.sourceIp`), with a body that is not UTF-8 text
    handed over base64-encoded as API Gateway does, then the function invoked through the
    server's Invoke API (`POST /2015-03-31/functions/NAME/invocations`); its answer is turned
    back into HTTP (each cookie a Set-Cookie of its own); a failed invocation is a 500
    `{"message":"Internal Server Error"}`;
  - CORS: only the origins of ALLOWED_ORIGINS (the template's CorsConfiguration, credentials
    allowed); preflight requests are answered here, and a function's own CORS headers are
    replaced, so that a browser app meets its CORS mistakes on the developer's machine.
The functions' server never sees the client's connection: a client that gives up on a request
leaves the invocation to finish, as API Gateway does.

    gateway.py --port 9000 --functions 127.0.0.1:9100 [--no-throttles]
"""

import argparse
import base64
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import template_env  # noqa: E402

# API Gateway's own answers, before or instead of a function.
NOT_FOUND = (404, {"message": "Not Found"})
THROTTLED = (429, {"message": "Too Many Requests"})
TOO_LARGE = (413, {"message": "Request Entity Too Large"})
FAILED = (500, {"message": "Internal Server Error"})
# HTTP APIs take bodies up to 10 MB.
MAX_BODY = 10 * 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate", "content-length"}
TEXT_TYPES = ("text/", "application/json", "application/x-www-form-urlencoded", "application/xml")


class Route:
    """One route of the API: `METHOD /path/{param}` and the function (binary) behind it."""

    def __init__(self, method, path, function):
        self.method = method.upper()
        self.path = path
        self.key = f"{self.method} {path}"
        self.function = function
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
        self.pattern = re.compile(f"^{pattern}$")

    def match(self, method, path):
        """The path parameters when this route serves `method path`, else None."""
        if method != self.method:
            return None
        found = self.pattern.match(path)
        return found.groupdict() if found else None


def routes(template):
    """Every route of the template's functions (their `HttpApi` events)."""
    found = []
    for binary, (_, resource) in sorted(template_env.functions_of(template).items()):
        for event in (resource["Properties"].get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                found.append(Route(event["Properties"]["Method"], event["Properties"]["Path"], binary))
    return found


def http_api(template):
    return template["Resources"]["HttpApi"]["Properties"]


class Bucket:
    """API Gateway's throttle of one route: `rate` requests a second, up to `burst` at once."""

    def __init__(self, rate, burst, clock=time.monotonic):
        self.rate, self.burst, self.clock = float(rate), float(burst), clock
        self.tokens, self.at = float(burst), clock()
        self.lock = threading.Lock()

    def take(self):
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


def throttles(template):
    """{route key: Bucket}: each route's RouteSettings, or else the DefaultRouteSettings."""
    api = http_api(template)
    default = api.get("DefaultRouteSettings") or {}
    settings = api.get("RouteSettings") or {}
    buckets = {}
    for route in routes(template):
        own = {**default, **settings.get(route.key, {})}
        if "ThrottlingRateLimit" in own:
            buckets[route.key] = Bucket(own["ThrottlingRateLimit"], own["ThrottlingBurstLimit"])
    return buckets


def cors_configuration(template, allowed_origins):
    """The template's CorsConfiguration (its branch for a non-empty ALLOWED_ORIGINS), with the
    origins taken from `allowed_origins` as the template's parameter would be."""
    configured = http_api(template)["CorsConfiguration"]["Fn::If"][1]
    return {
        "origins": {o.strip() for o in allowed_origins.split(",") if o.strip()},
        "credentials": bool(configured.get("AllowCredentials")),
        "headers": {h.lower() for h in configured.get("AllowHeaders", [])},
        "methods": {m.upper() for m in configured.get("AllowMethods", [])},
        "expose": [h.lower() for h in configured.get("ExposeHeaders", [])],
        "max_age": configured.get("MaxAge"),
    }


def event(route, parameters, method, target, headers, body, source_ip, now=None):
    """The payload (format 2.0) that API Gateway hands the function for this request.
    `headers` is a list of (name, value) pairs as received."""
    now = time.time() if now is None else now
    path, _, query = target.partition("?")
    joined, cookies = {}, []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        else:
            joined[name] = f"{joined[name]},{value}" if name in joined else value
    query_parameters = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        query_parameters[name] = f"{query_parameters[name]},{value}" if name in query_parameters else value
    request_id = str(uuid.uuid4())
    payload = {
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": joined.get("host", "localhost"),
            "domainPrefix": joined.get("host", "localhost").split(".")[0],
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": joined.get("user-agent", "")},
            "requestId": request_id,
            "routeKey": route.key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        payload["cookies"] = cookies
    if query_parameters:
        payload["queryStringParameters"] = query_parameters
    if parameters:
        payload["pathParameters"] = parameters
    if body:
        payload["body"], payload["isBase64Encoded"] = encoded(body, joined.get("content-type", ""))
    return payload


def encoded(body, content_type):
    """(body, isBase64Encoded): text media types that are UTF-8 go as text, anything else (a body
    declared JSON that is not UTF-8 too) base64-encoded."""
    if content_type.lower().startswith(TEXT_TYPES):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def answer(status, invocation):
    """(status, [(header, value)], body bytes) from the functions' server's answer to an
    invocation: the function's response (format 2.0), or API Gateway's 500 when the invocation
    failed or the response is not one."""
    try:
        response = json.loads(invocation) if status == 200 else None
    except ValueError:
        response = None
    if not isinstance(response, dict) or not isinstance(response.get("statusCode"), int):
        return problem(FAILED)
    headers = []
    multi = response.get("multiValueHeaders") or {}
    for name, value in (response.get("headers") or {}).items():
        if name not in multi:
            headers.append((name, str(value)))
    for name, values in multi.items():
        headers.extend((name, str(value)) for value in values)
    headers.extend(("set-cookie", cookie) for cookie in response.get("cookies") or [])
    body = response.get("body") or ""
    body = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode("utf-8")
    return response["statusCode"], headers, body


def problem(status_and_body):
    status, body = status_and_body
    return status, [("content-type", "application/json")], json.dumps(body, separators=(",", ":")).encode()


class Gateway:
    """The API: routes, throttles and CORS from the template, invocations to `functions`."""

    def __init__(self, template, functions, allowed_origins, throttled=True):
        self.routes = routes(template)
        self.buckets = throttles(template) if throttled else {}
        self.cors = cors_configuration(template, allowed_origins)
        self.functions = functions

    def route(self, method, path):
        for route in self.routes:
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None, None

    def serve(self, method, target, headers, body, source_ip):
        """(status, headers, body) for one request, CORS headers aside."""
        path = urllib.parse.urlsplit(target).path
        route, parameters = self.route(method, path)
        if route is None:
            return problem(NOT_FOUND)
        bucket = self.buckets.get(route.key)
        if bucket is not None and not bucket.take():
            return problem(THROTTLED)
        payload = event(route, parameters, method, target, headers, body, source_ip)
        return answer(*self.invoke(route.function, json.dumps(payload).encode()))

    def invoke(self, function, payload):
        host, port = self.functions.rsplit(":", 1)
        # No timeout: the invocation runs to its end, whatever the client does meanwhile.
        connection = http.client.HTTPConnection(host, int(port))
        try:
            connection.request("POST", f"/2015-03-31/functions/{function}/invocations", payload,
                               {"content-type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        except OSError:
            return 502, b""
        finally:
            connection.close()

    def allowed(self, origin):
        return origin if origin in self.cors["origins"] else None

    def cors_headers(self, origin):
        headers = [("access-control-allow-origin", origin), ("vary", "origin")]
        if self.cors["credentials"]:
            headers.append(("access-control-allow-credentials", "true"))
        if self.cors["expose"]:
            headers.append(("access-control-expose-headers", ",".join(self.cors["expose"])))
        return headers

    def preflight(self, origin, method, asked):
        """API Gateway answers a preflight itself: CORS headers only when the origin, the method
        and every requested header are allowed."""
        cors = self.cors
        if not (self.allowed(origin) and method.upper() in cors["methods"] and all(h in cors["headers"] for h in asked)):
            return []
        headers = self.cors_headers(origin) + [
            ("access-control-allow-methods", ",".join(sorted(cors["methods"]))),
            ("access-control-allow-headers", ",".join(sorted(cors["headers"]))),
        ]
        if cors["max_age"] is not None:
            headers.append(("access-control-max-age", str(cors["max_age"])))
        return headers


def handler_for(gateway):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # no request lines: they would carry query strings
            pass

        def reply(self, status, headers, body):
            self.send_response_only(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def handle_any(self):
            origin = self.headers.get("origin")
            asked_method = self.headers.get("access-control-request-method")
            if self.command == "OPTIONS" and origin and asked_method:
                asked = [h.strip().lower() for h in (self.headers.get("access-control-request-headers") or "").split(",") if h.strip()]
                return self.reply(204, gateway.preflight(origin, asked_method, asked), b"")
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self.close_connection = True
                refusal = TOO_LARGE if length > MAX_BODY else (400, {"message": "Bad Request"})
                return self.reply(*problem(refusal))
            body = self.rfile.read(length) if length else b""
            status, headers, payload = gateway.serve(self.command, self.path, self.headers.items(), body,
                                                     self.client_address[0])
            # API Gateway replaces the functions' CORS headers with its own.
            headers = [(n, v) for n, v in headers
                       if n.lower() not in HOP_BY_HOP and not n.lower().startswith("access-control-")]
            if gateway.allowed(origin):
                headers += gateway.cors_headers(origin)
            self.reply(status, headers, payload)

        def __getattr__(self, name):
            # Every method goes to the routes, TRACE and made-up ones too: an unknown route is a
            # 404, as behind API Gateway.
            if name.startswith("do_"):
                return self.handle_any
            raise AttributeError(name)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--functions", required=True, help="host:port of the functions' server")
    parser.add_argument("--no-throttles", action="store_true",
                        help="leave out the routes' throttles (for load tests that exceed them on purpose)")
    args = parser.parse_args()
    gateway = Gateway(template_env.load_template(), args.functions, os.environ.get("ALLOWED_ORIGINS", ""),
                      throttled=not args.no_throttles)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(gateway))
    server.daemon_threads = True
    server.request_queue_size = 128
    server.serve_forever()


if __name__ == "__main__":
    main()
