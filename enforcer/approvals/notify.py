"""Approval notifications: MQTT (aiomqtt, QoS 1) and webhooks (httpx, JSON or Slack-compatible).

Owns: delivering every approval event (requested, approved, rejected, timed_out,
withdrawn, executed, expired, abandoned) to the configured destinations, with
retries, off the statement's path.
Never: blocks or fails an approval. ``publish`` only queues; a destination that
is down is retried with backoff and logged, and events queue up (bounded) until
it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from typing import Any

from enforcer.config import MQTTNotifyConfig, WebhookConfig

log = logging.getLogger("pgwarden.approvals")

_MAX_QUEUED = 10_000


def event_text(event: str, doc: dict[str, Any], public_url: str = "") -> str:
    """One line for people (Slack and similar)."""
    who = f" by {doc['by']}" if doc.get("by") and event not in ("requested",) else ""
    why = f": {doc['reason']}" if doc.get("reason") else ""
    link = f" {public_url.rstrip('/')}/approvals/{doc['approval_id']}" if public_url else ""
    sql = doc.get("sql", "")
    if len(sql) > 300:
        sql = sql[:300] + "…"
    return (
        f"[pgwarden] {doc['approval_id']} {event}{who}{why} — {doc.get('subject')} on "
        f"{doc.get('connection')}: `{sql}`{link}"
    )


class _Channel:
    """One destination with its own queue and retry loop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(_MAX_QUEUED)
        self.task: asyncio.Task[None] | None = None
        self.delivered = 0

    def put(self, event: str, doc: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((event, doc))
        except asyncio.QueueFull:
            log.error(
                "notification queue of %s is full; dropping %s %s",
                self.name,
                doc.get("approval_id"),
                event,
                extra={"event": "notification_dropped"},
            )


class Notifier:
    def __init__(
        self,
        *,
        mqtt: MQTTNotifyConfig | None = None,
        webhooks: tuple[WebhookConfig, ...] = (),
        public_url: str = "",
        retry_max: float = 30.0,
    ) -> None:
        self.mqtt = mqtt
        # Read now, so that a missing secret stops the gateway at start, not the first event.
        self._mqtt_password = mqtt.password.read() if mqtt is not None and mqtt.password else None
        self.webhooks = webhooks
        self.public_url = public_url
        self.retry_max = retry_max
        self._channels: list[tuple[_Channel, Any]] = []
        if mqtt is not None:
            self._channels.append((_Channel(f"mqtt://{mqtt.host}:{mqtt.port}"), self._run_mqtt))
        for hook in webhooks:
            self._channels.append((_Channel(hook.url.split("?", 1)[0]), self._webhook_runner(hook)))

    async def start(self) -> None:
        for channel, runner in self._channels:
            channel.task = asyncio.create_task(runner(channel), name=f"notify {channel.name}")

    async def stop(self, drain: float = 2.0) -> None:
        """Give queued events a moment to go out, then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        while any(not c.queue.empty() for c, _ in self._channels) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for channel, _ in self._channels:
            if channel.task is not None:
                channel.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await channel.task

    def publish(self, event: str, doc: dict[str, Any]) -> None:
        for channel, _ in self._channels:
            channel.put(event, doc)

    # ------------------------------------------------------------------ MQTT
    async def _run_mqtt(self, channel: _Channel) -> None:
        import aiomqtt

        assert self.mqtt is not None
        target = self.mqtt
        tls_context = None
        if target.tls:
            tls_context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
        backoff = 0.5
        pending: tuple[str, dict[str, Any]] | None = None
        while True:
            try:
                async with aiomqtt.Client(
                    target.host,
                    target.port,
                    username=target.username,
                    password=self._mqtt_password,
                    tls_context=tls_context,
                    identifier=None,
                    timeout=10,
                ) as client:
                    backoff = 0.5
                    while True:
                        if pending is None:
                            pending = await channel.queue.get()
                        event, doc = pending
                        topic = f"{target.topic_prefix}/{event}"
                        payload = json.dumps({"event": event, **doc}, default=str)
                        await client.publish(topic, payload, qos=1)
                        pending = None
                        channel.delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker is down or refused us: retry, never lose the event
                log.warning(
                    "MQTT notification to %s failed (%s); retrying in %.1fs",
                    channel.name,
                    exc,
                    backoff,
                    extra={"event": "notification_failed"},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.retry_max)

    # ------------------------------------------------------------------ webhooks
    def _webhook_runner(self, hook: WebhookConfig) -> Any:
        async def run(channel: _Channel) -> None:
            import httpx

            async with httpx.AsyncClient(timeout=10) as client:
                while True:
                    event, doc = await channel.queue.get()
                    if hook.format == "slack":
                        body: dict[str, Any] = {"text": event_text(event, doc, self.public_url)}
                    else:
                        body = {"event": event, **doc}
                    backoff = 0.5
                    while True:
                        try:
                            resp = await client.post(hook.url, json=body, headers=dict(hook.headers))
                            if resp.status_code < 300:
                                channel.delivered += 1
                                break
                            if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                                log.error(
                                    "webhook %s refused %s %s with HTTP %d; not retried",
                                    channel.name,
                                    doc.get("approval_id"),
                                    event,
                                    resp.status_code,
                                    extra={"event": "notification_failed"},
                                )
                                break
                            problem = f"HTTP {resp.status_code}"
                        except httpx.HTTPError as exc:
                            problem = f"{type(exc).__name__}: {exc}"
                        log.warning(
                            "webhook %s failed (%s); retrying in %.1fs",
                            channel.name,
                            problem,
                            backoff,
                            extra={"event": "notification_failed"},
                        )
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, self.retry_max)

        return run
