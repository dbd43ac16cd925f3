"""Client stubs: how one daemon calls another (Postfix's ``src/global/*_clnt.c``).

Each stub knows the service's socket from the services table (its ``private``
column, passed to every daemon in its spec: ``Context.socket_path``), and does
the whole call in one place: the hop (its ``ipc``/``request`` event, and the
pace), the request under its name from ``simmta.core.names``, the timeout, a
defer reply when the service cannot be reached or breaks the protocol (the
caller tries again later, as in Postfix), and the ``ipc``/``response`` event.

Trust: a reply is gossip from another (maybe compromised) process; the stubs
pass it on as a dict and every caller checks the fields it uses.
"""

from collections.abc import Callable
from typing import Any

from simmta.core import ipc, names
from simmta.core.records import IpcResponse
from simmta.core.skeleton import Context

QUEUE_TIMEOUT = 60.0  # seconds cleanup has to queue a message
AGENT_TIMEOUT = 900.0  # seconds a delivery agent (or bounce) has for one request
UNREACHABLE = (OSError, TimeoutError, ipc.ProtocolError)  # what becomes a defer reply


def _error_name(e: Exception) -> str:
    return type(e).__name__


async def _call(
    ctx: Context,
    service: str,
    request: dict[str, Any],
    hop: str,
    qid: str | None,
    sid: str | None,
    content: bytes | None = None,
    timeout: float = QUEUE_TIMEOUT,
    what: str | None = None,
    error: Callable[[Exception], str] = _error_name,
) -> dict[str, Any]:
    """One request to ``service``; its reply, or a defer reply saying why there is none.

    The response event carries ``qid``, or the reply's (cleanup's new queue ID)."""
    await ctx.hop(service, hop, qid, sid)
    try:
        reply = await ipc.call(ctx.socket_path(service), request, content, timeout=timeout)
    except UNREACHABLE as e:
        reply = {"status": names.DEFER, "error": error(e)}
    ctx.emit(
        IpcResponse(to=service, what=what or request["request"], outcome=str(reply.get("status"))),
        qid or reply.get("qid"),
        sid,
    )
    return reply


async def cleanup_queue(
    ctx: Context,
    sender: str,
    recipients: list[str],
    attrs: dict[str, Any],
    content: bytes,
    hop: str,
    qid: str | None = None,
    sid: str | None = None,
    what: str | None = None,
) -> dict[str, Any]:
    """Have cleanup queue a message: its reply (``qid`` when ``ok``)."""
    request = {"request": names.REQ_QUEUE, "sender": sender, "recipients": recipients, "attrs": attrs}
    return await _call(ctx, names.CLEANUP, request, hop, qid, sid, content, what=what)


async def agent_deliver(
    ctx: Context,
    transport: str,
    request: dict[str, Any],
    hop: str,
    qid: str,
    sid: str | None,
    error: Callable[[Exception], str],
) -> dict[str, Any]:
    """Have a delivery agent (local, smtp) deliver to some recipients of a message in active/."""
    request = {"request": names.REQ_DELIVER, "queue": names.ACTIVE, "qid": qid, **request}
    return await _call(ctx, transport, request, hop, qid, sid, timeout=AGENT_TIMEOUT, error=error)


async def bounce_send(
    ctx: Context, failed: list[dict[str, Any]], hop: str, qid: str, sid: str | None
) -> dict[str, Any]:
    """Have bounce send the sender a DSN for the ``failed`` recipients of a message in active/."""
    request = {"request": names.REQ_BOUNCE, "queue": names.ACTIVE, "qid": qid, "failed": failed}
    return await _call(ctx, names.BOUNCE, request, hop, qid, sid, timeout=AGENT_TIMEOUT)


async def qmgr_trigger(ctx: Context, what: bytes, hop: str, qid: str | None, sid: str | None) -> bool:
    """Wake qmgr up (``names.TRIGGER_*``); False if nobody listens (its scan timer catches up)."""
    await ctx.hop(names.QMGR, hop, qid, sid)
    return await ipc.trigger(ctx.socket_path(names.QMGR), what)
