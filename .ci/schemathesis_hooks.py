"""Schemathesis hooks for the local stack (loaded through SCHEMATHESIS_HOOKS by .ci/e2e.py).

`cargo lambda watch`, the local dev server, answers a body declared JSON that is not UTF-8 with
its own 500 before any function runs (API Gateway hands such a body to the function, base64
encoded, and the function answers 400). So that negative mode tests the functions and not the
dev server, such a body is sent with its undecodable bytes replaced: still not valid data, and
now it reaches the function. Raw bytes are covered by the fuzz target `request_body` and the
property tests instead.
"""

import schemathesis


@schemathesis.hook
def before_call(context, case, kwargs):
    body = case.body
    if isinstance(body, (bytes, bytearray)):
        try:
            bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            case.body = bytes(body).decode("utf-8", "replace").encode("utf-8")
