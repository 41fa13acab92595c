#!/usr/bin/env python3
"""Scenario driver for rocketmq-client-cpp 1.x (PyPI `rocketmq==0.4.4`).

Prints one JSON object per line on stdout ({"event": ...}); diagnostics go to stderr.
The Rust tests in tests/tests/ start our namesrv + broker, run this script and assert on
what it printed. Every wait is bounded by --timeout-ms; exit codes: 0 ok, 1 error,
3 timeout (with what was seen so far already printed).

Subcommands:
  produce  sync/async/oneway/batch/compressed-batch/orderly/delayed sends; one `sent` event per
           message (bodies, tags, keys and properties are derived from --prefix, mode and index).
  consume  push consumer (clustering, optionally orderly); one `received` event per delivery;
           exits after --expect distinct bodies were consumed successfully.
  pull     pull consumer from offset 0 of every queue until --expect messages were seen.
"""
import argparse
import json
import os
import sys
import threading
import time

from rocketmq.client import Message, Producer, PullConsumer, PushConsumer, SendStatus

# The C++ client compresses batch bodies over 4 KiB: big-batch messages are large enough that
# a batch of 3 or more crosses that line.
BIG_BODY_BYTES = 1500
# Single messages over 4 KiB are zlib-compressed by the client (sysFlag bit 0 is stored).
LARGE_BODY_BYTES = 6000
PROPS_REPORTED = ("test_prop", "mode", "UNIQ_KEY", "RETRY_TOPIC", "ORIGIN_MESSAGE_ID", "DELAY",
                  "REAL_TOPIC", "KEYS", "TAGS")

_out_lock = threading.Lock()


def emit(event, **fields):
    fields["event"] = event
    line = json.dumps(fields, sort_keys=True)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def now_ms():
    return int(time.time() * 1000)


