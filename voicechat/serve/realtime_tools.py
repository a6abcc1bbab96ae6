"""Function calling and ``conversation.item.retrieve/delete`` on ``/v1/realtime``.

The tools a client declares (``session.tools``, ``tool_choice``; or one ``response.create``'s) are offered
to the model next to the server's own (tools.enabled: the built-ins and allow-listed MCP servers, shared by
every session). The one tool loop of :meth:`Conversation.stream_reply` runs them: :class:`SessionTools` is
the session's tool box. A call to a server tool runs here and appears as a ``function_call`` item and a
``function_call_output`` item; a call to a client tool is handed off (``ToolResult.handed_off``): the
response ends with its ``function_call`` item, and the exchange stays open in :class:`ItemMemory` until the
client sends a ``function_call_output`` item and ``response.create``: that response continues it (no new user
item), and its answer is spoken as usual.

The connection (:mod:`voicechat.serve.realtime`) calls :func:`attach` once the session is open, passes every
outgoing event through :func:`outgoing`, and takes :func:`handlers` into its event table.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicechat.engines.base import REQUIRED, ToolCall, ToolSpec
from voicechat.serve import realtime_beta as beta
from voicechat.serve import realtime_events as rt
from voicechat.serve.realtime_memory import ItemMemory, ItemStore
from voicechat.tools.base import NAME, ToolResult
from voicechat.tools.box import ToolBox

log = logging.getLogger("voicechat.serve")
MAX_TOOLS = 64  # functions one session may declare
MAX_SPEC_CHARS = 32_000  # one tool's description and schema, as JSON
CHOICES = ("auto", "none", "required")
OPENING = ("response.output_item.added", "conversation.item.added", "response.content_part.added")
DELTAS = ("response.output_audio_transcript.delta", "response.output_text.delta", "response.output_audio.delta")
Handler = Callable[[Any, dict[str, Any], "str | None"], None]


# what the client declares ------------------------------------------------------------------------
@dataclass
class Offer:
    """The functions a client declared and its tool_choice: auto, none, required, or a function's name."""

    client: dict[str, ToolSpec] = field(default_factory=dict)
    choice: str = "auto"

    def to_session(self) -> dict[str, Any]:
        tools = [
            {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters} for t in self.client.values()
        ]
        choice: Any = self.choice if self.choice in CHOICES else {"type": "function", "name": self.choice}
        return {"tools": tools, "tool_choice": choice}


def parse_offer(params: dict[str, Any], current: Offer, where: str, server: set[str], can_call: bool) -> Offer | None:
    """``tools`` / ``tool_choice`` of a session.update's session or a response.create's response, checked
    (rt.UpdateRefused names the field); None when neither is given."""
    if "tools" not in params and "tool_choice" not in params:
        return None
    offer = Offer(dict(current.client), current.choice)
    if params.get("tools") is not None:
        offer.client = parse_tools(params["tools"], f"{where}.tools", server)
    if params.get("tool_choice") is not None:
        offer.choice = parse_choice(params["tool_choice"], f"{where}.tool_choice")
    if offer.client and not can_call:
        raise rt.UpdateRefused("the chat engine of this server cannot call tools; send no tools", f"{where}.tools")
    if offer.choice not in CHOICES and offer.choice not in offer.client and offer.choice not in server:
        raise rt.UpdateRefused(f"tool_choice names '{offer.choice}', which is not among the tools", f"{where}.tool_choice")
    if offer.choice == "required" and not offer.client and not server:
        raise rt.UpdateRefused("tool_choice required needs a tool to call", f"{where}.tool_choice")
    return offer


