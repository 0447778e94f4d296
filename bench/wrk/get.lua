-- GET with status counting, e.g. /healthz or /api/me (bench/http_load.py).
-- $WRK_BEARER, when set, is sent as `Authorization: Bearer <value>`.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

wrk.method = "GET"
local bearer = os.getenv("WRK_BEARER")
if bearer then
   wrk.headers["Authorization"] = "Bearer " .. bearer
end
