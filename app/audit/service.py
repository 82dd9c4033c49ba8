"""Record audit events, list them newest first with keyset paging (filtered by user,
action, actor and time), and count sign-ins and sign-ups per day."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from app.audit import settled
from app.audit.models import AuditEvent, PlatformEvent
from app.core import metrics, security
from app.core.db import db, utcnow
from app.core.errors import Invalid
from app.core.pagination import MAX_LIMIT, Page, paginate_by_creation

# Fixed names clients filter on (SPEC §8), plus the hosted sign-in's own (issue 19):
# `user.email_verified` (a verification link was used) and `token.code_reused` (an
# authorization code presented twice; the session it started is ended); issue 24's
# `user.password_rehashed` (an imported hash replaced by argon2id at a sign-in); issue 25's
# account page: `session.revoked` (sessions signed out there) and `user.reauthenticated`
# (the password entered again before a credential change).
ACTIONS = frozenset(
    {
        "user.created",
        "user.deleted",
        "user.signed_in",
        "user.signin_failed",
        "user.password_changed",
        "user.password_rehashed",
        "user.blocked",
        "token.custom_issued",
        "token.refresh_reused",
        "secret.value_read",
        "identity.linked",
        "identity.unlinked",
        "mfa.enrolled",
        "mfa.removed",
        "mfa.recovery_code_used",
        "mfa.recovery_codes_regenerated",
        "password_reset.requested",
        "password_reset.confirmed",
        "user.email_verified",
        "token.code_reused",
        "users.imported",
        "users.exported",
        "session.revoked",
        "user.reauthenticated",
        "passkey.registered",
        "passkey.removed",
        "passkey.clone_detected",
        # issue 25: a hosted sign-up with an address already registered (no account made,
        # its owner mailed).
        "user.signup_attempted",
        # issue 26: changes webhooks announce, and the endpoints' own story.
        "user.updated",
        "application.created",
        "application.deleted",
        # issue 28 (the console's APIs): a confidential app's client secret replaced.
        "application.secret_rotated",
        "webhook.created",
        "webhook.updated",
        "webhook.deleted",
        "webhook.secret_rotated",
        "webhook.disabled",
        # issue 28: a delivery sent again by hand (API or console), so the trail shows it.
        "webhook.message_replayed",
        # issue 28: who may use the admin console (app.console).
        "console.member_granted",
        "console.member_revoked",
        # issue 28: the rest of what an admin changes, so the console's (and the API's) key
        # and connection changes are in the trail too.
        "api_key.created",
        "api_key.revoked",
        "connection.created",
        "connection.updated",
        "connection.deleted",
        # the console's Settings page (issue 28): which tenant settings a member changed.
        "tenant.settings_changed",
    }
)
_SIGNIN_ACTIONS = frozenset({"user.signed_in", "user.signin_failed"})
_FORBIDDEN_DATA_KEYS = frozenset(
    {"password", "token", "secret", "value", "refresh_token", "password_hash", "hash"}
)


# Called with every event recorded, in its transaction (the webhooks' outbox, wired by
# create_app): what the audit log says happened is what they announce.
AuditListener = Callable[[AuditEvent, Session], None]
_LISTENERS: list[AuditListener] = []


def listen(listener: AuditListener) -> None:
    """Call `listener(event, session)` for every event recorded from now on (once each)."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def record(
    *,
    action: str,
    actor: str,
    user_id: str | None = None,
    target: str | None = None,
    ip: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
    session: Session | None = None,
    written_by_caller: bool = False,
) -> AuditEvent:
    """Add one audit event to the current transaction (tenant from the current scope), or
    to `session` (an `independent_write()`: kept even if the request then fails).

    `written_by_caller`: the event goes into no session; the caller inserts its row in the
    very statement that makes the change (a sign-in's one write, app.tokens.login). It is
    checked and handed to the listeners all the same, now, in the request's unit of work:
    what they write there (the webhooks' outbox rows) opens its transaction, and the
    caller's statement then joins it (core.prepared.write), so the two commit together."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    data = data or {}
    leaked = _FORBIDDEN_DATA_KEYS & set(data)
    if leaked:
        raise ValueError(f"audit data must not hold {sorted(leaked)}")
    event = AuditEvent(
        id=security.random_hex(16),
        action=action,
        actor=actor,
        user_id=user_id,
        target=target,
        ip=ip,
        data=data,
        created_at=at or utcnow(),
    )
    if not written_by_caller:
        (session or db.session).add(event)
    for listener in _LISTENERS:
        listener(event, session or db.session)
    if action in _SIGNIN_ACTIONS:
        metrics.count_signin(action == "user.signed_in")
    return event


PLATFORM_ACTIONS = frozenset({"tenant.deleted", "encryption.rotated"})


def record_platform_event(
    *, action: str, actor: str, target: str, ip: str | None, data: dict[str, Any]
) -> PlatformEvent:
    """Add one platform event (no tenant) to the current transaction."""
    if action not in PLATFORM_ACTIONS:
        raise ValueError(f"unknown platform action {action!r}")
    event = PlatformEvent(
        id=security.random_hex(16),
        action=action,
        actor=actor,
        target=target,
        ip=ip,
        data=data,
        created_at=utcnow(),
    )
    db.session.add(event)
    return event


def list_platform_events(
    *, action: str | None = None, limit: int | None = None, cursor: str | None = None
) -> Page[Any]:
    """Platform events (of one `action` when given), newest first."""
    query = select(PlatformEvent)
    if action is not None:
        query = query.where(PlatformEvent.action == action)
    return paginate_by_creation(
        query,
        created_col=PlatformEvent.created_at,
        id_col=PlatformEvent.id,
        limit=limit,
        cursor=cursor,
        newest_first=True,
    )


# The most rows one CSV export answers (newest first); the answer's next cursor continues.
EXPORT_MAX_ROWS = 10_000


def list_events(
    *,
    user_id: str | None = None,
    action: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    most: int = MAX_LIMIT,
) -> Page[AuditEvent]:
    """The current tenant's events, newest first, optionally filtered by user, action,
    actor and time (`since` inclusive, `until` exclusive); keyset paged with the filters
    (a cursor continues the same filtered set). `most`: the largest page allowed
    (EXPORT_MAX_ROWS for an export). Invalid cursor, limit, or `since` after `until`."""
    if since is not None and until is not None and since > until:
        raise Invalid(
            "from must not be after to", code="invalid_range", fields={"from": ["after to"]}
        )
    query = select(AuditEvent)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if since is not None:
        query = query.where(AuditEvent.created_at >= since)
    if until is not None:
        query = query.where(AuditEvent.created_at < until)
    return paginate_by_creation(
        query,
        created_col=AuditEvent.created_at,
        id_col=AuditEvent.id,
        limit=limit,
        cursor=cursor,
        newest_first=True,
        most=most,
    )


# The audit actions the daily stats count (Auth0's logins and signups, plus failed logins).
SIGNIN, SIGNIN_FAILED, SIGNUP = "user.signed_in", "user.signin_failed", "user.created"
STATS_MAX_DAYS = 90
STATS_DEFAULT_DAYS = 30
ACTIVE_USER_DAYS = 30


@dataclass
class DailyStats:
    """One UTC day's counts; `created_at`/`updated_at`: its first and last counted event
    (None for a day without any)."""

    date: date
    logins: int = 0
    signups: int = 0
    failed_logins: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def starts_at(self) -> datetime:
        """The day's first moment (UTC), as Auth0 names the day."""
        return datetime.combine(self.date, time.min, UTC)


