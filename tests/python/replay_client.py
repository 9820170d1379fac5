#!/usr/bin/env python3
"""Independent test client for `tickring replay`, written with the Python
`websockets` library (the server uses tokio-tungstenite), so the server's
protocol handling is checked by a peer that shares no code with it.

Usage: replay_client.py EXCHANGE URL FIXTURES_DIR

Checks, per exchange: the subscribe reply, the exact served messages (count
and bytes, in order) for the subscribed symbols, a WebSocket ping answered
by a pong, the exchange's own ping where it has one, and an error reply to a
bad subscribe. Every receive has a timeout. Prints one `ok: ...` line per
check; exits 1 with `FAIL: ...` on the first failure.
"""

import json
import sys
import time
import urllib.error
import urllib.request

from websockets.sync.client import connect

TIMEOUT = 10.0


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)
    print(f"ok: {what}", flush=True)


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [l.rstrip("\n") for l in f if l.strip()]


def recv_json(ws, timeout=TIMEOUT):
    text = ws.recv(timeout=timeout)
    return text, json.loads(text)


def collect(ws, want, is_market, deadline_s=30.0):
    """Receives until `want` market messages arrived; returns (market, other)."""
    market, other = [], []
    end = time.monotonic() + deadline_s
    while len(market) < want:
        left = end - time.monotonic()
        if left <= 0:
            raise Fail(f"timed out with {len(market)} of {want} market messages")
        text = ws.recv(timeout=left)
        (market if is_market(text) else other).append(text)
    return market, other


def ws_ping(ws, what):
    pong = ws.ping(b"tickring")
    check(pong.wait(TIMEOUT), f"{what}: WebSocket ping answered by a pong")


def kraken(url, fx):
    book = lines(f"{fx}/kraken/v2_book.jsonl")
    with connect(url + "/v2", open_timeout=TIMEOUT) as ws:
        _, status = recv_json(ws)
        check(status.get("channel") == "status" and status["data"][0]["system"] == "online",
              "kraken: status message on connect")
        ws.send(json.dumps({"method": "subscribe",
                            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 10},
                            "req_id": 11}))
        _, ack = recv_json(ws)
        check(ack.get("method") == "subscribe" and ack.get("success") is True
              and ack["result"]["symbol"] == "BTC/USD" and ack["result"]["depth"] == 10
              and ack.get("req_id") == 11, "kraken: subscribe ack with req_id")
        market, other = collect(ws, len(book), lambda t: '"channel":"book"' in t)
        check(len(market) == 118, "kraken: 118 book messages")
        check(market == book, "kraken: book messages byte for byte, in order")
        check(all(json.loads(o).get("channel") == "heartbeat" for o in other),
              "kraken: nothing but heartbeats besides the book")
        ws.send(json.dumps({"method": "ping", "req_id": 42}))
        deadline = time.monotonic() + TIMEOUT
        while True:
            _, m = recv_json(ws, max(0.1, deadline - time.monotonic()))
            if m.get("method") == "pong":
                break
        check(m.get("req_id") == 42, "kraken: pong for ping with req_id")
        ws_ping(ws, "kraken")
        ws.send(json.dumps({"method": "subscribe",
                            "params": {"channel": "book", "symbol": ["FOO/BAR"], "depth": 10},
                            "req_id": 12}))
        ws.send(json.dumps({"method": "subscribe",
                            "params": {"channel": "book", "symbol": ["BTC/USD"], "depth": 7},
                            "req_id": 13}))
        errors = []
        while len(errors) < 2:
            _, m = recv_json(ws)
            if m.get("success") is False:
                errors.append(m)
        check(errors[0].get("symbol") == "FOO/BAR" and "FOO/BAR" in errors[0]["error"]
              and errors[0].get("req_id") == 12, "kraken: error ack for an unknown symbol")
        check(errors[1].get("req_id") == 13 and "depth" in errors[1]["error"].lower(),
              "kraken: error ack for a bad depth")
        deadline = time.monotonic() + TIMEOUT
        while True:
            _, m = recv_json(ws, max(0.1, deadline - time.monotonic()))
            if m.get("channel") == "heartbeat":
                break
        check(True, "kraken: heartbeat")


