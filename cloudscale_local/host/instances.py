"""The supervisor: N host processes on one port, as Azure runs N instances of an app.

On Azure an app scales out by instances, each a whole Functions host with its own triggers:
they share the HTTP front end, compete for the queue's messages, and one of them runs each
timer (sources in `docs/architecture.md`, "Instances"). `supervise` does that on one machine:

1. it checks everything once, before any instance starts, so an error is reported once and
   clearly: settings, host.json, the app's index and the worker's rules, the store files;
2. it binds the listening sockets itself, one per instance on one port (port 0 allowed; see
   `bind_listeners`), and starts `instances` processes (spawned, not forked: each imports the app
   afresh, as a new instance does), each serving the whole app on its socket
   (`serve_instance`); it prints the banner once all of them serve;
3. an instance that dies is replaced, as the platform replaces a lost instance, and the death
   is logged with its exit status; instances that die before they serve, `STARTUP_FAILURES`
   times in a row, stop the run with their error instead of a crash loop;
4. on SIGINT or SIGTERM it sends SIGTERM to every instance, waits for their graceful
   shutdown, closes the sockets and returns.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from cloudscale_local.host.banner import print_banner
from cloudscale_local.host.listening import ListenError, check_port_free, listen_error
from cloudscale_local.host.metrics_totals import MetricsSnapshots, new_run_folder
from cloudscale_local.host.server import HostOptions, InstanceRole, check_stores, plan, serve_instance
from cloudscale_local.host.shutdown_summary import print_queue_summary

__all__ = ["STARTUP_FAILURES", "InstanceStartError", "ListenError", "bind_listeners", "join_port", "supervise"]

logger = logging.getLogger(__name__)

STARTUP_FAILURES = 3
"""Instances that die before serving, in a row, after which the run stops."""
_STOP_MARGIN_SECONDS = 15.0
"""Beyond the shutdown grace (requests, then triggers), how long an instance may take to end before it is killed."""
_POLL_SECONDS = 0.2


class InstanceStartError(Exception):
    """Instances kept failing before they served; the message is the last one's error."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """What an instance process needs: picklable, for the spawn start method."""

    options: HostOptions
    environ: dict[str, str]
    snapshots: Path
    number: int
    supervisor: int
    """The supervisor's pid: the instance stops when its parent is no longer that process."""


@dataclass(slots=True)
class _Instance:
    number: int
    slot: int
    """Which listening socket it serves: a replacement serves its predecessor's."""
    process: BaseProcess
    messages: Connection
    serving: bool = False


