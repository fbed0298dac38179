"""Fetching remote audio without becoming a way into the server's network (SSRF).

`fetch` takes only http/https URLs. The host is resolved first and every address it resolves to is
checked (`address_allowed`): loopback, private, link-local, shared and reserved addresses are refused
unless `allow_private` is set, multicast and unspecified ones always. The connection then goes to a
checked address, so a second resolution cannot swap in another (DNS rebinding); the Host header and
the TLS certificate still name the URL's host. Redirects are followed here, at most
`MAX_REDIRECTS`, never to another scheme, each hop checked like the first. One deadline covers the
whole fetch (resolution, connection, headers and body): when it passes, the fetch's sockets are shut
down, so a server dripping one byte at a time cannot hold a worker past it.

The errors carry no detail a client could learn from: every failure other than a refused destination
or an oversized body is one `RemoteAudioError`.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse

from ..errors import AudioR1Error

MAX_REDIRECTS = 3
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_READ_SIZE = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RemoteAudioError(AudioR1Error):
    """A fetch failed: unreachable, silent, not a 200, too many redirects or past its deadline.

    Deliberately without details: what a client is told must not depend on what answered.
    """


class RemoteRefused(RemoteAudioError):
    """The destination (or a redirect's) is not one this server fetches from."""


class RemoteTooLarge(RemoteAudioError):
    """The body is over the byte limit."""


class _Timeout(RemoteAudioError):
    """The fetch's deadline passed."""


def fetch(url: str, timeout_s: float, max_bytes: int, allow_private: bool = False) -> bytes:
    """GET `url`'s body: at most `max_bytes`, within `timeout_s` in all, from allowed addresses only.

    Raises `RemoteRefused` for a scheme or address the policy refuses (before connecting to it),
    `RemoteTooLarge` for a body over `max_bytes`, and `RemoteAudioError` for every other failure.
    """
    deadline = _Deadline(timeout_s)
    try:
        return _get(url, deadline, max_bytes, allow_private)
    except RemoteAudioError:
        raise
    except Exception as error:  # noqa: BLE001 - socket, TLS, HTTP parse errors: one kind of failure
        raise RemoteAudioError("could not fetch") from error
    finally:
        deadline.cancel()


class _Deadline:
    """One monotonic deadline for a whole fetch; when it passes, every socket it watches is shut down."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left (raises `_Timeout` when none are)."""
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            self._expire()
            raise _Timeout
        return left

    def watch(self, sock: socket.socket) -> socket.socket:
        """Shut `sock` down at the deadline (at once if it has passed)."""
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)
        return sock

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    """Wake any thread blocked on `sock` (works on TLS sockets too: it acts on the descriptor)."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, ValueError):
        pass


def _get(url: str, deadline: _Deadline, max_bytes: int, allow_private: bool) -> bytes:
    """Follow up to `MAX_REDIRECTS` redirects (each hop checked like the first) and read a 200 body."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise RemoteRefused
        host = parts.hostname
        if not host:
            raise RemoteAudioError("no host")
        port = parts.port or _DEFAULT_PORTS[scheme]  # a bad port is a ValueError: "could not fetch"
        addresses = _resolve(host, port, deadline, allow_private)
        connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        connection = connection_class(host, port, addresses, deadline)
        try:
            target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            connection.request("GET", target, headers={"Accept": "audio/*, */*;q=0.1", "Accept-Encoding": "identity",
                                                       "User-Agent": "audio-r1"})
            response = connection.getresponse()
            if response.status in _REDIRECT_STATUSES:
                location = response.getheader("Location")
                if not location:
                    raise RemoteAudioError("redirect without a location")
                following = urllib.parse.urljoin(url, location.strip())
                if urllib.parse.urlsplit(following).scheme.lower() != scheme:  # no hop across schemes
                    raise RemoteRefused
                url = following
                continue
            if response.status != 200:
                raise RemoteAudioError("not 200")
            return _read_body(response, connection, deadline, max_bytes)
        finally:
            connection.close()
    raise RemoteAudioError("too many redirects")


def _read_body(response: http.client.HTTPResponse, connection: http.client.HTTPConnection, deadline: _Deadline,
               max_bytes: int) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
        raise RemoteTooLarge
    pieces: list[bytes] = []
    size = 0
    while True:
        if connection.sock is not None:
            connection.sock.settimeout(deadline.left())
        piece = response.read1(_READ_SIZE)
        if not piece:
            break
        size += len(piece)
        if size > max_bytes:
            raise RemoteTooLarge
        pieces.append(piece)
    if deadline.expired:  # a shutdown at the deadline reads as the end of a body without Content-Length
        raise _Timeout
    return b"".join(pieces)


def _resolve(host: str, port: int, deadline: _Deadline, allow_private: bool) -> list[tuple]:
    """Every address `host` resolves to, all checked; the connection later goes to one of these."""
    result: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as error:  # noqa: BLE001 - reported as a failed fetch
            result["error"] = error
        done.set()

    threading.Thread(target=lookup, name="audio-r1-resolve", daemon=True).start()
    if not done.wait(deadline.left()):
        raise _Timeout
    if "error" in result:
        raise RemoteAudioError("cannot resolve")
    infos = result["infos"]
    if not infos:
        raise RemoteAudioError("no address")
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if not address_allowed(address, allow_private):
            raise RemoteRefused
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos]


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool = False) -> bool:
    """Whether remote audio may be fetched from `address`.

    Public (globally routed unicast) addresses always; loopback, private, link-local, shared and reserved
    ones only with `allow_private`; multicast and unspecified ones never. An IPv6 address that embeds an
    IPv4 one (IPv4-mapped, 6to4, Teredo, NAT64) must pass for that IPv4 address too.
    """
    if address.is_multicast or address.is_unspecified:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if not all(address_allowed(inner, allow_private) for inner in embedded if inner is not None):
            return False
    public = address.is_global and not (address.is_private or address.is_loopback or address.is_link_local
                                        or address.is_reserved)
    return public or allow_private


def _connect(addresses: list[tuple], deadline: _Deadline) -> socket.socket:
    """A TCP connection to the first of the checked addresses that answers."""
    for family, sockaddr in addresses:
        sock = deadline.watch(socket.socket(family, socket.SOCK_STREAM))
        try:
            sock.settimeout(deadline.left())
            sock.connect(sockaddr)
            return sock
        except OSError:
            sock.close()
    raise ConnectionError("no address answered")


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to an address checked beforehand; the Host header still names the URL's host."""

    def __init__(self, host: str, port: int, addresses: list[tuple], deadline: _Deadline):
        super().__init__(host, port, timeout=deadline.left())
        self._addresses = addresses
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = _connect(self._addresses, self._deadline)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """HTTPS to a checked address, verifying the certificate against the URL's host."""

    default_port = 443

    def connect(self) -> None:
        raw = _connect(self._addresses, self._deadline)
        tls = ssl.create_default_context().wrap_socket(raw, server_hostname=self.host, do_handshake_on_connect=False)
        self.sock = self._deadline.watch(tls)
        tls.settimeout(self._deadline.left())
        tls.do_handshake()
