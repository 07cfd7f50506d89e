#!/usr/bin/env python3
"""CPython multiprocessing on mproc-bench's workloads.

Usage: mp_peers.py CASE COUNT REPS
Prints one line "values: v1 v2 ..." (one metric per repetition, in the unit
the case names) or "skipped: why". Every case checks its results and exits
with status 1 on a wrong answer, so a fast wrong answer cannot pass.
"""
import multiprocessing as mp
import sys
import time

MSG = bytes(range(64))
MIB = 1 << 20


def fail(why):
    print("mp_peers: " + why, file=sys.stderr)
    sys.exit(1)


def square(x):
    return x * x


def nothing():
    pass


def _echo(conn):
    # An empty message ends it: under fork the child holds the other end
    # too, so it would never see EOF.
    while True:
        m = conn.recv_bytes()
        if not m:
            return
        conn.send_bytes(m)


def pipe_pingpong(count):
    """us per round trip of a 64-byte message (W1)."""
    a, b = mp.Pipe()
    p = mp.Process(target=_echo, args=(b,))
    p.start()
    b.close()
    for _ in range(100):
        a.send_bytes(MSG)
        a.recv_bytes()
    t0 = time.perf_counter()
    for _ in range(count):
        a.send_bytes(MSG)
        if a.recv_bytes() != MSG:
            fail("pipe-pingpong: echo differs")
    t1 = time.perf_counter()
    a.send_bytes(b"")
    p.join()
    return (t1 - t0) / count * 1e6


def _bulk(conn, count):
    buf = bytearray(MIB)
    for i in range(count):
        buf[0:8] = i.to_bytes(8, "little")
        conn.send_bytes(buf)
    conn.close()


def pipe_bulk(count):
    """GB/s of 1 MiB messages one way (W2)."""
    a, b = mp.Pipe()
    p = mp.Process(target=_bulk, args=(b, count))
    t0 = time.perf_counter()
    p.start()
    b.close()
    for i in range(count):
        m = a.recv_bytes()
        if len(m) != MIB or int.from_bytes(m[0:8], "little") != i:
            fail("pipe-bulk: message %d is wrong" % i)
    t1 = time.perf_counter()
    p.join()
    return count * MIB / (t1 - t0) / 1e9


def _produce(q, count, size):
    item = bytearray(size)
    for i in range(count):
        item[0:8] = i.to_bytes(8, "little")
        q.put(bytes(item))


def _queue(q, count, size):
    p = mp.Process(target=_produce, args=(q, count, size))
    t0 = time.perf_counter()
    p.start()
    for i in range(count):
        m = q.get()
        if len(m) != size or int.from_bytes(m[0:8], "little") != i:
            fail("queue: item %d is wrong" % i)
    t1 = time.perf_counter()
    p.join()
    return t1 - t0


def queue_64(count):
    """M items/s of 64-byte items, 1 producer -> 1 consumer (W3)."""
    return count / _queue(mp.Queue(), count, 64) / 1e6


def simplequeue_64(count):
    """M items/s, as queue-64 through a SimpleQueue (W3)."""
    return count / _queue(mp.SimpleQueue(), count, 64) / 1e6


def queue_1mib(count):
    """GB/s of 1 MiB items through a Queue (W4)."""
    return count * MIB / _queue(mp.Queue(), count, MIB) / 1e9


def _pool_items(pool, count, chunked):
    t0 = time.perf_counter()
    if chunked:
        out = pool.map(square, range(count))
    else:
        out = sorted(pool.imap_unordered(square, range(count), chunksize=1))
    t1 = time.perf_counter()
    if len(out) != count or sum(out) != sum(i * i for i in range(count)):
        fail("pool: wrong results")
    return count / (t1 - t0) / 1e6


def pool_map(count):
    """M tasks/s, Pool(2).map with the default chunksize (W5)."""
    with mp.Pool(2) as pool:
        pool.map(square, range(20))
        return _pool_items(pool, count, True)


def pool_imap_unordered(count):
    """M tasks/s, Pool(2).imap_unordered with chunksize 1 (W5 imap)."""
    with mp.Pool(2) as pool:
        pool.map(square, range(20))
        return _pool_items(pool, count, False)


def apply_async(count):
    """us per apply_async round trip on an idle Pool(1) (W6)."""
    with mp.Pool(1) as pool:
        for i in range(20):
            pool.apply_async(square, (i,)).get()
        t0 = time.perf_counter()
        for i in range(count):
            if pool.apply_async(square, (i,)).get() != i * i:
                fail("apply_async: wrong result")
        t1 = time.perf_counter()
    return (t1 - t0) / count * 1e6


def _start(method, count):
    ctx = mp.get_context(method)
    t0 = time.perf_counter()
    for _ in range(count):
        p = ctx.Process(target=nothing)
        p.start()
        p.join()
        if p.exitcode != 0:
            fail("process: exit code %s" % p.exitcode)
    return (time.perf_counter() - t0) / count * 1e3


def process_fork(count):
    """ms per Process start + join under fork (W7)."""
    return _start("fork", count)


def process_spawn(count):
    """ms per Process start + join under spawn (W7)."""
    return _start("spawn", count)


def _dict_child(d, count):
    for i in range(count):
        k = b"k%d" % (i % 100)
        d[k] = i
        if d[k] != i:
            sys.exit(3)


def manager_dict(count):
    """ops/s (a set or a get) on Manager().dict() from a child (W8)."""
    with mp.Manager() as m:
        d = m.dict()
        p = mp.Process(target=_dict_child, args=(d, count))
        t0 = time.perf_counter()
        p.start()
        p.join()
        t1 = time.perf_counter()
        if p.exitcode != 0 or len(d) != min(count, 100):
            fail("manager-dict: wrong results")
    return 2 * count / (t1 - t0)


CASES = {
    "pipe-pingpong": pipe_pingpong,
    "pipe-bulk": pipe_bulk,
    "queue-64": queue_64,
    "simplequeue-64": simplequeue_64,
    "queue-1mib": queue_1mib,
    "pool-map": pool_map,
    "pool-imap-unordered": pool_imap_unordered,
    "apply-async": apply_async,
    "process-fork": process_fork,
    "process-spawn": process_spawn,
    "manager-dict": manager_dict,
}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in CASES:
        print("usage: mp_peers.py {%s} COUNT REPS" % ",".join(CASES), file=sys.stderr)
        sys.exit(2)
    case, count, reps = CASES[sys.argv[1]], int(sys.argv[2]), int(sys.argv[3])
    if sys.argv[1] == "process-fork" and "fork" not in mp.get_all_start_methods():
        print("skipped: no fork start method here")
        return
    values = [case(count) for _ in range(reps)]
    print("values: " + " ".join("%.6g" % v for v in values))


if __name__ == "__main__":
    main()
