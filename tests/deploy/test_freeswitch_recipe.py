"""The FreeSWITCH recipe (deploy/freeswitch/): its XML, and its Lua helper run by a real Lua 5.3.

FreeSWITCH itself cannot run here (a source build takes longer than CI has): the end-to-end
check against FreeSWITCH 1.10.12 is the procedure in deploy/freeswitch/README.md. What these
tests run is the shipped vcon_capture.lua, unchanged, in the interpreter FreeSWITCH's mod_lua
embeds (Lua 5.3), with the `freeswitch` API replaced by a stand-in that records what the
script asks of it (the one mock here: FreeSWITCH). The dial strings it builds are then parsed
the way FreeSWITCH 1.10.12 parses them (switch_event_create_brackets and
switch_separate_string, ported below), and the X-Vcon-* values decoded as the recorder must
(RFC 3986 percent-decoding, UTF-8).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
FS = ROOT / "deploy" / "freeswitch"
SCRIPT = FS / "scripts" / "vcon_capture.lua"
LUA = shutil.which("lua5.3")
needs_lua = pytest.mark.skipif(LUA is None, reason="lua5.3 (Debian package) not installed")

AWKWARD = [
    "Doe, Jane",
    "Pat O'Brien",
    "O'Brien, Pat",
    '"Big" Tom',
    "Tom | Sales",
    "José Müller-Ødegård",
    "Ann 100% ${uuid} {x}",
    "a^^:b=c:d,e|f;g<h>[i]\\j",
    "  spaced  out  ",
    "李小龙",
]
A_UUID = "6f89aca9-b39e-4845-b9c7-30ecc948fc38"


# -- FreeSWITCH 1.10.12's dial-string variable parsing (src/switch_utils.c, switch_event.c) --


def _cleanup(token: str, delim: str) -> str:
    """cleanup_separated_string: leading spaces, backslash escapes and single quotes go."""
    i = 0
    while i < len(token) and token[i] == " ":
        i += 1
    out: list[str] = []
    end = 0
    inside = False
    unescape = {"n": "\n", "r": "\r", "t": "\t", "s": " "}
    while i < len(token):
        c = token[i]
        if c == "\\" and i + 1 < len(token):
            e = token[i + 1]
            if e in ("'", '"', delim, "\\") or e in unescape:
                out.append(unescape.get(e, e) if e not in ("'", '"', delim, "\\") else e)
                end = len(out)
                i += 2
                continue
        if c == "'" and (inside or "'" in token[i + 1 :]):
            inside = not inside
            if inside:
                end = len(out)
        else:
            out.append(c)
            if c != " " or inside:
                end = len(out)
        i += 1
    return "".join(out[:end])


def fs_separate(buf: str, delim: str, limit: int = 1024) -> list[str]:
    """separate_string_char_delim."""
    tokens: list[str] = []
    start, i, inside = 0, 0, False
    while i < len(buf) and len(tokens) < limit - 1:
        c = buf[i]
        if c == "\\":
            i += 1
        elif c == "'" and (inside or "'" in buf[i + 1 :]):
            inside = not inside
        elif c == delim and not inside:
            tokens.append(buf[start:i])
            start = i + 1
        i += 1
    tokens.append(buf[start:])
    return [_cleanup(t, delim) for t in tokens]


def fs_dial_string(dial: str) -> tuple[dict[str, str], str]:
    """{^^D...}rest -> (variables, rest), as switch_event_create_brackets reads one block."""
    assert dial.startswith("{"), dial
    depth, end = 0, None
    for i, c in enumerate(dial):
        depth += c == "{"
        depth -= c == "}"
        if depth == 0:
            end = i
            break
    assert end is not None, "unbalanced braces"
    body, rest = dial[1:end], dial[end + 1 :]
    delim = ","
    if body.startswith("^^"):
        delim, body = body[2], body[3:]
    variables = {}
    for pair in fs_separate(body, delim):
        parts = fs_separate(pair, "=", limit=2)
        if len(parts) == 2:
            variables[parts[0]] = parts[1]
    return variables, rest


def x_vcon(variables: dict[str, str]) -> dict[str, str]:
    """The X-Vcon-* headers FreeSWITCH will put on the INVITE, decoded as the recorder must."""
    assert variables["sip_h_X-Vcon-Encoding"] == "percent"
    return {
        k.removeprefix("sip_h_X-Vcon-"): unquote(v, errors="strict")
        for k, v in variables.items()
        if k.startswith("sip_h_X-Vcon-") and k != "sip_h_X-Vcon-Encoding"
    }


# -- the stand-in FreeSWITCH API (Lua) -----------------------------------------------------

HARNESS = r"""
local function hex(s) return (tostring(s):gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function emit(kind, ...)
  local parts = {kind}
  for _, v in ipairs({...}) do parts[#parts + 1] = hex(v) end
  io.write(table.concat(parts, "\t"), "\n")
end
local function Leg(uuid, vars, ready, cause)
  local leg = {uuid = uuid, vars = vars, up = ready, cause = cause}
  function leg:getVariable(n) return self.vars[n] end
  function leg:setVariable(n, v) self.vars[n] = v; emit("setvar", self.uuid, n, v) end
  function leg:ready() return self.up end
  function leg:get_uuid() return self.uuid end
  function leg:hangupCause() return self.cause end
  function leg:hangup(c) self.up = false; emit("hangup", self.uuid, c or "") end
  function leg:destroy() emit("destroy", self.uuid) end
  function leg:execute(app, arg)
    emit("execute", self.uuid, app, arg or "")
    if app == "eavesdrop" then
      for k, v in pairs(CFG.a_after or {}) do A.vars[k] = v end
      if not CFG.a_stays_up then A.up = false end
      if CFG.recorder_hangs_up then self.up = false end
    end
  end
  return leg
end
A = Leg(CFG.a_uuid, CFG.a_vars or {}, CFG.a_ready ~= false)
freeswitch = {}
function freeswitch.getGlobalVariable(n) return (CFG.globals or {})[n] end
function freeswitch.consoleLog(level, msg) emit("log", level, msg) end
function freeswitch.Event(kind, sub)
  local e = {h = {}}
  function e:addHeader(k, v) self.h[#self.h + 1] = k .. "=" .. v end
  function e:fire() emit("event", sub, table.concat(self.h, "\n")) end
  return e
end
function freeswitch.API()
  return {execute = function(self, cmd, arg)
    emit("api", cmd, arg or "")
    if cmd == "uuid_exists" then return (CFG.a_exists ~= false) and "true" or "false" end
    if cmd == "uuid_getvar" then return CFG.partner_channel or "_undef_" end
    return "+OK"
  end}
end
local made = 0
function freeswitch.Session(arg)
  if arg == CFG.a_uuid then return A end
  made = made + 1
  emit("originate", arg)
  local outcome = (CFG.outcomes or {})[made] or {ready = true}
  return Leg("leg-" .. made, {}, outcome.ready, outcome.cause)
end
if CFG.mode == "answer" then session = A
elseif CFG.mode == "event" then event = {getHeader = function(self, n) return CFG.event[n] end}
else argv = CFG.argv end
"""


def lua_string(value: str) -> str:
    return '"' + "".join(f"\\{b}" for b in value.encode()) + '"'


def lua_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_string(k)}] = {lua_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def run_script(tmp_path: Path, **cfg: object) -> list[tuple[str, ...]]:
    """Run vcon_capture.lua once; the calls it made on the stand-in, in order."""
    cfg.setdefault("a_uuid", A_UUID)
    driver = tmp_path / "driver.lua"
    driver.write_text(f"CFG = {lua_value(cfg)}\n{HARNESS}\ndofile({lua_string(str(SCRIPT))})\n")
    done = subprocess.run([LUA, str(driver)], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    calls = []
    for line in done.stdout.decode().splitlines():
        kind, *args = line.split("\t")
        calls.append((kind, *(bytes.fromhex(a).decode() for a in args)))
    return calls


def a_leg(**overrides: str) -> dict[str, str]:
    """Variables of an answered incoming A leg bridged to a registered phone, as FreeSWITCH has them."""
    variables = {
        "uuid": A_UUID,
        "channel_name": "sofia/external/2000@127.0.0.1:5062",
        "direction": "inbound",
        "caller_id_number": "2000",
        "caller_id_name": "Alice Caller",
        "destination_number": "1001",
        "callee_id_number": "1001",
        "callee_id_name": "Bob Callee",
        "signal_bond": "91eec64e-c6a2-470d-ba55-26e2d97b880f",
    }
    variables.update(overrides)
    return variables


def originations(calls: list[tuple[str, ...]]) -> list[tuple[dict[str, str], str]]:
    return [fs_dial_string(c[1]) for c in calls if c[0] == "originate"]


# -- the XML files ----------------------------------------------------------------------------


def test_recipe_xml_is_well_formed_and_names_one_gateway() -> None:
    settings = ET.parse(FS / "vcon-capture.xml").getroot()
    sets = dict(p.get("data", "").split("=", 1) for p in settings.iter("X-PRE-PROCESS") if p.get("cmd") == "set")
    profile = ET.parse(FS / "sip_profiles" / "vcon-recorder.xml").getroot()
    (gateway,) = profile.iter("gateway")
    assert sets["vcon_capture_gateway"] == gateway.get("name")
    # FreeSWITCH runs every variable named execute_on_answer* on answer, global or not.
    hooks = {k: v for k, v in sets.items() if k.startswith("execute_on_answer")}
    assert hooks == {"execute_on_answer_vcon": f"lua {SCRIPT.name}"}


def test_no_preprocessor_line_inside_a_comment() -> None:
    """FreeSWITCH's preprocessor runs X-PRE-PROCESS lines even inside XML comments (found the
    hard way: a commented include of vcon-capture.xml included itself until it failed)."""
    for path in FS.rglob("*.xml"):
        text = path.read_text()
        for comment in re.findall(r"<!--.*?-->", text, re.S):
            assert "X-PRE-PROCESS" not in comment, path


# -- the Lua helper: which calls are copied ----------------------------------------------


@needs_lua
@pytest.mark.parametrize("destination", ["1001", "+15557654321", "05557654321", "*98", "alice"])
def test_every_answered_a_leg_is_copied_whatever_was_dialled(tmp_path: Path, destination: str) -> None:
    calls = run_script(tmp_path, mode="answer", a_vars=a_leg(destination_number=destination))
    assert ("api", "luarun", f"vcon_capture.lua copy {A_UUID}") in calls


@needs_lua
@pytest.mark.parametrize(
    ("why", "overrides"),
    [
        ("a B leg: its A leg has the copy", {"originator": "a19a0645-4665-40fc-8fb1-eb5661cca18b"}),
        ("the copy itself", {"vcon_leg": "copy"}),
        ("a notification leg", {"vcon_leg": "notify"}),
        ("a loopback half", {"channel_name": "loopback/voicemail-a"}),
        ("opted out", {"vcon_record": "false"}),
        ("opted out (FALSE)", {"vcon_record": "FALSE"}),
        ("opted out (no)", {"vcon_record": "no"}),
    ],
)
def test_legs_that_are_not_a_call_of_their_own_are_left_alone(
    tmp_path: Path, why: str, overrides: dict[str, str]
) -> None:
    calls = run_script(tmp_path, mode="answer", a_vars=a_leg(**overrides))
    assert not [c for c in calls if c[0] == "api"], why


# -- the copy ----------------------------------------------------------------------------------


@needs_lua
@pytest.mark.parametrize("name", AWKWARD)
def test_names_survive_the_dial_string_exactly(tmp_path: Path, name: str) -> None:
    calls = run_script(
        tmp_path,
        argv=["copy", A_UUID],
        a_vars=a_leg(caller_id_name=name, callee_id_name=name),
        partner_channel="sofia/internal/1001@127.0.0.1:5090",
    )
    ((variables, rest),) = originations(calls)
    headers = x_vcon(variables)
    assert headers["Caller-Name"] == name
    assert headers["Callee-Name"] == name
    assert headers["Call-Uuid"] == A_UUID
    assert headers["Callee-Channel"] == "sofia/internal/1001@127.0.0.1:5090"
    assert rest == "sofia/gateway/vcon-recorder/1001"
    # From/P-Asserted-Identity: a readable name made only of characters the dial string keeps
    shown = variables["origination_caller_id_name"]
    assert shown and not set(shown) & set("'\",|^:={}[]<>;\\$%")
    assert variables["absolute_codec_string"] == "PCMU,PCMA"
    assert variables["process_cdr"] == "false"


@needs_lua
def test_a_name_as_freeswitch_keeps_it_from_sip_is_unescaped(tmp_path: Path) -> None:
    """FreeSWITCH keeps a SIP quoted-string's backslashes: "\\"Big\\" Tom" arrives as \\"Big\\" Tom."""
    calls = run_script(tmp_path, argv=["copy", A_UUID], a_vars=a_leg(caller_id_name='\\"Big\\" Tom \\\\ Co'))
    ((variables, _),) = originations(calls)
    assert x_vcon(variables)["Caller-Name"] == '"Big" Tom \\ Co'


@needs_lua
@pytest.mark.parametrize("number", ["+15551230000", "05551230000", "2000", "*98#", "alice,bob", "o'neil", "1:2"])
def test_numbers_and_destinations_survive_exactly(tmp_path: Path, number: str) -> None:
    calls = run_script(
        tmp_path, argv=["copy", A_UUID], a_vars=a_leg(caller_id_number=number, destination_number=number)
    )
    ((variables, rest),) = originations(calls)
    headers = x_vcon(variables)
    assert headers["Caller-Num"] == headers["Dialled-Num"] == number
    user = rest.removeprefix("sofia/gateway/vcon-recorder/")
    assert re.fullmatch(r"[A-Za-z0-9+._~/@%-]+", user) and unquote(user) == number
    assert unquote(variables["origination_caller_id_number"]) == number


@needs_lua
@pytest.mark.parametrize(
    ("after", "ended_by", "cause"),
    [
        ({"sip_hangup_disposition": "recv_bye"}, "caller", None),
        ({"last_bridge_hangup_cause": "NORMAL_CLEARING"}, "callee", "NORMAL_CLEARING"),
        ({"sip_hangup_disposition": "recv_bye", "last_bridge_hangup_cause": "NORMAL_CLEARING"}, "caller", None),
        ({"hangup_cause": "ALLOTTED_TIMEOUT"}, "pbx", "ALLOTTED_TIMEOUT"),
    ],
)
def test_the_copy_eavesdrops_and_says_who_ended_the_call_on_its_bye(
    tmp_path: Path, after: dict[str, str], ended_by: str, cause: str | None
) -> None:
    calls = run_script(tmp_path, argv=["copy", A_UUID], a_vars=a_leg(), a_after=after)
    assert ("execute", "leg-1", "eavesdrop", A_UUID) in calls
    bye = {c[2]: c[3] for c in calls if c[0] == "setvar" and c[1] == "leg-1"}
    assert bye["sip_bye_h_X-Vcon-Ended-By"] == ended_by
    assert bye.get("sip_bye_h_X-Vcon-Hangup-Cause") == cause
    assert calls.index(("hangup", "leg-1", "NORMAL_CLEARING")) > calls.index(("execute", "leg-1", "eavesdrop", A_UUID))
    assert calls[-1] == ("destroy", A_UUID)


@needs_lua
def test_an_outgoing_a_leg_hung_up_by_its_phone_was_ended_by_the_callee(tmp_path: Path) -> None:
    calls = run_script(
        tmp_path,
        argv=["copy", A_UUID],
        a_vars=a_leg(direction="outbound"),
        a_after={"sip_hangup_disposition": "recv_bye"},
    )
    assert ("setvar", "leg-1", "sip_bye_h_X-Vcon-Ended-By", "callee") in calls


@needs_lua
@pytest.mark.parametrize("call_goes_on", [False, True])
def test_a_recorder_that_ended_the_copy_gets_no_bye(tmp_path: Path, call_goes_on: bool) -> None:
    calls = run_script(tmp_path, argv=["copy", A_UUID], a_vars=a_leg(), recorder_hangs_up=True, a_stays_up=call_goes_on)
    assert not [c for c in calls if c[0] in ("setvar", "hangup") and c[1] == "leg-1"]
    warnings = [c[2] for c in calls if c[0] == "log" and c[1] == "WARNING"]
    expected = f"vcon-capture: the recorder ended the copy of call {A_UUID} before the call ended\n"
    assert warnings == ([expected] if call_goes_on else [])


@needs_lua
def test_a_failed_copy_is_logged_and_reported_so_the_call_still_gets_its_vcon(tmp_path: Path) -> None:
    calls = run_script(
        tmp_path,
        argv=["copy", A_UUID],
        a_vars=a_leg(caller_id_name="Doe, Jane"),
        outcomes=[{"ready": False, "cause": "GATEWAY_DOWN"}, {"ready": False, "cause": "CALL_REJECTED"}],
    )
    errors = [c[2] for c in calls if c[0] == "log" and c[1] == "ERR"]
    assert errors == [f"vcon-capture: copy to gateway vcon-recorder for call {A_UUID} failed: GATEWAY_DOWN\n"]
    assert (
        "event",
        "vcon_capture::failure",
        f"Call-Uuid={A_UUID}\nWhat=copy to gateway vcon-recorder\nCause=GATEWAY_DOWN",
    ) in calls
    copy, report = originations(calls)
    headers = x_vcon(report[0])
    assert report[0]["vcon_leg"] == "notify"
    assert (headers["Disposition"], headers["Hangup-Cause"], headers["Caller-Name"]) == (
        "answered",
        "GATEWAY_DOWN",
        "Doe, Jane",
    )
    assert ("setvar", A_UUID, "vcon_copy", "failed:GATEWAY_DOWN") in calls


# -- unanswered calls ----------------------------------------------------------------------------


def hangup_event(**variables: str) -> dict[str, str]:
    event = {
        "Event-Name": "CHANNEL_HANGUP_COMPLETE",
        "Unique-ID": A_UUID,
        "Channel-Name": "sofia/external/+15551230000@127.0.0.1:5062",
        "Call-Direction": "inbound",
        "Caller-Caller-ID-Number": "+15551230000",
        "Caller-Caller-ID-Name": "O'Brien, Pat",
        "Caller-Destination-Number": "+15557654321",
        "Caller-Callee-ID-Number": "+15557654321",
        "Caller-Callee-ID-Name": "Outbound Call",
        "Caller-Channel-Created-Time": "1795941242704234",
        "Caller-Channel-Answered-Time": "0",
        "Caller-Channel-Hangup-Time": "1795941242744217",
        "Hangup-Cause": variables.get("hangup_cause", "NORMAL_CLEARING"),
    }
    event.update({f"variable_{k}": v for k, v in variables.items()})
    return event


def reported(tmp_path: Path, event: dict[str, str]) -> dict[str, str] | None:
    """Run the hangup hook on ``event``, then the notification it starts: its X-Vcon-* headers."""
    calls = run_script(tmp_path, mode="event", event=event)
    runs = [c[2] for c in calls if c[0] == "api" and c[1] == "luarun"]
    if not runs:
        return None
    (run,) = runs
    script, mode, payload = run.split(" ")
    assert (script, mode) == ("vcon_capture.lua", "notify")
    calls = run_script(tmp_path, argv=["notify", payload], outcomes=[{"ready": False, "cause": "CALL_REJECTED"}])
    ((variables, rest),) = originations(calls)
    assert rest == "sofia/gateway/vcon-recorder/+15557654321"
    assert [c for c in calls if c[0] == "log"] == [
        ("log", "INFO", f"vcon-capture: reported call {A_UUID} ({x_vcon(variables)['Disposition']})\n")
    ]
    return x_vcon(variables)


@needs_lua
@pytest.mark.parametrize(
    ("variables", "disposition", "ended_by"),
    [
        (
            {"hangup_cause": "USER_BUSY", "originate_disposition": "USER_BUSY", "sip_term_status": "486"},
            "busy",
            "callee",
        ),
        (
            {
                "hangup_cause": "ORIGINATOR_CANCEL",
                "sip_hangup_disposition": "recv_cancel",
                "sip_term_status": "487",
                "originate_disposition": "ORIGINATOR_CANCEL",
            },
            "hung-up",
            "caller",
        ),
        ({"hangup_cause": "NO_ANSWER", "originate_disposition": "NO_ANSWER"}, "no-answer", "pbx"),
        ({"hangup_cause": "NORMAL_CLEARING", "originate_disposition": "CALL_REJECTED"}, "failed", "callee"),
        ({"hangup_cause": "NORMAL_CIRCUIT_CONGESTION"}, "congestion", "pbx"),
        ({"hangup_cause": "UNALLOCATED_NUMBER"}, "failed", "pbx"),
    ],
)
def test_an_unanswered_call_is_reported_with_its_disposition(
    tmp_path: Path, variables: dict[str, str], disposition: str, ended_by: str
) -> None:
    headers = reported(tmp_path, hangup_event(**variables))
    assert headers is not None
    assert headers["Disposition"] == disposition
    assert headers["Ended-By"] == ended_by
    assert headers["Caller-Name"] == "O'Brien, Pat"
    assert headers["Dialled-Num"] == headers["Callee-Num"] == "+15557654321"
    assert "Callee-Name" not in headers  # FreeSWITCH's "Outbound Call" placeholder is nobody's name
    assert (headers["Created"], headers["Ended"]) == ("2026-11-29T08:34:02.704234Z", "2026-11-29T08:34:02.744217Z")
    assert headers.get("Sip-Status") == variables.get("sip_term_status")


@needs_lua
@pytest.mark.parametrize(
    ("why", "event"),
    [
        (
            "answered: its copy reports it",
            {**hangup_event(hangup_cause="NORMAL_CLEARING"), "Caller-Channel-Answered-Time": "1795941243000000"},
        ),
        ("a B leg", hangup_event(hangup_cause="USER_BUSY", originator=A_UUID)),
        ("opted out", hangup_event(hangup_cause="USER_BUSY", vcon_record="false")),
        ("our own notification", hangup_event(hangup_cause="CALL_REJECTED", vcon_leg="notify")),
    ],
)
def test_the_hangup_hook_reports_nothing_else(tmp_path: Path, why: str, event: dict[str, str]) -> None:
    assert reported(tmp_path, event) is None, why


@needs_lua
def test_a_failed_report_is_logged(tmp_path: Path) -> None:
    calls = run_script(
        tmp_path,
        argv=["notify", "call_uuid=" + A_UUID + "&disposition=busy&dialled=1001"],
        outcomes=[{"ready": False, "cause": "GATEWAY_DOWN"}],
    )
    assert (
        "log",
        "ERR",
        f"vcon-capture: report (busy) to gateway vcon-recorder for call {A_UUID} failed: GATEWAY_DOWN\n",
    ) in calls


@needs_lua
def test_a_recorder_that_answers_a_report_is_hung_up_at_once(tmp_path: Path) -> None:
    """A recorder without notification support answers: the call gets a vCon without audio."""
    calls = run_script(tmp_path, argv=["notify", f"call_uuid={A_UUID}&disposition=busy&dialled=1001"])
    assert ("hangup", "leg-1", "NORMAL_CLEARING") in calls
