-- wrk script: POST events with a fresh eventId each, from rotating client addresses.
--
-- Arguments (after `--` on wrk's command line):
--   1. a file of event templates, one JSON object a line, without `eventId`
--   2. how many client addresses to rotate through (X-Forwarded-For 10.0.0.1, 10.0.0.2, ...)
--   3. events per request (1: one event as the body; more: a JSON array)
--   4. the first 23 characters of a UUID (8-4-4-4), new for every run
--
-- Environment: CLOUDSCALE_WRITE_KEY, when set and not empty, is sent as `Authorization: Bearer`
-- (the templates then carry no tenantId: the key's tenant is filled in). Not an argument, so
-- that `ps` does not show it.
--
-- An event is identified by (tenantId, eventId) and repeats are deduplicated, so every event
-- needs an id of its own across threads and connections: the last UUID group is the thread's
-- number (4 hex digits) and a per-thread counter (8), so ids never repeat within a run.
-- Connections of one thread share its Lua state, hence its counter.
--
-- done() prints one line, `CLOUDSCALE_WRK {json}`, with the answers by status, the events
-- the 202s accepted and wrk's own summary, for cloudscale_local/bench/wrk.py to read.

local threads = {}

function setup(thread)
   thread:set("thread_number", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   templates = {}
   local file = assert(io.open(args[1], "rb"))
   for line in file:lines() do
      if #line > 2 then
         templates[#templates + 1] = line:sub(2)  -- without its opening brace
      end
   end
   file:close()
   addresses = tonumber(args[2])
   batch = tonumber(args[3])
   id_prefix = args[4] .. "-" .. string.format("%04x", thread_number)
   local key = os.getenv("CLOUDSCALE_WRITE_KEY")
   authorization = nil
   if key ~= nil and key ~= "" then
      authorization = "Bearer " .. key
   end
   sent = 0
   statuses = {}
   accepted = 0
end

local function client_address(n)
   local k = n % addresses + 1
   return string.format("10.%d.%d.%d", math.floor(k / 65536) % 256, math.floor(k / 256) % 256, k % 256)
end

function request()
   local events = {}
   for k = 1, batch do
      sent = sent + 1
      local template = templates[sent % #templates + 1]
      events[k] = '{"eventId":"' .. id_prefix .. string.format("%08x", sent) .. '",' .. template
   end
   local body = events[1]
   if batch > 1 then
      body = "[" .. table.concat(events, ",") .. "]"
   end
   local headers = {
      ["Content-Type"] = "application/json",
      ["X-Forwarded-For"] = client_address(sent),
   }
   if authorization ~= nil then
      headers["Authorization"] = authorization
   end
   return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
   if status == 202 then
      local count = body:match('"accepted":%s*(%d+)')
      accepted = accepted + (tonumber(count) or batch)
   end
end

function done(summary, latency, requests)
   local statuses_total, accepted_total = {}, 0
   for _, thread in ipairs(threads) do
      for key, count in pairs(thread:get("statuses")) do
         statuses_total[key] = (statuses_total[key] or 0) + count
      end
      accepted_total = accepted_total + thread:get("accepted")
   end
   local parts = {}
   for key, count in pairs(statuses_total) do
      parts[#parts + 1] = string.format('"%s":%d', key, count)
   end
   local errors = summary.errors
   io.write(string.format(
      'CLOUDSCALE_WRK {"statuses":{%s},"acceptedEvents":%d,"requests":%d,"durationUs":%d,'
         .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
         .. '"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
      table.concat(parts, ","), accepted_total, summary.requests, summary.duration,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max))
end
