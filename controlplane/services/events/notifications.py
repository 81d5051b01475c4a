"""Per-user notifications (listed and marked read through GET /api/v1/notifications) and job e-mails
through the SMTP server of the ``notifications`` settings (CP_SMTP_*).

E-mail goes through the standard library's smtplib in a worker thread (one short conversation per message:
optional STARTTLS, optional login, one message), so the event loop never blocks on a slow server.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.core.auth import Principal
from controlplane.core.errors import Code, NotFound
from controlplane.core.schemas.tenancy import NotificationPublic
from controlplane.core.settings import Settings
from controlplane.db.session import transaction
from controlplane.db.tables import Notification, utcnow
from controlplane.store import processes as store

ATTACHMENT_MAX = 10 * 1024 * 1024


def public(row: Notification) -> NotificationPublic:
    return NotificationPublic(
        id=row.id,
        kind=row.kind,
        title=row.title,
        body=row.body,
        run_id=row.run_id,
        created_at=row.created_at,
        read_at=row.read_at,
        read=row.read_at is not None,
    )


async def add(
    session: AsyncSession, *, tenant_id: str, user_id: str, kind: str, title: str, body: str, run_id: str | None
) -> None:
    await store.add_notification(
        session,
        Notification(tenant_id=tenant_id, user_id=user_id, kind=kind, title=title[:256], body=body, run_id=run_id),
    )


async def list_for(
    sessions: async_sessionmaker[AsyncSession], principal: Principal, *, unread_only: bool, limit: int
) -> list[NotificationPublic]:
    """The caller's own notifications, newest first (every role has some)."""
    async with sessions() as s:
        rows = await store.notifications(
            s, principal.tenant_id, principal.user_id, unread_only=unread_only, limit=limit
        )
        return [public(r) for r in rows]


async def mark_read(sessions: async_sessionmaker[AsyncSession], principal: Principal, item_id: str) -> None:
    """Mark one of the caller's notifications read (again is fine); another user's is a 404."""
    async with transaction(sessions) as s:
        row = await store.get_notification(s, principal.tenant_id, principal.user_id, item_id)
        if row is None:
            raise NotFound(f"notification {item_id} does not exist", code=Code.NOTIFICATION_NOT_FOUND)
        if row.read_at is None:
            row.read_at = utcnow()


async def mark_all_read(sessions: async_sessionmaker[AsyncSession], principal: Principal) -> int:
    async with transaction(sessions) as s:
        return await store.mark_all_read(s, principal.tenant_id, principal.user_id, utcnow())


def email_configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def _send(settings: Settings, message: EmailMessage) -> None:
    host = settings.smtp_host or ""
    with smtplib.SMTP(host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        smtp.ehlo()
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        smtp.send_message(message)


async def send_email(
    settings: Settings, *, to: str, subject: str, text: str, attachments: list[tuple[str, bytes]] | None = None
) -> str:
    """Send one e-mail; "sent", or "failed: <why>" (never raises: the job already ended)."""
    if not email_configured(settings):
        return "failed: no SMTP server configured (CP_SMTP_HOST)"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    for name, data in attachments or []:
        if len(data) <= ATTACHMENT_MAX:
            message.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    try:
        await asyncio.to_thread(_send, settings, message)
    except (OSError, smtplib.SMTPException) as exc:
        return f"failed: {type(exc).__name__}: {exc}"
    return "sent"


def describe(values: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in values.items())
