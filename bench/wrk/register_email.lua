-- E4 verified-email registrations, POST /agent/auth (bench/write_path.py): each request names
-- an address of its own (a random run prefix, the thread's number and a counter), so every one
-- creates a registration, a data subject with its sealed email and blind index, and a claim
-- mail in the outbox, all in the append's transaction. Keeps the X-Request-ID of every 200
-- answer when $WRK_IDS is set (report.lua).
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

collect_ids = os.getenv("WRK_IDS") ~= nil
local run = os.getenv("WRK_EMAIL_RUN") or tostring(os.time())
thread_number = 0  -- set per thread by setup (a global of the thread's own state)
local sent = 0
local HEADERS = {["Content-Type"] = "application/json"}

local base_setup = setup
local created = 0
function setup(thread)
   created = created + 1
   thread:set("thread_number", created)
   base_setup(thread)
end

function request()
   sent = sent + 1
   local body = string.format(
      '{"type":"identity_assertion","assertion_type":"verified_email",'
         .. '"assertion":"agent-%s-%d-%d@bench.example","requested_credential_type":"api_key"}',
      run, thread_number, sent
   )
   return wrk.format("POST", "/agent/auth", HEADERS, body)
end