def supervise(options: HostOptions, environ: Mapping[str, str]) -> None:
    """Run `options.instances` instances until SIGINT or SIGTERM; raise what stops the run before it starts."""
    ready = plan(options, environ)
    check_stores(ready.settings)
    listeners = bind_listeners(options.host, options.port, options.instances)
    run_folder, run_lock = new_run_folder(ready.settings.data_dir.resolve() / "instances")
    supervisor = _Supervisor(options, dict(environ), run_folder, listeners)
    try:
        supervisor.run(lambda: print_banner(listeners[0].getsockname(), ready.banner))
        print_queue_summary(ready.settings)  # once, after every instance stopped
    finally:
        for listener in listeners:
            listener.close()
        shutil.rmtree(run_folder, ignore_errors=True)
        os.close(run_lock)
        # The run is over: a stop signal that comes now (a second Ctrl-C, a second SIGTERM)
        # stays pending, instead of killing the process while the interpreter exits (Python
        # puts the default handlers back then, and the default for both is to die).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def bind_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per instance, all on one port (`SO_REUSEPORT`), as uvicorn binds its own.

    Not one socket shared by every instance: the instance that wakes first takes every
    connection waiting (asyncio accepts up to the backlog at a time), and keep-alive
    clients then stay on it while the other instances idle. With a socket each, the kernel
    spreads new connections over the instances, as Azure's front end spreads requests. A lost
    instance's socket is closed at once (`_Supervisor`), so new connections go to the
    instances still serving instead of waiting for a replacement that may not come; the
    replacement joins the port with a socket of its own (`join_port`).

    Another process's socket on the port stops the run, even one that also allows
    `SO_REUSEPORT` (a second `cloudscale run`, which would silently share the port): the
    port is first bound without it, which only succeeds if nobody holds it.
    """
    check_port_free(host, port)
    listeners: list[socket.socket] = []
    try:
        for _ in range(count):
            listeners.append(join_port(host, port))
            port = listeners[-1].getsockname()[1]  # port 0: the others join the port the first got
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def join_port(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port` beside the run's others (`SO_REUSEPORT`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: a connection accepted from this socket inherits it, and
    # asyncio sets TCP_NODELAY only on sockets that say they are TCP. Without it Nagle's
    # algorithm held each response's body back until the client's delayed ACK of its head,
    # 40 ms later: every request took at least 44 ms.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with listen_error(host, port):
            listener.bind((host, port))
        listener.listen(2048)
        listener.set_inheritable(True)
    except BaseException:
        listener.close()
        raise
    return listener


class _Supervisor:
    def __init__(
        self, options: HostOptions, environ: dict[str, str], run_folder: Path, listeners: list[socket.socket]
    ) -> None:
        self._options = options
        self._listeners = listeners
        self._address: tuple[str, int] = listeners[0].getsockname()[:2]
        self._environ = environ
        self._run_folder = run_folder
        self._context = multiprocessing.get_context("spawn")
        self._instances: list[_Instance] = []
        self._started = 0
        self._failures = 0
        self._announced = False
        self._last_error: str | None = None
        self._last_traceback = ""
        self._stop = threading.Event()

    def run(self, announce: Callable[[], None]) -> None:
        # Not restored afterwards: a second Ctrl-C or SIGTERM while the instances stop, or while
        # the run folder is removed, must not kill the supervisor half way (the process ends next).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        try:
            for slot in range(len(self._listeners)):
                self._start(slot)
            while not self._stop.is_set():
                self._watch()
                if not self._announced and all(instance.serving for instance in self._instances):
                    announce()
                    self._announced = True
        finally:
            self._stop_all()

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def _start(self, slot: int) -> None:
        listener = self._listeners[slot]
        if listener.fileno() == -1:  # closed when its instance was lost: a new one joins the port
            host, port = self._address
            listener = self._listeners[slot] = join_port(host, port)
        number = self._started
        self._started += 1
        receiver, sender = self._context.Pipe(duplex=False)
        spec = _Spec(replace(self._options, instances=1), self._environ, self._run_folder, number, os.getpid())
        process = self._context.Process(
            target=_instance_main, args=(spec, listener, sender), name=f"cloudscale-instance-{number}"
        )
        process.start()
        sender.close()
        self._instances.append(_Instance(number, slot, process, receiver))

    def _watch(self) -> None:
        """Wait a little for news from the instances: started, failed, or gone."""
        waitables: list[Connection | int] = [
            instance.messages for instance in self._instances if not instance.messages.closed
        ]
        waitables += [instance.process.sentinel for instance in self._instances]
        wait(waitables, timeout=_POLL_SECONDS)
        for instance in list(self._instances):
            self._read_messages(instance)
            if instance.process.is_alive() or self._stop.is_set():
                continue
            instance.process.join()
            self._read_messages(instance)
            self._instances.remove(instance)
            instance.messages.close()
            # Its socket goes with it: connections waiting there would wait for a replacement
            # (reset instead, never answered, so nothing acknowledged is lost), and new ones
            # now go to the instances still serving.
            self._listeners[instance.slot].close()
            self._replace(instance)

    def _read_messages(self, instance: _Instance) -> None:
        with contextlib.suppress(EOFError, OSError):
            while not instance.messages.closed and instance.messages.poll():
                kind, detail = instance.messages.recv()
                if kind == "serving":
                    instance.serving = True
                    self._failures = 0
                elif kind == "failed":
                    self._last_error, self._last_traceback = detail

    def _replace(self, instance: _Instance) -> None:
        status = _describe_exit(instance.process.exitcode)
        if instance.serving:
            logger.warning("instance %d (pid %s) %s; starting another", instance.number, instance.process.pid, status)
        else:
            self._failures += 1
            error = self._last_error or f"it {status}"
            if self._announced:
                # The run is serving: a replacement that cannot start (memory, a file briefly
                # unavailable) must not take the healthy instances down with it. Try again,
                # backing off, as the platform keeps replacing a lost instance.
                delay = min(2.0 ** min(self._failures, 5), 30.0)
                logger.error(
                    "instance %d (pid %s) %s before serving (%s); starting another in %.0f s",
                    instance.number,
                    instance.process.pid,
                    status,
                    error,
                    delay,
                )
                if not self._stop.wait(delay):
                    self._start(instance.slot)
                return
            if self._failures >= STARTUP_FAILURES:
                self._stop.set()
                if self._last_traceback:
                    logger.error("the last instance to fail:\n%s", self._last_traceback)
                raise InstanceStartError(f"instances failed {self._failures} times in a row before serving: {error}")
            logger.warning(
                "instance %d (pid %s) %s before serving; starting another",
                instance.number,
                instance.process.pid,
                status,
            )
        self._start(instance.slot)

    def _stop_all(self) -> None:
        for instance in self._instances:
            if instance.process.is_alive() and instance.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(instance.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._options.shutdown_grace_seconds * 2 + _STOP_MARGIN_SECONDS
        for instance in self._instances:
            instance.process.join(max(0.0, deadline - time.monotonic()))
            if instance.process.is_alive():
                logger.error("instance %d did not stop in time; killing it", instance.number)
                instance.process.kill()
                instance.process.join()
            instance.messages.close()
        self._instances.clear()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _instance_main(spec: _Spec, listener: socket.socket, messages: Connection) -> None:
    """An instance process: serve the app on the supervisor's socket until SIGTERM."""
    # Ctrl-C reaches the whole process group; the supervisor alone decides, and sends SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=spec.options.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _stop_when_orphaned(spec.supervisor)
    role = InstanceRole(
        name=f"instance-{spec.number}-pid{os.getpid()}",
        snapshots=MetricsSnapshots(spec.snapshots, f"instance-{spec.number}"),
        on_started=lambda: messages.send(("serving", os.getpid())),
    )
    try:
        started = serve_instance(spec.options, spec.environ, [listener], role)
    except Exception as exc:
        # Told to the supervisor, which reports it once, not once per attempt.
        messages.send(("failed", (f"{type(exc).__name__}: {exc}", traceback.format_exc())))
        sys.exit(1)
    if not started:
        messages.send(("failed", ("the instance did not start (see the log above)", "")))
        sys.exit(1)


def _stop_when_orphaned(supervisor: int) -> None:
    """Stop gracefully if the supervisor goes away without stopping this instance (killed, say).

    Its pid comes from the supervisor itself: one that died before this process looked would
    otherwise leave the adoptive parent's pid to be watched.
    """
    parent = supervisor

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
