"""What consumers need from our vCons (issue "Accepted everywhere"): numbers the reference conserver
takes, the sip-signaling extension, a lawful basis from the operator, the whole refusal kept, and
a webhook sink any HTTPS endpoint can take exactly once."""

import asyncio
import hashlib
import hmac
import json
import ssl
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from conserver import Conserver, conserver_rejects
from scripted import answered
from test_pipeline import make_pipeline
from tlsfiles import tls_files
from vconcheck import assert_valid

from capture import events as ev
from capture.delivery import Delivery
from capture.errors import PermanentDeliveryError
from capture.metrics import Metrics
from capture.mixdown import MediaPolicy
from capture.pipeline import Pipeline
from capture.sinks.conserver import ConserverSink
from capture.sinks.directory import DirectorySink
from capture.sinks.webhook import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, WebhookSink
from capture.spool import Spool
from capture.vcon.numbers import is_extension, party_identity
from capture.vcon.profile import LawfulBasis, Profile


@pytest.mark.parametrize(
    ("tel", "extension"),
    [("1001", True), ("201", True), ("2010", True), ("20100", False), ("+15551230001", False), ("*97", True)],
)
def test_short_numbers_are_extensions_and_dialable_ones_stay_tel(tel, extension):
    assert is_extension(tel, None) is extension
    doc = {"vcon": "0.4.0", "uuid": "01a20a70-582c-807b-8305-1e11b6ccbc27", "created_at": "2026-01-01T00:00:00Z"}
    fields, raw = party_identity({"tel": tel, "name": "Alice"}, "pbx.example.com", None)
    assert conserver_rejects({**doc, "parties": [fields]}) is None
    assert (raw == tel) is extension


def test_an_operator_pattern_makes_longer_numbers_extensions_too():
    import re

    assert is_extension("55012", re.compile(r"550\d\d"))
    assert not is_extension("+4955012", re.compile(r"550\d\d"))
    fields, raw = party_identity({"tel": "55012"}, "pbx.example.com", re.compile(r"550\d\d"))
    assert fields == {"sip": "sip:55012@pbx.example.com"} and raw == "55012"


async def pbx_call(capture, call_id: str) -> None:
    """A PBX call between two extensions and an outside number, with the SIP details of a SIP dialog."""
    t0 = capture.now()
    capture.emit(
        ev.CallStarted(
            call_id=call_id,
            at=t0,
            source="scripted",
            domain="pbx.example.com",
            sip_call_id="a84b4c76e66710@pbx.example.com",
            sip_from_tag="1928301774",
            sip_to_tag="a6c85cf",
            sip_cseq=314159,
        )
    )
    capture.emit(
        ev.PartyJoined(
            call_id=call_id,
            at=t0,
            party="alice",
            tel="1001",
            name="Alice Caller",
            sip_contact="sip:alice@192.0.2.10:5060",
            sip_user_agent="Yealink SIP-T54W 96.86.0.100",
            sip_display_name="Alice Caller",
        )
    )
    capture.emit(ev.PartyJoined(call_id=call_id, at=t0, party="bob", tel="201", sip="sip:201@pbx.example.com"))
    capture.emit(ev.PartyJoined(call_id=call_id, at=t0, party="carol", tel="+15551230003", name="Carol"))
    capture.emit(ev.CallAnswered(call_id=call_id, at=t0))
    capture.emit(ev.CallEnded(call_id=call_id, at=t0 + timedelta(seconds=5)))


async def run(tmp_path: Path, scenario, profile: Profile | None = None) -> dict:
    out = tmp_path / "out"
    out.mkdir(parents=True, exist_ok=True)
    pipeline = Pipeline(
        state_dir=tmp_path / "state",
        domain="rec.example.com",
        media=MediaPolicy(),
        spool=Spool(tmp_path / "state" / "spool"),
        sinks=[DirectorySink(out)],
        profile=profile,
    )
    await pipeline.start()
    await scenario(pipeline, "c1")
    assert await pipeline.drain(10)
    await pipeline.aclose()
    (path,) = out.glob("*.vcon")
    return assert_valid(json.loads(path.read_bytes()))


