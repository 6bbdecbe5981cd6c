-- wrk script for bench/callback.py: WeChat plain-mode text messages, each with a new MsgId.
--
-- Usage (bench/callback.py builds this command line and prints it):
--   wrk -t1 -c32 -d15s --timeout 5s --latency -s bench/callback.lua \
--       'http://127.0.0.1:PORT/wechat/callback?signature=S&timestamp=T&nonce=N' \
--       -- PREFIX USERS CREATE_TIME APOLOGY
--
-- Script arguments (after "--"):
--   PREFIX       digits that start every MsgId of this wrk run; the caller makes it unique per run (epoch seconds)
--   USERS        how many distinct FromUserName openids to cycle through (default 1000)
--   CREATE_TIME  the CreateTime to put in the messages (default: os.time() at start)
--   APOLOGY      text that marks a reply as an apology ("the system is busy"), not an answer (default: none)
--
-- MsgId = PREFIX .. <thread number, 1 digit> .. <per-thread counter, 7 digits>: unique across threads and runs
-- and, with a 10-digit PREFIX, 18 digits long (fits a signed 64-bit integer, as WeChat's MsgIds do).
-- The query string (signature over token/timestamp/nonce) is the same for every request; only the body changes.
--
-- A response counts as correct only if it is HTTP 200 and its body is a passive-reply XML addressed back to one
-- of our users that does not contain APOLOGY. At the end one line starting with "BENCH_RESULT" carries the figures
-- as key=value pairs (latencies in microseconds), and "BENCH_FIRST_BAD" shows the first wrong answer, if any.

local threads = {}

-- Setup environment (not the threads'): number each thread so that MsgIds do not collide.
function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

-- Thread environment from here to done().
local prefix, users, create_time, apology
local counter = 0
local headers = { ["Content-Type"] = "text/xml; charset=utf-8" }
ok, bad_status, bad_body = 0, 0, 0
statuses = {}
first_bad = ""

function init(args)
   prefix = args[1] or error("callback.lua: missing MsgId prefix argument")
   users = tonumber(args[2] or "1000")
   create_time = args[3] or tostring(os.time())
   apology = args[4] or ""
   if tid > 9 then
      error("callback.lua: at most 9 threads (one MsgId digit per thread)")
   end
end

function request()
   counter = counter + 1
   if counter > 9999999 then
      error("callback.lua: MsgId counter exhausted for this run")
   end
   local msgid = prefix .. tid .. string.format("%07d", counter)
   -- 28 characters like a real openid; users are cycled so that each sends many messages.
   local user = string.format("oBench%022d", (counter * 7 + tid) % users)
   local body = "<xml><ToUserName><![CDATA[gh_test]]></ToUserName>"
      .. "<FromUserName><![CDATA[" .. user .. "]]></FromUserName>"
      .. "<CreateTime>" .. create_time .. "</CreateTime>"
      .. "<MsgType><![CDATA[text]]></MsgType>"
      .. "<Content><![CDATA[你好]]></Content>"
      .. "<MsgId>" .. msgid .. "</MsgId></xml>"
   return wrk.format("POST", nil, headers, body)
end

local function is_answer(body)
   return body ~= nil
      and body:find("<xml>", 1, true) ~= nil
      and body:find("<ToUserName><![CDATA[oBench", 1, true) ~= nil
      and (apology == "" or body:find(apology, 1, true) == nil)
end

function response(status, hdrs, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
   if status ~= 200 then
      bad_status = bad_status + 1
   elseif is_answer(body) then
      ok = ok + 1
      return
   else
      bad_body = bad_body + 1
   end
   if first_bad == "" then
      first_bad = key .. " " .. string.sub(body or "", 1, 200)
   end
end

-- Setup environment again: add up the threads' counters and print one machine-readable line.
function done(summary, latency, requests)
   local t_ok, t_bad_status, t_bad_body, t_sent = 0, 0, 0, 0
   local all_statuses = {}
   local sample = ""
   for _, thread in ipairs(threads) do
      t_ok = t_ok + thread:get("ok")
      t_bad_status = t_bad_status + thread:get("bad_status")
      t_bad_body = t_bad_body + thread:get("bad_body")
      for code, n in pairs(thread:get("statuses")) do
         all_statuses[code] = (all_statuses[code] or 0) + n
      end
      if sample == "" then
         sample = thread:get("first_bad")
      end
   end
   local codes = {}
   for code, n in pairs(all_statuses) do
      table.insert(codes, code .. ":" .. n)
   end
   table.sort(codes)
   local e = summary.errors
   io.write(string.format(
      "BENCH_RESULT duration_us=%d requests=%d ok=%d bad_status=%d bad_body=%d "
         .. "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d "
         .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f statuses=%s\n",
      summary.duration, summary.requests, t_ok, t_bad_status, t_bad_body,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      table.concat(codes, ",")))
   if sample ~= "" then
      -- Newlines would break the one-line format: flatten them.
      io.write("BENCH_FIRST_BAD " .. sample:gsub("[\r\n]", " ") .. "\n")
   end
end
