#!/usr/bin/env python3
"""The local stand-in for API Gateway's CORS handling, in front of `cargo lambda watch`.

`cargo lambda watch` answers CORS for any origin, with credentials. The deployed HTTP API answers
only the origins of its `CorsConfiguration` (template.yaml: `ALLOWED_ORIGINS`, credentials
allowed), answers preflight requests itself, and replaces whatever CORS headers a function sets.
This proxy does the same, reading the allowed headers, methods and max-age from the template, so
that a browser app meets its CORS mistakes on the developer's machine, not in production.
Everything else passes through untouched: method, path, query, every header (a repeated Cookie
header too) and body; every response header (each Set-Cookie on its own).

    gateway.py --port 9000 --upstream 127.0.0.1:9100     (origins from ALLOWED_ORIGINS)
"""

import argparse
import http.client
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


def cors_configuration(allowed_origins):
    """The template's CorsConfiguration (its branch for a non-empty ALLOWED_ORIGINS), with the
    origins taken from `allowed_origins` as the template's parameter would be."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from local_aws import load_template

    api = load_template()["Resources"]["HttpApi"]["Properties"]
    configured = api["CorsConfiguration"]["Fn::If"][1]
    return {
        "origins": {o.strip() for o in allowed_origins.split(",") if o.strip()},
        "credentials": bool(configured.get("AllowCredentials")),
        "headers": {h.lower() for h in configured.get("AllowHeaders", [])},
        "methods": {m.upper() for m in configured.get("AllowMethods", [])},
        "expose": [h.lower() for h in configured.get("ExposeHeaders", [])],
        "max_age": configured.get("MaxAge"),
    }


def handler_for(upstream, cors):
    host, port = upstream.rsplit(":", 1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # no request lines: they would carry query strings
            pass

        def origin(self):
            origin = self.headers.get("origin")
            return origin if origin in cors["origins"] else None

        def cors_headers(self, origin):
            headers = [("access-control-allow-origin", origin), ("vary", "origin")]
            if cors["credentials"]:
                headers.append(("access-control-allow-credentials", "true"))
            if cors["expose"]:
                headers.append(("access-control-expose-headers", ",".join(cors["expose"])))
            return headers

        def preflight(self):
            """API Gateway answers a preflight itself; CORS headers only when the origin, the
            method and every requested header are allowed."""
            origin = self.origin()
            method = (self.headers.get("access-control-request-method") or "").upper()
            asked = [h.strip().lower() for h in (self.headers.get("access-control-request-headers") or "").split(",") if h.strip()]
            headers = []
            if origin and method in cors["methods"] and all(h in cors["headers"] for h in asked):
                headers = self.cors_headers(origin) + [
                    ("access-control-allow-methods", ",".join(sorted(cors["methods"]))),
                    ("access-control-allow-headers", ",".join(sorted(cors["headers"]))),
                ]
                if cors["max_age"] is not None:
                    headers.append(("access-control-max-age", str(cors["max_age"])))
            self.send_response_only(204)
            for name, value in headers + [("content-length", "0")]:
                self.send_header(name, value)
            self.end_headers()

        def forward(self):
            if self.command == "OPTIONS" and self.headers.get("origin") and self.headers.get("access-control-request-method"):
                return self.preflight()
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            connection = http.client.HTTPConnection(host, int(port), timeout=300)
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        connection.putheader(name, value)
                connection.endheaders(body)
                answer = connection.getresponse()
                payload = answer.read()
            except OSError as err:
                self.send_error(502, f"the local functions did not answer: {type(err).__name__}")
                return
            finally:
                connection.close()
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.getheaders():
                lower = name.lower()
                # API Gateway replaces the functions' CORS headers with its own.
                if lower in HOP_BY_HOP or lower == "content-length" or lower.startswith("access-control-"):
                    continue
                self.send_header(name, value)
            origin = self.origin()
            for name, value in self.cors_headers(origin) if origin else []:
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def __getattr__(self, name):
            # Every method goes to the routes, TRACE and made-up ones too: what answers them is
            # the functions' router, as behind API Gateway, never this proxy.
            if name.startswith("do_"):
                return self.forward
            raise AttributeError(name)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    cors = cors_configuration(os.environ.get("ALLOWED_ORIGINS", ""))
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(args.upstream, cors))
    server.daemon_threads = True
    server.request_queue_size = 128
    server.serve_forever()


if __name__ == "__main__":
    main()
