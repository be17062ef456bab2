--[[
vcon_capture.lua: send every FreeSWITCH call to vcon-capture's SIP recorder.

Installed as <script_dir>/vcon_capture.lua and run four ways:

  answer hook    global `execute_on_answer_vcon=lua vcon_capture.lua` (vcon-capture.xml): runs
                 on every channel that answers, in that channel's thread; for a call's A leg
                 it starts the copy below and returns at once.
  copy           `luarun vcon_capture.lua copy <uuid>` (its own thread): originates a call
                 to the recorder gateway, eavesdrops the A leg on it (both directions mixed)
                 until the A leg ends, then hangs up with X-Vcon-Ended-By on the BYE.
  hangup hook    lua.conf.xml `<hook event="CHANNEL_HANGUP_COMPLETE" script="vcon_capture.lua"/>`:
                 an A leg that ended unanswered (busy, cancelled, no answer, failed), or whose
                 copy could not be made, is reported to the recorder by a notification below.
  notify         `luarun vcon_capture.lua notify <payload>`: a signalling-only INVITE to the
                 recorder carrying X-Vcon-Disposition and the identities; the recorder writes
                 the call's `incomplete` vCon and declines the INVITE (603).

Identities travel in X-Vcon-* headers, percent-encoded (RFC 3986, UTF-8 bytes; everything
but A-Z a-z 0-9 + . _ ~ - / @ is %XX) and announced by `X-Vcon-Encoding: percent`: no
character of a name or number can break FreeSWITCH's dial-string parsing (which splits on
the delimiter, strips single quotes, ends at braces) nor the SIP message. From and
P-Asserted-Identity carry the caller too, with a display name reduced to characters that
survive the dial string (the X- headers carry the exact one).

Nothing here is per-call configuration: global variables (vcon-capture.xml) set the
gateway and the timeout; a channel variable vcon_record=false (set anywhere before the
call is answered or ends) leaves that call out. A failed copy or notification is logged at
ERR ("vcon-capture: ...") in freeswitch.log and fires a CUSTOM vcon_capture::failure event.
]]

local api = freeswitch.API()

local function global(name, default)
	local value = freeswitch.getGlobalVariable(name)
	if value == nil or value == "" then
		return default
	end
	return value
end

local GATEWAY = global("vcon_capture_gateway", "vcon-recorder")
local TIMEOUT = tonumber(global("vcon_capture_timeout", "5")) or 5
local SCRIPT = "vcon_capture.lua"

local function log(level, message)
	freeswitch.consoleLog(level, "vcon-capture: " .. message .. "\n")
end

local function failure(call_uuid, what, cause)
	log("ERR", what .. " for call " .. call_uuid .. " failed: " .. cause)
	local event = freeswitch.Event("CUSTOM", "vcon_capture::failure")
	event:addHeader("Call-Uuid", call_uuid)
	event:addHeader("What", what)
	event:addHeader("Cause", cause)
	event:fire()
end

-- -- encodings -------------------------------------------------------------------------

local function pct(value)
	return (tostring(value):gsub("[^A-Za-z0-9+._~/@-]", function(c)
		return string.format("%%%02X", c:byte())
	end))
end

local function unpct(value)
	return (value:gsub("%%(%x%x)", function(hex)
		return string.char(tonumber(hex, 16))
	end))
end

local function valid_utf8(value)
	return utf8 == nil or utf8.len(value) ~= nil
end

-- A display name for From/P-Asserted-Identity: characters the dial string or a SIP
-- quoted-string could misread become spaces (the exact name is in X-Vcon-Caller-Name).
local function display(value)
	if not valid_utf8(value) then
		value = value:gsub("[\128-\255]", "")
	end
	value = value:gsub("[^A-Za-z0-9 .()&/+*#!?@_\128-\255-]", " ")
	value = value:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
	return value
end

local function is_false(value)
	if value == nil then
		return false
	end
	value = value:lower()
	return value == "false" or value == "no" or value == "off" or value == "0"
end

local function iso_time(usec)
	usec = tonumber(usec or "0") or 0
	if usec <= 0 then
		return nil
	end
	local seconds = math.floor(usec / 1000000)
	return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%06dZ", usec - seconds * 1000000)
end

-- -- what the recorder gets ------------------------------------------------------------

-- Header order on the INVITE (only non-empty ones are sent).
local HEADERS = {
	{ "Call-Uuid", "call_uuid" },
	{ "Source-Channel", "source_channel" },
	{ "Direction", "direction" },
	{ "Caller-Num", "caller_num" },
	{ "Caller-Name", "caller_name" },
	{ "Dialled-Num", "dialled" },
	{ "Callee-Num", "callee_num" },
	{ "Callee-Name", "callee_name" },
	{ "Callee-Channel", "callee_channel" },
	{ "Disposition", "disposition" },
	{ "Hangup-Cause", "hangup_cause" },
	{ "Sip-Status", "sip_status" },
	{ "Ended-By", "ended_by" },
	{ "Created", "created" },
	{ "Answered", "answered" },
	{ "Ended", "ended" },
}

