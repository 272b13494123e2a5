"""Where alerts go: a webhook (Slack, Teams, Mattermost or any HTTP receiver) and/or e-mail over SMTP.

Both are configured like every other service of the platform (:mod:`pipelines.settings`): an environment
variable first, else an Airflow connection, looked up through Airflow's secrets backends inside a task.

* webhook: ``PIPELINES_ALERT_WEBHOOK_URL``, else the connection ``pipelines_alerts_webhook`` (its extra
  ``url``, or the connection URI itself, e.g. ``AIRFLOW_CONN_PIPELINES_ALERTS_WEBHOOK=https://hooks.../T0/B0``);
  the body is JSON with a ``text`` field (what chat webhooks display) and the alert's fields under ``alert``;
* e-mail: recipients ``PIPELINES_ALERT_EMAIL_TO`` (or the connection's ``to`` extra) through
  ``PIPELINES_ALERT_SMTP_URL`` (or the connection ``pipelines_alerts_smtp``: host, port, login, password,
  extras ``from``, ``starttls``, ``ssl``).

Delivery uses the standard library only (urllib, smtplib), with a short timeout and a few retries on
transient errors, so a slow receiver cannot hold a failing task for long.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from pipelines.ops.config import SMTP_CONN_ID, WEBHOOK_CONN_ID

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
ATTEMPTS = 3


@dataclass(frozen=True)
class Webhook:
    url: str

    @property
    def label(self) -> str:
        parts = urlsplit(self.url)
        return f"webhook {parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"


@dataclass(frozen=True)
class Email:
    host: str
    port: int
    recipients: tuple[str, ...]
    sender: str
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False

    @property
    def label(self) -> str:
        return f"email {','.join(self.recipients)} via {self.host}:{self.port}"


Target = Webhook | Email


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _connection(conn_id: str) -> dict | None:
    from pipelines.settings import airflow_connection

    return airflow_connection(conn_id)


def webhook_target() -> Webhook | None:
    url = os.environ.get("PIPELINES_ALERT_WEBHOOK_URL")
    if not url:
        conn = _connection(WEBHOOK_CONN_ID)
        if conn:
            extra = conn.get("extra") or {}
            url = extra.get("url") or extra.get("webhook_url") or conn.get("uri")
            if url and "__extra__" in url:  # Airflow appends extras to a connection's URI: not part of the URL
                url = url.split("?", 1)[0]
    if not url:
        return None
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"the alert webhook must be an http(s) URL, got {urlsplit(url).scheme!r}")
    return Webhook(url)


def email_target() -> Email | None:
    raw = os.environ.get("PIPELINES_ALERT_SMTP_URL")
    conn = None if raw else _connection(SMTP_CONN_ID)
    if raw:
        parts = urlsplit(raw)
        extra = dict(parse_qsl(parts.query))
        host, port = parts.hostname, parts.port
        login, password = (unquote(parts.username) if parts.username else None,
                           unquote(parts.password) if parts.password else None)
        use_ssl = parts.scheme == "smtps" or _truthy(extra.get("ssl", ""))
    elif conn:
        extra = dict(conn.get("extra") or {})
        uri = conn.get("uri")
        data = conn.get("json") or {}
        parts = urlsplit(uri) if uri else None
        host = (parts.hostname if parts else None) or data.get("host")
        port = (parts.port if parts else None) or data.get("port")
        login, password = conn.get("login"), conn.get("password")
        use_ssl = _truthy(extra.get("ssl", ""))
    else:
        return None
    recipients = os.environ.get("PIPELINES_ALERT_EMAIL_TO") or extra.get("to") or ""
    to = tuple(r.strip() for r in str(recipients).split(",") if r.strip())
    if not host or not to:
        return None
    sender = extra.get("from") or extra.get("from_email") or f"airflow-alerts@{host}"
    return Email(host=host, port=int(port or (465 if use_ssl else 25)), recipients=to, sender=sender, login=login,
                 password=password, starttls=_truthy(extra.get("starttls", "")), use_ssl=use_ssl)


def configured_targets() -> list[Target]:
    """Every configured target (none configured: alerts are recorded only, and the page says so)."""
    return [t for t in (webhook_target(), email_target()) if t is not None]


# ----------------------------------------------------------------------------------------------- delivery
def post_webhook(target: Webhook, payload: Mapping[str, Any]) -> None:
    """POST the payload as JSON; retried on connection errors and 5xx/429, raised after the last attempt."""
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(target.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "ubm-pipelines-alerts/1"})
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
                resp.read()
                return
        except urllib.error.HTTPError as exc:
            if (exc.code < 500 and exc.code != 429) or attempt == ATTEMPTS:
                raise RuntimeError(f"{target.label} answered HTTP {exc.code}") from exc
        except OSError as exc:
            if attempt == ATTEMPTS:
                raise RuntimeError(f"{target.label} unreachable: {exc}") from exc
        time.sleep(0.5 * 2 ** (attempt - 1))


def send_email(target: Email, subject: str, text: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = target.sender
    message["To"] = ", ".join(target.recipients)
    message.set_content(text)
    context = ssl.create_default_context()
    smtp_cls = smtplib.SMTP_SSL if target.use_ssl else smtplib.SMTP
    kwargs = {"context": context} if target.use_ssl else {}
    with smtp_cls(target.host, target.port, timeout=TIMEOUT_S, **kwargs) as smtp:
        if target.starttls:
            smtp.starttls(context=context)
        if target.login:
            smtp.login(target.login, target.password or "")
        smtp.send_message(message)


def deliver(target: Target, subject: str, text: str, payload: Mapping[str, Any]) -> None:
    if isinstance(target, Webhook):
        post_webhook(target, payload)
    else:
        send_email(target, subject, text)