def coinbase(url, fx):
    products = {"BAND-GBP", "NU-GBP"}
    expect = [l for l in lines(f"{fx}/coinbase/exchange_level2.jsonl")
              if json.loads(l)["product_id"] in products]
    with connect(url, open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"type": "subscribe", "product_ids": sorted(products),
                            "channels": ["level2", {"name": "heartbeat", "product_ids": ["NU-GBP"]}]}))
        _, subs = recv_json(ws)
        names = {c["name"]: set(c["product_ids"]) for c in subs.get("channels", [])}
        check(subs.get("type") == "subscriptions" and names == {"level2": products, "heartbeat": {"NU-GBP"}},
              "coinbase: subscriptions reply lists channels and products")
        market, other = collect(ws, len(expect),
                                lambda t: json.loads(t)["type"] in ("snapshot", "l2update"))
        check(len(market) == len(expect) == 549, f"coinbase: {len(expect)} level2 messages of 2 products")
        check(market == expect, "coinbase: level2 messages byte for byte, in order")
        check(all(json.loads(o)["type"] == "heartbeat" for o in other),
              "coinbase: nothing but heartbeats besides level2")
        deadline = time.monotonic() + TIMEOUT
        while True:
            _, m = recv_json(ws, max(0.1, deadline - time.monotonic()))
            if m["type"] == "heartbeat":
                break
        check(m["product_id"] == "NU-GBP" and isinstance(m["sequence"], int) and "time" in m,
              "coinbase: heartbeat for the product")
        ws_ping(ws, "coinbase")
        ws.send(json.dumps({"type": "subscribe", "product_ids": ["NOPE-USD"], "channels": ["level2"]}))
        while True:
            _, m = recv_json(ws)
            if m["type"] != "heartbeat":
                break
        check(m["type"] == "error" and "NOPE-USD" in m.get("reason", ""),
              "coinbase: error for an unknown product")


def coinbase_advanced(url, fx):
    expect = [l for l in lines(f"{fx}/coinbase/advanced_l2_data.jsonl")
              if '"product_id":"BTC-USD"' in l]
    with connect(url, open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level2"}))
        _, subs = recv_json(ws)
        check(subs.get("channel") == "subscriptions"
              and subs["events"][0]["subscriptions"] == {"level2": ["BTC-USD"]},
              "advanced: subscriptions reply")
        market, _ = collect(ws, len(expect), lambda t: '"channel":"l2_data"' in t)
        check(market == expect, f"advanced: {len(expect)} l2_data messages byte for byte")
        seqs = [json.loads(m)["sequence_num"] for m in market]
        check(4 in seqs and 12 in seqs and seqs.index(12) == seqs.index(4) + 1,
              "advanced: the recorded sequence gap 4 -> 12 is kept")
        ws_ping(ws, "advanced")
        ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "level9"}))
        _, m = recv_json(ws)
        check(m.get("type") == "error" and "level9" in m.get("message", ""),
              "advanced: error for an unknown channel")


def binance(url, fx):
    depth = lines(f"{fx}/binance/combined_depth_100ms.jsonl")
    streams = ["nknusdt@depth@100ms", "blzeth@depth@100ms"]
    expect = [l for l in depth if json.loads(l)["stream"] in streams]
    with connect(f"{url}/stream?streams={'/'.join(streams)}", open_timeout=TIMEOUT) as ws:
        market, _ = collect(ws, len(expect), lambda t: True)
        check(len(market) == 160, "binance: 160 depth diffs of 2 symbols on /stream")
        check(market == expect, "binance: combined-stream envelopes byte for byte, in order")
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))
        _, m = recv_json(ws)
        check(m == {"result": streams, "id": 3}, "binance: LIST_SUBSCRIPTIONS")
        ws_ping(ws, "binance")
        ws.send(json.dumps({"method": "SUBSCRIB", "params": ["x@trade"], "id": 4}))
        _, m = recv_json(ws)
        check(m.get("id") == 4 and m.get("error", {}).get("code") == 2,
              "binance: error for a bad method")
    raw_expect = [l[l.index('"data":') + 7:-1] for l in depth if '"stream":"lrcbtc@depth@100ms"' in l]
    with connect(f"{url}/ws", open_timeout=TIMEOUT) as ws:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["lrcbtc@depth@100ms"], "id": 1}))
        _, ack = recv_json(ws)
        check(ack == {"result": None, "id": 1}, "binance: SUBSCRIBE ack")
        market, _ = collect(ws, len(raw_expect), lambda t: True)
        check(market == raw_expect, f"binance: {len(raw_expect)} raw depth events on /ws byte for byte")
    http = url.replace("ws://", "http://").replace("wss://", "https://")
    snap = lines(f"{fx}/binance/depth_snapshot_rest.jsonl")
    with urllib.request.urlopen(f"{http}/api/v3/depth?symbol=BLZETH&limit=1000", timeout=TIMEOUT) as r:
        check(r.status == 200 and r.read().decode() == snap[1], "binance: REST depth snapshot as recorded")
    try:
        urllib.request.urlopen(f"{http}/api/v3/depth?symbol=NOPE&limit=10", timeout=TIMEOUT)
        raise Fail("binance: REST unknown symbol answered 200")
    except urllib.error.HTTPError as e:
        check(e.code == 400 and json.loads(e.read()) == {"code": -1121, "msg": "Invalid symbol."},
              "binance: REST unknown symbol -> 400 {code:-1121}")


def main():
    exchange, url, fx = sys.argv[1:4]
    tests = {"kraken": kraken, "coinbase": coinbase,
             "coinbase-advanced": coinbase_advanced, "binance": binance}
    try:
        tests[exchange](url, fx)
    except Fail as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
    except Exception as e:  # a timeout or a closed socket is a failure too
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        sys.exit(1)
    print(f"PASS {exchange}", flush=True)


if __name__ == "__main__":
    main()
