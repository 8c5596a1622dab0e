"""Soak: the ASGI middleware on a real server under sustained mixed load, rotation and outage.

The server (``tests/soak/app.py``: Starlette + ``TokenAuthMiddleware`` requiring a realm role,
``/health`` excluded) runs under uvicorn in its own process, so its memory can be read from
``/proc`` and it does not share the load generator's GIL. The realm (``LocalRealm``, RS256 like
Keycloak's default) runs in the test process. For the whole duration an asyncio load generator
(``WORKERS`` httpx clients, one keep-alive connection each) sends as fast as the machine allows
a mix of valid tokens (a few reused ones and a fresh one minted for a third of all requests, so
the bounded verified-token cache keeps evicting), expired, wrong-audience, forged (a key the
realm never had, under the realm's kid and under unknown kids), tampered (claims grafted onto
another token's signature) and garbage tokens, requests without a token, a caller without the
role (403) and ``/health`` (200, no token). The expected status of every request is fixed when
it is sent.

Duration: ``KEYCLOAK_M2M_SOAK_SECONDS`` (default 10, what CI runs, about 13 s with startup); for
the long soak run ``KEYCLOAK_M2M_SOAK_SECONDS=60 pytest tests/soak -s``. The scenario scales with
it (``Schedule``): warm-up; at 30 % ``rotate_keys(keep_old=True)`` (old-key tokens keep flowing
and must keep passing); one ``jwks_refetch_interval`` later a probe request with a new-key token,
repeated until it answers 200 (until then the server may rightly refuse the new kid as unknown:
unknown kids cause at most one fetch per interval), and only then do new-key tokens join the
load, so their expected verdict is 200 without exception; from 50 % the key endpoint answers 500
for ``max(30 % of the run, ttl + interval)``, spanning the key set's TTL expiry, and known keys
must keep serving from the stale cache (``jwks_max_stale`` is far longer: no 503); then it heals.

Asserted: zero 5xx, zero wrong verdicts (the status, and the caller's id in a 200 body or the
challenge's ``error`` in a refusal), zero transport errors, requests in every phase, the new key
learnt, fetches during the outage and after the heal, the realm's certs requests bounded by the
refetch rate limit, and the server's RSS flat: the maximum over the last third of the run (after
warm-up) at most ``RSS_MARGIN`` above the maximum over the first third. The totals are printed
(``pytest -s``) and are in every failure message. ``KEYCLOAK_M2M_SOAK_HTTP=h11`` runs the server
on uvicorn's h11 instead of httptools (what an install without httptools gets).
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from keycloak_m2m.testing import LocalRealm

from ..support import TLS

DEFAULT_SECONDS = 10.0
MIN_SECONDS = 8.0  # the scenario's phases need this much room
AUDIENCE = "soak-api"
ROLE = "soak:call"
CALLER = "soak-caller"  # holds ROLE
BYSTANDER = "soak-bystander"  # a valid client without ROLE: 403
TTL = 2.0
REFETCH_INTERVAL = 1.0
MAX_STALE = 30.0
# Far below the thousands of distinct valid tokens of a run: eviction never stops.
TOKEN_CACHE_SIZE = 256
SETTINGS = {
    "jwks_ttl": TTL,
    "jwks_refetch_interval": REFETCH_INTERVAL,
    "jwks_max_stale": MAX_STALE,
    "token_cache_size": TOKEN_CACHE_SIZE,
}
WORKERS = 48
RSS_INTERVAL = 0.5
# After the heal the load runs on until the keys were fetched again, however late the validator's
# next attempt comes on a busy machine; this bounds that wait, and a run that reaches it fails.
HEALED_FETCH_WAIT = 30.0
# The load that goes on after that fetch, so the phase sees requests on every connection.
AFTER_THE_FETCH = 0.5
MIB = 1024 * 1024
# Between the first and the last third of a run the server's RSS moved by 0.2 MiB in every run
# measured here (10 s and 60 s), the outage included; the rest is headroom for allocator noise.
# The same run with the verified-token cache unbounded (token_cache_size=1_000_000) grows by
# about 7.5 KiB per distinct token: +13.5 MiB between those thirds at ~1,000 requests/s, so a
# cache that grew per token would fail here from a few hundred requests/s up.
RSS_MARGIN = 4 * MIB
# Progress, not speed: each phase the schedule gives seconds to (before the rotation, the
# outage, after the heal) sees at least one answer per connection. A server that stalled answers
# none; how fast it answers is for benchmarks/. (The phases between the rotation and the outage
# last as long as the new key takes to be accepted, which may run into the outage's start.)
SCHEDULED_PHASES = ("before the rotation", "key endpoint down (500)", "key endpoint healed")
EXAMPLES = 5
APP = Path(__file__).with_name("app.py")
# Only against a hang: a start takes about a second, but a shared CI host can stall for more
# than 20 s (a CI run of the whole suite once did, at the oidc-provider's start).
SERVER_START_TIMEOUT = 120.0
SERVER_STOP_TIMEOUT = 10.0

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc (Linux)"
)


def soak_seconds() -> float:
    raw = os.environ.get("KEYCLOAK_M2M_SOAK_SECONDS", "")
    seconds = float(raw) if raw.strip() else DEFAULT_SECONDS
    if not seconds >= MIN_SECONDS:
        raise pytest.UsageError(f"KEYCLOAK_M2M_SOAK_SECONDS must be at least {MIN_SECONDS}")
    return seconds


@dataclass(frozen=True)
class Schedule:
    """When each phase starts, in seconds from the start of the load."""

    duration: float

    @property
    def warm_up(self) -> float:
        return max(1.0, 0.1 * self.duration)

    @property
    def rotation(self) -> float:
        return 0.3 * self.duration

    @property
    def outage(self) -> float:
        return 0.5 * self.duration

    @property
    def outage_length(self) -> float:
        # Longer than the TTL, so the key set expires and is refetched (in vain) during it.
        return max(0.3 * self.duration, TTL + REFETCH_INTERVAL)


# ---------------------------------------------------------------------------------------------
# The server process


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")  # pragma: no cover

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def soak_server(realm: LocalRealm, log: Path) -> Iterator[Server]:
    """Run tests/soak/app.py on a listening socket it inherits; SIGTERM it and wait after."""
    sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
    env = {
        **os.environ,
        "KEYCLOAK_M2M_SOAK_ISSUER": realm.issuer,
        "KEYCLOAK_M2M_SOAK_AUDIENCE": AUDIENCE,
        "KEYCLOAK_M2M_SOAK_ROLE": ROLE,
        "KEYCLOAK_M2M_SOAK_SETTINGS": json.dumps(SETTINGS),
        "KEYCLOAK_M2M_SOAK_FD": str(sock.fileno()),
    }
    with sock, log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(APP)],
            env=env,
            pass_fds=[sock.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield Server(process, url, log)
    finally:
        process.terminate()
        try:
            process.wait(SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("the server did not stop on SIGTERM") from None


async def wait_until_serving(server: Server, client: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited at startup:\n{server.log_text()}")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not start:\n{server.log_text()}")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# What is sent, and what must come back


@dataclass(frozen=True)
class Shot:
    kind: str
    path: str
    authorization: str | None
    expected: int
    # A 200's body (the caller's client id, or "ok" from /health); a refusal's challenge
    # ``error`` ("" for the bare challenge of a request without a token).
    detail: str


def passes(kind: str, token: str, caller: str = CALLER) -> Shot:
    return Shot(kind, "/work", bearer(token), 200, caller)


def refused(kind: str, token: str) -> Shot:
    return Shot(kind, "/work", bearer(token), 401, "invalid_token")


def lacks_role(kind: str, token: str) -> Shot:
    return Shot(kind, "/work", bearer(token), 403, "insufficient_scope")


_CHALLENGE_ERROR = re.compile(r'error="([^"]*)"')


def verdict_detail(response: httpx.Response) -> str:
    """What to compare with ``Shot.detail``: the body of a 200, else the challenge's error."""
    if response.status_code == 200:
        return response.text
    found = _CHALLENGE_ERROR.search(response.headers.get("www-authenticate", ""))
    return found.group(1) if found else ""


