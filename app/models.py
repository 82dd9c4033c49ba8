"""Imports every model so the metadata (and Alembic) sees the whole schema."""

from app.applications.models import Application, ApplicationOrigin, AuthorizationCode
from app.audit.models import AuditEvent
from app.connections.models import Connection
from app.console.models import ConsoleClient, ConsoleMember
from app.credentials.models import (
    DeviceCredential,
    MfaEnrolment,
    Passkey,
    PasswordResetRequest,
    RecoveryCode,
)
from app.mail.models import EmailDelivery
from app.portability.models import TransferChunk, TransferError, TransferJob
from app.properties.models import Property
from app.secrets.models import Secret
from app.tenants.models import ApiKey, Tenant
from app.tokens.models import AuthSession, CustomTokenUse, RefreshToken, SigningKey
from app.users.models import Identity, Policy, User
from app.webhooks.models import WebhookEndpoint, WebhookMessage

__all__ = [
    "ApiKey",
    "Application",
    "ApplicationOrigin",
    "AuthorizationCode",
    "AuditEvent",
    "AuthSession",
    "Connection",
    "ConsoleClient",
    "ConsoleMember",
    "CustomTokenUse",
    "DeviceCredential",
    "EmailDelivery",
    "Identity",
    "MfaEnrolment",
    "Passkey",
    "PasswordResetRequest",
    "Policy",
    "Property",
    "RecoveryCode",
    "RefreshToken",
    "Secret",
    "SigningKey",
    "Tenant",
    "TransferChunk",
    "TransferError",
    "TransferJob",
    "User",
    "WebhookEndpoint",
    "WebhookMessage",
]
