-- E8 with claim tokens nobody holds: POST /agent/auth/claim/complete, 401 expected
-- (bench/http_load.py). Each request carries one of 1,000 random tokens, so no lookup repeats
-- one just before it.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
local bodies = {}
local next_body = 1

function init(args)
   math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
   for i = 1, 1000 do
      local chars = {}
      for j = 1, 26 do
         local k = math.random(1, #alphabet)
         chars[j] = alphabet:sub(k, k)
      end
      bodies[i] = wrk.format("POST", "/agent/auth/claim/complete",
         {["Content-Type"] = "application/json"},
         '{"claim_token":"clm_' .. table.concat(chars) .. '","otp":"123456"}')
   end
end

function request()
   local body = bodies[next_body]
   next_body = next_body % #bodies + 1
   return body
end
