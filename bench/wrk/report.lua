-- Shared by the scenario scripts of bench/http_load.py (each loads it with dofile).
--
-- Counts the responses by status in each thread, and in done() writes wrk's summary as one
-- JSON object to $WRK_REPORT: requests, duration, socket errors, statuses and the latency
-- percentiles (microseconds). When $WRK_IDS is set, also writes there, one per line, the
-- X-Request-ID of every 200 response (the script must set `collect_ids = true`).
-- When $WRK_MAX_REQUESTS is set, each thread stops sending after that many responses; wrk
-- itself still waits for the end of -d (or a SIGINT, which bench/http_load.py sends once the count
-- is reached), then reports. When $WRK_FAILURE is set, writes there the status and the first
-- 1,000 bytes of the body of the first answer other than 200, if there was one.
--
-- For the scripts: `report_threads` (every thread, for their own totals in done()) and
-- `write_file(path, text)`.

report_threads = {}
statuses = {}
failure = nil
ok_ids = {}
responses = 0
collect_ids = false
local max_requests = tonumber(os.getenv("WRK_MAX_REQUESTS") or "")

function setup(thread)
   table.insert(report_threads, thread)
end

function write_file(path, text)
   local f = assert(io.open(path, "w"))
   f:write(text)
   f:close()
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   responses = responses + 1
   if status ~= 200 and failure == nil then
      failure = tostring(status) .. " " .. (body or ""):sub(1, 1000)
   end
   if collect_ids and status == 200 then
      ok_ids[#ok_ids + 1] = headers["x-request-id"] or headers["X-Request-ID"] or "?"
   end
   if max_requests and responses >= max_requests then
      wrk.thread:stop()
   end
end

local function json_number(x)
   if x ~= x or x == math.huge or x == -math.huge then
      return "null"
   end
   return string.format("%.17g", x)
end

function done(summary, latency, requests)
   local merged = {}
   local ids = {}
   local first_failure = nil
   for _, thread in ipairs(report_threads) do
      first_failure = first_failure or thread:get("failure")
      for status, count in pairs(thread:get("statuses") or {}) do
         merged[status] = (merged[status] or 0) + count
      end
      for _, id in ipairs(thread:get("ok_ids") or {}) do
         ids[#ids + 1] = id
      end
   end
   local parts = {}
   for status, count in pairs(merged) do
      parts[#parts + 1] = string.format('"%d": %d', status, count)
   end
   local e = summary.errors
   local out = {
      string.format('"requests": %d', summary.requests),
      string.format('"duration_us": %d', summary.duration),
      string.format('"bytes": %d', summary.bytes),
      string.format(
         '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}',
         e.connect, e.read, e.write, e.status, e.timeout),
      '"statuses": {' .. table.concat(parts, ", ") .. "}",
      '"latency_us": {"mean": ' .. json_number(latency.mean)
         .. ', "max": ' .. json_number(latency.max)
         .. ', "p50": ' .. json_number(latency:percentile(50))
         .. ', "p90": ' .. json_number(latency:percentile(90))
         .. ', "p99": ' .. json_number(latency:percentile(99)) .. "}",
      string.format('"ok_ids": %d', #ids),
   }
   local path = os.getenv("WRK_REPORT")
   if path then
      write_file(path, "{" .. table.concat(out, ", ") .. "}\n")
   end
   local ids_path = os.getenv("WRK_IDS")
   if ids_path then
      write_file(ids_path, table.concat(ids, "\n"))
   end
   local failure_path = os.getenv("WRK_FAILURE")
   if failure_path and first_failure then
      write_file(failure_path, first_failure)
   end
end
