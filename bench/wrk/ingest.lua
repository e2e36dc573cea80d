-- wrk script for bench.ingest and bench.ingest_ab: POST distinct analytics events, then report the latency
-- distribution.
-- Environment: BENCH_PATH (request path), BENCH_BATCH (0: one event per body; n: a JSON array of n events),
-- BENCH_RUN (a number that makes user ids differ between runs), BENCH_SHAPE (v1: the v1 contract's fields, each
-- event its own user id; browser: a page view as a browser's tracker sends it, url with UTM parameters and a
-- referrer, anonymous, with a desktop Chrome User-Agent header; 50 page urls and 1,000 referrers recur).
-- Every event gets a timestamp derived from the counter (and, v1, a user id of run, thread and counter), so no two
-- events of a run are equal. done() prints one "BENCH {json}" line that bench/ingest.py parses.

local path = os.getenv("BENCH_PATH") or "/api/ingestion/event"
local batch = tonumber(os.getenv("BENCH_BATCH") or "0")
local run = os.getenv("BENCH_RUN") or "0"
local browser = os.getenv("BENCH_SHAPE") == "browser"
-- wrk sends no User-Agent of its own, and the service drops events without one as a bot's: v1 events come from a
-- server (counted, no browser), browser events from a desktop Chrome.
local headers = { ["Content-Type"] = "application/json", ["User-Agent"] = "analytics-bench/1" }
if browser then
    headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        .. "Chrome/131.0.0.0 Safari/537.36"
end
local threads = {}
local counter = 0
local floor = math.floor
local format = string.format

local template = '{"site_id":"bench-site-%d","event_type":"page_view","path":"/page/%d",'
    .. '"user_id":"u%s-%d-%d","timestamp":"2025-11-%02dT%02d:%02d:%02d.%06dZ"}'
local browser_template = '{"site_id":"bench-site-%d","event_type":"page_view",'
    .. '"url":"https://www.example.com/blog/post-%d?utm_source=newsletter&utm_medium=email'
    .. '&utm_campaign=winter_launch","referrer":"https://news.ycombinator.com/item?id=%d",'
    .. '"timestamp":"2025-11-%02dT%02d:%02d:%02d.%06dZ"}'

function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end

local function event(n)
    local s = n % 86400
    local day, hour, minute, second = 1 + floor(n / 86400) % 28, floor(s / 3600), floor(s / 60) % 60, s % 60
    if browser then
        return format(browser_template, n % 300, n % 50, 42000000 + n % 1000,
            day, hour, minute, second, (n * 7919) % 1000000)
    end
    return format(template, n % 300, n % 50, run, tid, n, day, hour, minute, second, (n * 7919) % 1000000)
end

function request()
    counter = counter + 1
    local body
    if batch > 0 then
        local parts = {}
        local base = counter * batch
        for i = 1, batch do
            parts[i] = event(base + i - 1)
        end
        body = "[" .. table.concat(parts, ",") .. "]"
    else
        body = event(counter)
    end
    return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
    local errors = summary.errors
    local points = {}
    local marks = {}
    for p = 1, 99 do
        table.insert(marks, p)
    end
    for _, p in ipairs({ 99.5, 99.9, 99.95, 99.99 }) do
        table.insert(marks, p)
    end
    for _, p in ipairs(marks) do
        table.insert(points, format("[%g,%d]", p, latency:percentile(p)))
    end
    io.write(format(
        'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,'
            .. '"write_errors":%d,"status_errors":%d,"timeouts":%d,"latency_max_us":%d,"latency_mean_us":%.1f,'
            .. '"percentiles_us":[%s]}\n',
        summary.requests, summary.duration, summary.bytes, errors.connect, errors.read, errors.write,
        errors.status, errors.timeout, latency.max, latency.mean, table.concat(points, ",")))
end