def bearer(token: str) -> str:
    return f"Bearer {token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Tokens:
    """The token pools. New-key tokens join them only after ``use_new_key``."""

    def __init__(self, realm: LocalRealm, rng: random.Random) -> None:
        self.realm = realm
        self.rng = rng
        self.kid = self.old_kid = realm.active_kid
        self.new_kid = ""
        self.rotated = False
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.valid = [realm.mint(CALLER) for _ in range(8)]
        self.no_role = [realm.mint(BYSTANDER) for _ in range(4)]
        self.expired = [realm.mint(CALLER, expires_in=-120) for _ in range(8)]
        self.wrong_audience = [realm.mint(CALLER, claims={"aud": "another-api"}) for _ in range(8)]
        # Signed by a key the realm never had: under the realm's kid (a signature failure) and
        # under kids nobody knows (each makes the server want a refetch: rate limited).
        self.forged = [realm.mint(CALLER, kid=self.kid, signing_key=stranger) for _ in range(8)]
        self.unknown_kid = [
            realm.mint(CALLER, kid=f"stranger-{i}", signing_key=stranger) for i in range(8)
        ]
        # A caller without the role grafts the privileged caller's claims onto its signature.
        self.tampered = [
            ".".join([*self.valid[i].split(".")[:2], self.no_role[i].split(".")[2]])
            for i in range(4)
        ]
        valid = self.valid[0]
        header, payload, signature = valid.split(".")
        self.garbage = [
            "garbage",
            "not.a.token",
            "a.b.c",
            "...",
            valid[:-10],  # truncated signature
            f"{header}.{payload}",  # two segments
            f"{header}.{payload}.{signature}.{signature}",  # four segments
            f"{payload}.{header}.{signature}",  # segments swapped
            _b64(b'{"alg":"none","typ":"JWT"}') + "." + payload + ".",
            _b64(rng.randbytes(64))
            + "."
            + _b64(rng.randbytes(200))
            + "."
            + _b64(rng.randbytes(256)),
            "x" * 2000,
            valid + "=",
        ]

    def mint_fresh(self, client: str) -> str:
        return self.realm.mint(client, kid=self.kid)

    def use_new_key(self, new_kid: str) -> None:
        """The server knows the new key: mint with it from now on, old-key tokens stay in use."""
        self.kid = self.new_kid = new_kid
        self.valid += [self.realm.mint(CALLER) for _ in range(8)]
        self.no_role += [self.realm.mint(BYSTANDER) for _ in range(4)]

    def key_label(self, kid: str) -> str:
        if kid != self.old_kid:
            return "new key"
        return "old key after rotation" if self.rotated else "old key"

    def next_shot(self) -> Shot:
        rng = self.rng
        roll = rng.random()
        if roll < 0.30:
            return passes(f"valid, fresh, {self.key_label(self.kid)}", self.mint_fresh(CALLER))
        if roll < 0.48:
            index = rng.randrange(len(self.valid))
            label = self.key_label(self.new_kid if index >= 8 else self.old_kid)
            return passes(f"valid, reused, {label}", self.valid[index])
        if roll < 0.55:
            return lacks_role("no role", rng.choice(self.no_role))
        if roll < 0.58:
            return lacks_role("no role, fresh", self.mint_fresh(BYSTANDER))
        if roll < 0.64:
            return refused("expired", rng.choice(self.expired))
        if roll < 0.70:
            return refused("wrong audience", rng.choice(self.wrong_audience))
        if roll < 0.75:
            return refused("forged, realm kid", rng.choice(self.forged))
        if roll < 0.79:
            return refused("forged, unknown kid", rng.choice(self.unknown_kid))
        if roll < 0.83:
            return refused("tampered", rng.choice(self.tampered))
        if roll < 0.91:
            return refused("garbage", rng.choice(self.garbage))
        if roll < 0.96:
            authorization = rng.choice([None, "Bearer", "Basic c29hazpzb2Fr"])
            return Shot("no token", "/work", authorization, 401, "")
        return Shot("health", "/health", None, 200, "ok")


