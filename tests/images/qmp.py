#!/usr/bin/env python3
"""tests/images/qmp.py: a minimal QMP client for the image scripts.

    qmp.py SOCKET COMMAND [JSON-ARGUMENTS] [--wait-event NAME] [--timeout S]

Connects to QEMU's QMP unix socket, negotiates capabilities, runs COMMAND,
prints its reply (one JSON line) and every event seen, and with --wait-event
keeps reading until that event arrives (exit 3 if it does not in time).
Exit 0 on a "return" reply, 2 on an "error" reply, 1 on connection trouble.
"""
import json
import socket
import sys
import time


def main(argv):
    args = list(argv[1:])
    wait_event = None
    timeout = 10.0
    if "--wait-event" in args:
        i = args.index("--wait-event")
        wait_event = args[i + 1]
        del args[i:i + 2]
    if "--timeout" in args:
        i = args.index("--timeout")
        timeout = float(args[i + 1])
        del args[i:i + 2]
    if len(args) < 2:
        print(__doc__, file=sys.stderr)
        return 1
    path, command = args[0], args[1]
    arguments = json.loads(args[2]) if len(args) > 2 else None

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError as e:
        print(f"qmp: {path}: {e}", file=sys.stderr)
        return 1
    f = s.makefile("rwb", buffering=0)
    deadline = time.monotonic() + timeout

    def read():
        line = f.readline()
        if not line:
            raise EOFError("QMP connection closed")
        return json.loads(line)

    def send(obj):
        f.write(json.dumps(obj).encode() + b"\n")

    try:
        read()  # greeting
        send({"execute": "qmp_capabilities"})
        while "return" not in read():
            pass
        cmd = {"execute": command}
        if arguments is not None:
            cmd["arguments"] = arguments
        send(cmd)
        rc = None
        seen = False
        while rc is None or (wait_event and not seen):
            if time.monotonic() > deadline:
                print(f"qmp: timeout waiting for {wait_event}", file=sys.stderr)
                return 3
            msg = read()
            print(json.dumps(msg), flush=True)
            if "return" in msg:
                rc = 0
            elif "error" in msg:
                return 2
            elif msg.get("event") == wait_event:
                seen = True
        return rc
    except (EOFError, OSError) as e:
        # "quit" and a guest poweroff close the socket: fine when expected.
        if command == "quit" or (wait_event in ("SHUTDOWN",) and rc == 0):
            return 0
        print(f"qmp: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
