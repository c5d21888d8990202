"""One supervised MQTT connection: reconnects, restores subscriptions, publishes at most once.

aiomqtt has no automatic reconnect (its message loop raises `MqttError` when the
broker goes away), so `MqttConnection.run()` supervises it: connect, restore every
subscription, announce "online" on `edge-agent/<client_id>/availability` (the last
will says "offline"), read and dispatch messages, and on loss wait an exponential
backoff with jitter and start again. The client id is fixed and the session is
persistent (clean_session=False) so QoS 1 messages for us survive a broker restart;
a short-lived reader (`edge-agent devices`) asks for a clean session instead, so it
leaves no session behind on the broker.

No message can take the memory: the connection speaks MQTT 5 and tells the broker
the largest packet it takes (CONNECT Maximum Packet Size: the larger of
`mqtt.max_discovery_bytes` and `mqtt.max_state_bytes`, plus room for the topic), so
mosquitto drops a bigger message for this client instead of sending it. A broker
that only speaks MQTT 3.1.1 is answered in 3.1.1 from then on; there a message is
received whole, and dropped by its length before anything copies, decodes or parses
it. A payload over its cap (discovery configs under the discovery prefix have theirs,
everything else the other) is dropped, counted by kind. Waiting messages are bounded
in number and in bytes.

Another client with the same client id throws this one off the broker (some MQTT 5
brokers say so, "session taken over"; mosquitto 2.0 just closes the connection);
several losses of a young connection in a short time are logged as a warning naming
that likely cause. A password sent without TLS to a host that is not this machine is
warned about once.

Publishing is at most once per `publish()` call. Each connection uses a fresh
client, so nothing paho still holds in flight is ever re-sent on the next
connection. The rule, in full:

* handed to the client (the packet may be on the wire): never sent again. A PUBACK
  (QoS 1; PUBCOMP at QoS 2; written to the socket at QoS 0, which has no
  acknowledgement) gives `PublishOutcome.ACKED`; a lost connection or the deadline
  before it gives
  `PublishOutcome.UNCONFIRMED` (it may or may not have reached the broker);
* not yet handed over (no connection, or the client refused it at once): the call
  waits for a connection, or retries every `_RETRY_PAUSE` s, until its deadline
  and sends it then, once; if the deadline passes first it raises `NotPublished`,
  and nothing was or will be sent. A ValueError or TypeError (bad input) is raised
  at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import math
import random
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import aiomqtt
from aiomqtt.exceptions import MqttCodeError, MqttConnectError
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from daemon.backoff import Backoff
from daemon.config import MqttSettings
from daemon.home.mqtt.intake import PayloadCaps, counting_queue
from daemon.home.mqtt.library_log import LIBRARY_LOG
from daemon.home.mqtt.messages import (
    MessageHandler,
    MqttMessage,
    MqttStats,
    NotPublished,
    PublishOutcome,
    topic_matches,
    valid_filter,
)

log = logging.getLogger(__name__)

_RETRY_PAUSE = 0.05  # between attempts when the client refuses a publish at once
# CONNACK codes for a refused login: MQTT 3.1.1 (4, 5) and as paho reports them (134, 135).
_LOGIN_REFUSED = frozenset({4, 5, 134, 135})
# CONNACK "unacceptable protocol version" (3.1.1) as paho reports it to an MQTT 5 client.
_NO_MQTT5 = frozenset({1, 132})
_TAKEN_OVER = 142  # MQTT 5 DISCONNECT: another client connected with our client id
_UNSPECIFIED = 128
_TOPIC_ROOM = 4096  # packet bytes besides the payload: header, topic, properties
_SESSION_FOREVER = 0xFFFFFFFF  # MQTT 5 session expiry: like clean_session=False in 3.1.1
# Several losses of a young connection within this window: someone shares our id.
_LOOP_LOSSES, _LOOP_WINDOW, _LOOP_YOUNG = 3, 30.0, 5.0


class Subscription:
    """A handler for one topic filter; `cancel()` removes it (and unsubscribes if last)."""

    def __init__(
        self,
        topic_filter: str,
        handler: MessageHandler,
        qos: int,
        on_cancel: Callable[[Subscription], None],
    ) -> None:
        self.topic_filter = topic_filter
        self.handler = handler
        self.qos = qos
        self._on_cancel = on_cancel

    def cancel(self) -> None:
        """Stop calling the handler (unsubscribes when it was the filter's last)."""
        self._on_cancel(self)


@dataclass
class _Session:
    client: aiomqtt.Client
    lost: asyncio.Future[None]
    started: float
    active: dict[str, int] = field(default_factory=dict)
    mqtt5: bool = False
    ids: dict[int, str] = field(default_factory=dict)  # subscription identifier -> filter


def _loss_reason(client: aiomqtt.Client) -> int | None:
    """The broker's reason code for ending the connection (MQTT 5 DISCONNECT), if any.

    aiomqtt 2.x raises a plain "Disconnected during message iteration" from its message
    iterator and keeps paho's reason in its private `_disconnected` future.
    """
    fut = getattr(client, "_disconnected", None)
    if not isinstance(fut, asyncio.Future) or not fut.done() or fut.cancelled():
        return None
    code = getattr(fut.exception(), "rc", None)
    value = getattr(code, "value", code)
    # 128 "unspecified" is also what paho says for a socket that just closed.
    return value if isinstance(value, int) and value not in (0, _UNSPECIFIED) else None


def _is_local(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MqttConnection:
    """A supervised MQTT client shared by the home code; see the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        availability_topic: str | None = None,
        keepalive: int = 30,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 10.0,
        connect_timeout: float = 10.0,
        op_timeout: float = 10.0,
        max_queued_messages: int = 10_000,
        max_queued_bytes: int = 32 << 20,
        clean_session: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        if not settings.host:
            raise ValueError("mqtt.host: no broker configured")
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("backoff: need 0 < backoff_initial <= backoff_max")
        self.settings = settings
        self.client_id = settings.client_id
        self.availability_topic = (
            f"edge-agent/{settings.client_id}/availability"
            if availability_topic is None
            else availability_topic
        )
        self.stats = MqttStats()
        self._keepalive = keepalive
        self._backoff = Backoff(backoff_initial, backoff_max, immediate_first=False, rng=rng)
        self._stable_after = stable_after
        self._connect_timeout = connect_timeout
        self._op_timeout = op_timeout
        self._max_queued = max_queued_messages
        self._max_queued_bytes = max_queued_bytes
        self._clean_session = clean_session
        self._tls = self._tls_context(settings)
        self.caps = PayloadCaps(
            self.stats,
            settings.discovery_prefix,
            settings.max_discovery_bytes,
            settings.max_state_bytes,
        )
        self.max_packet_bytes = (
            max(settings.max_discovery_bytes, settings.max_state_bytes) + _TOPIC_ROOM
        )
        self.mqtt5 = True  # until the broker refuses it
        self._losses: collections.deque[float] = collections.deque(maxlen=_LOOP_LOSSES)
        self._loop_warned_at = -math.inf
        self._loss_code: int | None = None
        if settings.password and not settings.tls and not _is_local(settings.host):
            log.warning(
                "MQTT: the password of %s goes to %s:%s unencrypted (mqtt.tls is off): "
                "anyone on the network path can read it; turn mqtt.tls on",
                repr(settings.username) if settings.username else "the MQTT user",
                settings.host,
                settings.port,
            )
        self._subs: dict[str, list[Subscription]] = {}
        self._wildcard_cache: list[str] | None = None
        self._sub_ids: dict[str, int] = {}
        self._session: _Session | None = None
        self._changed = asyncio.Event()
        self._dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._running = False
        self._closing = False  # the supervisor is saying goodbye; do not interrupt it
        self._stack: contextlib.AsyncExitStack | None = None

    @staticmethod
    def _tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
        if not settings.tls:
            return None
        cafile = str(settings.ca_file) if settings.ca_file else None
        return ssl.create_default_context(cafile=cafile)

    def __repr__(self) -> str:  # no password here, ever
        s = self.settings
        return f"MqttConnection({s.host}:{s.port}, client_id={s.client_id!r}, tls={s.tls})"

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        """Connected now (subscriptions restored, "online" sent)."""
        return self._session is not None and not self._session.lost.done()

    async def wait_connected(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """True once connected (subscriptions restored, "online" sent); False on timeout."""
        return await self._wait_until(lambda: self.connected, timeout)

    async def wait_subscribed(
        self,
        *subs: Subscription,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> bool:
        """True once the broker acknowledged every given subscription on this connection."""

        def ready() -> bool:
            session = self._session
            return (
                session is not None
                and not session.lost.done()
                and all(s.topic_filter in session.active for s in subs)
            )

        return await self._wait_until(ready, timeout)

    async def _wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float | None,  # noqa: ASYNC109
    ) -> bool:
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            return predicate()
        return True

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ---------------------------------------------------------- subscriptions

    def subscribe(
        self, topic_filter: str, handler: MessageHandler, *, qos: int = 1
    ) -> Subscription:
        """Call `handler` for messages matching `topic_filter`, on this and later connections.

        Returns at once; the SUBSCRIBE goes out on the current connection in the
        background (see `wait_subscribed`) and again after every reconnect.
        """
        if not valid_filter(topic_filter):
            raise ValueError(f"invalid MQTT topic filter {topic_filter!r}")
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        sub = Subscription(topic_filter, handler, qos, self._remove)
        self._subs.setdefault(topic_filter, []).append(sub)
        self._wildcard_cache = None
        self._dirty.set()
        return sub

    def resubscribe(self, *subs: Subscription) -> None:
        """Send SUBSCRIBE again for these filters, so the broker re-sends retained messages.

        Used when Home Assistant comes back online: re-reading the retained discovery
        configs catches devices that changed while nobody was listening.
        """
        session = self._session
        if session is None:
            return  # the next connection subscribes afresh anyway
        for sub in subs:
            session.active.pop(sub.topic_filter, None)
        self._dirty.set()

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.topic_filter)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._subs[sub.topic_filter]
                self._wildcard_cache = None
            self._dirty.set()

    def _wildcards(self) -> list[str]:
        if self._wildcard_cache is None:
            self._wildcard_cache = [f for f in self._subs if "+" in f or "#" in f]
        return self._wildcard_cache

    def _wanted(self) -> dict[str, int]:
        return {f: max(s.qos for s in subs) for f, subs in self._subs.items()}

    async def _apply_subscriptions(self, session: _Session) -> None:
        """SUBSCRIBE what is wanted and not active, UNSUBSCRIBE the rest.

        MQTT 5 brokers send a message once per matching subscription (mosquitto does), so
        over MQTT 5 each wildcard filter gets its own SUBSCRIBE with a subscription
        identifier, and a copy goes only to the handlers of the filter it came for.
        """
        wanted = self._wanted()
        add = [(f, q) for f, q in sorted(wanted.items()) if session.active.get(f) != q]
        drop = [f for f in session.active if f not in wanted]
        client = session.client
        for batch, batch_props in self._subscribe_batches(session, add):
            codes = await client.subscribe(
                batch, properties=batch_props, timeout=self._op_timeout
            )
            for (flt, qos), code in zip(batch, codes, strict=False):
                failed = getattr(code, "is_failure", False) or (
                    isinstance(code, int) and code >= 0x80
                )
                if failed:
                    self.stats.subscribe_failures += 1
                    log.warning("broker refused subscription to %s", flt)
                else:
                    session.active[flt] = qos
        if drop:
            await client.unsubscribe(drop, timeout=self._op_timeout)
            for flt in drop:
                session.active.pop(flt, None)
            for sub_id in [i for i, f in session.ids.items() if f in drop]:
                del session.ids[sub_id]
        if add or drop:
            self._notify()

    def _subscribe_batches(
        self, session: _Session, add: list[tuple[str, int]]
    ) -> list[tuple[list[tuple[str, int]], Properties | None]]:
        """The SUBSCRIBE packets for `add`: over MQTT 5 one per wildcard filter, with its id."""
        batches: list[tuple[list[tuple[str, int]], Properties | None]] = []
        if session.mqtt5:
            exact = [(f, q) for f, q in add if "+" not in f and "#" not in f]
            if exact:
                batches.append((exact, None))
            for flt, qos in add:
                if "+" in flt or "#" in flt:
                    sub_id = self._sub_id(flt)
                    props = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
                    props.SubscriptionIdentifier = sub_id
                    session.ids[sub_id] = flt
                    batches.append(([(flt, qos)], props))
        elif add:
            batches.append((add, None))
        return batches

    def _sub_id(self, topic_filter: str) -> int:
        """A subscription identifier per wildcard filter, the same on every connection."""
        sub_id = self._sub_ids.get(topic_filter)
        if sub_id is None:
            sub_id = self._sub_ids[topic_filter] = len(self._sub_ids) + 1
        return sub_id

    async def _sync_loop(self, session: _Session) -> None:
        """Follow subscribe()/cancel() calls while this connection lasts."""
        with contextlib.suppress(aiomqtt.MqttError):
            while not session.lost.done():
                await self._dirty.wait()
                if session.lost.done():
                    return
                self._dirty.clear()
                await self._apply_subscriptions(session)

    # ----------------------------------------------------------------- publish

    async def publish(
        self,
        topic: str,
        payload: str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - a deadline with its own outcome
    ) -> PublishOutcome:
        """Publish at most once; see the module docstring for the exact guarantee.

        Raises `NotPublished` when nothing was sent within `timeout` seconds. Unlike
        wrapping the call in `asyncio.timeout`, the deadline tells "never sent" apart
        from "sent but not acknowledged".
        """
        if not topic or "+" in topic or "#" in topic or "\x00" in topic:
            raise ValueError(f"invalid MQTT topic {topic!r}")
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._op_timeout if timeout is None else timeout)
        while True:
            session = await self._wait_session(deadline)
            handed = False

            async def send(client: aiomqtt.Client = session.client) -> None:
                nonlocal handed
                handed = True  # no await between here and paho taking the packet
                try:
                    await client.publish(topic, payload, qos=qos, retain=retain, timeout=math.inf)
                except (MqttCodeError, ValueError, TypeError):
                    handed = False  # refused synchronously: nothing went out
                    raise

            task = asyncio.create_task(send())
            try:
                remaining = max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait(
                    {task, session.lost}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                await _reap(task)
            error = task.exception() if task in done and not task.cancelled() else None
            if task in done and not task.cancelled() and error is None:
                self.stats.publishes_acked += 1
                return PublishOutcome.ACKED
            if handed:
                self.stats.publishes_unconfirmed += 1
                log.warning("publish to %s not acknowledged; it is not sent again", topic)
                return PublishOutcome.UNCONFIRMED
            if isinstance(error, ValueError | TypeError):  # bad input: no retry can help
                self.stats.publishes_not_sent += 1
                raise error
            # Refused at once (MqttCodeError) while the connection still looks alive, or
            # never started: nothing went out. Pause (a refusal is usually a connection
            # about to be declared lost), then try again, never past the deadline.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(_RETRY_PAUSE, max(0.0, deadline - loop.time()))):
                    await asyncio.shield(session.lost)
            if loop.time() >= deadline:
                self.stats.publishes_not_sent += 1
                why = f" (the MQTT client refused it: {error})" if error is not None else ""
                raise NotPublished(f"not sent to the MQTT broker in time{why}; nothing was sent")

    async def _wait_session(self, deadline: float) -> _Session:
        loop = asyncio.get_running_loop()
        while True:
            session = self._session
            if session is not None and not session.lost.done():
                return session
            if self._stop.is_set():
                self.stats.publishes_not_sent += 1
                raise NotPublished("the MQTT connection is stopped; nothing was sent")
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.stats.publishes_not_sent += 1
                raise NotPublished("not connected to the MQTT broker in time; nothing was sent")
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    # -------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        """Ask `run()` to say "offline", disconnect cleanly and return."""
        self._stop.set()
        self._notify()

    async def __aenter__(self) -> Self:
        self._stop.clear()  # a stopped connection may be entered again
        stack = contextlib.AsyncExitStack()
        tg = await stack.enter_async_context(asyncio.TaskGroup())
        tg.create_task(self.run())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        stack, self._stack = self._stack, None
        if stack is not None:
            # The body's exception is the caller's; do not let the TaskGroup wrap it.
            await stack.__aexit__(None, None, None)

    async def run(self) -> None:
        """Stay connected until `stop()` (or cancellation)."""
        if self._running:
            raise RuntimeError("MqttConnection.run() is already running")
        self._running = True
        self._closing = False
        try:
            async with asyncio.TaskGroup() as tg:
                supervisor = tg.create_task(self._supervise())
                stopper = tg.create_task(self._stop.wait())
                await asyncio.wait({supervisor, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                supervisor.cancel()
                while not supervisor.done():
                    await asyncio.wait({supervisor}, timeout=1.0)
                    if not supervisor.done() and not self._closing:
                        supervisor.cancel()  # the first request was lost (see _cancel_and_wait)
        finally:
            self._running = False

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.stats.connect_attempts += 1
            started = loop.time()
            lasted: float | None = None
            self._loss_code = None
            try:
                lasted = await self._connect_and_serve()
            except aiomqtt.MqttError as exc:
                self.stats.connect_failures += 1
                if self._refuses_mqtt5(exc):
                    continue
                self.stats.last_error = self._explain(exc)
                log.warning("MQTT connect to %s failed: %s", self._where(), self.stats.last_error)
            except Exception as exc:  # a bug or an odd socket error: keep trying
                self.stats.connect_failures += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("MQTT connection to %s failed", self._where())
            if lasted is not None:
                self._note_loss(lasted, loop.time())
            if lasted is not None and lasted >= self._stable_after:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("MQTT reconnecting in %.2fs (after %.1fs)", delay, loop.time() - started)
            await asyncio.sleep(delay)

    def _refuses_mqtt5(self, exc: aiomqtt.MqttError) -> bool:
        """A 3.1.1-only broker refused MQTT 5: speak 3.1.1 to it from now on (True)."""
        code = getattr(exc, "rc", None)
        if not (self.mqtt5 and isinstance(exc, MqttConnectError)):
            return False
        if getattr(code, "value", code) not in _NO_MQTT5:
            return False
        self.mqtt5 = False
        self.stats.mqtt5_refused += 1
        log.warning(
            "MQTT broker %s does not speak MQTT 5: using 3.1.1 (it cannot be told the "
            "largest message we take; larger ones are received, then dropped)",
            self._where(),
        )
        return True

    def _note_loss(self, lasted: float, now: float) -> None:
        """Warn when the connection keeps being lost soon after it was made: the usual
        cause is another client with our client id (the broker keeps only one)."""
        taken = self._loss_code == _TAKEN_OVER
        if taken:
            self.stats.session_takeovers += 1
        if not (taken or lasted < _LOOP_YOUNG) or self._stop.is_set() or self._closing:
            return
        self._losses.append(now)
        if len(self._losses) < _LOOP_LOSSES or now - self._losses[0] > _LOOP_WINDOW:
            return
        if now - self._loop_warned_at < _LOOP_WINDOW:
            return
        self._loop_warned_at = now
        self.stats.connect_loops += 1
        cause = (
            "the broker says another client took over our session"
            if taken
            else "the likely cause is another client taking over our session"
        )
        log.warning(
            "MQTT connection to %s as %r was lost %d times within %.0f s: %s. Another "
            "daemon (or a copied config) uses the same mqtt.client_id; give each its own",
            self._where(),
            self.client_id,
            len(self._losses),
            now - self._losses[0],
            cause,
        )

    def _explain(self, exc: aiomqtt.MqttError) -> str:
        """The error, with the settings to check when it is a login or certificate problem.

        Never the password: only the user name is named.
        """
        code = getattr(exc, "rc", None)
        value = getattr(code, "value", code)
        if isinstance(exc, MqttConnectError) and value in _LOGIN_REFUSED:
            who = f"user {self.settings.username!r}" if self.settings.username else "anonymous"
            return (
                f"the broker refused the login of {who} ({exc}); "
                "check mqtt.username and mqtt.password"
            )
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return f"{exc}; check mqtt.ca_file (the CA that signed the broker's certificate)"
        return str(exc)

    def _where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        will = (
            aiomqtt.Will(self.availability_topic, "offline", qos=1, retain=True)
            if self.availability_topic
            else None
        )
        props: Properties | None = None
        if self.mqtt5:  # the session kept as long as 3.1.1's clean_session=False keeps it
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.MaximumPacketSize = self.max_packet_bytes
            if not self._clean_session:
                props.SessionExpiryInterval = _SESSION_FOREVER
        return aiomqtt.Client(
            s.host,
            s.port,
            username=s.username or None,
            password=s.password.get_secret_value() if s.password else None,
            identifier=s.client_id,
            will=will,
            keepalive=self._keepalive,
            # aiomqtt's default wait: CONNACK (a socket closed before it is only noticed
            # by this timeout) and the clean DISCONNECT. Other calls pass their own.
            timeout=self._connect_timeout,
            tls_context=self._tls,
            queue_type=counting_queue(self.stats, self.caps.oversized, self._max_queued_bytes),
            max_queued_incoming_messages=self._max_queued,
            # Small command messages must not wait for Nagle + delayed ACK (~40 ms each).
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
            protocol=aiomqtt.ProtocolVersion.V5 if self.mqtt5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if self.mqtt5 else self._clean_session,
            clean_start=self._clean_session if self.mqtt5 else MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
            logger=LIBRARY_LOG,
        )

    async def _connect_and_serve(self) -> float:
        """One connection from connect to loss; returns how long it was up."""
        loop = asyncio.get_running_loop()
        client = self._client()  # fresh client: nothing in flight carries over
        async with client:
            session = _Session(client, loop.create_future(), loop.time(), mqtt5=self.mqtt5)
            try:
                await self._apply_subscriptions(session)
                if self.availability_topic:
                    await client.publish(self.availability_topic, "online", qos=1, retain=True)
                self.stats.connects += 1
                self._session = session
                self._dirty.set()
                self._notify()
                log.info("MQTT connected to %s as %s", self._where(), self.client_id)
                async with asyncio.TaskGroup() as tg:
                    sync = tg.create_task(self._sync_loop(session))
                    try:
                        await self._read_loop(session)
                    finally:
                        self._end(session)  # also tells the sync loop to finish
                        await _cancel_and_wait(sync)
            except asyncio.CancelledError:
                self._closing = True
                self._end(session)
                await self._say_offline(client)
                raise
            finally:
                self._end(session)
            return loop.time() - session.started

    def _end(self, session: _Session) -> None:
        self._dirty.set()
        if not session.lost.done():
            session.lost.set_result(None)
            if session.active or self._session is session:
                self.stats.disconnects += 1
        if self._session is session:
            self._session = None
        self._notify()

    async def _say_offline(self, client: aiomqtt.Client) -> None:
        """A clean disconnect suppresses the will, so publish "offline" ourselves."""
        if not self.availability_topic:
            return
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2.0):
                await client.publish(self.availability_topic, "offline", qos=1, retain=True)

    async def _read_loop(self, session: _Session) -> None:
        try:
            async for message in session.client.messages:
                self._dispatch(message, session)
        except aiomqtt.MqttError as exc:
            self._loss_code = _loss_reason(session.client)
            why = f"{exc} (reason code {self._loss_code})" if self._loss_code else str(exc)
            self.stats.last_error = why
            log.warning("MQTT connection to %s as %s lost: %s", self._where(), self.client_id, why)

    def _dispatch(self, message: aiomqtt.Message, session: _Session | None = None) -> None:
        self.stats.messages_received += 1
        raw: object = message.payload
        if isinstance(raw, bytes | bytearray):
            payload = bytes(raw)
        else:
            payload = b"" if raw is None else str(raw).encode()
        msg = MqttMessage(message.topic.value, payload, message.qos, message.retain)
        # An exact filter is one dict lookup; only wildcard filters are matched one by one
        # (an inventory of hundreds of devices has thousands of exact ones).
        if session is not None and session.mqtt5:
            # One copy per subscription: an identifier names its wildcard filter, a copy
            # without one came for the exact filter.
            ids = getattr(message.properties, "SubscriptionIdentifier", None) or []
            wild = [session.ids[i] for i in ids if i in session.ids]
            matched = wild if ids else ([msg.topic] if msg.topic in self._subs else [])
        else:
            matched = [msg.topic] if msg.topic in self._subs else []
            matched += [f for f in self._wildcards() if topic_matches(msg.topic, f)]
        for flt in matched:
            for sub in list(self._subs.get(flt, ())):
                try:
                    sub.handler(msg)
                except Exception:
                    self.stats.handler_errors += 1
                    log.exception("MQTT handler for %s failed", flt)


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel until the task is done.

    Python 3.11's `asyncio.wait_for` (used inside aiomqtt) can swallow a
    cancellation that races with its inner future completing; asking again makes
    shutdown reliable instead of hanging.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)


async def _reap(task: asyncio.Task[None]) -> None:
    """Make sure a helper task is finished and its outcome retrieved (no orphans)."""
    await _cancel_and_wait(task)
    if not task.cancelled():
        task.exception()
