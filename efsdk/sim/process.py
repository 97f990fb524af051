"""The embedded exchange in a child process, for drivers, the demo and tests.

A separate process keeps the exchange's loop off the strategy's GIL, so the
strategy's latency is its own.  :class:`SimProcess` starts ``efsdk sim`` on
free loopback ports, waits until its order port accepts connections, and on
:meth:`stop` interrupts it (it ends the trading day, sends end-of-session on
both protocols) and reads back its JSON record: every participant fill,
position and cash, which callers reconcile against.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from efsdk.errors import SessionError
from efsdk.resource import Resource

__all__ = ["SimProcess", "free_udp_port", "free_tcp_port"]


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class SimProcess(Resource):
    """``efsdk sim`` as a child process on loopback ports chosen here.

    ``feed``/``rerequest``/``orders`` are ``(host, port)``; extra command-line
    arguments go in ``args`` (e.g. ``["--flow-rate", "500"]``).  ``namespace``
    runs it inside a network namespace (``ip netns exec``).
    """

    def __init__(
        self,
        symbols: tuple[str, ...] = ("AAPL", "MSFT"),
        *,
        feed: tuple[str, int] | None = None,
        rerequest: tuple[str, int] | None = None,
        orders: tuple[str, int] | None = None,
        user: str = "DEMO",
        password: str = "demo",
        seed: int = 1,
        args: list[str] | None = None,
        namespace: str | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self.feed = feed or ("127.0.0.1", free_udp_port())
        self.rerequest = rerequest or ("127.0.0.1", free_udp_port())
        self.orders = orders or ("127.0.0.1", free_tcp_port())
        self.user = user
        fd, self._record_path = tempfile.mkstemp(prefix="efsdk-sim-", suffix=".json")
        os.close(fd)
        command = [
            sys.executable, "-m", "efsdk.cli", "sim",
            "--symbols", ",".join(symbols),
            "--feed", f"{self.feed[0]}:{self.feed[1]}",
            "--rerequest", f"{self.rerequest[0]}:{self.rerequest[1]}",
            "--orders", f"{self.orders[0]}:{self.orders[1]}",
            "--user", user,
            "--seed", str(seed),
            "--json", self._record_path,
            *(args or []),
        ]  # fmt: skip
        if namespace is not None:
            command = ["ip", "netns", "exec", namespace, *command]
        # The password goes through the environment: argv is readable by every local user.
        env = dict(os.environ, EFSDK_SIM_PASSWORD=password)
        self._proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self._opened()
        try:
            self._wait_ready(ready_timeout, namespace)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float, namespace: str | None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                output = self._proc.stdout.read() if self._proc.stdout else ""
                raise SessionError(f"efsdk sim exited with {self._proc.returncode} before it was ready:\n{output}")
            if namespace is None:
                try:
                    with socket.create_connection(self.orders, timeout=0.2):
                        return  # accepting: the exchange is up (this probe never logs in)
                except OSError:
                    pass
            elif self._proc.stdout is not None:  # in a namespace we cannot probe: wait for its banner
                line = self._proc.stdout.readline()
                if "efsdk sim" in line:
                    return
            time.sleep(0.05)
        raise SessionError(f"efsdk sim did not accept orders at {self.orders[0]}:{self.orders[1]} within {timeout} s")

    @property
    def pid(self) -> int:
        return self._proc.pid

    def stop(self, timeout: float = 15.0) -> dict[str, Any]:
        """End the trading day and return the exchange's record (fills, positions, cash per account)."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise SessionError(f"efsdk sim did not stop within {timeout} s; killed") from None
        try:
            with open(self._record_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as exc:
            output = self._proc.stdout.read() if self._proc.stdout else ""
            raise SessionError(f"efsdk sim left no record ({exc}); exit {self._proc.returncode}:\n{output}") from None

    def _release(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        try:
            os.unlink(self._record_path)
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"<SimProcess pid={self._proc.pid} feed={self.feed} orders={self.orders}>"
