"""Delivery to a conserver-shaped HTTP endpoint: retries, dead letters, the API's shape."""

import json

from conserver import Conserver
from scripted import answered, busy

from capture.mixdown import MediaPolicy
from capture.pipeline import Pipeline
from capture.sinks.conserver import ConserverSink
from capture.sinks.directory import DirectorySink
from capture.spool import Spool


async def deliver(tmp_path, server: Conserver, *scenarios, ingress=("main",), token="s3cret"):
    url = await server.start()
    out = tmp_path / "out"
    out.mkdir()
    pipeline = Pipeline(
        state_dir=tmp_path / "state",
        domain="test.example",
        media=MediaPolicy(),
        spool=Spool(tmp_path / "state" / "spool"),
        sinks=[DirectorySink(out), ConserverSink(url, token=token, ingress_lists=ingress, timeout_s=5)],
        retry_max_s=0.4,
    )
    await pipeline.start()
    for n, scenario in enumerate(scenarios):
        await scenario(pipeline, f"c{n}")
    drained = await pipeline.drain(15)
    await pipeline.aclose()
    await server.stop()
    return drained, pipeline.spool


async def test_endpoint_failing_three_times_then_accepting_gets_each_vcon_once(tmp_path):
    server = Conserver(token="s3cret", fail_first=3)
    drained, spool = await deliver(tmp_path, server, answered, busy)
    assert drained
    assert server.requests == 3 + 2
    assert len(server.received) == 2 and set(server.received.values()) == {1}
    assert spool.depth() == 0
    on_disk = {json.loads(p.read_bytes())["uuid"] for p in (tmp_path / "out").glob("*.vcon")}
    assert on_disk == set(server.received)


async def test_ingress_lists_are_repeated_parameters_and_token_is_sent(tmp_path):
    server = Conserver(token="s3cret")
    drained, _ = await deliver(tmp_path, server, busy, ingress=("transcribe", "archive"))
    assert drained
    assert server.ingress == [["transcribe", "archive"]]


async def test_permanent_refusal_is_dead_lettered_not_retried(tmp_path):
    server = Conserver(token="right")
    drained, spool = await deliver(tmp_path, server, busy, token="wrong")
    assert drained
    assert server.requests == 1
    dead = list((spool.dead / "conserver").glob("*.vcon"))
    assert len(dead) == 1
    assert "HTTP 403" in dead[0].with_suffix(".reason").read_text()
    assert len(list((tmp_path / "out").glob("*.vcon"))) == 1, "the directory sink still has it"


async def test_a_dead_letter_retried_after_the_cause_is_fixed_is_delivered_once_to_that_sink_only(tmp_path):
    server = Conserver(token="right")
    url = await server.start()
    out = tmp_path / "out"
    out.mkdir()
    sink = ConserverSink(url, token="wrong", ingress_lists=(), timeout_s=5)
    pipeline = Pipeline(
        state_dir=tmp_path / "state",
        domain="test.example",
        media=MediaPolicy(),
        spool=Spool(tmp_path / "state" / "spool"),
        sinks=[DirectorySink(out), sink],
        retry_max_s=0.4,
    )
    await pipeline.start()
    await busy(pipeline, "c1")
    assert await pipeline.drain(15)
    ((sink_name, vcon_uuid, reason),) = pipeline.spool.dead_letters()
    assert sink_name == "conserver" and "HTTP 403" in reason and server.received[vcon_uuid] == 0
    (out / f"{vcon_uuid}.vcon").unlink()  # if the directory sink were asked again, this would come back
    sink._headers["x-conserver-api-token"] = "right"  # the operator fixes the token
    assert await pipeline.delivery.retry_dead_letter("conserver", vcon_uuid)
    assert not await pipeline.delivery.retry_dead_letter("conserver", vcon_uuid), "only once"
    assert await pipeline.drain(15)
    await pipeline.aclose()
    await server.stop()
    assert dict(server.received) == {vcon_uuid: 1}
    assert pipeline.spool.dead_letters() == [] and pipeline.spool.depth() == 0
    assert not (out / f"{vcon_uuid}.vcon").exists(), "the other sinks are not asked again"