async def test_extensions_become_sip_parties_on_the_pbx_domain_and_the_cdr_keeps_the_digits(tmp_path):
    doc = await run(tmp_path, pbx_call)
    alice, bob, carol = doc["parties"]
    assert alice["sip"] == "sip:1001@pbx.example.com" and "tel" not in alice and alice["name"] == "Alice Caller"
    assert bob == {"sip": "sip:201@pbx.example.com"}, "an existing sip identity is kept, the short tel dropped"
    assert carol["tel"] == "+15551230003"
    (cdr,) = [a for a in doc["attachments"] if a["purpose"] == "cdr"]
    assert cdr["body"]["internal_numbers"] == {"0": "1001", "1": "201"}


async def test_sip_signaling_fields_are_on_parties_and_dialogs_and_listed_as_a_compatible_extension(tmp_path):
    doc = await run(tmp_path, pbx_call)
    assert doc["extensions"] == ["sip-signaling"] and "critical" not in doc
    alice = doc["parties"][0]
    assert alice["sip_contact"] == "sip:alice@192.0.2.10:5060"
    assert alice["sip_user_agent"].startswith("Yealink") and alice["sip_display_name"] == "Alice Caller"
    for dialog in doc["dialog"]:
        assert dialog["sip_call_id"] == "a84b4c76e66710@pbx.example.com"
        assert (dialog["sip_from_tag"], dialog["sip_to_tag"], dialog["sip_cseq"]) == ("1928301774", "a6c85cf", 314159)


async def test_no_sip_details_no_extension_listed(tmp_path):
    doc = await run(tmp_path, answered)
    assert "extensions" not in doc


async def test_lawful_basis_comes_only_from_the_operator(tmp_path):
    plain = await run(tmp_path / "a", pbx_call)
    assert not [a for a in plain["attachments"] if a["purpose"] == "lawful_basis"], "never a default basis"
    basis = LawfulBasis("legitimate_interests", "quality-assurance", expiry_days=90)
    doc = await run(tmp_path / "b", pbx_call, Profile(lawful_basis=basis))
    (att,) = [a for a in doc["attachments"] if a["purpose"] == "lawful_basis"]
    assert att["type"] == "lawful_basis" and att["encoding"] == "json" and att["mediatype"] == "application/json"
    body = att["body"]
    assert body["lawful_basis"] == "legitimate_interests"
    (grant,) = body["purpose_grants"]
    assert grant["purpose"] == "quality-assurance" and grant["granted"] is True
    start = datetime.fromisoformat(doc["created_at"].replace("Z", "+00:00"))
    expiry = datetime.fromisoformat(body["expiration"].replace("Z", "+00:00"))
    assert expiry - start == timedelta(days=90)
    assert "lawful_basis" in doc["extensions"]


async def test_a_conserver_refusal_is_dead_lettered_with_every_refused_field(tmp_path):
    server = Conserver()
    url = await server.start()
    spool = Spool(tmp_path / "spool")
    doc = {
        "vcon": "0.4.0",
        "uuid": "01a20a70-582c-807b-8305-1e11b6ccbc27",
        "created_at": "2026-01-01T00:00:00Z",
        "parties": [{"tel": "1001", "name": "x" * 300}, {"tel": "201"}],
    }
    path = spool.put(doc["uuid"], json.dumps(doc).encode())
    sink = ConserverSink(url, token=None, ingress_lists=(), timeout_s=5)
    with pytest.raises(PermanentDeliveryError) as refused:
        await sink.deliver(doc["uuid"], path)
    delivery = Delivery(spool, [sink], metrics=Metrics())
    delivery.start()
    await delivery.wait_empty(asyncio.get_running_loop().time() + 10)
    await delivery.aclose()
    await server.stop()
    reason = (spool.dead / "conserver" / f"{doc['uuid']}.reason").read_text()
    assert reason.strip() == refused.value.reason
    assert "'1001'" in reason and "'201'" in reason, "the second refused party is named too"


# -- webhook -----------------------------------------------------------------------------


def _tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return tls_files(tmp_path)


