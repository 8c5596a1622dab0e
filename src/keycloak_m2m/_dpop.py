"""DPoP proof checks (RFC 9449 section 4.3), without I/O.

``ProofChecker.check`` takes one proof and what the request and the token say, and returns what
the caller must still establish: the key the proof was signed with (to compare with the token's
``cnf.jkt``) and the replay-cache entry that makes the proof single-use. The replay cache itself
is the driver's business (memory or Redis, sync or async), so nothing here waits.

Server nonces (section 9) are stateless: an HMAC of the current time window under a secret the
replicas share, so any replica accepts a nonce another one issued.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import posixpath
from dataclasses import dataclass
from typing import Any, Final, NamedTuple
from urllib.parse import unquote, urlsplit

import pybase64

from ._errors import DPOP_ALGORITHMS, InvalidDPoPProof, MalformedToken, UseDPoPNonce
from ._jose import (
    JsonParser,
    UnusableKey,
    VerificationKey,
    b64url_decode,
    decode_json_object,
    load_jwk,
    split_token,
    verifying_key,
)

__all__ = ["ProofChecker", "ProofPolicy", "Verdict", "jwk_thumbprint", "normalized_url"]

# A proof is a header with one public key and a handful of claims: well under 2 KB for EC keys,
# about 1.5 KB for RSA-4096. Anything far larger is refused before decoding.
MAX_PROOF_SIZE: Final = 8 * 1024
MAX_JTI_LENGTH: Final = 256
_PROOF_TYPE: Final = "dpop+jwt"
_ACCEPTED: Final = frozenset(DPOP_ALGORITHMS)
# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS: Final = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
# Members that only a private (or symmetric) JWK has: a proof carrying one is refused
# (RFC 9449 section 4.3, check 7), since its sender has just published its key.
_PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Distinct proof headers are one per client key; the bound stops a flood of crafted keys.
_KEY_CACHE_SIZE: Final = 1024
_NONCE_MAC_BYTES: Final = 18


@dataclass(frozen=True, slots=True)
class ProofPolicy:
    """How old a proof may be, the clock leeway, and the nonce secret (None: no nonces)."""

    max_age: float
    leeway: float
    nonce_secret: bytes | None


class Verdict(NamedTuple):
    """What a proof that passed every check leaves to the caller."""

    jkt: str  # RFC 7638 thumbprint of the proof's key
    replay_key: str  # unique per key and jti
    replay_ttl: float  # how long the replay cache must remember it, in seconds


class _ProofKey(NamedTuple):
    alg: str
    key: VerificationKey
    jkt: str


class ProofChecker:
    """Checks proofs for one validator; keeps the keys of headers already seen (no I/O)."""

    def __init__(self, policy: ProofPolicy, parse_json: JsonParser) -> None:
        self.policy = policy
        self._parse_json = parse_json
        self._keys: dict[bytes, _ProofKey] = {}

    def check(
        self, proof: object, *, ath: str | None, method: str, url: str, now: float
    ) -> Verdict:
        """Every check of RFC 9449 section 4.3 but the binding and the replay: raise
        InvalidDPoPProof (UseDPoPNonce for a missing or stale nonce) or return the Verdict.
        ``ath`` is ``access_token_hash`` of the token the proof must name; None at a token
        endpoint, where there is no token yet."""
        try:
            header_segment, payload_segment, signing_input, signature_segment = split_token(
                proof, MAX_PROOF_SIZE
            )
            proof_key = self._keys.get(header_segment) or self._read_header(header_segment)
            claims = decode_json_object(payload_segment, self._parse_json)
            signature = b64url_decode(signature_segment)
        except MalformedToken as error:
            raise InvalidDPoPProof(f"malformed proof: {error.description}") from None
        if verifying_key((proof_key.key,), proof_key.alg, signing_input, signature) is None:
            raise InvalidDPoPProof("proof signature verification failed")
        jti = claims.get("jti")
        if type(jti) is not str or not 0 < len(jti) <= MAX_JTI_LENGTH:
            raise InvalidDPoPProof("missing or invalid jti")
        if claims.get("htm") != method:
            raise InvalidDPoPProof("htm does not match the request method")
        if not same_url(claims.get("htu"), url):
            raise InvalidDPoPProof("htu does not match the request URL")
        issued_at = self._check_age(claims.get("iat"), now)
        if ath is not None and claims.get("ath") != ath:
            raise InvalidDPoPProof("ath does not match the access token")
        if self.policy.nonce_secret is not None:
            self._check_nonce(claims.get("nonce"), now)
        # Remembered until the proof is too old anyway, plus the leeway for a replica whose
        # clock runs behind.
        ttl = issued_at + self.policy.max_age + 2 * self.policy.leeway - now
        return Verdict(proof_key.jkt, proof_key.jkt + "." + jti, max(1.0, ttl))

    def _read_header(self, segment: bytes) -> _ProofKey:
        header = decode_json_object(segment, self._parse_json)
        typ = header.get("typ")
        if type(typ) is not str or typ.lower() != _PROOF_TYPE:
            raise InvalidDPoPProof("typ must be dpop+jwt")
        alg = header.get("alg")
        if type(alg) is not str or alg not in _ACCEPTED:
            raise InvalidDPoPProof("proof algorithm not allowed")
        if "crit" in header:
            raise InvalidDPoPProof("unsupported header member crit")
        jwk = header.get("jwk")
        if type(jwk) is not dict:
            raise InvalidDPoPProof("missing jwk")
        if any(member in jwk for member in _PRIVATE_MEMBERS):
            raise InvalidDPoPProof("jwk holds a private key")
        try:
            key = load_jwk(jwk)
            jkt = jwk_thumbprint(jwk)
        except (UnusableKey, KeyError, TypeError):
            raise InvalidDPoPProof("unusable jwk") from None
        if alg not in key.algorithms:
            raise InvalidDPoPProof("alg does not fit the jwk")
        if len(self._keys) >= _KEY_CACHE_SIZE:
            self._keys.clear()
        proof_key = self._keys[segment] = _ProofKey(alg, key, jkt)
        return proof_key

    def _check_age(self, issued_at: object, now: float) -> float:
        if type(issued_at) not in (int, float) or not math.isfinite(issued_at):  # type: ignore[arg-type]
            raise InvalidDPoPProof("missing or invalid iat")
        assert isinstance(issued_at, (int, float))
        if issued_at > now + self.policy.leeway:
            raise InvalidDPoPProof("proof issued in the future")
        if issued_at < now - self.policy.max_age - self.policy.leeway:
            raise InvalidDPoPProof("proof too old")
        return float(issued_at)

    def _check_nonce(self, nonce: object, now: float) -> None:
        window = self._window(now)
        accepted = (self.nonce_for(window), self.nonce_for(window - 1))
        if type(nonce) is not str or not any(hmac.compare_digest(nonce, n) for n in accepted):
            raise UseDPoPNonce(self.nonce_for(window))

    def _window(self, now: float) -> int:
        return math.floor(now / max(self.policy.max_age, 1.0))

    def nonce(self, now: float) -> str:
        """The nonce a client should sign into its proofs now."""
        return self.nonce_for(self._window(now))

    def nonce_for(self, window: int) -> str:
        secret = self.policy.nonce_secret
        assert secret is not None
        mac = hmac.new(secret, str(window).encode("ascii"), hashlib.sha256).digest()
        return pybase64.urlsafe_b64encode(mac[:_NONCE_MAC_BYTES]).decode("ascii")


def access_token_hash(token: str) -> str:
    """RFC 9449 section 4.2 ``ath``: base64url of the SHA-256 of the token's ASCII bytes."""
    digest = hashlib.sha256(token.encode("ascii", "replace")).digest()
    return pybase64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = {name: jwk[name] for name in members}
    if not all(type(value) is str for value in canonical.values()):
        raise TypeError("JWK members must be strings")
    text = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return pybase64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same_url(htu: object, url: str) -> bool:
    """Whether ``htu`` names ``url``, ignoring query and fragment, after RFC 3986 section 6.2.2
    and 6.2.3 normalisation. The common case, equal strings, costs one comparison."""
    if type(htu) is not str:
        return False
    if htu == url:
        return True
    try:
        return normalized_url(htu) == normalized_url(url)
    except ValueError:  # an invalid port or an unparsable authority
        return False


def normalized_url(url: str) -> str:
    """Scheme and host lowercased, default port dropped, path percent-decoded with dot segments
    removed, query and fragment gone. Decoding the whole path (not only unreserved characters)
    lets a URL signed as ``/a%20b`` match a framework's decoded ``/a b``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    port = parts.port
    authority = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = unquote(parts.path) or "/"
    normal = posixpath.normpath(path)
    if path.endswith("/") and normal != "/":
        normal += "/"
    # normpath keeps a leading "//" (POSIX allows it a meaning); a URL path does not.
    return f"{scheme}://{authority}/{normal.lstrip('/')}"