def parse_tools(value: Any, param: str, server: set[str]) -> dict[str, ToolSpec]:
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise rt.UpdateRefused(f"tools must be a list of at most {MAX_TOOLS} functions", param)
    out: dict[str, ToolSpec] = {}
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise rt.UpdateRefused(
                'tools here are functions ({"type": "function", "name": ...}); MCP tools are the server\'s own', f"{param}[{i}]"
            )
        name, description, schema = tool.get("name"), tool.get("description") or "", tool.get("parameters")
        if not isinstance(name, str) or not NAME.match(name):
            raise rt.UpdateRefused("a function's name is 1 to 64 letters, digits, _ or -", f"{param}[{i}].name")
        if name in server:
            raise rt.UpdateRefused(f"'{name}' is a tool of this server already; name yours otherwise", f"{param}[{i}].name")
        if not isinstance(description, str):
            raise rt.UpdateRefused("description must be a string", f"{param}[{i}].description")
        if schema is None:
            schema = {"type": "object", "properties": {}}
        if not isinstance(schema, dict) or len(json.dumps(tool)) > MAX_SPEC_CHARS:
            raise rt.UpdateRefused(
                f"parameters must be a JSON schema object (a tool takes at most {MAX_SPEC_CHARS} characters)", f"{param}[{i}]"
            )
        out[name] = ToolSpec(name, description, schema)
    return out


def parse_choice(value: Any, param: str) -> str:
    if value in CHOICES:
        return str(value)
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return str(value["name"])
    if isinstance(value, str) and NAME.match(value):  # (the beta interface names a function by its name alone)
        return value
    raise rt.UpdateRefused('tool_choice is auto, none, required or {"type": "function", "name": ...}', param)


