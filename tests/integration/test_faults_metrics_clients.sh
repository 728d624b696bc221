#!/usr/bin/env bash
# Fault injection: slow and idle HTTP clients on the metrics port.  100
# clients dribble header lines (one every 0.5 s, never finishing a request)
# and 300 more connect and send nothing, while scrapes of /metrics and
# /healthz (new connections, and two requests on one keep-alive connection)
# must each be answered within 2 s.  (Before: 32 connection slots and a
# 10 s idle timeout, so such clients starved every scrape.)  The numbers
# measured are printed.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ops.sh"

"$BUILD/mtld-gen" --seed 71 --users 100 --items 50 --impressions 500 --days 1 --oracle-last 0 \
  --out "$T/events.pb" 2>"$T/gen.log"
start_cluster 1 events:1
N=$(produce "$T/events.pb" events "$T/produce.log")
write_config "$T/mtld.conf" "$T/store" events
start_mtld "$T/mtld.conf" "$T/mtld.log"
PORT=$(metrics_port "$T/mtld.log")
wait_consumed "$T/store" "$N" 60

LIMIT=$((2 * SLOW))
python3 - "$PORT" "$LIMIT" <<'PY' || fail "a scrape was not answered in time (see above)"
import socket, sys, threading, time

port, limit = int(sys.argv[1]), float(sys.argv[2])
stop = threading.Event()
slow = []

def connect():
    s = socket.socket()
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s

def read_response(s):
    """One HTTP response (headers + Content-Length body); returns (code, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise OSError("connection closed before the response")
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    code = int(lines[0].split()[1])
    length = 0
    for l in lines[1:]:
        k, v = l.split(":", 1)
        if k.lower() == "content-length":
            length = int(v)
    while len(body) < length:
        d = s.recv(65536)
        if not d:
            raise OSError("connection closed in the body")
        body += d
    return code, body

def dribble():
    for i in range(100):
        s = connect()
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        slow.append(s)
    k = 0
    while not stop.is_set():
        for s in slow:
            try:
                s.sendall(b"X-Slow-%d: x\r\n" % k)
            except OSError:
                pass
        k += 1
        stop.wait(0.5)

t = threading.Thread(target=dribble)
t.start()
while len(slow) < 100:
    time.sleep(0.05)
idle = [connect() for _ in range(300)]
time.sleep(1.0)  # the slow clients hold their slots by now

worst = 0.0
times = []
ok = True
for i in range(10):
    path = "/metrics" if i % 2 == 0 else "/healthz"
    t0 = time.monotonic()
    try:
        s = connect()
        s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())
        code, body = read_response(s)
        if i == 0:  # keep-alive: a second request on the same connection
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            code2, _ = read_response(s)
            if code2 != 200:
                print("keep-alive request answered", code2); ok = False
        s.close()
        if code != 200 or (path == "/metrics" and b"mtld_records_total" not in body):
            print("scrape", path, "answered", code); ok = False
    except OSError as e:
        print("scrape", path, "failed:", e); ok = False
    dt = time.monotonic() - t0
    times.append(dt)
    worst = max(worst, dt)
    time.sleep(0.3)
stop.set()
t.join()
for s in slow + idle:
    s.close()
print("# 10 scrapes beside 100 dribbling and 300 idle clients: median %.3f s, worst %.3f s (limit %.0f s)"
      % (sorted(times)[5], worst, limit))
sys.exit(0 if ok and worst <= limit else 1)
PY
kill -0 "$MTLD_PID" || fail "mtld died"
code=$(http "$PORT" GET /healthz "$T/h")
[ "$code" = 200 ] || fail "/healthz answered $code after the clients left"
stop_pid "$MTLD_PID" 30
echo "1 passed, 0 failed"
