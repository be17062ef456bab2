"""Signed (JWS) and encrypted (JWE) vCons, draft core-04 §5-6, on joserfc.

Signed form: JWS General JSON Serialization over the unsigned vCon's JSON; each
signature's unprotected header carries ``alg``, ``x5c`` (the certificate chain, leaf
first) and ``uuid``, as in the WG's example (which also protects ``alg``, ``typ`` and
``x5c``). Encrypted form: JWE General JSON Serialization of the *signed* form,
RSA-OAEP + A256CBC-HS512, with ``alg`` and ``enc`` in the protected header (as the draft's
example has them; py-vcon rebuilds a compact JWE from the protected header and the first
recipient, so it needs both there) and ``uuid`` and ``cty`` unprotected. Header names appear
in one header only (RFC 7516 §7.2.1).
No cryptography is written here: joserfc does JOSE, cryptography does X.509.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwe import GeneralJSONSerialization
from joserfc.jwk import ECKey, RSAKey
from joserfc.registry import HeaderParameter

from capture.clock import SYSTEM
from capture.errors import ConfigError, VerificationError
from capture.vcon.model import dumps

ENC = "A256CBC-HS512"
KEY_ALG = "RSA-OAEP"
CONTENT_TYPE = "application/vcon+json"
SIGN_ALGS = ["RS256", "ES256"]

# The draft registers ``uuid`` as a JOSE header parameter; joserfc must be told.
_UUID_HEADER = {"uuid": HeaderParameter("vCon uuid (draft-ietf-vcon-vcon-core)", "str")}
JWS_REGISTRY = jws.JWSRegistry(header_registry=_UUID_HEADER, algorithms=SIGN_ALGS)
JWS_REGISTRY.max_header_length = 64 * 1024  # the protected header holds the x5c chain
MAX_VCON_BYTES = 1 << 40
"joserfc caps payloads at 128 kB by default: a signed vCon with more than ~6 s of inline audio."
JWS_REGISTRY.max_payload_length = MAX_VCON_BYTES
JWE_REGISTRY = jwe.JWERegistry(header_registry=_UUID_HEADER, algorithms=[KEY_ALG, ENC])
JWE_REGISTRY.max_ciphertext_length = MAX_VCON_BYTES


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(setting, f"cannot read {path}: {exc.strerror}") from None


def load_certificates(pem: bytes, setting: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ConfigError(setting, f"no PEM certificate: {exc}") from None
    return certs


def _private_key(pem: bytes, setting: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(setting, f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ConfigError(setting, "only RSA (RS256) and P-256 EC (ES256) keys are supported")
    return key


def _jose_key(key: Any) -> RSAKey | ECKey:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return RSAKey.import_key(pem) if isinstance(key, rsa.RSAPrivateKey) else ECKey.import_key(pem)


def _public_jose_key(cert: x509.Certificate) -> RSAKey | ECKey:
    pem = cert.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return RSAKey.import_key(pem) if isinstance(cert.public_key(), rsa.RSAPublicKey) else ECKey.import_key(pem)


@dataclass(frozen=True)
class Signer:
    key: RSAKey | ECKey
    alg: str
    x5c: list[str]
    "Standard base64 DER certificates, leaf first (RFC 7515 §4.1.6)."

    @classmethod
    def from_files(cls, key_file: Path, chain_file: Path) -> Signer:
        key = _private_key(_read(key_file, "signing_key_file"), "signing_key_file")
        chain = load_certificates(_read(chain_file, "signing_cert_file"), "signing_cert_file")
        leaf_key = (
            chain[0]
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        own = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if leaf_key != own:
            raise ConfigError("signing_cert_file", "the first certificate does not match signing_key_file")
        alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
        return cls(_jose_key(key), alg, x5c)

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The signed form of an unsigned vCon document."""
        member = {
            "protected": {"alg": self.alg, "typ": "JWT", "x5c": self.x5c},
            "header": {"alg": self.alg, "x5c": self.x5c, "uuid": doc["uuid"]},
        }
        members = cast(list[jws.HeaderDict], [member])
        return dict(jws.serialize_json(members, dumps(doc), self.key, registry=JWS_REGISTRY))


def encrypt(signed: dict[str, Any], recipient_cert_file: Path) -> dict[str, Any]:
    """The encrypted form of a signed vCon, for the holder of the certificate's key."""
    (cert, *_) = load_certificates(_read(recipient_cert_file, "encrypt_cert_file"), "encrypt_cert_file")
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise ConfigError("encrypt_cert_file", "RSA-OAEP needs an RSA certificate")
    vcon_uuid = signed["signatures"][0]["header"]["uuid"]
    obj = jwe.GeneralJSONEncryption(
        protected={"alg": KEY_ALG, "enc": ENC},
        plaintext=json.dumps(signed, separators=(",", ":")).encode(),
        unprotected={"uuid": vcon_uuid, "cty": CONTENT_TYPE},
    )
    obj.add_recipient({}, _public_jose_key(cert))
    return dict(jwe.encrypt_json(obj, None, registry=JWE_REGISTRY))


def decrypt(encrypted: dict[str, Any], key_file: Path) -> dict[str, Any]:
    """The signed form inside an encrypted vCon."""
    key = _jose_key(_private_key(_read(key_file, "--key"), "--key"))
    try:
        result = jwe.decrypt_json(cast(GeneralJSONSerialization, encrypted), key, registry=JWE_REGISTRY)
        plain: dict[str, Any] = json.loads(result.plaintext or b"")
        return plain
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise VerificationError(f"cannot decrypt: {exc}") from None


def _verify_chain(chain: list[x509.Certificate], anchors: list[x509.Certificate], at: datetime) -> None:
    for cert in chain:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise VerificationError(f"certificate {cert.subject.rfc4514_string()} is not valid now")
    for child, parent in zip(chain, chain[1:], strict=False):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise VerificationError(f"{child.subject.rfc4514_string()} is not issued by the next certificate") from None
    last = chain[-1]
    for anchor in anchors:
        if last.public_bytes(serialization.Encoding.DER) == anchor.public_bytes(serialization.Encoding.DER):
            return
        try:
            last.verify_directly_issued_by(anchor)
            return
        except (ValueError, TypeError, InvalidSignature):
            continue
    raise VerificationError("the certificate chain does not lead to a trusted CA")


def verify(signed: dict[str, Any], ca_file: Path, *, at: datetime | None = None) -> dict[str, Any]:
    """The unsigned vCon inside a signed one, after checking every signature and its chain."""
    anchors = load_certificates(_read(ca_file, "--ca"), "--ca")
    signatures = signed.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise VerificationError("no signatures")
    payload: dict[str, Any] | None = None
    for sig in signatures:
        header = {**(sig.get("header") or {})}
        x5c = header.get("x5c")
        if not x5c:
            raise VerificationError("a signature has no x5c certificate chain (x5u is not fetched)")
        try:
            chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in x5c]
        except ValueError as exc:
            raise VerificationError(f"bad x5c: {exc}") from None
        _verify_chain(chain, anchors, at or SYSTEM.now())
        member = cast(jws.GeneralJSONSerialization, {"payload": signed.get("payload"), "signatures": [sig]})
        try:
            result = jws.deserialize_json(member, _public_jose_key(chain[0]), registry=JWS_REGISTRY)
            payload = json.loads(result.payload)
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise VerificationError(f"signature does not verify: {exc}") from None
        if header.get("uuid") not in (None, payload.get("uuid")):
            raise VerificationError("the header's uuid is not the payload's")
    assert payload is not None
    return payload
