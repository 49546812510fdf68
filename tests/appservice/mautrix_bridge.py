"""A real application service built with mautrix-python, driven by tests/tests/appservice_mautrix.rs.

It is configured by one JSON argument (port, homeserver, domain, tokens, room) and talks to the
test over stdout, one JSON object per line:

1. It starts mautrix's `AppService` on 127.0.0.1:{port} and prints {"ready": true}.
2. It registers the ghost `@_mx_carol` (IntentAPI.ensure_registered), sets its display name,
   joins the test's room and sends a message as the ghost (masquerading with `?user_id=`),
   then prints {"sent": event_id}.
3. It waits (bounded) until transactions bring the message "hello ghost" from another user
   and a typing notification (MSC2409 ephemeral events, `ephemeral_events=True`), then
   prints {"received": [events of the room]}.
4. It keeps serving (user and alias queries create `@_mx_dave` and `#_mx_lobby` on demand)
   until stdin closes, then prints {"transactions": [[id, status], ...], "queries": [...]}.

An aiohttp middleware answers the first transaction 500, as a service that crashed would, so
the gateway must send it again. Logs go to stderr.
"""

import asyncio
import json
import logging
import sys

from aiohttp import web
from mautrix.appservice import AppService, ASStateStore
from mautrix.client.state_store.memory import MemoryStateStore

WAIT_SECONDS = 60


class MemStore(ASStateStore, MemoryStateStore):
    """In-memory state (mautrix's default writes a file to the working folder)."""

    def __init__(self) -> None:
        ASStateStore.__init__(self)
        MemoryStateStore.__init__(self)


def say(obj) -> None:
    print(json.dumps(obj), flush=True)


async def main() -> None:
    cfg = json.loads(sys.argv[1])
    domain = cfg["domain"]
    transactions = []
    queries = []
    room_events = []
    got_hello = asyncio.Event()
    got_typing = asyncio.Event()

    @web.middleware
    async def fail_first_transaction(request, handler):
        if request.method == "PUT" and "/transactions/" in request.path:
            txn = request.match_info.get("transaction_id", request.path.rsplit("/", 1)[-1])
            if not transactions:
                transactions.append([txn, 500])
                return web.json_response({"errcode": "M_UNKNOWN", "error": "crashed"}, status=500)
            resp = await handler(request)
            transactions.append([txn, resp.status])
            return resp
        return await handler(request)

    appservice = None

    async def query_user(user_id):
        queries.append(["user", user_id])
        if user_id != f"@_mx_dave:{domain}":
            return None
        dave = appservice.intent.user(user_id)
        await dave.ensure_registered()
        await dave.set_displayname("Dave (bridged)")
        # mautrix answers 404 for a falsy result, so not {}.
        return {"user_id": user_id}

    async def query_alias(alias):
        queries.append(["alias", alias])
        if alias != f"#_mx_lobby:{domain}":
            return None
        await appservice.intent.create_room(alias_localpart="_mx_lobby", name="Bridged lobby")
        return {"alias": alias}

    appservice = AppService(
        server=cfg["homeserver"],
        domain=domain,
        as_token=cfg["as_token"],
        hs_token=cfg["hs_token"],
        bot_localpart=cfg["bot_localpart"],
        id=cfg["id"],
        state_store=MemStore(),
        query_user=query_user,
        query_alias=query_alias,
        aiohttp_params={"middlewares": [fail_first_transaction]},
        ephemeral_events=True,
    )

    @appservice.matrix_event_handler
    async def on_event(event) -> None:
        if str(event.room_id) != cfg["room"]:
            return
        content = event.content
        if str(event.type) == "m.typing":
            user_ids = [str(u) for u in content.user_ids]
            room_events.append({"type": "m.typing", "user_ids": user_ids})
            if user_ids:
                got_typing.set()
            return
        body = getattr(content, "body", None)
        membership = getattr(content, "membership", None)
        room_events.append({
            "event_id": str(event.event_id),
            "sender": str(event.sender),
            "type": str(event.type),
            "state_key": getattr(event, "state_key", None),
            "content": {"body": body, "membership": str(membership) if membership else None},
        })
        if body == "hello ghost":
            got_hello.set()

    await appservice.start(host="127.0.0.1", port=cfg["port"])
    say({"ready": True})

    ghost = appservice.intent.user(f"@_mx_carol:{domain}")
    await ghost.ensure_registered()
    await ghost.set_displayname("Carol (bridged)")
    await ghost.ensure_joined(cfg["room"])
    event_id = await ghost.send_text(cfg["room"], "bridged hello")
    say({"sent": str(event_id)})

    try:
        await asyncio.wait_for(
            asyncio.gather(got_hello.wait(), got_typing.wait()), WAIT_SECONDS
        )
    except asyncio.TimeoutError:
        say({"error": f"no 'hello ghost' and typing in {WAIT_SECONDS} s",
             "received": room_events,
             "transactions": transactions})
        await appservice.stop()
        sys.exit(1)
    say({"received": room_events})

    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), 120)
    except asyncio.TimeoutError:
        pass
    say({"transactions": transactions, "queries": queries})
    await appservice.stop()


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    asyncio.run(main())
