-- E4: anonymous registrations, POST /agent/auth (bench/http_load.py). Records the request id
-- (echoed in X-Request-ID, stored as the events' correlation_id) of every 200 response, so
-- the bench can check each acknowledged registration is in the log.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "report.lua")

collect_ids = os.getenv("WRK_IDS") ~= nil
wrk.method = "POST"
wrk.path = "/agent/auth"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"type":"anonymous","requested_credential_type":"api_key"}'
