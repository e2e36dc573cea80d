-- wrk script for bench.ingest_ab: POST /api/ingestion/event with a page view as a browser's tracker sends it (url
-- with UTM parameters, referrer, a desktop Chrome User-Agent header), then report the latency distribution.
-- Environment: BENCH_PATH (request path), BENCH_RUN (a number that makes events differ between runs).
-- Events differ by site and timestamp; 50 page urls and 1,000 referrers recur, as a site's traffic does.
-- done() prints one "BENCH {json}" line, as bench/wrk/ingest.lua does.

local path = os.getenv("BENCH_PATH") or "/api/ingestion/event"
local run = os.getenv("BENCH_RUN") or "0"
local headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        .. "Chrome/131.0.0.0 Safari/537.36",
}
local threads = {}
local counter = 0
local floor = math.floor
local format = string.format

local template = '{"site_id":"bench-site-%d","event_type":"page_view",'
    .. '"url":"https://www.example.com/blog/post-%d?utm_source=newsletter&utm_medium=email'
    .. '&utm_campaign=winter_launch","referrer":"https://news.ycombinator.com/item?id=%d",'
    .. '"timestamp":"2025-11-%02dT%02d:%02d:%02d.%06dZ"}'

function setup(thread)
    table.insert(threads, thread)
    thread:set("tid", #threads)
end

function request()
    counter = counter + 1
    local n = counter
    local s = n % 86400
    local body = format(template, n % 300, n % 50, 42000000 + n % 1000,
        1 + floor(n / 86400) % 28, floor(s / 3600), floor(s / 60) % 60, s % 60, (n * 7919) % 1000000)
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
