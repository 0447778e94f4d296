-- ID-JAG registrations, POST /agent/auth (bench/id_jag.py). Sends every token of $WRK_TOKENS
-- (one compact JWT a line, each with its own jti) once, in file order, each in a body of its
-- own: {"type":"identity_assertion","assertion_type":"urn:ietf:params:oauth:token-type:id-jag",
-- "assertion":<token>,"requested_credential_type":"api_key"}. Meant for `wrk -t1`: every thread
-- would send the same tokens, and all but the first use of each would be replays.
--
-- When the tokens run out, the thread stops, and the requests it must still hand wrk go to
-- GET /bench/tokens-exhausted (a 404; counted as `exhausted`): the run is then void, and the
-- bench says so. Keeps the X-Request-ID of every 200 answer when $WRK_IDS is set (report.lua).
-- Besides report.lua's report (and its $WRK_FAILURE), writes to $WRK_TOKEN_REPORT one line
-- "<sent> <exhausted> <tokens>".
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

collect_ids = os.getenv("WRK_IDS") ~= nil

local PREFIX = '{"type":"identity_assertion",'
   .. '"assertion_type":"urn:ietf:params:oauth:token-type:id-jag","assertion":"'
local SUFFIX = '","requested_credential_type":"api_key"}'
local HEADERS = {["Content-Type"] = "application/json"}

local tokens = {}
local next_token = 1
sent = 0
exhausted = 0
tokens_loaded = 0

function init(args)
   local path = assert(os.getenv("WRK_TOKENS"), "WRK_TOKENS is not set")
   for line in io.lines(path) do
      if #line > 0 then
         tokens[#tokens + 1] = line
      end
   end
   tokens_loaded = #tokens
end

function request()
   local token = tokens[next_token]
   if token == nil then
      exhausted = exhausted + 1
      wrk.thread:stop()
      return wrk.format("GET", "/bench/tokens-exhausted")
   end
   tokens[next_token] = false -- sent: never again
   next_token = next_token + 1
   sent = sent + 1
   return wrk.format("POST", "/agent/auth", HEADERS, PREFIX .. token .. SUFFIX)
end

local report_done = done
function done(summary, latency, requests)
   report_done(summary, latency, requests)
   local total_sent, total_exhausted, total_tokens = 0, 0, 0
   for _, thread in ipairs(report_threads) do
      total_sent = total_sent + (thread:get("sent") or 0)
      total_exhausted = total_exhausted + (thread:get("exhausted") or 0)
      total_tokens = total_tokens + (thread:get("tokens_loaded") or 0)
   end
   local path = os.getenv("WRK_TOKEN_REPORT")
   if path then
      write_file(path, string.format("%d %d %d\n", total_sent, total_exhausted, total_tokens))
   end
end
