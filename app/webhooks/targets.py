"""Which URLs a webhook may target, checked twice: when an endpoint is registered or changed
(the URL's form, and where its host resolves now) and at every send, after resolving the
host again; the send then connects to the very address that passed (delivery.py), so a DNS
answer that changes between the check and the connection (rebinding) gains nothing.

Production refuses plain http, and any host that resolves to an address that is not
globally routable: loopback, private, link-local (the cloud metadata address
169.254.169.254 among them), carrier-grade NAT, multicast, reserved, unspecified, and IPv6
forms of those (mapped IPv4, NAT64, unique local). WEBHOOK_ALLOW_PRIVATE_TARGETS and
WEBHOOK_ALLOW_HTTP lift the two rules, for an on-premise receiver.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app

from app.core.errors import Invalid

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


class TargetRefused(Exception):
    """A target that must not be contacted; the message says why, without secrets."""


@dataclass(frozen=True)
class Target:
    """A checked target: where to connect (`address`), and what to name (`host`, for the
    Host header and TLS)."""

    scheme: str
    host: str
    port: int
    path: str
    address: str

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == _DEFAULT_PORTS[self.scheme] else f"{name}:{self.port}"


def check_url(url: str) -> str:
    """The URL if its form is acceptable and its host resolves to allowed addresses now;
    Invalid `invalid_webhook_url` otherwise (registration and updates)."""
    try:
        resolve(url)
    except TargetRefused as exc:
        raise Invalid(f"url: {exc}", code="invalid_webhook_url") from None
    return url


def resolve(url: str) -> Target:
    """Parse `url`, resolve its host and check every address it resolves to; TargetRefused.
    Every address must pass: a name that answers one public and one private address is
    refused, as the connection could be steered to either."""
    scheme, host, port, path = _parts(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise TargetRefused(f"the host {host!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise TargetRefused(f"the host {host!r} does not resolve")
    if not current_app.config["WEBHOOK_ALLOW_PRIVATE_TARGETS"]:
        for address in addresses:
            if not _is_public(address):
                raise TargetRefused(
                    f"the host {host!r} resolves to a private, loopback, link-local or "
                    "reserved address"
                )
    return Target(scheme, host, port, path, addresses[0])


def _parts(url: str) -> tuple[str, str, int, str]:
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"at most {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise TargetRefused("must not hold spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("not a valid URL") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if current_app.config["WEBHOOK_ALLOW_HTTP"] else ("https",)
    if scheme not in allowed:
        raise TargetRefused(f"the scheme must be {' or '.join(allowed)}")
    if not parts.hostname:
        raise TargetRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("the URL must not hold credentials")
    if parts.fragment:
        raise TargetRefused("the URL must not hold a fragment")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], path


def _is_public(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local or ip in _NAT64_LOCAL:
            return False
        embedded = (
            ip.ipv4_mapped
            or ip.sixtofour
            or (ip.teredo[1] if ip.teredo else None)
            or _last_32_bits(ip)
        )
        if embedded is not None and not _is_public(str(embedded)):
            return False
    return ip.is_global and not ip.is_multicast


# IPv6 forms that carry an IPv4 address in their last 32 bits, which a NAT64 gateway (or
# an old stack) turns into that IPv4 address: 64:ff9b::10.0.0.5 reaches 10.0.0.5, and
# Python counts these prefixes as global. The local-use NAT64 prefix (RFC 8215) maps to
# whatever its network chooses, so it is refused whole, as is deprecated site-local fec0::.
_EMBEDS_IPV4 = tuple(
    ipaddress.IPv6Network(prefix) for prefix in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96")
)
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def _last_32_bits(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if any(ip in network for network in _EMBEDS_IPV4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None