def _utc_day(column: Any) -> Any:
    # A timestamptz's UTC calendar day; SQLite (the embedded mode) stores naive UTC text.
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def daily_stats(*, first: date | None = None, last: date | None = None) -> list[DailyStats]:
    """Sign-ins, sign-ups and failed sign-ins of the current tenant per UTC day, every day
    from `first` (default: STATS_DEFAULT_DAYS days before `last`) to `last` (default:
    today) inclusive, oldest first. One grouped query over the (tenant_id, action, created_at)
    index, for the days whose counts Redis does not keep (audit.settled: days that ended
    more than a day ago are counted once an hour). Invalid `invalid_range` when `first` is
    after `last` or the range is longer than STATS_MAX_DAYS days."""
    today = utcnow().date()
    last = last or today
    first = first or last - timedelta(days=STATS_DEFAULT_DAYS - 1)
    if first > last:
        raise Invalid("from must not be after to", code="invalid_range")
    if (last - first).days >= STATS_MAX_DAYS:
        raise Invalid(f"The range is at most {STATS_MAX_DAYS} days", code="invalid_range")
    days = {
        first + timedelta(days=n): DailyStats(date=first + timedelta(days=n))
        for n in range((last - first).days + 1)
    }
    settled_days = [when for when in days if when < today - timedelta(days=1)]
    kept = settled.read(settled_days)
    for when, values in kept.items():
        days[when] = _from_kept(when, values)
    counted = [when for when in days if when not in kept]
    if counted:
        _count_days(days, min(counted), max(counted))
        settled.keep({when: _kept(days[when]) for when in counted if when in settled_days})
    return list(days.values())