-- The dial string of the copy (or notification) to the recorder. Every value is either a
-- fixed token or percent-encoded, so the `^^:` variable list cannot be split or unquoted.
local function dial_string(info, leg)
	local number = info.caller_num or ""
	local name = display(info.caller_name or "")
	local vars = {
		"vcon_leg=" .. leg,
		"process_cdr=false",
		"origination_caller_id_number=" .. (number ~= "" and pct(number) or "anonymous"),
		"origination_caller_id_name=" .. (name ~= "" and name or (number ~= "" and pct(number) or "anonymous")),
		"sip_cid_type=pid",
		"absolute_codec_string=PCMU,PCMA",
		"ignore_early_media=true",
		"eavesdrop_enable_dtmf=false",
		"originate_timeout=" .. TIMEOUT,
		"sip_h_X-Vcon-Encoding=percent",
	}
	for _, header in ipairs(HEADERS) do
		local value = info[header[2]]
		if value ~= nil and value ~= "" then
			vars[#vars + 1] = "sip_h_X-Vcon-" .. header[1] .. "=" .. pct(value)
		end
	end
	local dest = info.dialled or ""
	return "{^^:" .. table.concat(vars, ":") .. "}sofia/gateway/" .. GATEWAY .. "/"
		.. (dest ~= "" and pct(dest) or "vcon")
end

-- The side of the call whose hang-up ended it: the A leg's own device ("caller" for an
-- incoming A leg), its bridged partner, or FreeSWITCH itself ("pbx"); and the hangup cause
-- when FreeSWITCH already knows it. Race-free when read as the A leg stops being ready:
-- sofia sets recv_bye before hanging the A leg up, and a partner that hangs up first sets
-- last_bridge_hangup_cause on the A leg before the bridge ends.
local function ended_by(get)
	local inbound = get("direction") ~= "outbound"
	local disposition = get("sip_hangup_disposition") or ""
	if disposition == "recv_bye" or disposition == "recv_cancel" or disposition == "recv_refuse" then
		return inbound and "caller" or "callee", get("hangup_cause")
	end
	local partner = get("last_bridge_hangup_cause") or ""
	if partner ~= "" then
		return inbound and "callee" or "caller", partner
	end
	return "pbx", get("hangup_cause")
end

-- FreeSWITCH keeps a SIP display name's quoted-pairs (\" and \\) as they came: the name
-- people read has them undone.
local function unescape(name)
	if name == nil or not name:find("\\", 1, true) then
		return name
	end
	return (name:gsub('\\(["\\])', "%1"))
end

-- Who is on the call, as the A leg knows it (get: a variable reader of the A leg).
local function identities(get)
	local info = {
		call_uuid = get("uuid"),
		source_channel = get("channel_name"),
		direction = get("direction"),
		caller_num = get("caller_id_number"),
		caller_name = unescape(get("caller_id_name")),
		dialled = get("destination_number"),
		callee_num = get("callee_id_number"),
		callee_name = unescape(get("callee_id_name")),
		callee_channel = get("vcon_callee_channel"),
	}
	-- "Outbound Call" is FreeSWITCH's placeholder for a leg nobody named.
	if info.callee_name == info.callee_num or info.callee_name == "Outbound Call" then
		info.callee_name = nil
	end
	return info
end

-- Which legs are a call of their own: not a leg FreeSWITCH placed for another call (it has
-- an originator), not a loopback half, not one of ours, not opted out.
local function is_call(get)
	return (get("originator") or "") == ""
		and (get("vcon_leg") or "") == ""
		and not (get("channel_name") or ""):find("^loopback/")
		and not is_false(get("vcon_record"))
end

-- -- the four entry points -------------------------------------------------------------

local function notify(info)
	local call_uuid = info.call_uuid or "?"
	local leg = freeswitch.Session(dial_string(info, "notify"))
	if leg:ready() then
		-- A recorder without notification support answered: it has the call, with no audio.
		leg:hangup("NORMAL_CLEARING")
		log("INFO", "reported call " .. call_uuid .. " (" .. info.disposition .. "); the recorder answered it")
		return
	end
	local cause = leg:hangupCause() or "unknown"
	if cause == "CALL_REJECTED" then
		log("INFO", "reported call " .. call_uuid .. " (" .. info.disposition .. ")")
	else
		failure(call_uuid, "report (" .. info.disposition .. ") to gateway " .. GATEWAY, cause)
	end
end

local function on_answer()
	local function get(name)
		return session:getVariable(name)
	end
	if not is_call(get) then
		return
	end
	session:setVariable("vcon_copy", "starting")
	api:execute("luarun", SCRIPT .. " copy " .. session:get_uuid())
end

