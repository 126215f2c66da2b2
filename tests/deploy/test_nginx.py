"""The shipped front door (deploy/nginx/) keeps the properties docs/security.md relies on: slow
clients are cut off, requests are buffered whole before gunicorn sees them, the body limit
matches the app's, and the client address the app believes is the one nginx saw.
bench/front_door_bench.py measures the same file under 50 slow connections."""
from __future__ import annotations

import re
from pathlib import Path

import crossplane

from bot.web.app import MAX_REQUEST_BYTES, TRUSTED_PROXIES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "nginx"
UNITS = {"": 1, "s": 1, "m": 60}
SIZES = {"": 1, "k": 1024, "m": 1024 * 1024}


def parsed(name: str) -> list[dict]:
    result = crossplane.parse(str(DEPLOY / name), single=True, check_ctx=False, comments=False)
    assert result["status"] == "ok", result["errors"]
    return result["config"][0]["parsed"]


def directives(block: list[dict], name: str) -> list[list[str]]:
    return [d["args"] for d in block if d["directive"] == name]


def one(block: list[dict], name: str) -> list[str]:
    (args,) = directives(block, name)
    return args


def seconds(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([sm]?)", value).groups()
    return int(number) * UNITS[unit]


def size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([km]?)", value.lower()).groups()
    return int(number) * SIZES[unit]


def test_slow_clients_are_cut_off_within_seconds():
    front = parsed("front-door.conf")
    for name in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert seconds(one(front, name)[0]) <= 10, name
    assert one(front, "reset_timedout_connection") == ["on"]


def test_requests_reach_gunicorn_only_whole_and_no_larger_than_the_app_accepts():
    front = parsed("front-door.conf")
    assert size(one(front, "client_max_body_size")[0]) == MAX_REQUEST_BYTES
    (location,) = [d for d in front if d["directive"] == "location"]
    assert location["args"] == ["/"]
    block = location["block"]
    assert one(block, "proxy_pass") == ["http://impersonation_bot"]
    assert one(block, "proxy_request_buffering") == ["on"]
    assert one(block, "proxy_buffering") == ["on"]


def test_the_forwarded_address_is_overwritten_not_appended():
    (location,) = [d for d in parsed("front-door.conf") if d["directive"] == "location"]
    headers = dict((args[0].lower(), args[1]) for args in directives(location["block"], "proxy_set_header"))
    # $proxy_add_x_forwarded_for would keep whatever the client sent in front of it
    assert headers["x-forwarded-for"] == "$remote_addr"


def test_the_site_proxies_to_gunicorn_on_loopback_through_the_front_door_settings():
    site = parsed("impersonation-bot.conf")
    (upstream,) = [d for d in site if d["directive"] == "upstream"]
    assert upstream["args"] == ["impersonation_bot"]
    (server,) = directives(upstream["block"], "server")
    assert server[0].rsplit(":", 1)[0] in TRUSTED_PROXIES  # the app believes X-Forwarded-For from it
    servers = [d["block"] for d in site if d["directive"] == "server"]
    proxying = [block for block in servers if not directives(block, "return")]
    assert proxying, "no server block serves the app"
    for block in proxying:
        assert any(args[0].endswith("/front-door.conf") for args in directives(block, "include"))
        assert one(block, "access_log") == ["off"]  # nginx would log /l/<token> unredacted
