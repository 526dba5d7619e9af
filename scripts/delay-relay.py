#!/usr/bin/env python3
"""A TCP relay on loopback that delays every byte, to measure pushes and pulls over a
long round trip on a machine without netem (scripts/bench --wan).

    scripts/delay-relay.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_MS [QUEUE_MIB]

Each direction of each connection is a queue: bytes read at time t are written at
t + DELAY_MS, in order, so a request and its reply take 2 x DELAY_MS more (the round
trip). What the relay holds per direction is capped at QUEUE_MIB (default 32 MiB, the
bandwidth-delay product of the emulated link, 800 MB/s at 40 ms): once it is full, the
relay stops reading and TCP's flow control pushes back on the sender, as a full link
would. It prints "listening" once it accepts connections.

Two threads per direction (one reads, one writes when the bytes are due), with blocking
sockets: recv and send release the GIL, so this moves several hundred MB/s.
"""

import collections
import socket
import sys
import threading
import time

READ_SIZE = 1024 * 1024


class Pipe:
    """One direction: bytes from `src` reach `dst` `delay` seconds later."""

    def __init__(self, src, dst, delay, cap):
        self.src, self.dst, self.delay, self.cap = src, dst, delay, cap
        self.queue = collections.deque()
        self.held = 0
        self.cond = threading.Condition()

    def read(self):
        try:
            while True:
                with self.cond:
                    while self.held >= self.cap:
                        self.cond.wait()
                data = self.src.recv(READ_SIZE)
                with self.cond:
                    self.queue.append((time.monotonic() + self.delay, data))
                    self.held += len(data)
                    self.cond.notify_all()
                if not data:
                    return
        except OSError:
            with self.cond:
                self.queue.append((0, b""))
                self.cond.notify_all()

    def write(self):
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    due, data = self.queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
                with self.cond:
                    self.held -= len(data)
                    self.cond.notify_all()
        except OSError:
            for s in (self.src, self.dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def relay(client, target, delay, cap):
    try:
        server = socket.create_connection(target)
    except OSError:
        client.close()
        return
    threads = []
    for src, dst in ((client, server), (server, client)):
        src.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipe = Pipe(src, dst, delay, cap)
        threads += [threading.Thread(target=f, daemon=True) for f in (pipe.read, pipe.write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    server.close()


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    listen = int(sys.argv[1])
    host, _, port = sys.argv[2].rpartition(":")
    delay = float(sys.argv[3]) / 1000
    cap = int(sys.argv[4] if len(sys.argv) == 5 else 32) * 1024 * 1024
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", listen))
    sock.listen(128)
    print("listening", flush=True)
    while True:
        client, _ = sock.accept()
        threading.Thread(
            target=relay, args=(client, (host, int(port)), delay, cap), daemon=True
        ).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