-- An answered call belongs to its copy: the recording, or (when the copy cannot be made)
-- a notification with disposition "answered" so that the recorder still writes its vCon.
local function copy(call_uuid)
	if api:execute("uuid_exists", call_uuid) ~= "true" then
		failure(call_uuid, "copy", "call gone before the copy started")
		return
	end
	-- Holding the A leg keeps its variables readable after it hangs up (until destroy()).
	local a = freeswitch.Session(call_uuid)
	local function get(name)
		return a:getVariable(name)
	end
	local info = identities(get)
	local partner = get("signal_bond") or get("bridge_uuid") or ""
	if partner ~= "" and (info.callee_channel or "") == "" then
		local name = api:execute("uuid_getvar", partner .. " channel_name")
		if name ~= "" and name ~= "_undef_" and not name:find("^%-ERR") then
			info.callee_channel = name
		end
	end
	local leg = a:ready() and freeswitch.Session(dial_string(info, "copy")) or nil
	if leg == nil or not leg:ready() then
		local cause = leg and (leg:hangupCause() or "unknown") or "call ended before the copy started"
		a:setVariable("vcon_copy", "failed:" .. cause)
		failure(call_uuid, "copy to gateway " .. GATEWAY, cause)
		info.disposition = "answered"
		info.hangup_cause = cause
		info.ended_by = not a:ready() and ended_by(get) or nil
		a:destroy()
		notify(info)
		return
	end
	a:setVariable("vcon_copy", leg:get_uuid())
	log("INFO", "copying call " .. call_uuid .. " on " .. leg:get_uuid())
	leg:execute("eavesdrop", call_uuid)
	if leg:ready() then
		local by, cause = ended_by(get)
		leg:setVariable("sip_bye_h_X-Vcon-Ended-By", by)
		if cause ~= nil and cause ~= "" and cause ~= "NONE" then
			leg:setVariable("sip_bye_h_X-Vcon-Hangup-Cause", cause)
		end
		leg:hangup("NORMAL_CLEARING")
	elseif a:ready() then
		log("WARNING", "the recorder ended the copy of call " .. call_uuid .. " before the call ended")
	end
	a:destroy()
end

-- Disposition of an A leg that never became a conversation (vCon `incomplete` values).
local CAUSES = {
	USER_BUSY = "busy",
	NO_ANSWER = "no-answer",
	NO_USER_RESPONSE = "no-answer",
	ALLOTTED_TIMEOUT = "no-answer",
	RECOVERY_ON_TIMER_EXPIRE = "no-answer",
	ORIGINATOR_CANCEL = "hung-up",
	NORMAL_CIRCUIT_CONGESTION = "congestion",
	SWITCH_CONGESTION = "congestion",
}

-- Caller-profile fields are event headers, not variable_* ones.
local EVENT_FIELDS = {
	uuid = "Unique-ID",
	channel_name = "Channel-Name",
	direction = "Call-Direction",
	caller_id_number = "Caller-Caller-ID-Number",
	caller_id_name = "Caller-Caller-ID-Name",
	destination_number = "Caller-Destination-Number",
	callee_id_number = "Caller-Callee-ID-Number",
	callee_id_name = "Caller-Callee-ID-Name",
}

-- An A leg that ended unanswered: tell the recorder (answered ones belong to their copy).
local function on_hangup()
	local function get(name)
		local value = event:getHeader("variable_" .. name)
		if value == nil and EVENT_FIELDS[name] then
			value = event:getHeader(EVENT_FIELDS[name])
		end
		return value
	end
	if not is_call(get) then
		return
	end
	if (tonumber(event:getHeader("Caller-Channel-Answered-Time") or "0") or 0) > 0 then
		return
	end
	local info = identities(get)
	local cause = get("hangup_cause") or event:getHeader("Hangup-Cause") or ""
	local tried = get("originate_disposition") or ""
	if tried ~= "" and tried ~= "SUCCESS" and tried ~= "none" then
		cause = tried
	end
	info.disposition = (get("sip_hangup_disposition") == "recv_cancel") and "hung-up" or CAUSES[cause] or "failed"
	info.hangup_cause = cause
	info.sip_status = get("sip_term_status")
	info.ended_by = ended_by(get)
	if info.ended_by == "pbx" and (info.disposition == "busy" or cause == "CALL_REJECTED") then
		info.ended_by = (info.direction ~= "outbound") and "callee" or "caller"
	end
	info.created = iso_time(event:getHeader("Caller-Channel-Created-Time"))
	info.ended = iso_time(event:getHeader("Caller-Channel-Hangup-Time"))
	local payload = {}
	for key, value in pairs(info) do
		if value ~= nil and value ~= "" then
			payload[#payload + 1] = key .. "=" .. pct(value)
		end
	end
	-- Its own thread: the event thread must not wait for the recorder.
	api:execute("luarun", SCRIPT .. " notify " .. table.concat(payload, "&"))
end

local function decode_payload(payload)
	local info = {}
	for pair in payload:gmatch("[^&]+") do
		local key, value = pair:match("^([%w_]+)=(.*)$")
		if key then
			info[key] = unpct(value)
		end
	end
	return info
end

if argv ~= nil and argv[1] == "copy" then
	copy(argv[2])
elseif argv ~= nil and argv[1] == "notify" then
	notify(decode_payload(argv[2] or ""))
elseif event ~= nil then
	on_hangup()
elseif session ~= nil then
	on_answer()
end
