"""Signed (JWS) and encrypted (JWE) vCons: round trips, tampering, the WG examples' shape."""

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from scripted import answered
from test_pipeline import make_pipeline
from vconcheck import EXAMPLES, assert_valid

from capture.cli import main
from capture.config import CoreSettings
from capture.errors import ConfigError
from capture.finishing import _sealer
from capture.service import _sealing
from capture.signing import ENC, Signer, VerificationError, decrypt, encrypt, verify


def _cert(subject, key, issuer, issuer_key, *, ca, days=10):
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def make_pki(tmp_path: Path, kind: str) -> dict:
    """A CA, an intermediate and a recorder certificate (RSA or P-256), as PEM files."""
    make = (
        (lambda: rsa.generate_private_key(65537, 2048))
        if kind == "rsa"
        else (lambda: ec.generate_private_key(ec.SECP256R1()))
    )
    ca_key, mid_key, leaf_key = make(), make(), make()
    ca = _cert("Test Root", ca_key, "Test Root", ca_key, ca=True)
    mid = _cert("Test Intermediate", mid_key, "Test Root", ca_key, ca=True)
    leaf = _cert("rec.example.com", leaf_key, "Test Intermediate", mid_key, ca=False)
    files = {
        "ca": tmp_path / "ca.pem",
        "key": tmp_path / "rec.key",
        "chain": tmp_path / "rec-chain.pem",
        "other_ca": tmp_path / "other-ca.pem",
    }
    files["ca"].write_bytes(_pem(ca))
    files["key"].write_bytes(_pem(leaf_key))
    files["chain"].write_bytes(_pem(leaf) + _pem(mid))
    other_key = make()
    files["other_ca"].write_bytes(_pem(_cert("Other Root", other_key, "Other Root", other_key, ca=True)))
    files["alg"] = "RS256" if kind == "rsa" else "ES256"
    return files


@pytest.fixture(params=["rsa", "ec"])
def pki(request, tmp_path):
    return make_pki(tmp_path, request.param)


@pytest.fixture
def rsa_pki(tmp_path):
    """RSA only: RSA-OAEP encrypts to an RSA certificate."""
    return make_pki(tmp_path, "rsa")


DOC = {
    "vcon": "0.4.0",
    "uuid": "01a20a70-582c-807b-8305-1e11b6ccbc27",
    "created_at": "2026-01-01T00:00:00Z",
    "parties": [{"name": "Alice"}],
    "dialog": [],
}


def test_signed_form_verifies_and_carries_alg_x5c_uuid(pki):
    signed = Signer.from_files(pki["key"], pki["chain"]).sign(DOC)
    header = signed["signatures"][0]["header"]
    assert header["alg"] == pki["alg"] and header["uuid"] == DOC["uuid"] and len(header["x5c"]) == 2
    assert verify(signed, pki["ca"]) == DOC
    with pytest.raises(VerificationError, match="trusted CA"):
        verify(signed, pki["other_ca"])


def _tamper_payload(signed):
    payload = bytearray(base64.urlsafe_b64decode(signed["payload"] + "=="))
    payload[payload.index(b"Alice")] = ord("E")
    return {**signed, "payload": base64.urlsafe_b64encode(bytes(payload)).decode().rstrip("=")}


def test_a_changed_payload_byte_fails_verification(pki):
    signed = Signer.from_files(pki["key"], pki["chain"]).sign(DOC)
    with pytest.raises(VerificationError, match="does not verify"):
        verify(_tamper_payload(signed), pki["ca"])


def test_encrypted_form_round_trips_to_the_signed_form(rsa_pki, tmp_path):
    signed = Signer.from_files(rsa_pki["key"], rsa_pki["chain"]).sign(DOC)
    encrypted = encrypt(signed, rsa_pki["chain"])
    assert encrypted["unprotected"]["uuid"] == DOC["uuid"]
    assert decrypt(encrypted, rsa_pki["key"]) == signed
    with pytest.raises(ConfigError):
        encrypt(signed, tmp_path / "missing.pem")


