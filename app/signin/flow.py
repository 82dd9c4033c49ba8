"""The sign-in flow every password sign-in goes through: the token endpoint's password
grant (with `otp`) and the hosted login page's two steps.

One place holds each rule, so no surface can drift from another:
- limits: per client IP, per identifier sent (username, email), and per account the login
  resolves to (tenant + user + IP), all counted before any password is hashed;
- the password: one argon2 verification whatever the number of accounts holding an
  address (a dummy one for an unknown login), same answer whether or not the user exists;
- the second factor: one budget per account for wrong codes across every path (5, then
  a lock of 15 minutes that doubles with each further lock), shared through Redis;
- audit: every failure is written in a transaction of its own before the error is raised
  (the request's own rolls back), and the success says how many codes failed since the
  previous sign-in;
- the login is counted, and the password's stored hash and tag kept current: an imported
  hash (bcrypt, pbkdf2, md5, Firebase scrypt…) is verified with its own algorithm and, on
  success, replaced by argon2id in the same transaction and audited
  `user.password_rehashed` (users.passwords.keep_current);
- the tenant's `weak_password_hashes` policy: with "reset", a right password on a weak
  imported hash (md4, md5, sha1, unsalted digests) is refused with Forbidden
  `password_reset_required` (audited), and the weak hash is left as it is: the user comes
  in through the password reset. With "accept" (the default) it signs in and is upgraded.

Every function runs in the scope of the tenant it is given, which the caller (the token
endpoint, the login page) entered."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from app.audit import service as audit_service
from app.core import ratelimit, security
from app.core.db import independent_write
from app.core.errors import Forbidden, Invalid, InvalidGrant, RateLimited
from app.core.scopes import OPENID
from app.credentials import foreign_hashes, recovery
from app.credentials import mfa as mfa_service
from app.credentials import passkeys as passkey_service
from app.credentials.passkeys import Assertion, PasskeyRefused
from app.signin import lookup
from app.tenants.models import Tenant
from app.tokens import claims as token_claims
from app.tokens import login as token_login
from app.tokens import service as token_service
from app.tokens.service import TokenSet
from app.users import passwords
from app.users import service as user_service
from app.users.models import User

# Wrong second-factor codes an account may take before a lock; the lock doubles with each
# further lock (up to a day), and the count is forgotten a day after the last wrong code or
# at a successful sign-in.
SECOND_FACTOR_BUDGET = ratelimit.Backoff(
    name="second-factor",
    failures=5,
    lock_seconds=15 * 60,
    longest_seconds=24 * 3600,
    memory_seconds=24 * 3600,
)
PASSWORD_METHOD = "password"
PASSKEY_METHOD = "passkey"
# Failed sign-ins that count as a wrong second factor (shown at the next sign-in).
CODE_FAILURES = frozenset(
    {"wrong_otp", "wrong_recovery_code", "wrong_passkey", "second_factor_locked"}
)


@dataclass(frozen=True)
class SignedIn:
    """A completed sign-in: the user, and how many second-factor codes failed since the
    previous one (the user is told once)."""

    user: User
    second_factor_failures: int


IP_LIMIT, ACCOUNT_LIMIT = "RATELIMIT_SIGNIN_PER_IP", "RATELIMIT_SIGNIN_PER_ACCOUNT"


def _limits(
    tenant_id: str, ip: str | None, identifiers: Iterable[str | None], accounts: Iterable[str]
) -> None:
    """Per client IP, per identifier sent (each with the IP), and per resolved account
    (with the IP: a username and an email of one account share a budget, so alternating
    them gains nothing), all counted at once (one round trip to Redis): RateLimited for
    the first one over, in that order."""
    where = ip or "-"
    ratelimit.check_all(
        (IP_LIMIT, (where,)),
        *((ACCOUNT_LIMIT, (tenant_id, key, where)) for key in ratelimit.login_keys(*identifiers)),
        *((ACCOUNT_LIMIT, (tenant_id, "account", user_id, where)) for user_id in accounts),
    )


def _record_failure(
    *, ip: str | None, user: User | None, reason: str, login: str | None = None
) -> None:
    """Audit a failed sign-in (and count a failed code against the user) in a transaction
    of its own, committed now: the request's transaction rolls back with the error."""
    with independent_write() as session:
        audit_service.record(
            action="user.signin_failed",
            actor="anonymous",
            user_id=user.id if user else None,
            target=login[:255] if login else None,
            ip=ip,
            data={"reason": reason},
            session=session,
        )
        if user is not None and reason in CODE_FAILURES:
            mfa_service.count_failed_code(session, user)


