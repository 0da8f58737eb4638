"""Schemathesis hooks for scripts/api-check.

Subscriptions answer a chunked stream that stays open (a `{}` after each idle keepAlive), which
no request timeout ends: schemathesis would wait forever on one. So the requests that would open
one with the run's real fixtures are turned into the same request without the stream:

- the reads that can subscribe (`GET /v2/me/resources/{key}[/{thingId}]`,
  `GET /v2/classes/{scope}/{className}`) are sent with `subscribe=false` where schemathesis chose
  a true value (`true`, any case, or `1`);
- the thing stream (`GET /v2/things/{thingToken}`) is sent with a well-formed token of no thing,
  so its refusals (404, 400, 429) are what is checked.

The streams themselves are checked by the Postman collection (newman), whose subscriptions end
when their short-lived session expires. `/v2/panel/live` is `text/event-stream`, which
schemathesis reads only up to `max-stream-events` events or its request timeout.
"""

import schemathesis

SUBSCRIBABLE_READS = {
    "/v2/me/resources/{key}",
    "/v2/me/resources/{key}/{thingId}",
    "/v2/classes/{scope}/{className}",
}
THING_STREAM = "/v2/things/{thingToken}"
NO_THING_TOKEN = "A" * 43


def _truthy(value):
    return str(value).strip().lower() in ("true", "1")


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    operation = case.operation
    if operation.method.upper() != "GET":
        return
    if operation.path in SUBSCRIBABLE_READS and case.query and "subscribe" in case.query:
        value = case.query["subscribe"]
        if isinstance(value, list):
            case.query["subscribe"] = ["false" if _truthy(v) else v for v in value]
        elif _truthy(value):
            case.query["subscribe"] = "false"
    elif operation.path == THING_STREAM and case.path_parameters is not None:
        case.path_parameters["thingToken"] = NO_THING_TOKEN