def test_shapes_match_the_wg_examples(rsa_pki):
    ours_signed = Signer.from_files(rsa_pki["key"], rsa_pki["chain"]).sign(DOC)
    theirs_signed = json.loads((EXAMPLES / "ab_call_ext_rec_signed.vcon").read_text())
    assert ours_signed.keys() == theirs_signed.keys()
    for ours, theirs in zip(ours_signed["signatures"], theirs_signed["signatures"], strict=True):
        assert ours.keys() == theirs.keys()
        assert ours["header"].keys() == theirs["header"].keys()
        decode = lambda s: json.loads(base64.urlsafe_b64decode(s + "=="))  # noqa: E731
        assert decode(ours["protected"]).keys() == decode(theirs["protected"]).keys()
    inner = json.loads(base64.urlsafe_b64decode(theirs_signed["payload"] + "=="))
    assert inner["uuid"] == theirs_signed["signatures"][0]["header"]["uuid"]
    ours_enc = encrypt(ours_signed, rsa_pki["chain"])
    theirs_enc = json.loads((EXAMPLES / "ab_call_ext_rec_encrypted.vcon").read_text())
    assert ours_enc.keys() == theirs_enc.keys()
    assert decode(ours_enc["protected"]) == decode(theirs_enc["protected"]) == {"alg": "RSA-OAEP", "enc": ENC}
    # The example repeats enc in its unprotected and recipient headers, which RFC 7516 §7.2.1
    # forbids (names must be disjoint) and jwcrypto refuses: ours keeps uuid and cty only.
    assert set(ours_enc["unprotected"]) == set(theirs_enc["unprotected"]) - {"enc"} == {"uuid", "cty"}
    assert ours_enc["recipients"][0].keys() == theirs_enc["recipients"][0].keys()


def _jwcrypto_key(pem_file: Path):
    from jwcrypto import jwk

    return jwk.JWK.from_pem(pem_file.read_bytes())


def test_an_independent_jose_library_decrypts_our_encrypted_vcon(rsa_pki):
    """jwcrypto (not joserfc) opens our JWE, and the signed form inside verifies with our verify."""
    from jwcrypto import jwe as jjwe

    signed = Signer.from_files(rsa_pki["key"], rsa_pki["chain"]).sign(DOC)
    token = jjwe.JWE()
    token.deserialize(json.dumps(encrypt(signed, rsa_pki["chain"])), key=_jwcrypto_key(rsa_pki["key"]))
    assert json.loads(token.payload) == signed
    assert verify(json.loads(token.payload), rsa_pki["ca"]) == DOC


def test_we_decrypt_a_jwe_made_as_py_vcon_makes_it(rsa_pki):
    """py-vcon 0.6.0 (python-vcon) writes protected {alg, enc}, uuid unprotected, one recipient:
    made here with jwcrypto (py-vcon itself does not install on Python 3.11: its pyjq dependency
    needs autoreconf to build)."""
    from jwcrypto import jwe as jjwe
    from jwcrypto.common import json_encode

    signed = Signer.from_files(rsa_pki["key"], rsa_pki["chain"]).sign(DOC)
    leaf = _jwcrypto_key(rsa_pki["chain"])
    token = jjwe.JWE(
        json.dumps(signed).encode(),
        protected=json_encode({"alg": "RSA-OAEP", "enc": ENC}),
        unprotected=json_encode({"uuid": DOC["uuid"]}),
    )
    token.add_recipient(leaf)
    theirs = json.loads(token.serialize())
    assert decrypt(theirs, rsa_pki["key"]) == signed