def _verify(candidates: list[User], password: str) -> User | None:
    """The candidate whose password this is. Tags leave (almost always) at most one hash
    to verify; with none, a dummy hash is verified so every attempt costs the same."""
    worth = passwords.worth_verifying(candidates, password)
    if not worth:
        security.verify_password(None, password)
        return None
    for user in worth:
        if security.verify_password(user.password_hash, password):
            return user
    return None


def check_password(
    *, tenant_id: str, ip: str | None, username: str | None, email: str | None, password: str
) -> User:
    """The user (not blocked) that a login and password name: a username, else the
    address (`email`, or the username tried as one). Writes nothing on success: the caller
    keeps the hash current once the whole sign-in succeeded (`finish`).
    RateLimited; InvalidGrant (audited) with the same answer and cost whether or not the
    user exists; Forbidden `password_reset_required` (audited) for a right password on a
    weak imported hash when the tenant requires a reset for those."""
    return _check_password(
        tenant_id=tenant_id, ip=ip, username=username, email=email, password=password
    )[0]


def _check_password(
    *, tenant_id: str, ip: str | None, username: str | None, email: str | None, password: str
) -> tuple[User, lookup.Found]:
    """check_password, with what the sign-in's one read found (the tenant, and the state
    of the user's TOTP enrolment). Invalid for an unknown tenant (nothing counted)."""
    login = username or email or ""
    found = lookup.find(tenant_id=tenant_id, username=username, email=email or username)
    if found is None:
        raise Invalid("X-Tenant-ID names no tenant", code="invalid_request")
    candidates = found.candidates
    _limits(tenant_id, ip, (username, email), (user.id for user in candidates))
    user = _verify(candidates, password)
    if user is None:
        named = candidates[0] if len(candidates) == 1 else None
        reason = "wrong_password" if candidates else "unknown_user"
        _record_failure(ip=ip, user=named, reason=reason, login=login)
        raise InvalidGrant("Wrong username, email or password")
    if user.blocked:
        _record_failure(ip=ip, user=user, reason="blocked", login=login)
        raise InvalidGrant("Wrong username, email or password")
    _check_weak_hash(tenant=found.tenant, ip=ip, user=user, login=login)
    return user, found


WEAK_HASHES_RESET = "reset"


def _check_weak_hash(*, tenant: Tenant, ip: str | None, user: User, login: str) -> None:
    """Forbidden `password_reset_required` (audited) when the password just verified is
    held by a weak imported hash and the tenant requires a reset for those: the password
    was right, so this tells nothing to someone who lacks it."""
    stored = user.password_hash
    if not stored or not security.is_foreign_hash(stored) or not foreign_hashes.is_weak(stored):
        return
    if tenant.weak_password_hashes != WEAK_HASHES_RESET:
        return
    _record_failure(ip=ip, user=user, reason="password_reset_required", login=login)
    raise Forbidden(
        "This account's password must be reset before it can sign in: use the "
        "password-reset flow to choose a new one",
        code="password_reset_required",
    )


def needs_second_factor(user: User) -> bool:
    """Whether the user's sign-in must also carry a one-time code."""
    return mfa_service.sign_in_needs_otp(user)


def _locked(retry_after: int) -> RateLimited:
    minutes = math.ceil(retry_after / 60)
    return RateLimited(
        "Too many wrong codes were entered for this account. Every code is refused for "
        f"{minutes} more minute{'s' if minutes != 1 else ''}; then try again.",
        code="second_factor_locked",
        headers={"Retry-After": str(retry_after)},
    )


OTP, RECOVERY_CODE = "otp", "recovery_code"


