"""Schemathesis hooks for .ci/schemathesis.

A generated `POST /admin/surgery` with `"operation": "flip"` would make the whole
store read-only, on purpose: every write after it answers 503 `read_only`, and the
rest of the run would test a flipped store only. The flip is tested by the Rust tests
(conformance, surgery, CLI); here every other surgery body is still generated.
"""

import schemathesis


def _is_flip(body):
    return isinstance(body, dict) and body.get("operation") == "flip"


@schemathesis.hook
def filter_body(context, body):
    return not _is_flip(body)


@schemathesis.hook
def filter_case(context, case):
    return not (case.path == "/admin/surgery" and _is_flip(case.body))
