"""Loading the bot's handler and delivering events to it: per shard, in order, from a
bounded backlog, advancing the checkpoint only when the handler has *finished* an event.

A handler is either an async function ``(event) -> None`` or an object with
``async on_<event_name_lowercase>(event)`` methods and optionally ``async start()``,
``async close()`` and ``async handle_batch(events)``. An ``on_<name>`` method whose first
parameter is annotated with a model from ``workers.models`` receives ``event.model()``
instead of the event (the annotation is read once, at load).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import sys
import typing
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from workers.events import DISPATCH_NAMES, Event
from workers.handler_advice import lacks_message_content, unmatched_methods
from workers.inflight import RECORD, ShardSlot
from workers.models import EVENT_MODELS, Model, ModelError
from workers.reporter import ShardCounters

log = logging.getLogger(__name__)

DEFAULT_BATCH: Final = 100
# Queued events after which the reader lets the handler task run, even with room left. The
# handler then sees events sooner in a burst, and the backlog's messages are handled while
# still in the CPU cache: holding ~1000 inflated messages instead of ~100 made the whole
# receive path ~7% slower (make bench, receive.zlib).
TURN_EVERY: Final = 128

# Event names whose ``on_<name>`` lookup is remembered, beyond the documented ones.
METHOD_CACHE_SIZE: Final = 256

EventCallback = Callable[[Event], Awaitable[None]]
BatchCallback = Callable[[Sequence[Event]], Awaitable[None]]


class HandlerLoadError(Exception):
    """``--handler`` names something that cannot be used; the message is one line."""


class Handler:
    """A loaded handler with one calling convention for the delivery loop."""

    def __init__(self, target: object, name: str = "") -> None:
        self.target = target
        self.name = name or repr(target)
        self._methods: dict[str, EventCallback | None] = {}
        self.batch: BatchCallback | None = None
        self._function: EventCallback | None = None
        batch = getattr(target, "handle_batch", None)
        if not isinstance(target, type) and callable(batch):
            if not inspect.iscoroutinefunction(batch):
                raise HandlerLoadError(f"{self.name}.handle_batch must be an async method")
            self.batch = batch
        if inspect.iscoroutinefunction(target):
            self._function = target
        elif (
            not isinstance(target, type)
            and self.batch is None
            and not _event_methods(target)
            and inspect.iscoroutinefunction(getattr(target, "__call__", None))  # noqa: B004
        ):
            # an instance with ``async def __call__(self, event)``
            self._function = target.__call__  # type: ignore[operator]
        elif self.batch is None and not _event_methods(target):
            if callable(target):
                raise HandlerLoadError(
                    f"{self.name} must be an async function (async def handler(event)) "
                    "or an object with async on_<event> methods"
                )
            raise HandlerLoadError(
                f"{self.name} has no on_<event> methods, handle_batch, and is not callable"
            )
        for method in _event_methods(target):
            if not inspect.iscoroutinefunction(getattr(target, method)):
                raise HandlerLoadError(f"{self.name}.{method} must be an async method")
        for method, nearest in unmatched_methods(_event_methods(target)):
            hint = f"; did you mean {nearest}?" if nearest else ""
            log.warning(
                f"{self.name}.{method} matches no gateway event and is never called{hint}",
                extra={"method": method, "nearest": nearest},
            )
        # Event names whose method takes the typed model rather than the Event.
        self._typed = _typed_events(target, self.name) if self._function is None else frozenset()
        # Event names whose model error was logged: at most one line per type.
        self._model_errors_logged: set[str] = set()

    @property
    def function(self) -> EventCallback | None:
        """The handler when it is a plain async function (None for handler objects)."""
        return self._function

    def _method(self, name: str) -> EventCallback | None:
        # One getattr per event name, not per event.
        try:
            return self._methods[name]
        except KeyError:
            method = getattr(self.target, "on_" + name.lower(), None)
            # Names come from the network: past a bound only documented ones are
            # remembered, so millions of distinct names cannot grow the cache.
            if len(self._methods) < METHOD_CACHE_SIZE or name in DISPATCH_NAMES:
                self._methods[name] = method
            return method

    async def handle(self, event: Event, counters: ShardCounters | None = None) -> None:
        if self._function is not None:
            await self._function(event)
            return
        method = self._method(event.name)
        if method is not None:
            if event.name in self._typed:
                await method(self._model_or_event(event, counters))
            else:
                await method(event)

    def caller(self, counters: ShardCounters) -> EventCallback:
        """What one shard's delivery awaits per event: the plain function itself, or
        ``handle`` counting that shard's model errors."""
        if self._function is not None:
            return self._function
        return functools.partial(self.handle, counters=counters)

    def _model_or_event(self, event: Event, counters: ShardCounters | None) -> Any:
        """The event's model; the event itself when its payload does not fit (counted,
        logged once per event type): the connection is fine and the handler still runs."""
        try:
            model = event.model()
        except ModelError as exc:
            if counters is not None:
                counters.model_errors += 1
            if event.name not in self._model_errors_logged:
                self._model_errors_logged.add(event.name)
                log.warning(
                    "payload does not fit its model; the handler gets the raw event "
                    "(logged once per event type, counted as model_errors)",
                    extra={"event": event.name, "shard": event.shard_id, "detail": str(exc)},
                )
            return event
        return event if model is None else model

    async def start(self, gateway: object | None = None) -> None:
        """``start(gateway)`` for a ``start`` that takes one parameter, else ``start()``."""
        start = getattr(self.target, "start", None)
        if self._function is None and start is not None and inspect.iscoroutinefunction(start):
            if gateway is not None and _takes_one_argument(start):
                await start(gateway)
            else:
                await start()

    def check_intents(self, intents: int) -> None:
        """Warn (once, at start) when message handlers will see empty message content."""
        if self._function is None and lacks_message_content(_event_methods(self.target), intents):
            log.warning(
                f"{self.name} handles message events but the MESSAGE_CONTENT intent is not "
                "in the intents: content, embeds, attachments and components arrive empty "
                "(except in DMs and messages that mention the bot). Add MESSAGE_CONTENT to "
                "--intents and enable it for the bot in the Discord Developer Portal",
                extra={"intents": intents},
            )

    async def close(self) -> None:
        close = getattr(self.target, "close", None)
        if self._function is None and close is not None and inspect.iscoroutinefunction(close):
            await close()


