"""A real CoAP client, Python's aiocoap (the version pinned in requirements.txt beside this
file), driven by the Rust tests (tests/coap_clients.rs) with JSON lines: commands on stdin,
everything observed on stdout. aiocoap does its own message layer: confirmable retransmission,
empty ACK + separate responses, Observe (RFC 7641) and block-wise transfers (RFC 7959) in both
directions (a request payload larger than a block goes in Block1 blocks, a response in Block2
blocks is fetched whole before it is reported).

Commands:
  {"op":"request","id":N,"method":"GET"|"POST"|"PUT","uri":"coap://127.0.0.1:PORT/…",
   "payload":str?,"content_format":int?,"non":bool?}
      answered by {"type":"response","id":N,"code":"2.05","payload":str,"observe":int|null}
      or {"type":"error","id":N,"message":str}
  {"op":"observe","id":N,"uri":…}
      answered by {"type":"response",…} (the registration's answer), then one
      {"type":"notification","id":N,"code":…,"payload":…,"observe":…} per notification, and
      {"type":"observe_end","id":N,"message":str} when the server ends the observation
  {"op":"cancel","id":M,"target":N}   stops observing N (aiocoap forgets it; the server learns it from the
                           Reset aiocoap answers the next notification with, or from a
                           deregistration): answered by {"type":"cancelled","id":M}
  {"op":"end"}             shuts the context down and exits
"""

import asyncio
import json
import sys

import aiocoap
from aiocoap import Context, Message


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def dotted(code):
    n = int(code)
    return "%d.%02d" % (n >> 5, n & 0x1F)


def describe(n, msg, kind="response"):
    return {
        "type": kind,
        "id": n,
        "code": dotted(msg.code),
        "payload": msg.payload.decode("utf-8", "replace"),
        "observe": msg.opt.observe,
    }


async def main():
    ctx = await Context.create_client_context()
    observations = {}
    loop = asyncio.get_running_loop()
    # Commands carry 100 KB payloads: past StreamReader's 64 KiB line limit.
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()

    async def request(cmd):
        n = cmd["id"]
        kw = {"code": getattr(aiocoap, cmd["method"]), "uri": cmd["uri"]}
        if cmd.get("payload") is not None:
            kw["payload"] = cmd["payload"].encode("utf-8")
        if cmd.get("content_format") is not None:
            kw["content_format"] = cmd["content_format"]
        if cmd.get("non"):
            # Non-confirmable (aiocoap >= 0.4.8 says so through the transport tuning).
            kw["transport_tuning"] = aiocoap.Unreliable()
        try:
            resp = await ctx.request(Message(**kw)).response
            out(describe(n, resp))
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            out({"type": "error", "id": n, "message": "%s: %s" % (type(e).__name__, e)})

    async def observe(cmd):
        n = cmd["id"]
        req = ctx.request(Message(code=aiocoap.GET, uri=cmd["uri"], observe=0))
        observations[n] = req
        try:
            out(describe(n, await req.response))
            async for notification in req.observation:
                out(describe(n, notification, "notification"))
            out({"type": "observe_end", "id": n, "message": "ended"})
        except Exception as e:  # noqa: BLE001
            out({"type": "observe_end", "id": n, "message": "%s: %s" % (type(e).__name__, e)})

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "request":
            t = asyncio.ensure_future(request(cmd))
        elif op == "observe":
            t = asyncio.ensure_future(observe(cmd))
        elif op == "cancel":
            req = observations.pop(cmd["target"])
            req.observation.cancel()
            out({"type": "cancelled", "id": cmd["id"]})
            continue
        elif op == "end":
            break
        else:
            out({"type": "error", "id": cmd.get("id"), "message": "unknown op " + op})
            continue
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    for t in tasks:
        t.cancel()
    await ctx.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
