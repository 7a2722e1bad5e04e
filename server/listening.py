"""Where N worker processes listen: each on a socket of its own, bound with SO_REUSEPORT to the same address.

uvicorn binds one socket in the parent and every worker accepts on it. A worker woken by a new connection accepts all
the connections queued by then (libuv drains the queue), so clients that open several connections at once (a browser,
a proxy's pool, a benchmark's 8) may all land on one worker while the other stays idle: with 2 workers, 8 connections
opened together all went to one worker in 6 of 67 wrk runs over 1M points (the small bbox then 4,622–5,092 against
5,968–9,088 req/s). With a socket per worker in one SO_REUSEPORT group the kernel spreads new connections over
the workers' sockets by their addresses' hash: all 8 on one worker is 2 in 256. The hash does not know that a worker
is busy, where the shared socket's first woken may be the idle one: right after a start on a new 1M-point
publication, while one worker pre-renders the tiles, the first tile requests were within their usual spread in two
runs (benchmarks/README.md, bench_tiles' `first`: 23.8 and 34.7 req/s against 34.0 and 30.0–35.2 before).

The parent binds first but never listens: only listening sockets take connections. Each worker makes its own socket
when it is started (and restarted) by uvicorn's supervisor, which passes the parent's socket to the worker process:
this socket's pickled form is the address, and unpickling binds a new one. Any process of the same user binding with
SO_REUSEPORT joins the group, so a second server started on the port of a running one would share its connections:
the parent first binds the address as uvicorn does (SO_REUSEADDR alone), which fails while anything listens there.
A worker that dies takes the connections queued on its socket with it (reset), which the shared socket kept for the
others. Linux only (other kernels do not spread connections over such sockets): elsewhere the one shared socket, as
uvicorn binds it.
"""

from __future__ import annotations

import socket
import sys

import uvicorn

SPREADS_CONNECTIONS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class WorkerSocket(socket.socket):
    """The parent's socket: bound, not listening; in a worker process, a socket of its own at the same address."""

    def __reduce__(self):
        return (bound_again, (self.family, self.getsockname()))


def _bound(kind: type[socket.socket], family: int, address: tuple, reuse_port: bool) -> socket.socket:
    sock = kind(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bound_again(family: int, address: tuple) -> socket.socket:
    """A worker's socket at the parent's address (its port, even when the parent was given port 0)."""
    return _bound(socket.socket, family, address, reuse_port=True)


def bind_for_workers(config: uvicorn.Config) -> socket.socket:
    """The socket to give uvicorn's supervisor for `config.workers` processes: a WorkerSocket where the kernel spreads
    connections over such sockets, else uvicorn's own shared one. OSError when the address cannot be had (a server
    already listens there)."""
    if not SPREADS_CONNECTIONS or config.uds is not None or config.fd is not None:
        return config.bind_socket()
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    with _bound(socket.socket, family, (config.host, config.port), reuse_port=False) as alone:
        address = alone.getsockname()  # free: nothing listens there (port 0: the one given)
    return _bound(WorkerSocket, family, address, reuse_port=True)


def run_workers(config: uvicorn.Config, sock: socket.socket) -> None:
    """uvicorn.run's way with `config.workers` processes, each listening on its own socket (`sock`, from
    bind_for_workers)."""
    from uvicorn.supervisors import Multiprocess

    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