def text(v):
    if v is None:
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def body_for(prefix, mode, i):
    base = "%s|%s|%d" % (prefix, mode, i)
    if mode == "bigbatch":
        pad = ("payload-%d-" % i) * (BIG_BODY_BYTES // 10)
        return base + "|" + pad[:BIG_BODY_BYTES]
    if mode == "large":
        pad = ("large-%d-" % i) * (LARGE_BODY_BYTES // 8)
        return base + "|" + pad[:LARGE_BODY_BYTES]
    return base


def make_message(topic, prefix, mode, i, tags, delay_level):
    body = body_for(prefix, mode, i)
    tag = tags[i % len(tags)]
    keys = "%s-%s-%d" % (prefix, mode, i)
    props = {"test_prop": "%s-%d" % (mode, i), "mode": mode}
    msg = Message(topic)
    msg.set_body(body)
    msg.set_tags(tag)
    msg.set_keys(keys)
    for k, v in props.items():
        msg.set_property(k, v)
    if delay_level:
        msg.set_delay_time_level(delay_level)
    return msg, dict(body=body, tags=tag, keys=keys, props=props, mode=mode)


def check_ok(res, info=None):
    if res.status != SendStatus.OK:
        raise RuntimeError("send status %s" % res.status)
    if info is not None and res.msg_id:
        # For single messages the C++ client returns its UNIQ_KEY as the message id; the
        # consumer must see the same UNIQ_KEY property.
        info["props"]["UNIQ_KEY"] = res.msg_id


def cmd_produce(a):
    tags = a.tags.split(",")
    p = Producer(a.group, timeout=a.send_timeout_ms)
    p.set_namesrv_addr(a.namesrv)
    p.start()
    emit("started")
    deadline = time.time() + a.timeout_ms / 1000.0
    keep = []  # Message objects must outlive async sends

    for i in range(a.sync):
        msg, info = make_message(a.topic, a.prefix, "sync", i, tags, a.delay_level)
        born = now_ms()
        res = p.send_sync(msg)
        check_ok(res, info)
        emit("sent", msg_id=res.msg_id, offset=res.offset, born_ms=born, **info)

    for i in range(a.large):
        msg, info = make_message(a.topic, a.prefix, "large", i, tags, a.delay_level)
        born = now_ms()
        res = p.send_sync(msg)
        check_ok(res, info)
        emit("sent", msg_id=res.msg_id, offset=res.offset, born_ms=born, **info)

    for i in range(a.oneway):
        msg, info = make_message(a.topic, a.prefix, "oneway", i, tags, a.delay_level)
        born = now_ms()
        p.send_oneway(msg)
        emit("sent", msg_id=None, born_ms=born, **info)

    for mode, count in (("batch", a.batch), ("bigbatch", a.big_batch)):
        if count == 0:
            continue
        msgs, infos = [], []
        for i in range(count):
            msg, info = make_message(a.topic, a.prefix, mode, i, tags, 0)
            msgs.append(msg)
            infos.append(info)
        born = now_ms()
        res = p.send_batch(msgs)
        check_ok(res)
        for info in infos:
            emit("sent", msg_id=res.msg_id, offset=res.offset, born_ms=born, **info)

    for i in range(a.orderly):
        key = i % a.order_keys
        seq = i // a.order_keys
        msg, info = make_message(a.topic, a.prefix, "orderly", i, tags, 0)
        born = now_ms()
        res = p.send_orderly(msg, key)
        check_ok(res, info)
        emit("sent", msg_id=res.msg_id, offset=res.offset, born_ms=born, order_key=key, seq=seq,
             **info)

    if a.async_count:
        done = threading.Event()
        lock = threading.Lock()
        state = {"left": a.async_count, "errors": []}

        def finished():
            with lock:
                state["left"] -= 1
                if state["left"] == 0:
                    done.set()

        for i in range(a.async_count):
            msg, info = make_message(a.topic, a.prefix, "async", i, tags, a.delay_level)
            keep.append(msg)
            born = now_ms()

            def on_ok(res, info=info, born=born):
                if res.msg_id:
                    info["props"]["UNIQ_KEY"] = res.msg_id
                emit("sent", msg_id=res.msg_id, offset=res.offset, born_ms=born, **info)
                finished()

            def on_err(exc, info=info):
                with lock:
                    state["errors"].append("%s: %s" % (info["body"], exc))
                emit("error", error="async send failed: %s" % exc, body=info["body"])
                finished()

            p.send_async(msg, on_ok, on_err)
        if not done.wait(max(0.0, deadline - time.time())):
            emit("timeout", waiting_for="async send callbacks", left=state["left"])
            os._exit(3)
        if state["errors"]:
            os._exit(1)

    p.shutdown()
    emit("done")


def recv_info(m):
    props = {}
    for k in PROPS_REPORTED:
        v = text(m.get_property(k))
        if v:
            props[k] = v
    return dict(
        topic=m.topic, body=text(m.body), tags=text(m.tags), keys=text(m.keys), props=props,
        msg_id=m.id, queue_id=m.queue_id, queue_offset=m.queue_offset,
        reconsume_times=m.reconsume_times, commit_log_offset=m.commit_log_offset,
        born_ms=m.born_timestamp, store_ms=m.store_timestamp, recv_ms=now_ms(),
        thread=threading.current_thread().name,
    )


def cmd_consume(a):
    lock = threading.Lock()
    done = threading.Event()
    consumed = set()       # bodies consumed successfully
    seen = {}              # body -> deliveries
    state = {"deliveries": 0}

    def callback(m):
        info = recv_info(m)
        body = info["body"]
        with lock:
            state["deliveries"] += 1
            seen[body] = seen.get(body, 0) + 1
            fail = a.fail_always or (a.fail_first and seen[body] == 1)
            info["delivery"] = seen[body]
            info["result"] = "fail" if fail else "ok"
            emit("received", **info)
            if not fail:
                consumed.add(body)
            if len(consumed) >= a.expect > 0:
                done.set()
            if a.stop_after_deliveries and state["deliveries"] >= a.stop_after_deliveries:
                done.set()
        if fail:
            # The binding maps an exception to RECONSUME_LATER.
            raise RuntimeError("scenario: fail this delivery")

    c = PushConsumer(a.group, orderly=a.orderly)
    c.set_namesrv_addr(a.namesrv)
    c.set_thread_count(a.threads)
    c.subscribe(a.topic, callback, a.expr)
    c.start()
    emit("started")
    deadline = time.time() + a.timeout_ms / 1000.0
    finished = False
    while not finished and time.time() < deadline:
        # Wake every 100 ms to notice --stop-file (the test's "everyone is done" signal).
        finished = done.wait(min(0.1, max(0.0, deadline - time.time())))
        if a.stop_file and os.path.exists(a.stop_file):
            finished = True
    if not finished:
        with lock:
            emit("timeout", consumed=len(consumed), expected=a.expect,
                 deliveries=state["deliveries"])
        os._exit(3)
    # Shutdown persists the consumed offsets to the broker (UPDATE_CONSUMER_OFFSET).
    c.shutdown()
    emit("done", consumed=len(consumed), deliveries=state["deliveries"])


def cmd_pull(a):
    c = PullConsumer(a.group)
    c.set_namesrv_addr(a.namesrv)
    c.start()
    emit("started")
    deadline = time.time() + a.timeout_ms / 1000.0
    bodies = set()
    while len(bodies) < a.expect:
        for m in c.pull(a.topic, a.expr):
            info = recv_info(m)
            bodies.add(info["body"])
            emit("received", **info)
        if len(bodies) >= a.expect:
            break
        if time.time() > deadline:
            emit("timeout", consumed=len(bodies), expected=a.expect)
            os._exit(3)
        time.sleep(0.2)  # poll interval of a pull loop, not synchronisation
    c.shutdown()
    emit("done", consumed=len(bodies))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--namesrv", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("produce")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", default="cpp_pg")
    p.add_argument("--prefix", default="m")
    p.add_argument("--tags", default="TagA")
    p.add_argument("--sync", type=int, default=0)
    p.add_argument("--async", dest="async_count", type=int, default=0)
    p.add_argument("--oneway", type=int, default=0)
    p.add_argument("--large", type=int, default=0, help="sync sends of %d-byte bodies" % LARGE_BODY_BYTES)
    p.add_argument("--batch", type=int, default=0)
    p.add_argument("--big-batch", type=int, default=0)
    p.add_argument("--orderly", type=int, default=0)
    p.add_argument("--order-keys", type=int, default=4)
    p.add_argument("--delay-level", type=int, default=0)
    p.add_argument("--send-timeout-ms", type=int, default=10000)
    p.add_argument("--timeout-ms", type=int, default=60000)

    c = sub.add_parser("consume")
    c.add_argument("--topic", required=True)
    c.add_argument("--group", required=True)
    c.add_argument("--expr", default="*")
    c.add_argument("--expect", type=int, default=0)
    c.add_argument("--orderly", action="store_true")
    c.add_argument("--threads", type=int, default=4)
    c.add_argument("--fail-first", action="store_true")
    c.add_argument("--fail-always", action="store_true")
    c.add_argument("--stop-after-deliveries", type=int, default=0)
    c.add_argument("--stop-file", default=None, help="exit (cleanly) once this file exists")
    c.add_argument("--timeout-ms", type=int, default=60000)

    q = sub.add_parser("pull")
    q.add_argument("--topic", required=True)
    q.add_argument("--group", default="cpp_pull_cg")
    q.add_argument("--expr", default="*")
    q.add_argument("--expect", type=int, required=True)
    q.add_argument("--timeout-ms", type=int, default=60000)

    a = ap.parse_args()
    try:
        {"produce": cmd_produce, "consume": cmd_consume, "pull": cmd_pull}[a.cmd](a)
    except Exception as e:  # report, then exit non-zero
        emit("error", error="%s: %s" % (type(e).__name__, e))
        os._exit(1)
    # Skip interpreter teardown: the C++ client's destructors can hang on exit.
    os._exit(0)


if __name__ == "__main__":
    main()
