"""A CPython multiprocessing.connection peer for tests/test_interop.c.

    mp_peer.py listen|connect ADDRESS AUTHKEY_HEX|-

ADDRESS is in mproc's syntax (tcp://host:port, tcp://[v6]:port,
unix:/path). A listener prints its real address on the first line of
stdout, then serves one connection. Both roles run the same exchange with
the C side. Exit codes: 0 done, 3 AuthenticationError, 4 a wrong message, 5 EOFError.
"""
import signal
import sys
from multiprocessing.connection import AuthenticationError, Client, Listener

BIG = 10 * 1024 * 1024


def parse(address):
    if address.startswith("tcp://"):
        host, port = address[6:].rsplit(":", 1)
        return (host.strip("[]"), int(port))
    if address.startswith("unix:"):
        return address[5:]
    raise SystemExit("mp_peer.py: unsupported address " + address)


def unparse(address):
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
    return "unix:" + address


def pattern(n):
    return (bytes(range(251)) * (n // 251 + 1))[:n]


def expect(got, want, what):
    if got != want:
        print(f"mp_peer.py: wrong {what}: {got[:40]!r} ({len(got)} bytes)", file=sys.stderr)
        sys.exit(4)


def exchange(c):
    expect(c.recv_bytes(), b"hello from C", "greeting")
    c.send_bytes(b"hello from Python " + sys.version.split()[0].encode())
    expect(c.recv_bytes(), b"", "empty message")
    c.send_bytes(b"")
    big = c.recv_bytes()
    expect(big, pattern(BIG), "10 MiB message")
    c.send_bytes(big[::-1])
    expect(c.recv_bytes(), b"bye", "farewell")


def main():
    signal.alarm(120)  # never outlive a test that went wrong
    role, address, key = sys.argv[1:4]
    authkey = None if key == "-" else bytes.fromhex(key)
    try:
        if role == "listen":
            with Listener(parse(address), authkey=authkey) as listener:
                print(unparse(listener.address), flush=True)
                with listener.accept() as c:
                    exchange(c)
        else:
            with Client(parse(address), authkey=authkey) as c:
                exchange(c)
    except AuthenticationError as e:
        print("mp_peer.py: AuthenticationError:", e, file=sys.stderr)
        sys.exit(3)
    except EOFError:
        print("mp_peer.py: EOFError: the C side hung up", file=sys.stderr)
        sys.exit(5)


if __name__ == "__main__":
    main()