class Receiver:
    """An HTTPS endpoint as a careful consumer writes one: checks the HMAC, keeps each Idempotency-Key once.

    ``fail_first`` answers 503 before looking; ``lose_replies`` stores the vCon, then answers 500
    as if the reply had been lost, so the sender retries something already taken.
    """

    def __init__(self, secret: str, *, fail_first: int = 0, lose_replies: int = 0) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.lose_replies = lose_replies
        self.requests = 0
        self.bad_signatures = 0
        self.stored: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()

    async def post(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if self.requests <= self.fail_first:
            return web.Response(status=503)
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get(SIGNATURE_HEADER, "")):
            self.bad_signatures += 1
            return web.Response(status=401)
        key = request.headers[IDEMPOTENCY_HEADER]
        assert key == json.loads(body)["uuid"]
        self.attempts[key] += 1
        if self.stored[key]:
            return web.Response(status=409, text="already have it")
        self.stored[key] += 1
        if self.lose_replies:
            self.lose_replies -= 1
            return web.Response(status=500)
        return web.Response(status=201)

    async def start(self, cert: Path, key: Path) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/vcons", self.post)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"https://127.0.0.1:{port}/vcons"

    async def stop(self) -> None:
        await self.runner.cleanup()


def webhook_pipeline(tmp_path: Path, url: str, ca: Path, secret: str) -> Pipeline:
    pipeline = make_pipeline(tmp_path)
    pipeline.delivery.sinks.append(WebhookSink(url, secret=secret, timeout_s=5, ca_file=ca))
    pipeline.delivery.retry_max_s = 0.3
    return pipeline


async def test_webhook_delivers_each_vcon_exactly_once_across_retries_and_a_restart(tmp_path):
    cert, key = _tls_files(tmp_path)
    secret = "3f1b9c2d-webhook-secret"
    receiver = Receiver(secret, fail_first=2, lose_replies=1)
    url = await receiver.start(cert, key)

    first = webhook_pipeline(tmp_path, url, cert, secret)
    await first.start()
    await answered(first, "c1")
    assert await first.drain(15)
    await first.aclose()
    # The service restarts with a vCon the receiver already holds still in its spool (its
    # acknowledgement was lost with the process): the new run sends it again, same key.
    (uuid1,) = receiver.stored
    first.spool.put(uuid1, (tmp_path / "out" / f"{uuid1}.vcon").read_bytes())
    second = webhook_pipeline(tmp_path, url, cert, secret)
    await second.start()
    await answered(second, "c2")
    assert await second.drain(15)
    await second.aclose()
    await receiver.stop()

    assert receiver.bad_signatures == 0
    assert len(receiver.stored) == 2 and set(receiver.stored.values()) == {1}, receiver.stored
    assert receiver.attempts[uuid1] == 3, "lost reply retried, then resent after the restart: taken once"
    assert second.spool.depth() == 0


async def test_webhook_with_a_wrong_secret_is_dead_lettered_not_retried(tmp_path):
    cert, key = _tls_files(tmp_path)
    receiver = Receiver("right")
    url = await receiver.start(cert, key)
    pipeline = webhook_pipeline(tmp_path, url, cert, "wrong")
    await pipeline.start()
    await answered(pipeline, "c1")
    assert await pipeline.drain(15)
    await pipeline.aclose()
    await receiver.stop()
    assert receiver.requests == 1 and not receiver.stored
    (reason,) = (pipeline.spool.dead / "webhook").glob("*.reason")
    assert "HTTP 401" in reason.read_text()


async def test_webhook_refuses_an_untrusted_certificate(tmp_path):
    cert, key = _tls_files(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = _tls_files(tmp_path / "other")
    receiver = Receiver("s")
    url = await receiver.start(cert, key)
    sink = WebhookSink(url, secret="s", timeout_s=5, ca_file=other_cert)
    from capture.errors import TransientDeliveryError

    body = tmp_path / "body.vcon"
    body.write_bytes(b"{}")
    with pytest.raises(TransientDeliveryError, match="certificate"):
        await sink.deliver("01a20a70-582c-807b-8305-1e11b6ccbc27", body)
    await sink.aclose()
    await receiver.stop()
    assert receiver.requests == 0


async def test_the_originator_the_adapter_names_is_on_every_dialog_but_transfers(tmp_path):
    async def called_back(capture, call_id):
        t0 = capture.now()
        capture.emit(ev.CallStarted(call_id=call_id, at=t0, source="scripted", originator="bob"))
        capture.emit(ev.PartyJoined(call_id=call_id, at=t0, party="alice", tel="+15551230001"))
        capture.emit(ev.PartyJoined(call_id=call_id, at=t0, party="bob", tel="+15551230002"))
        capture.emit(ev.CallEnded(call_id=call_id, at=t0, disposition=ev.Disposition.BUSY))

    doc = await run(tmp_path, called_back)
    (incomplete,) = doc["dialog"]
    assert incomplete["type"] == "incomplete" and incomplete["originator"] == 1
