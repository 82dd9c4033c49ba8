"""Where a server-side request may go: the URL's form and the addresses its host resolves
to, for every call Gatehouse makes to a URL someone configured (webhook targets, a
connection's identity provider). A server that fetches URLs it is given must not become a
way into the network it sits in (SSRF): loopback, private ranges, link-local (the cloud
metadata address 169.254.169.254 among them) and the rest are refused unless the
deployment allows them (an on-premise receiver or provider).

`resolve_checked` resolves the host and checks every address it answers; the caller
connects to `Target.address`, the very address that passed, when it can (webhooks do), so
a DNS answer that changes between the check and the connection gains nothing.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


class OutboundRefused(Exception):
    """A URL that must not be contacted; the message says why, without secrets."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (`address`), and what to name (`host`, for the
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


def resolve_checked(url: str, *, allow_private: bool, allow_http: bool) -> Target:
    """Parse `url` (https only unless `allow_http`), resolve its host and check every
    address it resolves to (public ones only unless `allow_private`); OutboundRefused.
    Every address must pass: a name that answers one public and one private address is
    refused, as the connection could be steered to either."""
    scheme, host, port, path = url_parts(url, allow_http=allow_http)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise OutboundRefused(f"the host {host!r} does not resolve") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise OutboundRefused(f"the host {host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise OutboundRefused(
                    f"the host {host!r} resolves to a private, loopback, link-local or "
                    "reserved address"
                )
    return Target(scheme, host, port, path, addresses[0])


def url_parts(url: str, *, allow_http: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an acceptable URL: absolute, https (or
    http when `allow_http`), no credentials, fragment, spaces or control characters, at
    most MAX_URL_LENGTH characters; OutboundRefused otherwise. Nothing is resolved."""
    if len(url) > MAX_URL_LENGTH:
        raise OutboundRefused(f"at most {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise OutboundRefused("must not hold spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("not a valid URL") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if allow_http else ("https",)
    if scheme not in allowed:
        raise OutboundRefused(f"the scheme must be {' or '.join(allowed)}")
    if not parts.hostname:
        raise OutboundRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("the URL must not hold credentials")
    if parts.fragment:
        raise OutboundRefused("the URL must not hold a fragment")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme], path


def is_public(address: str) -> bool:
    """Whether an IP address (text, IPv4 or IPv6, a zone id allowed) is globally
    routable unicast: not loopback, private, link-local, carrier-grade NAT, multicast,
    reserved or unspecified, nor an IPv6 form that carries one of those (mapped IPv4,
    6to4, Teredo, NAT64), nor unique-local or site-local IPv6. Not an address: False."""
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
        if embedded is not None and not is_public(str(embedded)):
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
