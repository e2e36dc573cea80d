"""Per-event cost of each ingest v2 enrichment step, cold (a string never seen) and warm (cached), in-process.

    python -m bench.enrich [--seconds 0.5]

Over a fixed list of real-world User-Agents (desktop Chrome/Firefox/Safari/Edge, iPhone, iPad, Android phone and
tablet, Googlebot, bingbot, HeadlessChrome, curl):

- UA parsing: the service's `analytics.enrich.useragent.describe` (warm: its lru_cache; cold: `describe.__wrapped__`
  on strings never seen, each list entry with a changing version number), raw `ua_parser` with the native
  `ua-parser-rs` resolver and no cache, `device_detector.DeviceDetector(ua).parse()`,
  `device_detector.SoftwareDetector(ua).parse()`, `crawlerdetect.CrawlerDetect().isCrawler(ua)`; first-use (rule
  loading) cost of each; and what each says of the list (browser, OS, device class, bot).
- country: `country_lookup("bundled")` warm (one address, cached) and cold (random public IPv4 addresses on an
  uncached `BundledCountries()`), the bundled database's load time and the RSS it adds.
- referrer/UTM: `source.page(url)` + `source.referral(...)` on a URL with UTM parameters and a referrer, warm (their
  caches, if any) and cold (`__wrapped__` on distinct URLs and referrers).
- visitor: `visitor.visitor_id` (HMAC-SHA256).
- the whole `Enricher.event(...)` on a decoded Submission, warm; and `decode_event` of the same body, for scale.

One process, one core, no server; figures are the best of 3 timed loops of about --seconds each.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Final

from bench.harness import Interference, proc_status
from bench.results import record_result

USER_AGENTS: Final = (
    (
        "desktop Chrome (Windows)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36",
    ),
    ("desktop Firefox (Linux)", "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"),
    (
        "desktop Safari (macOS)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
        "Safari/605.1.15",
    ),
    (
        "desktop Edge (Windows)",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 "
        "Safari/537.36 Edg/131.0.2903.86",
    ),
    (
        "iPhone Safari",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/18.1 Mobile/15E148 Safari/604.1",
    ),
    (
        "iPad Safari",
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 "
        "Mobile/15E148 Safari/604.1",
    ),
    (
        "Android phone Chrome",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 "
        "Mobile Safari/537.36",
    ),
    (
        "Android tablet Chrome",
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 "
        "Safari/537.36",
    ),
    (
        "Googlebot",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; "
        "+http://www.google.com/bot.html) Chrome/131.0.6778.69 Safari/537.36",
    ),
    ("bingbot", "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"),
    (
        "HeadlessChrome",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.33 "
        "Safari/537.36",
    ),
    ("curl", "curl/8.5.0"),
)
URL: Final = (
    "https://www.example.com/blog/2025/launch-notes?utm_source=newsletter&utm_medium=email"
    "&utm_campaign=winter_launch&utm_content=hero_button&ref=abc123#comments"
)
REFERRER: Final = "https://news.ycombinator.com/item?id=42424242"
ADDRESS: Final = "81.2.69.160"  # a public address (GeoLite2's own test data names it GB)
SALT: Final = bytes(range(32))
_LAST_NUMBER: Final = re.compile(r"(\d+)(?!.*\d)")


def cold_variant(user_agent: str, n: int) -> str:
    """The same User-Agent with its last number replaced by a never-repeated one: a string no cache has seen."""
    return _LAST_NUMBER.sub(str(1000 + n), user_agent, count=1)


def best_us(call: Callable[[], object], seconds: float, rounds: int = 3) -> float:
    """µs per call: the best of `rounds` loops, each about `seconds` long."""
    start = time.perf_counter()
    calls = 0
    while time.perf_counter() - start < seconds / 10 or calls < 3:
        call()
        calls += 1
    per = (time.perf_counter() - start) / calls
    loops = max(1, int(seconds / max(per, 1e-9)))
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            call()
        best = min(best, (time.perf_counter() - start) / loops)
    return best * 1e6


def over_list(function: Callable[[str], object], agents: Sequence[str]) -> Callable[[], None]:
    def loop() -> None:
        for agent in agents:
            function(agent)

    return loop


def cold_us(function: Callable[[str], object], seconds: float) -> tuple[float, int]:
    """µs per never-seen string (mean over the list, repeated with fresh variants until `seconds` are spent)."""
    total = 0.0
    calls = 0
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or calls == 0:
        batch = [cold_variant(agent, n) for _, agent in USER_AGENTS]
        n += 1
        start = time.perf_counter()
        for agent in batch:
            function(agent)
        total += time.perf_counter() - start
        calls += len(batch)
    return total / calls * 1e6, calls


def first_use_ms(setup: Callable[[], object]) -> float:
    start = time.perf_counter()
    setup()
    return (time.perf_counter() - start) * 1000


def random_public_ipv4(rng: random.Random, count: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global:
            found.append(str(address))
    return found


def rss_mb() -> float:
    return proc_status_self().get("VmRSS", 0) / 1024


def proc_status_self() -> dict[str, int]:
    import os

    return proc_status(os.getpid())


def measure_country(seconds: float) -> list[str]:
    from analytics.enrich import country

    gc.collect()
    rss_before = rss_mb()
    start = time.perf_counter()
    uncached = country.BundledCountries()
    load_s = time.perf_counter() - start
    gc.collect()
    rss_after = rss_mb()
    cached = country.country_lookup(country.BUNDLED)
    cached(ADDRESS)
    warm = best_us(lambda: cached(ADDRESS), seconds)
    addresses = random_public_ipv4(random.Random(1), 20_000)

    def loop() -> None:
        for address in addresses:
            uncached(address)

    start = time.perf_counter()
    loop()
    cold = (time.perf_counter() - start) / len(addresses) * 1e6
    cold = min(cold, best_us(loop, seconds) / len(addresses))
    answered = sum(1 for address in addresses[:2000] if uncached(address) is not None)
    return [
        f"country, bundled geoip2fast data: load (import + read {country.BUNDLED_FILE}) {load_s * 1000:.0f} ms, "
        f"RSS +{rss_after - rss_before:.1f} MB (VmRSS {rss_before:.0f} → {rss_after:.0f} MB)",
        f"country lookup: warm (lru_cache hit, one address) {warm:.2f} µs; cold (uncached BundledCountries(), "
        f"{len(addresses):,} random public IPv4 addresses) {cold:.2f} µs; {answered / 20:.0f}% of them got a country",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=0.5, help="length of each timed loop (default: %(default)s)")
    args = parser.parse_args()
    seconds = args.seconds
    with Interference() as interference:
        lines = measure_country(seconds)
        ua_lines, table = measure_user_agents(seconds)
        lines += ua_lines
        lines += measure_rest(seconds)
    context = [
        "in-process, one core, no server; best of 3 timed loops; cold = strings never seen (each User-Agent of the "
        "list with its last number replaced by a new one), warm = the same strings again",
        *interference.lines(),
    ]
    record_result("ingest v2 enrichment, per-event cost", lines, context=context, tables=[table])


def measure_user_agents(seconds: float) -> tuple[list[str], str]:
    import crawlerdetect
    import device_detector
    import ua_parser
    from ua_parser import regex

    from analytics.enrich.useragent import describe

    agents = [agent for _, agent in USER_AGENTS]
    rs_parser = ua_parser.Parser(regex.Resolver(ua_parser.load_builtins()))
    loaded: dict[str, float] = {}
    loaded["ua_parser (rs)"] = first_use_ms(lambda: ua_parser.parse(agents[0]))
    loaded["device_detector"] = first_use_ms(lambda: device_detector.DeviceDetector(agents[0]).parse())
    loaded["SoftwareDetector"] = first_use_ms(lambda: device_detector.SoftwareDetector(agents[1]).parse())
    crawler = crawlerdetect.CrawlerDetect()
    loaded["crawlerdetect"] = first_use_ms(lambda: crawler.isCrawler(agents[0]))

    libraries: list[tuple[str, Callable[[str], object], Callable[[str], object] | None, float]] = [
        ("analytics describe (ua_parser rs + lru_cache)", describe.__wrapped__, describe, seconds),
        ("ua_parser.parse, rs resolver, no cache", rs_parser.parse, None, seconds),
        ("ua_parser.parse, default (rs + its 2000-entry cache)", ua_parser.parse, ua_parser.parse, seconds),
        (
            "device_detector.DeviceDetector(ua).parse()",
            lambda ua: device_detector.DeviceDetector(ua).parse(),
            lambda ua: device_detector.DeviceDetector(ua).parse(),
            max(seconds, 1.0),
        ),
        (
            "device_detector.SoftwareDetector(ua).parse()",
            lambda ua: device_detector.SoftwareDetector(ua).parse(),
            lambda ua: device_detector.SoftwareDetector(ua).parse(),
            max(seconds, 1.0),
        ),
        ("crawlerdetect.CrawlerDetect().isCrawler(ua)", crawler.isCrawler, crawler.isCrawler, seconds),
    ]
    lines: list[str] = []
    for name, cold_call, warm_call, budget in libraries:
        cold, calls = cold_us(cold_call, budget)
        if warm_call is None:
            warm_text = "no cache (warm = cold)"
        else:
            over_list(warm_call, agents)()
            warm_text = f"warm {best_us(over_list(warm_call, agents), seconds) / len(agents):.2f} µs"
        lines.append(f"UA {name}: cold {cold:,.1f} µs ({calls:,} new strings); {warm_text}")
    before = describe.cache_info()
    over_list(describe, agents)()
    after = describe.cache_info()
    lines.append(
        f"describe lru_cache on a repeat of the list: {after.hits - before.hits} hits, {after.misses - before.misses} "
        f"misses (maxsize {after.maxsize}, currsize {after.currsize})"
    )
    lines.append(
        "first use (rules loaded, compiled) before the timings: "
        + ", ".join(f"{name} {ms:,.0f} ms" for name, ms in loaded.items())
    )
    return lines, accuracy_table(describe, device_detector, crawler)


def accuracy_table(describe: Callable[[str], object], device_detector: object, crawler: object) -> str:
    import device_detector as dd

    rows = [
        "| User-Agent | describe: browser / os / device / bot | device-detector: client / os / device / bot "
        "| crawlerdetect |",
        "|---|---|---|---|",
    ]
    for label, agent in USER_AGENTS:
        mine = describe(agent)
        theirs = dd.DeviceDetector(agent).parse()
        ours = " / ".join(
            str(value or "-")
            for value in (
                f"{mine.browser} {mine.browser_version or ''}".strip() if mine.browser else None,  # type: ignore[attr-defined]
                f"{mine.os} {mine.os_version or ''}".strip() if mine.os else None,  # type: ignore[attr-defined]
                mine.device,  # type: ignore[attr-defined]
                mine.bot or "no",  # type: ignore[attr-defined]
            )
        )
        bot = theirs.all_details.get("bot") if theirs.is_bot() else None
        bot_name = bot.get("name") if isinstance(bot, dict) else None
        detected = " / ".join(
            str(value or "-")
            for value in (
                f"{theirs.client_name()} {theirs.client_version()}".strip() if theirs.client_name() else None,
                f"{theirs.os_name()} {theirs.os_version()}".strip() if theirs.os_name() else None,
                theirs.device_type(),
                f"yes ({bot_name})" if bot_name else ("yes" if theirs.is_bot() else "no"),
            )
        )
        flagged = "crawler" if crawler.isCrawler(agent) else "no"  # type: ignore[attr-defined]
        rows.append(f"| {label} | {ours} | {detected} | {flagged} |")
    return "\n".join(rows)


def measure_rest(seconds: float) -> list[str]:
    from analytics.enrich.country import country_lookup
    from analytics.enrich.pipeline import Enricher, Requester
    from analytics.enrich.source import page, referral
    from analytics.enrich.visitor import visitor_id
    from analytics.events.contract import decode_event

    def source() -> object:
        landing = page(URL)
        return referral(REFERRER, landing.host, landing.utm[0])

    chrome = USER_AGENTS[0][1]
    body = (
        f'{{"site_id":"example.com","event_type":"page_view","url":"{URL}","referrer":"{REFERRER}",'
        '"timestamp":"2025-11-20T10:15:30.123456Z"}'
    ).encode()
    received_us = time.time_ns() // 1000
    submission = decode_event(body, received_us)
    enricher = Enricher(country_lookup("bundled"))
    requester = Requester(chrome, ADDRESS, None)
    event = enricher.event(submission, requester, SALT)
    assert not isinstance(event, str), event
    with_ip = decode_event(body[:-1] + b',"ip":"%s"}' % ADDRESS.encode(), received_us)
    cold_page = getattr(page, "__wrapped__", page)
    cold_referral = getattr(referral, "__wrapped__", referral)
    distinct = [(URL.replace("abc123", f"t{n}"), REFERRER.replace("42424242", str(n))) for n in range(50_000)]

    def source_cold() -> None:
        for url, referrer in distinct:
            landing = cold_page(url)
            cold_referral(referrer, landing.host, landing.utm[0])

    start = time.perf_counter()
    source_cold()
    source_cold_us = (time.perf_counter() - start) / len(distinct) * 1e6
    cached = "lru_cache" if hasattr(page, "cache_info") else "no cache"
    return [
        f"referrer/UTM: page(url) + referral(...) warm ({cached}, same url and referrer) "
        f"{best_us(source, seconds):.2f} µs; cold (uncached functions, {len(distinct):,} distinct urls and referrers) "
        f"{source_cold_us:.2f} µs",
        "visitor: visitor_id (HMAC-SHA256) "
        f"{best_us(lambda: visitor_id(SALT, 'example.com', ADDRESS, chrome), seconds):.2f} µs",
        f"whole Enricher.event, warm (UA and address cached), desktop Chrome, url with UTM, referrer: "
        f"{best_us(lambda: enricher.event(submission, requester, SALT), seconds):.2f} µs; with a relayed ip: "
        f"{best_us(lambda: enricher.event(with_ip, requester, SALT), seconds):.2f} µs",
        f"for scale: decode_event of the same {len(body)}-byte body "
        f"{best_us(lambda: decode_event(body, received_us), seconds):.2f} µs",
    ]


if __name__ == "__main__":
    main()