# ---------------------------------------------------------------------------------------------
# Totals


@dataclass
class Totals:
    duration: float
    started: float = 0.0  # monotonic time the load started
    end: float = 0.0  # monotonic time the load stops: the duration, or later (see scenario)
    elapsed: float = 0.0
    server: str = ""
    phase: str = "before the rotation"
    by_phase: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    wrong: int = 0
    transport_errors: int = 0
    examples: list[str] = field(default_factory=list)
    probes: list[int] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    certs_total: int = 0
    certs_bound: int = 0
    certs_in_outage: int = 0
    certs_after_heal: int = 0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    def event(self, text: str) -> None:
        """A step of the scenario; the requests from here on count towards its phase."""
        self.events.append(f"{self.now():5.2f}s {text}")
        self.phase = text

    def example(self, text: str) -> None:
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{self.now():5.2f}s {text}")

    def record(self, shot: Shot, response: httpx.Response) -> None:
        status = response.status_code
        self.statuses[status] += 1
        self.by_phase[self.phase] += 1
        self.kinds[shot.kind] += 1
        if status >= 500:
            self.server_errors += 1
        detail = verdict_detail(response)
        if status != shot.expected or detail != shot.detail:
            self.wrong += 1
            # Never the token: the challenge holds fixed phrases only, a 200 the client id.
            challenge = response.headers.get("www-authenticate", "")
            self.example(
                f"{shot.kind}: expected {shot.expected} {shot.detail!r}, "
                f"got {status} {detail!r} {challenge}"
            )

    def memory_windows(self) -> tuple[list[int], list[int]]:
        """RSS samples of the first and the last third of the run after the warm-up."""
        warm_up = Schedule(self.duration).warm_up
        third = (self.elapsed - warm_up) / 3
        first = [rss for t, rss in self.rss if warm_up <= t < warm_up + third]
        last = [rss for t, rss in self.rss if t >= self.elapsed - third]
        return first, last

    def report(self) -> str:
        first, last = self.memory_windows()
        mib = [f"{max(window) / MIB:.1f}" if window else "?" for window in (first, last)]
        start = f"{self.rss[0][1] / MIB:.1f}" if self.rss else "?"
        end = f"{self.rss[-1][1] / MIB:.1f}" if self.rss else "?"
        verdicts = " ".join(f"{status}={count}" for status, count in sorted(self.statuses.items()))
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.kinds.items()))
        phases = ", ".join(f"{phase} {count}" for phase, count in self.by_phase.items())
        lines = [
            f"soak: {self.elapsed:.1f} s, {self.requests} requests, {self.rate:.0f}/s, "
            f"{WORKERS} keep-alive connections; {self.server}",
            f"  verdicts: {verdicts}; 5xx {self.server_errors}; wrong verdicts {self.wrong}; "
            f"transport errors {self.transport_errors}",
            f"  by kind: {kinds}",
            f"  by phase: {phases}",
            f"  new-key probes: {self.probes} (statuses, until the first 200)",
            f"  realm certs requests: {self.certs_total} (bound {self.certs_bound}); "
            f"{self.certs_in_outage} during the outage, {self.certs_after_heal} after the heal",
            f"  server RSS: start {start} MiB, end {end} MiB; max first third {mib[0]} MiB, "
            f"max last third {mib[1]} MiB (margin {RSS_MARGIN / MIB:.0f} MiB, "
            f"{len(self.rss)} samples)",
            "  timeline: " + "; ".join(self.events),
        ]
        lines += [f"  wrong: {example}" for example in self.examples]
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The load, the scenario, the memory sampler


