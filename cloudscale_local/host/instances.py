"""The supervisor: N host processes on one listening socket, as Azure runs N instances of an app.

On Azure an app scales out by instances, each a whole Functions host with its own triggers:
they share the HTTP front end, compete for the queue's messages, and one of them runs each
timer (sources in `docs/architecture.md`, "Instances"). `supervise` does that on one machine:

1. it checks everything once, before any instance starts, so an error is reported once and
   clearly: settings, host.json, the app's index and the worker's rules, the store files;
2. it binds the one listening socket itself (port 0 allowed) and starts `instances` processes
   (spawned, not forked: each imports the app afresh, as a new instance does), each serving
   the whole app on that socket (`serve_instance`); it prints the banner once all of them serve;
3. an instance that dies is replaced, as the platform replaces a lost instance, and the death
   is logged with its exit status; instances that die before they serve, `STARTUP_FAILURES`
   times in a row, stop the run with their error instead of a crash loop;
4. on SIGINT or SIGTERM it sends SIGTERM to every instance, waits for their graceful
   shutdown, closes the socket and returns.
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
from cloudscale_local.host.metrics_totals import MetricsSnapshots, new_run_folder
from cloudscale_local.host.server import HostOptions, InstanceRole, check_stores, plan, serve_instance

__all__ = ["STARTUP_FAILURES", "InstanceStartError", "ListenError", "supervise"]

logger = logging.getLogger(__name__)

STARTUP_FAILURES = 3
"""Instances that die before serving, in a row, after which the run stops."""
_STOP_MARGIN_SECONDS = 15.0
"""Beyond the shutdown grace (requests, then triggers), how long an instance may take to end before it is killed."""
_POLL_SECONDS = 0.2


class ListenError(Exception):
    """The listening socket could not be bound (most often: the port is in use)."""


class InstanceStartError(Exception):
    """Instances kept failing before they served; the message is the last one's error."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """What an instance process needs: picklable, for the spawn start method."""

    options: HostOptions
    environ: dict[str, str]
    snapshots: Path
    number: int


@dataclass(slots=True)
class _Instance:
    number: int
    process: BaseProcess
    messages: Connection
    serving: bool = False


def supervise(options: HostOptions, environ: Mapping[str, str]) -> None:
    """Run `options.instances` instances until SIGINT or SIGTERM; raise what stops the run before it starts."""
    ready = plan(options, environ)
    check_stores(ready.settings)
    listener = _bind(options.host, options.port)
    run_folder, run_lock = new_run_folder(ready.settings.data_dir.resolve() / "instances")
    supervisor = _Supervisor(options, dict(environ), run_folder)
    try:
        supervisor.run(listener, lambda: print_banner(listener.getsockname(), ready.banner))
    finally:
        listener.close()
        shutil.rmtree(run_folder, ignore_errors=True)
        os.close(run_lock)
        # The run is over: a stop signal that comes now (a second Ctrl-C, a second SIGTERM)
        # stays pending, instead of killing the process while the interpreter exits (Python
        # puts the default handlers back then, and the default for both is to die).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _bind(host: str, port: int) -> socket.socket:
    """The one listening socket, bound as uvicorn binds its own (`Config.bind_socket`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


class _Supervisor:
    def __init__(self, options: HostOptions, environ: dict[str, str], run_folder: Path) -> None:
        self._options = options
        self._environ = environ
        self._run_folder = run_folder
        self._context = multiprocessing.get_context("spawn")
        self._instances: list[_Instance] = []
        self._started = 0
        self._failures = 0
        self._last_error: str | None = None
        self._last_traceback = ""
        self._stop = threading.Event()

    def run(self, listener: socket.socket, announce: Callable[[], None]) -> None:
        # Not restored afterwards: a second Ctrl-C or SIGTERM while the instances stop, or while
        # the run folder is removed, must not kill the supervisor half way (the process ends next).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        try:
            for _ in range(self._options.instances):
                self._start(listener)
            announced = False
            while not self._stop.is_set():
                self._watch(listener)
                if not announced and all(instance.serving for instance in self._instances):
                    announce()
                    announced = True
        finally:
            self._stop_all()

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        self._stop.set()

    def _start(self, listener: socket.socket) -> None:
        number = self._started
        self._started += 1
        receiver, sender = self._context.Pipe(duplex=False)
        spec = _Spec(replace(self._options, instances=1), self._environ, self._run_folder, number)
        process = self._context.Process(
            target=_instance_main, args=(spec, listener, sender), name=f"cloudscale-instance-{number}"
        )
        process.start()
        sender.close()
        self._instances.append(_Instance(number, process, receiver))

    def _watch(self, listener: socket.socket) -> None:
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
            self._replace(instance, listener)

    def _read_messages(self, instance: _Instance) -> None:
        with contextlib.suppress(EOFError, OSError):
            while not instance.messages.closed and instance.messages.poll():
                kind, detail = instance.messages.recv()
                if kind == "serving":
                    instance.serving = True
                    self._failures = 0
                elif kind == "failed":
                    self._last_error, self._last_traceback = detail

    def _replace(self, instance: _Instance, listener: socket.socket) -> None:
        status = _describe_exit(instance.process.exitcode)
        if instance.serving:
            logger.warning("instance %d (pid %s) %s; starting another", instance.number, instance.process.pid, status)
        else:
            self._failures += 1
            error = self._last_error or f"it {status}"
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
        self._start(listener)

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
    _stop_when_orphaned()
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


def _stop_when_orphaned() -> None:
    """Stop gracefully if the supervisor goes away without stopping this instance (killed, say)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
