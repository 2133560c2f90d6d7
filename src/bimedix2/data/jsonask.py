"""JSON replies with real repair turns: a bad reply goes back to the model with what was wrong.

``LLMClient.chat_json`` re-asks with the same request (only the cache key changes), so a
deterministic endpoint (temperature 0) answers the same bad reply every time. Here each re-ask
is the original messages, then the bad reply as an assistant turn, then a user turn naming the
problem and asking for the corrected JSON only. Every attempt is a distinct, deterministic
request, so it is cached on its own and a resumed job replays it for free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..llm_client import ChatMessages, JSONReply, LLMClient, parse_json_reply


def repair_turns(bad_reply: str, error: str) -> list[dict[str, str]]:
    """The two turns appended to the original messages after an unusable reply."""
    return [
        {"role": "assistant", "content": bad_reply},
        {
            "role": "user",
            "content": (
                f"Your reply could not be used: {error}. Reply again with only the corrected JSON object, "
                "in the format asked for above, and no other text."
            ),
        },
    ]


async def chat_json_repaired(
    llm: LLMClient,
    messages: ChatMessages,
    *,
    validate: Callable[[Any], None] | None = None,
    attempts: int = 3,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    **params: Any,
) -> JSONReply:
    """Chat expecting JSON; a malformed or invalid reply (``validate`` raising ``ValueError``) is
    repaired with the error fed back, up to ``attempts`` asks, then returned as a recorded failure."""
    base = [dict(m) for m in messages]
    ask, raw, error = base, "", ""
    for attempt in range(attempts):
        reply = await llm.chat(ask, temperature=temperature, max_tokens=max_tokens, **params)
        raw = reply.text
        try:
            value = parse_json_reply(raw)
            if validate is not None:
                validate(value)
            return JSONReply(ok=True, value=value, raw=raw, attempts=attempt + 1)
        except ValueError as exc:
            error = str(exc)
        ask = base + repair_turns(raw, error)
    llm.usage.json_failures += 1
    return JSONReply(ok=False, value=None, raw=raw, attempts=attempts, error=error)