def check_second_factor(*, tenant_id: str, ip: str | None, user: User, code: str) -> str:
    """Check the one-time code of a user whose password was verified, against the
    account's budget (shared by every path that takes a code): the attempt is counted
    before the code is looked at, so concurrent ones cannot overrun it. The code is a
    TOTP code (6 digits) or one of the user's recovery codes (`xxxxx-xxxxx`, spent):
    which one it was, OTP or RECOVERY_CODE.
    RateLimited `second_factor_locked` (Retry-After) while the budget is locked, even for
    a right code; InvalidGrant for a wrong or reused code. Both are audited and counted
    for the next sign-in to show."""
    retry_after = ratelimit.attempt(SECOND_FACTOR_BUDGET, tenant_id, user.id)
    if retry_after:
        _record_failure(ip=ip, user=user, reason="second_factor_locked")
        raise _locked(retry_after)
    if recovery.looks_like_code(code):
        kind, accepted = RECOVERY_CODE, recovery.use(user=user, code=code, ip=ip) is not None
    else:
        kind, accepted = OTP, mfa_service.accept_sign_in_code(user=user, code=code, ip=ip)
    if not accepted:
        if kind == RECOVERY_CODE:
            _record_failure(ip=ip, user=user, reason="wrong_recovery_code")
            raise InvalidGrant("The recovery code is not valid or was already used")
        _record_failure(ip=ip, user=user, reason="wrong_otp")
        raise InvalidGrant("The one-time code is not valid")
    ratelimit.forget(SECOND_FACTOR_BUDGET, tenant_id, user.id)
    return kind


def _passkey_refused(ip: str | None, refused: PasskeyRefused, reason: str) -> None:
    """Audit a refused passkey: `user.signin_failed`, and `passkey.clone_detected` when
    its counter went back (both kept although the request then fails)."""
    if refused.reason == "cloned":
        with independent_write() as session:
            audit_service.record(
                action="passkey.clone_detected",
                actor="anonymous",
                user_id=refused.user.id if refused.user else None,
                target=refused.passkey_id,
                ip=ip,
                session=session,
            )
    _record_failure(ip=ip, user=refused.user, reason=reason)


def check_passkey(*, tenant_id: str, ip: str | None, credential: str, challenge: str) -> Assertion:
    """Sign in with a passkey (a discoverable credential, no username): limits per client
    IP, then per account; PasskeyRefused (an InvalidGrant, audited `user.signin_failed`,
    and `passkey.clone_detected` for a cloned authenticator); RateLimited."""
    _limits(tenant_id, ip, (), ())
    try:
        assertion = passkey_service.verify_assertion(credential=credential, challenge=challenge)
    except PasskeyRefused as refused:
        _passkey_refused(ip, refused, f"passkey_{refused.reason}")
        raise
    ratelimit.check(ACCOUNT_LIMIT, tenant_id, "account", assertion.user.id, ip or "-")
    return assertion


def check_second_factor_passkey(
    *, tenant_id: str, ip: str | None, user: User, credential: str, challenge: str
) -> Assertion:
    """A passkey of `user` as the second factor, against the same budget as the codes:
    RateLimited `second_factor_locked` while locked; PasskeyRefused (audited, counted)."""
    retry_after = ratelimit.attempt(SECOND_FACTOR_BUDGET, tenant_id, user.id)
    if retry_after:
        _record_failure(ip=ip, user=user, reason="second_factor_locked")
        raise _locked(retry_after)
    try:
        assertion = passkey_service.verify_assertion(
            credential=credential, challenge=challenge, user=user
        )
    except PasskeyRefused as refused:
        refused.user = user
        _passkey_refused(ip, refused, "wrong_passkey")
        raise
    ratelimit.forget(SECOND_FACTOR_BUDGET, tenant_id, user.id)
    return assertion


def await_second_factor(*, user: User, password: str, ip: str | None = None) -> int:
    """The password was right and the code comes in a later request: keep the password's
    hash current now (it is not entered again), and return the session generation the
    pending step is bound to (`pending_user` refuses it once the sessions are revoked)."""
    passwords.keep_current(user, password, ip=ip)
    return user.session_generation or 0


def pending_user(*, tenant_id: str, ip: str | None, user_id: str, generation: int) -> User:
    """The user of a second-factor step begun by a password check: limits per IP and per
    account. InvalidGrant `signin_restart` when the user was deleted or blocked since, or
    the user's sessions were revoked (a password change or reset bumps the generation the
    step was bound to)."""
    _limits(tenant_id, ip, (), (user_id,))
    user = user_service.find_user(user_id)
    if user is None or user.blocked or (user.session_generation or 0) != generation:
        raise InvalidGrant(
            "This sign-in is no longer valid (the account changed). Sign in again.",
            code="signin_restart",
        )
    return user


