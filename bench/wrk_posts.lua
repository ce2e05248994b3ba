-- wrk load script for bench/posts.py (run by it; not by hand). One wrk thread per agent, one
-- keep-alive connection each, closed loop. Every request posts to a random thread of the list,
-- with the agent's own token and a fresh idempotency key, over REST or as an MCP tools/call.
--
-- Environment (set by bench/posts.py):
--   WRK_TOKENS   file with one bearer token per line (line i = agent of wrk thread i)
--   WRK_THREADS  file with one thread id per line
--   WRK_MODE     "rest" or "mcp"
--   WRK_RUN      this run's id: idempotency keys are unique across runs on the same tables
--   WRK_OUT      file the summary is written to (JSON)

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then lines[#lines + 1] = line end
  end
  return lines
end

local tokens = read_lines(os.getenv("WRK_TOKENS"))
local threads = {}
local next_agent = 1

function setup(thread)
  thread:set("agent", next_agent)
  thread:set("token", tokens[next_agent])
  threads[#threads + 1] = thread
  next_agent = next_agent + 1
end

local thread_ids, mode, run, sent
failed = 0 -- a global: done() reads it from each thread

function init(args)
  thread_ids = read_lines(os.getenv("WRK_THREADS"))
  mode = os.getenv("WRK_MODE")
  run = os.getenv("WRK_RUN") or tostring(os.time())
  sent = 0
  math.randomseed(agent * 7919 + os.time())
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
  if mode == "mcp" then
    wrk.headers["Accept"] = "application/json, text/event-stream"
    wrk.headers["MCP-Protocol-Version"] = "2025-06-18"
  end
end

function request()
  sent = sent + 1
  local tid = thread_ids[math.random(#thread_ids)]
  local key = string.format("%s-%d-%d", run, agent, sent)
  if mode == "mcp" then
    local body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"post_message","arguments":'
      .. '{"thread_id":"' .. tid .. '","body":"bench message body","idempotency_key":"' .. key .. '"}}}'
    return wrk.format("POST", "/v1/mcp", nil, body)
  end
  local body = '{"body":"bench message body","idempotency_key":"' .. key .. '"}'
  return wrk.format("POST", "/v1/threads/" .. tid .. "/messages", nil, body)
end

function response(status, headers, body)
  -- REST: only 201 is a stored post. MCP: a 200 whose result is not an error.
  if mode == "mcp" then
    if status ~= 200 or not string.find(body, '"isError":false', 1, true) then failed = failed + 1 end
  elseif status ~= 201 then
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local errors = 0
  for _, thread in ipairs(threads) do errors = errors + thread:get("failed") end
  local out = io.open(os.getenv("WRK_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, "errors": %d, '
      .. '"socket_errors": %d}',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max, errors,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  out:close()
end