def _takes_one_argument(function: Callable[..., object]) -> bool:
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return False
    accepted = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind in accepted or p.kind is p.VAR_POSITIONAL for p in params)


def _typed_events(target: object, name: str) -> frozenset[str]:
    """Names of the events whose ``on_<name>`` method's first parameter is annotated with
    a model. A model that the event never decodes to is a mistake made at load time, so
    it is refused there, in one line."""
    typed = set()
    for method_name in _event_methods(target):
        annotation = _first_parameter_annotation(getattr(target, method_name))
        if not (isinstance(annotation, type) and issubclass(annotation, Model)):
            continue
        event = method_name[3:].upper()
        model = EVENT_MODELS.get(event)
        if model is None:
            raise HandlerLoadError(
                f"{name}.{method_name} takes {annotation.__name__}, but {event} events have "
                "no model: annotate it with workers.events.Event and use event.data()"
            )
        if not issubclass(model, annotation):
            raise HandlerLoadError(
                f"{name}.{method_name} takes {annotation.__name__}, but {event} events "
                f"decode to workers.models.{model.__name__}"
            )
        typed.add(event)
    return frozenset(typed)


def _first_parameter_annotation(method: Callable[..., object]) -> object:
    try:
        params = list(inspect.signature(method).parameters.values())
        hints = typing.get_type_hints(method)
    except Exception as exc:  # an annotation that does not resolve: the method gets events
        log.warning(
            "cannot read a handler method's annotations; it receives the raw event",
            extra={"method": getattr(method, "__qualname__", repr(method)), "error": str(exc)},
        )
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    first = next((p for p in params if p.kind in positional), None)
    return None if first is None else hints.get(first.name)


def _event_methods(target: object) -> list[str]:
    return [
        name
        for name in dir(target)
        if name.startswith("on_") and len(name) > 3 and callable(getattr(target, name, None))
    ]


