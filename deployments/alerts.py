"""Alerts: a failed or crashed scheduled refresh notifies a webhook (Slack, Teams, PagerDuty, any HTTP receiver).

    lmpipe alerts --webhook-url URL              # or LMPIPE_ALERT_WEBHOOK_URL=URL lmpipe alerts (keeps a secret URL
                                                 # out of shell history); against PREFECT_API_URL (+ auth string)

Declared here, created by that one command, idempotently: a ``CustomWebhookNotificationBlock`` named
``lmpipe-alerts`` holding the URL (on the server, never in the repo), and one Prefect automation per watched
deployment, reacting to the flow run's ``prefect.flow-run.Failed`` / ``prefect.flow-run.Crashed`` events and sending
the notification (subject and body templated from the flow run). Running it again replaces both.
"""

from __future__ import annotations

import os
from typing import Any

from prefect.automations import Automation
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture

BLOCK_NAME = "lmpipe-alerts"
WATCHED = ("monthly-refresh",)  # the scheduled deployments (deployments/serve.py, deployments/prefect.yaml)
SUBJECT = "lmpipe: {{ flow_run.name }} of {{ deployment.name }} is {{ flow_run.state.name }}"
BODY = (
    "Flow run {{ flow_run.name }} ({{ flow_run.id }}) of deployment {{ deployment.name }} ended "
    "{{ flow_run.state.name }}: {{ flow_run.state.message }}"
)


def automation_name(deployment: str) -> str:
    return f"lmpipe: {deployment} failed or crashed"


def refresh_alert(deployment: str, block_document_id: Any) -> Automation:
    """The automation for one deployment: any failed or crashed flow run of it → one notification."""
    return Automation(
        name=automation_name(deployment),
        description=f"Notify {BLOCK_NAME} when a run of {deployment} fails or crashes (lmpipe alerts).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "deployment", "prefect.resource.name": deployment},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=SUBJECT, body=BODY)],
    )


def create_alerts(webhook_url: str | None = None, deployments: tuple[str, ...] = WATCHED) -> list[Automation]:
    """Create (or replace) the webhook block and the automations; returns the automations created."""
    url = webhook_url or os.environ.get("LMPIPE_ALERT_WEBHOOK_URL")
    if not url:
        raise ValueError("give --webhook-url or set LMPIPE_ALERT_WEBHOOK_URL")
    block = CustomWebhookNotificationBlock(
        name="lmpipe",
        url=url,
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
        secrets={},
    )
    block_id = block.save(BLOCK_NAME, overwrite=True)
    created = []
    for deployment in deployments:
        for old in _existing(automation_name(deployment)):
            old.delete()
        created.append(refresh_alert(deployment, block_id).create())
    return created


def _existing(name: str) -> list[Automation]:
    try:
        found = Automation.read(name=name)
    except ValueError:  # none by that name
        return []
    return found if isinstance(found, list) else [found]