def _settle(*, user: User, ip: str | None, password: str | None) -> int:
    """What every completed sign-in writes before the login is counted: the password's
    hash and tag kept current (when it was entered in this request), and the count of
    failed codes started afresh; how many had failed since the previous sign-in."""
    if password is not None:
        passwords.keep_current(user, password, ip=ip)
    return mfa_service.clear_failed_codes(user)


def _audit_data(failures: int) -> dict[str, int] | None:
    return {"second_factor_failures": failures} if failures else None


def finish(*, user: User, ip: str | None, method: str, password: str | None = None) -> SignedIn:
    """Complete a sign-in whose factors were checked: keep the password's hash and tag
    current (when it was entered in this request), count the login, whose audit event
    holds `second_factor_failures` when codes failed since the previous sign-in, and
    start that count afresh."""
    failures = _settle(user=user, ip=ip, password=password)
    token_service.record_login(
        user, actor=f"user:{user.id}", ip=ip, method=method, data=_audit_data(failures)
    )
    return SignedIn(user=user, second_factor_failures=failures)


def wants_id_token(scope: str | None, granted: list[str] | None) -> bool:
    """Whether a password grant's answer carries an ID token: only for `openid` (OIDC
    Core §3.1.2.1). An application's grant asks for it unless it names scopes without it
    (`granted`: application_scopes puts `openid` in when it names none); a grant without
    an application that names no scope gets one, as SPEC §4's answer has it, and one
    whose `scope` leaves `openid` out does not."""
    if granted is not None:
        return OPENID in granted
    return not scope or OPENID in scope.split()


def password_grant(
    *,
    tenant_id: str,
    username: str | None,
    email: str | None,
    password: str,
    ip: str | None,
    otp: str | None = None,
    client_id: str | None = None,
    scope: str | None = None,
    allowed_scopes: Collection[str] = (),
    user_agent: str | None = None,
) -> TokenSet:
    """Sign in with a password (and `otp` when the user has a second factor): tokens, of
    the registered application `client_id` names if given, holding the `scope` it asks for
    that the user holds and `allowed_scopes` (the app's) names; without an application,
    everything the user holds. The ID token only when `openid` is asked for
    (wants_id_token). Invalid without a login, for an unknown tenant or scope;
    RateLimited; InvalidGrant (same answer and cost whether or not the user exists, and
    for a user blocked or whose sessions were revoked while this sign-in ran);
    Forbidden `mfa_required` without a needed code, `password_reset_required` for a weak
    imported hash under the tenant's "reset" policy. `user_agent` is kept with the session
    (the account page lists it).

    Three round trips on the common path: one read (app.signin.lookup), the limits in
    one Redis pipeline, one write after the signing (app.tokens.login)."""
    if not (username or email):
        raise Invalid("username or email is required", code="invalid_request")
    user, found = _check_password(
        tenant_id=tenant_id, ip=ip, username=username, email=email, password=password
    )
    amr = ["pwd"]
    if mfa_service.needs_otp(user, found.totp.get(user.id)):
        if not otp:
            raise Forbidden(
                "Multi-factor authentication is required (send otp)", code="mfa_required"
            )
        kind = check_second_factor(tenant_id=tenant_id, ip=ip, user=user, code=otp)
        amr = ["pwd", "otp", "mfa"] if kind == OTP else ["pwd", "mfa"]
    granted = (
        token_claims.application_scopes(user, requested=scope, allowed=allowed_scopes)
        if client_id
        else None
    )
    failures = _settle(user=user, ip=ip, password=password)
    tokens = token_login.sign_in(
        user=user,
        tenant=found.tenant,
        method=PASSWORD_METHOD,
        ip=ip,
        client_id=client_id,
        scope=granted,
        amr=amr,
        user_agent=user_agent,
        id_token=wants_id_token(scope, granted),
        audit_data=_audit_data(failures),
    )
    if tokens is None:
        _record_failure(ip=ip, user=user, reason="account_changed", login=username or email)
        raise InvalidGrant("Wrong username, email or password")
    return tokens