def load_handler(path: str) -> Handler:
    """``package.module:attr`` to a ``Handler``. A class is instantiated without arguments.
    Raises ``HandlerLoadError`` with a one-line message on any problem."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerLoadError(f"handler {path!r} must look like package.module:attribute")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise HandlerLoadError(
            f"handler module {module_name!r} does not import: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise HandlerLoadError(
                f"handler {path!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    if isinstance(target, type):
        try:
            target = target()
        except Exception as exc:
            raise HandlerLoadError(
                f"handler class {path!r} cannot be created without arguments: {exc}"
            ) from exc
    return Handler(target, path)


def as_handler(target: object) -> Handler:
    if isinstance(target, Handler):
        return target
    if isinstance(target, str):
        return load_handler(target)
    return Handler(target)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Delivery:
    """One shard's ordered delivery: a bounded backlog drained by one task.

    ``push`` is synchronous (called from the receive path); the shard stops reading while
    ``full`` and waits on ``wait_room``, so nothing is ever dropped.
    """

    def __init__(
        self,
        shard_id: int,
        handler: Handler,
        counters: ShardCounters,
        maxsize: int = 1000,
        batch_size: int = DEFAULT_BATCH,
    ) -> None:
        self.shard_id = shard_id
        self.handler = handler
        self.counters = counters
        self.maxsize = max(1, maxsize)
        self.batch_size = max(1, batch_size)
        self._queue: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.in_flight = 0
        self.delivered = 0
        # (session epoch, seq) of the last event the handler finished.
        self.checkpoint: tuple[int, int] | None = None
        # True while the queue is empty and ``run`` waits for a push (or has not started).
        self._asleep = True
        # Set by ``push`` when the reader should stop reading for a moment: every
        # ``TURN_EVERY`` queued events (give the handler task a turn; the reader yields
        # once) or at ``maxsize`` (wait until there is room). The reader clears it. A plain
        # attribute, not a property: the socket loop reads it after every frame.
        self.hold = False
        self._turn_every = min(TURN_EVERY, self.maxsize)
        self._room_cleared = False
        # What the handler is inside, for the supervisor (workers.inflight); private
        # memory unless the runtime maps the worker's in-flight file.
        self.inflight = ShardSlot(bytearray(RECORD.size), 0)

    @property
    def backlog(self) -> int:
        return len(self._queue) + self.in_flight

    def push(self, event: Event) -> None:
        queue = self._queue
        queue.append(event)
        if self._asleep:
            # Only a task waiting for work needs waking: one Event.set per burst of
            # events rather than one per event (this is the receive path's hot loop).
            self._asleep = False
            self._ready.set()
            self._idle.clear()
        n = len(queue)
        if n >= self._turn_every:
            if n >= self.maxsize:
                self._room.clear()
                self._room_cleared = True
                self.hold = True
            elif n % self._turn_every == 0:
                self.hold = True

    @property
    def full(self) -> bool:
        return len(self._queue) >= self.maxsize

    async def wait_room(self) -> None:
        await self._room.wait()

    async def wait_idle(self) -> None:
        """Until every pushed event has been handled."""
        await self._idle.wait()

    def _failed(self, message: str, extra: dict[str, Any]) -> None:
        self.counters.handler_errors += 1
        if isinstance(sys.exc_info()[1], ModelError):
            # The handler called event.model() itself on a payload that does not fit.
            self.counters.model_errors += 1
        log.exception(message, extra={"shard": self.shard_id, **extra})

    async def _sleep(self) -> None:
        """Until the next push (the queue is empty). ``in_flight`` is only ever observed
        while this task awaits: 0 here, and 1 while it awaits a handler, so it is written
        when the task sleeps and wakes rather than around every event."""
        self.in_flight = 0
        self._idle.set()
        self._ready.clear()
        self._asleep = True
        await self._ready.wait()

    async def run(self) -> None:
        batch = self.handler.batch
        if batch is not None:
            await self._run_batches(batch)
        else:
            await self._run_events()

    async def _run_events(self) -> None:
        queue = self._queue
        popleft = queue.popleft
        handler = self.handler
        # A plain async function is awaited directly: one coroutine per event instead of two.
        call = handler.caller(self.counters)
        # Bound once: the record is written before and after every event.
        enter = self.inflight.enter
        words, at = self.inflight.words, self.inflight.at
        self.in_flight = 1
        while True:
            if not queue:
                await self._sleep()
                self.in_flight = 1
                continue
            event = popleft()
            if self._room_cleared:
                self._room_cleared = False
                self._room.set()
            if enter(event):
                try:
                    await call(event)
                except Exception:
                    self._failed("handler failed", {"seq": event.seq, "event": event.name})
                except asyncio.CancelledError:
                    # A handler's own ``raise CancelledError`` (or a cancelled future it
                    # awaited) is the handler's failure; only a cancel of *this* task ends
                    # delivery, otherwise the shard would stall with a full backlog.
                    if _being_cancelled():
                        raise
                    self._failed(
                        "handler raised CancelledError", {"seq": event.seq, "event": event.name}
                    )
                words[at] = 0  # ShardSlot.leave(), inline
            seq = event.seq
            if seq is not None:
                self.checkpoint = (event._epoch, seq)
            self.delivered += 1
            del event  # an idle shard must not pin its last message (see _run_batches)

    async def _run_batches(self, handle_batch: BatchCallback) -> None:
        queue = self._queue
        while True:
            if not queue:
                await self._sleep()
                continue
            n = min(len(queue), self.batch_size)
            batch = [queue.popleft() for _ in range(n)]
            self.in_flight = n
            self._room_cleared = False
            self._room.set()
            last = batch[-1]
            handed = self.inflight.enter_batch(batch)
            if handed:
                try:
                    await handle_batch(handed)
                except Exception:
                    self._failed("handler batch failed", {"events": n, "first_seq": batch[0].seq})
                except asyncio.CancelledError:
                    if _being_cancelled():
                        raise
                    self._failed("handler batch raised CancelledError", {"events": n})
                self.inflight.leave()
            self.in_flight = 0
            if last.seq is not None:
                self.checkpoint = (last._epoch, last.seq)
            self.delivered += n
            # An idle shard must not pin its last messages: each event's raw body keeps the
            # whole inflated message alive (a GUILD_CREATE can be megabytes).
            del batch, last, handed
