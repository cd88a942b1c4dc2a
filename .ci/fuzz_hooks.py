"""Schemathesis hooks for .ci/fuzz (loaded through SCHEMATHESIS_HOOKS).

`graphql_not_a_server_error` is Schemathesis' `not_a_server_error` for this
service's GraphQL API. The built-in check, on GraphQL, takes every resolver
error (an `errors` entry with a `path`) as a server error unless it carries an
Apollo or graphql-java marker, so it fails on the answers the service is meant
to give to invalid input (`VALIDATION_FAILED`, status 400, ...). This service
puts the HTTP status a REST client would get in each error's
`extensions.status`, so a server error here is:

- an HTTP status of 500 or more;
- an error whose `extensions.status` is 500 or more (`INTERNAL`, `SERVER_BUSY`);
- a resolver error (with `path`) that carries no `extensions.status`: it did
  not come from the service's error mapping, so nothing decided its answer.
  Exception: async-graphql's own argument errors (`Failed to parse "Int": …`
  for an out-of-range literal) come with a `path` and no extensions; they
  are the client's.

Errors without `path` (parse and validation errors, depth and complexity
limits) are the client's.
"""

import json

import schemathesis


@schemathesis.check
def graphql_not_a_server_error(ctx, response, case):
    """GraphQL: no 5xx, no error with a 5xx `extensions.status`, no unmapped resolver error."""
    if response.status_code >= 500:
        raise AssertionError(f"Server error: HTTP {response.status_code}")
    try:
        payload = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"Response is not JSON (HTTP {response.status_code})") from None
    if not isinstance(payload, dict):
        raise AssertionError("Response is not a JSON object")
    for error in payload.get("errors") or []:
        if not isinstance(error, dict):
            raise AssertionError(f"Malformed entry in errors: {error!r}")
        extensions = error.get("extensions") if isinstance(error.get("extensions"), dict) else {}
        status = extensions.get("status")
        if isinstance(status, int) and status >= 500:
            raise AssertionError(
                f"GraphQL error with status {status} ({extensions.get('code')}): {error.get('message')}"
            )
        message = str(error.get("message", ""))
        if "path" in error and status is None and not message.startswith('Failed to parse "'):
            raise AssertionError(f"Unmapped GraphQL resolver error at {error['path']}: {error.get('message')}")
    return None