def client_for(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=30.0, verify=TLS)


async def worker(client: httpx.AsyncClient, tokens: Tokens, totals: Totals) -> None:
    while time.monotonic() < totals.end:
        shot = tokens.next_shot()
        headers = {} if shot.authorization is None else {"Authorization": shot.authorization}
        try:
            response = await client.get(shot.path, headers=headers)
        except httpx.HTTPError as error:
            totals.transport_errors += 1
            totals.example(f"{shot.kind}: transport error {type(error).__name__}")
            continue
        totals.record(shot, response)


async def sample_memory(server: Server, totals: Totals) -> None:
    while time.monotonic() < totals.end:
        totals.rss.append((totals.now(), server.rss()))
        await asyncio.sleep(RSS_INTERVAL)
    totals.rss.append((totals.now(), server.rss()))


async def sleep_until(totals: Totals, moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - totals.now()))


async def probe_new_key(client: httpx.AsyncClient, token: str, totals: Totals) -> bool:
    """Ask with a new-key token until it passes; refusals as an unknown kid are fair until then."""
    deadline = totals.now() + TTL + 3 * REFETCH_INTERVAL
    while totals.now() < deadline:
        response = await client.get("/work", headers={"Authorization": bearer(token)})
        status, detail = response.status_code, verdict_detail(response)
        totals.probes.append(status)
        if status >= 500:
            totals.server_errors += 1
        if status == 200 and detail == CALLER:
            return True
        if status != 401 or detail != "invalid_token":
            totals.wrong += 1
            totals.example(f"new-key probe: got {status} {detail!r}")
        await asyncio.sleep(0.1)
    return False