_KEPT_COUNTS = ("logins", "signups", "failed_logins")


def _kept(stats: DailyStats) -> dict[str, Any]:
    moments = {name: getattr(stats, name) for name in ("created_at", "updated_at")}
    return {
        **{name: getattr(stats, name) for name in _KEPT_COUNTS},
        **{name: moment.isoformat() if moment else None for name, moment in moments.items()},
    }


def _from_kept(when: date, values: dict[str, Any]) -> DailyStats:
    moments = {
        name: datetime.fromisoformat(values[name]) if values.get(name) else None
        for name in ("created_at", "updated_at")
    }
    return DailyStats(date=when, **{name: int(values[name]) for name in _KEPT_COUNTS}, **moments)


def _count_days(days: dict[date, DailyStats], first: date, last: date) -> None:
    """Count the events of the days from `first` to `last` into `days`."""
    start = datetime.combine(first, time.min, UTC)
    end = datetime.combine(last + timedelta(days=1), time.min, UTC)
    day = _utc_day(AuditEvent.created_at).label("day")
    rows = db.session.execute(
        select(
            day,
            AuditEvent.action,
            func.count(),
            func.min(AuditEvent.created_at),
            func.max(AuditEvent.created_at),
        )
        .where(
            AuditEvent.action.in_((SIGNIN, SIGNIN_FAILED, SIGNUP)),
            AuditEvent.created_at >= start,
            AuditEvent.created_at < end,
        )
        .group_by(day, AuditEvent.action)
    )
    field_of = {SIGNIN: "logins", SIGNIN_FAILED: "failed_logins", SIGNUP: "signups"}
    for when, action, count, earliest, latest in rows:
        stats = days[date.fromisoformat(str(when))]
        setattr(stats, field_of[action], int(count))
        earliest, latest = _aware(earliest), _aware(latest)
        stats.created_at = min(filter(None, (stats.created_at, earliest)))
        stats.updated_at = max(filter(None, (stats.updated_at, latest)))


def _aware(value: datetime | str) -> datetime:
    # An aggregate skips the column's type on SQLite (naive text back); PostgreSQL's is aware.
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def active_users() -> int:
    """How many users of the current tenant signed in during the last ACTIVE_USER_DAYS days
    (distinct users of `user.signed_in` events; a deleted user still counts)."""
    since = utcnow() - timedelta(days=ACTIVE_USER_DAYS)
    query = select(func.count(distinct(AuditEvent.user_id))).where(
        AuditEvent.action == SIGNIN, AuditEvent.created_at >= since
    )
    return int(db.session.scalar(query) or 0)