# the items of a call --------------------------------------------------------------------------------
def call_events(response_id: str | None, index: int, item_id: str, call: ToolCall, previous: str | None) -> list[dict[str, Any]]:
    """A function call the model made, as the API streams it (the arguments arrive whole: one delta)."""
    item = {"id": item_id, "object": "realtime.item", "type": "function_call", "status": "in_progress", "name": call.name}
    item.update(call_id=call.id, arguments="")
    done = {**item, "status": "completed", "arguments": call.arguments}
    ids = {"response_id": response_id, "item_id": item_id, "output_index": index, "call_id": call.id}
    return [
        {"type": "response.output_item.added", "response_id": response_id, "output_index": index, "item": item},
        {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
        {"type": "response.function_call_arguments.delta", **ids, "delta": call.arguments},
        {"type": "response.function_call_arguments.done", **ids, "name": call.name, "arguments": call.arguments},
        {"type": "response.output_item.done", "response_id": response_id, "output_index": index, "item": done},
        {"type": "conversation.item.done", "previous_item_id": previous, "item": done},
    ]


def output_events(item_id: str, call_id: str, output: str, previous: str | None) -> list[dict[str, Any]]:
    item = {"id": item_id, "object": "realtime.item", "type": "function_call_output", "status": "completed", "call_id": call_id}
    item["output"] = output
    return [
        {"type": "conversation.item.added", "previous_item_id": previous, "item": item},
        {"type": "conversation.item.done", "previous_item_id": previous, "item": item},
    ]


class SessionTools(ToolBox):
    """One realtime session's tools: the server's (run here) and the client's (handed off), as the response's offer says."""

    def __init__(self, server: ToolBox | None, state: RealtimeState) -> None:
        super().__init__([], timeout=server.timeout if server else 10.0, result_chars=server.result_chars if server else 2000)
        self.server, self.state = server, state
        self.offer = Offer()
        self.tools = dict(server.tools) if server is not None else {}

    def specs(self) -> list[ToolSpec]:
        if self.offer.choice == "none":
            return []
        return (self.server.specs() if self.server is not None else []) + list(self.offer.client.values())

    def run(
        self,
        call: ToolCall,
        *,
        on_slow: Callable[[], None] | None = None,
        slow_after: float | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> ToolResult:
        call = ToolCall(call.id or rt.new_id("call"), call.name[:64], call.arguments)
        item_id = self.state.announce_call(call, call.name in self.offer.client)
        if call.name in self.offer.client:
            self.state.memory.handed.append((item_id, call))
            return ToolResult(call.name, call.arguments, "sent to the client, which runs it", source="client", handed_off=True)
        if self.server is not None:
            result = self.server.run(call, on_slow=on_slow, slow_after=slow_after, cancelled=cancelled)
        else:
            result = ToolResult(call.name, call.arguments, f"there is no tool named '{call.name}'", error=True)
        self.state.announce_output(call.id, f"error: {result.text}" if result.error else result.text)
        return result

    def close(self) -> None:
        super().close()  # (the server's box is shared: it closes with the server)


# one connection's state ---------------------------------------------------------------------------
class RealtimeState:
    def __init__(self, conn: Any, memory: ItemMemory, can_call: bool) -> None:
        self.conn, self.memory, self.can_call = conn, memory, can_call
        self.items = ItemStore()
        self.beta = False
        self.offer = Offer()  # the session's
        self.staged: Offer | None = None  # a session.update's, until it is applied
        self.requested: collections.deque[Offer | None] = collections.deque()  # response.create's own, as translator.requested
        self.calls: list[dict[str, Any]] = []  # the current response's function_call items (response.done lists them)
        self.next_user: list[str] = []  # user items not yet answered
        self.box: SessionTools | None = None
        self.force: str | None = None  # the server's tools.force (tool_choice auto keeps it)
        self.message: str | None = None  # the response's message item
        self.held: list[dict[str, Any]] | None = None  # its opening events, until it has words (None: sent)
        self.before_message: str | None = None  # the item before it (a call that replaces it follows this one)

    def server_names(self) -> set[str]:
        box = self.box.server if self.box is not None else None
        return set(box.tools) if box is not None else set()

    def announce_call(self, call: ToolCall, client: bool) -> str:
        """A call's items. A server tool's answer follows it in the response's message, which opens first; a call
        made before any words (the message still held) stands for the whole response: output_index 0."""
        conn, item_id = self.conn, rt.new_id("item")
        with conn._lock:
            docs = self.release() if self.held is not None and not client else []
            r = conn.translator.response
            previous = self.before_message if self.held is not None else conn.translator.last_item
            index = len(self.calls) + (0 if self.held is not None else 1)
            docs += call_events(r.id if r else None, index, item_id, call, previous)
            conn.translator.last_item = item_id
            self.calls.append(docs[-1]["item"])
            conn._emit(docs)
        return item_id

    def release(self) -> list[dict[str, Any]]:
        """The held opening events of the response's message (it has words, or a server tool's answer follows)."""
        docs, self.held = self.held or [], None
        return docs

    def announce_output(self, call_id: str, output: str, item_id: str | None = None) -> None:
        conn = self.conn
        with conn._lock:
            docs = output_events(item_id or rt.new_id("item"), call_id, output, conn.translator.last_item)
            conn.translator.last_item = docs[0]["item"]["id"]
            conn._emit(docs)

    def begin_response(self) -> None:
        """A response starts (on the responder's thread, before the model is asked): its user items, its offer."""
        self.memory.user_ids, self.next_user, self.calls = self.next_user, [], []
        offer = self.offer
        if len(self.requested) > len(self.conn.translator.requested):  # the translator took a response.create's options
            offer = self.requested.popleft() or offer
        if self.box is not None:
            self.box.offer = offer
            choice = offer.choice
            self.conn.session.conversation.config.tools.force = (
                self.force if choice in ("auto", "none") else REQUIRED if choice == "required" else choice
            )

    def seen(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        """An outgoing event: kept track of, completed with what this module adds, in the client's dialect.

        While tools are offered, the response's message item is held until it has words: a response that only
        calls a client's function is that call alone, as the API sends it (no empty message before it)."""
        kind = doc.get("type")
        item: dict[str, Any] = doc["item"] if isinstance(doc.get("item"), dict) else {}
        if kind == "conversation.item.added":
            if item.get("role") == "user":
                self.next_user = (self.next_user + [item["id"]])[-16:]
            elif item.get("role") == "assistant":
                self.memory.assistant_id = item["id"]
        elif kind == "response.created":
            self.begin_response()
            r = self.conn.translator.response
            self.message = r.item_id if r is not None else None
            self.held = [] if self.box is not None and self.box.specs() and self.message is not None else None
        elif kind in ("session.created", "session.updated") and doc.get("session", {}).get("type") == "realtime":
            doc["session"].update((self.staged or self.offer).to_session())
        out: list[dict[str, Any]] = []
        if self.held is not None and self.message in (item.get("id"), doc.get("item_id")):
            if kind in OPENING:
                if kind == "conversation.item.added":
                    self.before_message = doc.get("previous_item_id")
                self.held.append(doc)
                return []
            if kind not in DELTAS and self.calls:
                return []  # the message never had words: the calls were the response
            out = self.release()
        if kind == "response.done":
            output = list(doc["response"].get("output") or [])
            if self.held is not None and self.calls:  # (the message was never sent)
                output = [i for i in output if i.get("id") != self.message]
            doc["response"]["output"] = output + self.calls
            self.calls, self.held, self.message = [], None, None
        out.append(doc)
        final = []
        for d in out:
            self.items.seen(d)
            converted = beta.to_beta(d) if self.beta else d
            if converted is not None:
                final.append(converted)
        return final


def attach(conn: Any) -> None:
    """Give an open realtime session its item memory and tool box (before it starts)."""
    chat = conn.session.conversation
    old = chat.memory
    memory = ItemMemory(
        system_prompt=old.system_prompt, max_rounds=old.max_rounds, max_context_tokens=old.max_context_tokens, count_tokens=old.count_tokens
    )
    memory.rounds = list(old.rounds)
    memory.ids = [([], None) for _ in memory.rounds]
    chat.memory = memory
    state = RealtimeState(conn, memory, chat.llm.supports_tools)
    state.beta = beta.wanted(conn.ws.headers)
    if chat.llm.supports_tools:
        state.force = chat.config.tools.force
        state.box = SessionTools(chat.tools, state)
        chat.tools = state.box
    conn.rtools = state


def outgoing(conn: Any, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    state: RealtimeState | None = getattr(conn, "rtools", None)
    if state is None:
        return [beta.to_beta(d) or d for d in docs] if beta.wanted(conn.ws.headers) else docs
    return [out for doc in docs for out in state.seen(doc)]


# client events ------------------------------------------------------------------------------------
def handlers(table: Mapping[str, Handler]) -> dict[str, Handler]:
    """This module's events, and the connection's own wrapped where they gain function calling or the beta dialect."""
    update, create, item_create = table["session.update"], table["response.create"], table["conversation.item.create"]

    def session_update(conn: Any, msg: dict[str, Any], event_id: str | None) -> None:
        state: RealtimeState = conn.rtools
        if state.beta:
            msg = {**msg, "session": beta.session_from_beta(msg.get("session"))}
        session = msg.get("session")
        if isinstance(session, dict):
            try:
                state.staged = parse_offer(session, state.offer, "session", state.server_names(), state.can_call)
            except rt.UpdateRefused as e:
                conn.refuse(str(e), param=e.param, event_id=event_id)
                return
        refused = conn.refused
        try:
            update(conn, msg, event_id)
            if conn.refused == refused and state.staged is not None:
                state.offer = state.staged
        finally:
            state.staged = None

    def response_create(conn: Any, msg: dict[str, Any], event_id: str | None) -> None:
        state: RealtimeState = conn.rtools
        if state.beta:
            msg = {**msg, "response": beta.response_from_beta(msg.get("response"))}
        params = msg.get("response")
        try:
            own = parse_offer(params, state.offer, "response", state.server_names(), state.can_call) if isinstance(params, dict) else None
        except rt.UpdateRefused as e:
            conn.refuse(str(e), param=e.param, event_id=event_id)
            return
        if not conn.translator.announced and state.memory.answered():
            _continue(conn, state, msg, event_id, own)
            return
        refused = conn.refused
        with conn._lock:
            state.requested.append(own)
        create(conn, msg, event_id)
        if conn.refused != refused:
            with conn._lock:
                if state.requested and state.requested[-1] is own:
                    state.requested.pop()

    def conversation_item_create(conn: Any, msg: dict[str, Any], event_id: str | None) -> None:
        item = msg.get("item")
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "function_call_output":
            _output(conn, conn.rtools, item, event_id)
        elif kind == "function_call":
            conn.refuse("function_call items come from the model; send its function_call_output", param="item.type", event_id=event_id)
        else:
            item_create(conn, msg, event_id)

    return {
        "session.update": session_update,
        "response.create": response_create,
        "conversation.item.create": conversation_item_create,
        "conversation.item.retrieve": _retrieve,
        "conversation.item.delete": _delete,
    }


def _output(conn: Any, state: RealtimeState, item: Any, event_id: str | None) -> None:
    call_id, output = item.get("call_id"), item.get("output")
    limit = conn.state.cfg.serve.max_text_chars
    if not isinstance(call_id, str) or not isinstance(output, str):
        conn.refuse("a function_call_output item needs 'call_id' and 'output' (strings)", param="item", event_id=event_id)
        return
    if len(output) > limit:
        conn.refuse(
            f"output too long; this server takes up to {limit} characters (serve.max_text_chars)", param="item.output", event_id=event_id
        )
        return
    item_id = item.get("id") if isinstance(item.get("id"), str) else rt.new_id("item")
    if not state.memory.output(str(item_id)[:64], call_id, output):
        conn.refuse(f"no function call with call_id '{call_id[:64]}' is waiting for its output", param="item.call_id", event_id=event_id)
        return
    state.announce_output(call_id, output, str(item_id)[:64])


def _continue(conn: Any, state: RealtimeState, msg: dict[str, Any], event_id: str | None, own: Offer | None) -> None:
    """response.create after function_call_output items: the model continues the exchange (no new user item)."""
    from voicechat.serve.voice_ws import MAX_WAITING_TURNS

    session = conn.session
    if conn.draining:
        conn.refuse("the server is shutting down", event_id=event_id)
        return
    if session.pending >= MAX_WAITING_TURNS:
        conn.refuse(
            f"{MAX_WAITING_TURNS} responses are already waiting", event_id=event_id, code="conversation_already_has_active_response"
        )
        return
    try:
        opts = rt.response_options(msg.get("response"))
    except rt.UpdateRefused as e:
        conn.refuse(str(e), param=e.param, event_id=event_id)
        return
    with conn._lock:
        conn.translator.requested.append(opts)
        state.requested.append(own)
    session.send_text("")  # no new words: the memory's open exchange ends with the outputs


def _retrieve(conn: Any, msg: dict[str, Any], event_id: str | None) -> None:
    state: RealtimeState = conn.rtools
    item_id = msg.get("item_id")
    item = state.items.get(item_id) if isinstance(item_id, str) else None
    if item is None:
        conn.refuse(f"no item with id '{str(item_id)[:64]}' in this conversation", param="item_id", event_id=event_id)
        return
    conn._emit([{"type": "conversation.item.retrieved", "item": item}])


def _delete(conn: Any, msg: dict[str, Any], event_id: str | None) -> None:
    state: RealtimeState = conn.rtools
    item_id = msg.get("item_id")
    response = conn.translator.response
    if not isinstance(item_id, str) or state.items.get(item_id) is None:
        conn.refuse(f"no item with id '{str(item_id)[:64]}' in this conversation", param="item_id", event_id=event_id)
        return
    if response is not None and (item_id == response.item_id or any(c["id"] == item_id for c in state.calls)):
        conn.refuse("this item's response is in progress; cancel it first (response.cancel)", param="item_id", event_id=event_id)
        return
    in_context = state.memory.delete(item_id)
    state.items.remove(item_id)
    log.debug("realtime session: item deleted (%s the model's context)", "taken out of" if in_context else "already out of")
    conn._emit([{"type": "conversation.item.deleted", "item_id": item_id}])