async def scenario(
    client: httpx.AsyncClient, realm: LocalRealm, tokens: Tokens, totals: Totals
) -> None:
    schedule = Schedule(totals.duration)
    await sleep_until(totals, schedule.rotation)
    new_kid = await asyncio.to_thread(realm.rotate_keys, keep_old=True)
    rotated = totals.now()
    tokens.rotated = True
    totals.event("rotated (old key kept)")
    await sleep_until(totals, rotated + REFETCH_INTERVAL)
    probe = realm.mint(CALLER)
    if not await probe_new_key(client, probe, totals):
        totals.problems.append("the server never accepted a token signed by the new key")
        return
    tokens.use_new_key(new_kid)
    totals.event("new key accepted, in use")

    await sleep_until(totals, schedule.outage)
    before = realm.request_count("certs")
    realm.fail_keys(500)
    down = totals.now()
    totals.event("key endpoint down (500)")
    await sleep_until(totals, down + schedule.outage_length)
    realm.heal_keys()
    healed = realm.request_count("certs")
    totals.certs_in_outage = healed - before
    totals.event("key endpoint healed")
    # Progress, not the clock: a heal late in the run (the phases before it took longer on a
    # busy machine) still gets the validator's next fetch, the load going on until it came.
    deadline = totals.now() + HEALED_FETCH_WAIT
    while realm.request_count("certs") == healed and totals.now() < deadline:
        totals.end = max(totals.end, time.monotonic() + AFTER_THE_FETCH)
        await asyncio.sleep(0.05)
    await sleep_until(totals, totals.duration)
    totals.certs_after_heal = realm.request_count("certs") - healed


# ---------------------------------------------------------------------------------------------
# The test


@pytest.fixture
def soak_realm() -> Iterator[LocalRealm]:
    with LocalRealm("soak") as realm:
        realm.add_client(CALLER, "soak-caller-secret", realm_roles=[ROLE], audience=[AUDIENCE])
        realm.add_client(BYSTANDER, "soak-bystander-secret", audience=[AUDIENCE])
        yield realm


async def test_soak(soak_realm: LocalRealm, tmp_path: Path) -> None:
    realm = soak_realm
    totals = Totals(soak_seconds())
    tokens = Tokens(realm, random.Random(5))
    began = time.monotonic()
    with soak_server(realm, tmp_path / "server.log") as server:
        async with AsyncExitStack() as stack:
            # One client (one keep-alive connection) per worker: httpx's pool costs grow with
            # the connections it holds; one pool of 48 managed a few hundred requests a second
            # here, 48 pools of one about 2,000.
            clients = [
                await stack.enter_async_context(client_for(server.url)) for _ in range(WORKERS + 1)
            ]
            control = clients.pop()
            await wait_until_serving(server, control)
            totals.server = server.log_text().splitlines()[0]
            totals.started = time.monotonic()
            totals.end = totals.started + totals.duration
            outcomes = await asyncio.gather(
                scenario(control, realm, tokens, totals),
                sample_memory(server, totals),
                *(worker(client, tokens, totals) for client in clients),
                return_exceptions=True,
            )
            totals.problems += [repr(o) for o in outcomes if isinstance(o, BaseException)]
            totals.elapsed = totals.now()
    totals.certs_total = realm.request_count("certs")
    # At most one fetch per refetch interval, from the server's start to its end.
    totals.certs_bound = math.ceil((time.monotonic() - began) / REFETCH_INTERVAL) + 2
    assert server.process.returncode is not None
    report = totals.report()
    print("\n" + report)

    assert not totals.problems, report
    assert totals.server_errors == 0, report
    assert totals.wrong == 0, report
    assert totals.transport_errors == 0, report
    assert all(totals.by_phase[phase] >= WORKERS for phase in SCHEDULED_PHASES), report
    assert totals.kinds["valid, fresh, new key"] > 0, report
    assert totals.kinds["valid, reused, new key"] > 0, report
    assert totals.kinds["valid, reused, old key after rotation"] > 0, report
    assert totals.certs_in_outage >= 1, report  # the TTL expired during the outage
    assert totals.certs_after_heal >= 1, report  # and the keys were fetched again after it
    assert totals.certs_total <= totals.certs_bound, report
    first, last = totals.memory_windows()
    assert first, report
    assert last, report
    assert max(last) <= max(first) + RSS_MARGIN, report
    assert server.process.returncode in (0, -15), report + "\n" + server.log_text()
