"""Operator alerts: what happened to which layer, why, and the run's link; sent to a webhook and through SMTP."""

from __future__ import annotations

import json
import smtplib
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from email.message import EmailMessage

from pydantic_settings import BaseSettings, SettingsConfigDict

KIND_WORDS = {
    "failed": "publication failed",
    "held": "publication held",
    "stale": "past its freshness window",
    "conflict": "new conflicts",
}


class AlertSettings(BaseSettings):
    """Where alerts go (GEOPORTAL_ALERTS_*); both channels are optional, an unset one is simply not used."""

    model_config = SettingsConfigDict(env_prefix="GEOPORTAL_ALERTS_", frozen=True)

    webhook_url: str | None = None  # receives each alert as a JSON POST
    smtp_host: str | None = None  # the relay; mail is sent when host, sender and recipients are set
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: str | None = None  # comma-separated addresses
    smtp_starttls: bool = False
    smtp_user: str | None = None
    smtp_password: str | None = None
    ui_url: str = "http://127.0.0.1:3000"  # the Dagster UI as operators reach it: links to runs
    timeout_seconds: float = 10.0

    def recipients(self) -> list[str]:
        return [address.strip() for address in (self.smtp_to or "").split(",") if address.strip()]

    def run_url(self, run_id: str | None) -> str | None:
        return f"{self.ui_url.rstrip('/')}/runs/{run_id}" if run_id else None


@dataclass(frozen=True)
class Alert:
    kind: str  # failed | held | stale | conflict
    layer: str
    reason: str
    run_url: str | None = None

    @property
    def subject(self) -> str:
        return f"[geoportal] {self.layer}: {KIND_WORDS[self.kind]}"

    def text(self) -> str:
        lines = [f"Layer: {self.layer}", f"What: {KIND_WORDS[self.kind]}", f"Reason: {self.reason}"]
        if self.run_url:
            lines.append(f"Run: {self.run_url}")
        return "\n".join(lines) + "\n"


def deliver(alert: Alert, settings: AlertSettings) -> list[str]:
    """Send through every configured channel; the channels that failed, each in one line (none: all sent)."""
    failures = []
    if settings.webhook_url:
        body = json.dumps({**asdict(alert), "subject": alert.subject, "text": alert.text()}, ensure_ascii=False)
        request = urllib.request.Request(
            settings.webhook_url, body.encode(), {"Content-Type": "application/json; charset=utf-8"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.timeout_seconds) as answer:
                answer.read()
        except (urllib.error.URLError, OSError) as error:
            failures.append(f"webhook {settings.webhook_url}: {error}")
    if settings.smtp_host and settings.smtp_from and settings.recipients():
        message = EmailMessage()
        message["Subject"], message["From"], message["To"] = alert.subject, settings.smtp_from, settings.recipients()
        message.set_content(alert.text())
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds) as relay:
                if settings.smtp_starttls:
                    relay.starttls()
                if settings.smtp_user:
                    relay.login(settings.smtp_user, settings.smtp_password or "")
                relay.send_message(message)
        except (smtplib.SMTPException, OSError) as error:
            failures.append(f"smtp {settings.smtp_host}:{settings.smtp_port}: {error}")
    return failures
