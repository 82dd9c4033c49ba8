"""Shapes of webhook endpoints and their delivery log on the platform surface."""

from __future__ import annotations

import marshmallow as ma

from app.api.fields import IsoDateTime, OutputSchema, StrictBoolean, StrictSchema
from app.webhooks.events import EVENT_TYPES
from app.webhooks.service import MESSAGE_STATUSES
from app.webhooks.targets import MAX_URL_LENGTH


def _url(**kwargs: object) -> ma.fields.String:
    return ma.fields.String(
        validate=ma.validate.Length(min=1, max=MAX_URL_LENGTH),
        metadata={
            "description": "Where events are POSTed: https (http only where "
            "WEBHOOK_ALLOW_HTTP); never contacted by registering it"
        },
        **kwargs,  # type: ignore[arg-type]
    )


def _event_types() -> ma.fields.List:
    return ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(EVENT_TYPES)),
        validate=ma.validate.Length(max=len(EVENT_TYPES)),
        metadata={"description": "The event types sent (empty: all)"},
    )


def _description() -> ma.fields.String:
    return ma.fields.String(validate=ma.validate.Length(max=255))


class CreateWebhookSchema(StrictSchema):
    url = _url(required=True)
    event_types = _event_types()
    enabled = StrictBoolean()
    description = _description()


class PatchWebhookSchema(StrictSchema):
    url = _url()
    event_types = _event_types()
    enabled = StrictBoolean()
    description = _description()


class WebhookSchema(OutputSchema):
    id = ma.fields.String()
    url = ma.fields.String()
    event_types = ma.fields.List(ma.fields.String())
    enabled = ma.fields.Boolean()
    description = ma.fields.String()
    disabled_reason = ma.fields.String(
        allow_none=True,
        metadata={"description": "`failing`: disabled after 5 days of failed deliveries"},
    )
    created_at = IsoDateTime()
    updated_at = IsoDateTime()


class IssuedWebhookSchema(WebhookSchema):
    secret = ma.fields.String(
        metadata={"description": "The signing secret (`whsec_…`), shown in this answer only"}
    )


class MessageQuerySchema(StrictSchema):
    status = ma.fields.String(validate=ma.validate.OneOf(MESSAGE_STATUSES))
    limit = ma.fields.Integer(validate=ma.validate.Range(min=1, max=100))
    cursor = ma.fields.String(validate=ma.validate.Length(max=512))


class WebhookMessageSchema(OutputSchema):
    id = ma.fields.String(metadata={"description": "The `webhook-id` every attempt sends"})
    event_type = ma.fields.String()
    status = ma.fields.String(metadata={"enum": list(MESSAGE_STATUSES)})
    attempts = ma.fields.Integer()
    last_status_code = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    last_attempt_at = IsoDateTime()
    next_attempt_at = IsoDateTime()
    created_at = IsoDateTime()


class WebhookMessagePageSchema(OutputSchema):
    items = ma.fields.List(ma.fields.Nested(WebhookMessageSchema))
    next_cursor = ma.fields.String(allow_none=True)