async def test_pipeline_emits_signed_vcons_that_the_cli_verifies(pki, tmp_path, capsys):
    core = CoreSettings(
        signing_key_file=pki["key"], signing_cert_file=pki["chain"], media_url_base="https://media.example.com/r"
    )
    pipeline = make_pipeline(tmp_path, url_base=core.media_url_base, sealing=_sealing(core))
    await pipeline.start()
    await answered(pipeline, "c1")
    assert await pipeline.drain(10)
    await pipeline.aclose()
    (path,) = (tmp_path / "out").glob("*.vcon")
    signed = json.loads(path.read_bytes())
    assert_valid(verify(signed, pki["ca"]))
    assert main(["verify", str(path), "--ca", str(pki["ca"])]) == 0
    # one byte of the referenced recording changed: the content_hash no longer matches
    (media,) = (tmp_path / "out").glob("*.wav")
    data = bytearray(media.read_bytes())
    data[-1] ^= 0xFF
    media.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["verify", str(path), "--ca", str(pki["ca"])]) == 1
    assert "content_hash: does not match" in capsys.readouterr().out
    # one byte of the payload changed
    path.write_text(json.dumps(_tamper_payload(signed)))
    assert main(["verify", str(path), "--ca", str(pki["ca"])]) == 1


def test_cli_decrypt_then_verify(rsa_pki, tmp_path):
    core = CoreSettings(
        signing_key_file=rsa_pki["key"], signing_cert_file=rsa_pki["chain"], encrypt_cert_file=rsa_pki["chain"]
    )
    sealed = _sealer(_sealing(core))(DOC)
    (tmp_path / "e.vcon").write_text(json.dumps(sealed))
    assert (
        main(["decrypt", str(tmp_path / "e.vcon"), "--key", str(rsa_pki["key"]), "-o", str(tmp_path / "s.vcon")]) == 0
    )
    assert main(["verify", str(tmp_path / "s.vcon"), "--ca", str(rsa_pki["ca"])]) == 0
    assert main(["validate", str(tmp_path / "e.vcon")]) == 1


def test_signing_settings_are_checked_together(pki):
    with pytest.raises(ConfigError, match="signing_key_file"):
        CoreSettings(signing_key_file=pki["key"])
    with pytest.raises(ConfigError, match="encrypt_cert_file"):
        CoreSettings(encrypt_cert_file=pki["chain"])
    with pytest.raises(ConfigError, match="unsigned"):
        CoreSettings(signing_key_file=pki["key"], signing_cert_file=pki["chain"], conserver_url="http://c")
    with pytest.raises(ConfigError, match="does not match"):
        Signer.from_files(pki["key"], pki["ca"])


def test_no_private_key_material_in_signed_output(pki):
    signed = json.dumps(Signer.from_files(pki["key"], pki["chain"]).sign(DOC))
    key_body = "".join(Path(pki["key"]).read_text().splitlines()[1:-1])
    assert key_body[:40] not in signed


def test_a_real_sized_vcon_signs_encrypts_verifies_and_decrypts(rsa_pki, tmp_path):
    """joserfc caps JWS payloads at 128 kB and JWE ciphertexts at 64 kB by default: half a minute
    of inline audio is past both; verify and decrypt must take it."""
    big = {**DOC, "dialog": [{**_audio_dialog(), "body": "A" * 2_000_000}]}
    signed = Signer.from_files(rsa_pki["key"], rsa_pki["chain"]).sign(big)
    assert verify(signed, rsa_pki["ca"]) == big
    encrypted = encrypt(signed, rsa_pki["chain"])
    assert decrypt(encrypted, rsa_pki["key"]) == signed
    path = tmp_path / "big.vcon"
    path.write_text(json.dumps(encrypted))
    assert main(["decrypt", str(path), "--key", str(rsa_pki["key"]), "-o", str(tmp_path / "signed.vcon")]) == 0
    assert main(["verify", str(tmp_path / "signed.vcon"), "--ca", str(rsa_pki["ca"])]) == 0


def _audio_dialog() -> dict:
    return {"type": "recording", "start": "2026-01-01T00:00:00Z", "parties": [0], "mediatype": "audio/x-wav",
            "encoding": "base64url"}  # fmt: skip
