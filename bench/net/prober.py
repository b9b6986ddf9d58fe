"""Run inside the cluster router's namespace by bench/net (rule-apply
latency): opens a TCP connection to DST:PORT every INTERVAL s, each kept
300 ms (before the SYN's first retransmission, so no answer ever comes
from a retransmitted SYN), and prints "pass T" with the CLOCK_MONOTONIC
time at which the first SYN that got an answer was sent (a SYN-ACK, or an
RST from the guest's closed port: either means the packet passed the
node's filter), or "timeout"."""
import errno
import select
import socket
import sys
import time

dst, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.002
ep = select.epoll()
socks = {}
print("probing", flush=True)
end = time.monotonic() + timeout
nxt = 0.0
while time.monotonic() < end:
    now = time.monotonic()
    if now >= nxt:
        s = socket.socket()
        s.setblocking(False)
        t = time.monotonic()
        s.connect_ex((dst, port))
        ep.register(s.fileno(), select.EPOLLOUT)
        socks[s.fileno()] = (s, t)
        nxt = now + interval
    passed = []
    for fd, _ in ep.poll(0.0005):
        s, t = socks.pop(fd)
        e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if e in (0, errno.ECONNREFUSED):
            passed.append(t)
        ep.unregister(fd)
        s.close()
    if passed:
        print(f"pass {min(passed):.6f}", flush=True)
        sys.exit(0)
    for fd, (s, t) in list(socks.items()):
        if now - t > 0.3:
            ep.unregister(fd)
            s.close()
            del socks[fd]
print("timeout", flush=True)
