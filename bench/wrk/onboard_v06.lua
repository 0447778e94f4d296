-- v0.6 onboarding (bench/onboard_v06.py, run by bench/write_path.py): on each connection, POST
-- /agent/identity {"type":"anonymous"}, read the answer's identity_assertion, then POST
-- /oauth2/token with the jwt-bearer grant for it; a completed pair is one agent onboarded.
-- wrk asks request() for a connection's next request right after response() read that
-- connection's answer, so an assertion queued by response() is exchanged on its own
-- connection next (the queue is the thread's; the order is per connection in practice).
--
-- Besides report.lua's report (and its $WRK_FAILURE), writes to $WRK_PAIRS one line per 200
-- answer, "identity <request id>" or "token <request id>".
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

collect_ids = os.getenv("WRK_IDS") ~= nil

local IDENTITY = wrk.format(
   "POST", "/agent/identity", {["Content-Type"] = "application/json"}, '{"type":"anonymous"}'
)
local FORM = {["Content-Type"] = "application/x-www-form-urlencoded"}
local GRANT = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion="

local queued = {} -- assertions answered and not yet exchanged (this thread's)
identity_ids = {}
token_ids = {}

function request()
   local assertion = table.remove(queued)
   if assertion == nil then
      return IDENTITY
   end
   return wrk.format("POST", "/oauth2/token", FORM, GRANT .. assertion)
end

local report_response = response
function response(status, headers, body)
   report_response(status, headers, body)
   if status ~= 200 then
      return
   end
   local id = headers["x-request-id"] or headers["X-Request-ID"] or "?"
   local assertion = (body or ""):match('"identity_assertion":"([^"]+)"')
   if assertion ~= nil then
      identity_ids[#identity_ids + 1] = id
      queued[#queued + 1] = assertion
   else
      token_ids[#token_ids + 1] = id
   end
end

local report_done = done
function done(summary, latency, requests)
   report_done(summary, latency, requests)
   local lines = {}
   for _, thread in ipairs(report_threads) do
      for _, id in ipairs(thread:get("identity_ids") or {}) do
         lines[#lines + 1] = "identity " .. id
      end
      for _, id in ipairs(thread:get("token_ids") or {}) do
         lines[#lines + 1] = "token " .. id
      end
   end
   local path = os.getenv("WRK_PAIRS")
   if path then
      write_file(path, table.concat(lines, "\n"))
   end
end
