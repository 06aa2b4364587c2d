"""The master process: forks workers, watches them, reloads and stops them.

The master validates the config, creates the shared-memory tables, forks the
workers and then only supervises: it never serves a request and never
imports ``helix.app`` or ``helix.server`` (workers import them after the
fork).

Signals (the handlers only enqueue the signal number; all work happens in the
main loop, which wakes up at least every ``TICK`` seconds)::

    SIGTERM   graceful stop: SIGTERM to every worker, wait up to
              graceful_timeout + STOP_MARGIN, SIGKILL stragglers, exit 0.
    SIGINT    the same graceful stop; a second SIGINT while stopping is a
              fast stop (Ctrl-C twice).
    SIGQUIT   fast stop: SIGKILL every worker at once (in-flight requests are
              cut), exit 0.
    SIGHUP    reload: load_config(); start a whole new generation; once every
              new worker reports READY, SIGTERM the old generation (it drains).
              A config that fails to load, or a generation that fails to boot,
              is logged and abandoned; the old workers keep serving.
    SIGTTIN   one more worker.
    SIGTTOU   one worker fewer (never below one).

Exit codes of :meth:`Arbiter.run`: 0 after a stop by signal, 1 when the
address cannot be bound, on a worker crash loop or an internal error, 3
(``BOOT_ERROR``) when the workers cannot boot (config/app error).

Zero-downtime reload and SO_REUSEPORT
-------------------------------------
Every worker owns a listener in the kernel's reuseport group for host:port.
A new generation simply joins the group; traffic spreads over old and new
listeners until the old workers are told to drain.  The hazard is the moment
a retiring worker closes its listener: connections already completed by the
kernel but not yet accept()ed sit in *that* listener's queue, and by default
the kernel resets them.  A "keep accepting for a grace window" trick does not
close the hole -- the kernel keeps hashing new connections to the listener
until the very close() -- it only shortens it.  The fix is in the kernel:
with ``net.ipv4.tcp_migrate_req = 1`` (Linux >= 5.14) a closing listener's
queued and half-open connections are moved to another listener of the same
group instead of being reset.  The master turns it on at start when it can
(it is per network namespace and needs root / CAP_NET_ADMIN) and logs a
warning when it cannot; workers close their listener first thing on SIGTERM,
so migration happens while the new generation is already accepting.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helix.master.shm import (
    READY,
    RESTARTS_TABLE,
    WORKER_FIELDS,
    WORKER_TABLE,
    SharedMemory,
    ShmLayout,
    WorkerSlots,
)
from helix.master.worker import BOOT_ERROR, WorkerContext, check_bindable, run_worker

__all__ = [
    "EXIT_BOOT_ERROR",
    "EXIT_ERROR",
    "EXIT_OK",
    "MIGRATE_REQ_PATH",
    "RESTARTS_TABLE",
    "Arbiter",
]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BOOT_ERROR = BOOT_ERROR

MIGRATE_REQ_PATH = "/proc/sys/net/ipv4/tcp_migrate_req"
# Shared table written only by the master: workers respawned after an unexpected
# exit, one 'Q' cell per worker number (read by /metrics and /status).

Config = Any


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


@dataclass(eq=False)
class _Worker:
    """The master's record of one child process."""

    pid: int
    slot: int
    number: int
    generation: int
    spawned_at: float
    retiring: bool = False
    kill_at: float | None = None  # SIGKILL deadline once retiring
    abort_at: float | None = None  # when SIGABRT was sent for a missed heartbeat
    killed: bool = False  # the master sent SIGKILL
    ready_seen: bool = False

    def describe(self) -> str:
        return f"worker {self.number} (pid {self.pid}, gen {self.generation})"


@dataclass(eq=False)
class _Reload:
    generation: int
    config: Config
    workers: int
    deadline: float


class Arbiter:
    """Pre-fork master.  ``run()`` blocks until stopped and returns the exit code.

    ``worker_target(worker, config) -> int`` runs in each forked child (default
    :func:`run_worker`); its return value is the child's exit code.
    ``plan_shm(layout, config, capacity)``, if given, reserves extra shared
    tables (``layout.alloc(...)``) before the mapping is created; ``capacity``
    is the number of worker slots (rows keyed by ``WorkerContext.index``).
    """

    HANDLED = (
        signal.SIGHUP,
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGQUIT,
        signal.SIGCHLD,
        signal.SIGTTIN,
        signal.SIGTTOU,
    )
    TICK = 0.5  # main loop wake-up period
    STOP_MARGIN = 2.0  # extra seconds on top of graceful_timeout before SIGKILL
    ABORT_GRACE = 5.0  # SIGABRT -> SIGKILL for a worker that stopped heartbeating
    KILL_WAIT = 5.0  # how long to wait for SIGKILLed children before giving up

    def __init__(
        self,
        config: Config,
        *,
        load_config: Callable[[], Config] | None = None,
        worker_target: Callable[[WorkerContext, Config], int] = run_worker,
        log: logging.Logger = logging.getLogger("helix.master"),
        config_path: str | None = None,
        plan_shm: Callable[[ShmLayout, Config, int], None] | None = None,
        boot_timeout: float = 60.0,
        crash_limit: int = 5,
        crash_window: float = 10.0,
        migrate_req: bool = True,
    ) -> None:
        self.config = config
        self.load_config = load_config
        self.worker_target = worker_target
        self.log = log
        # helix.config records where the config came from in ``source``.
        self.config_path = config_path or getattr(config, "source", None)
        self.plan_shm = plan_shm
        self.boot_timeout = boot_timeout
        self.crash_limit = crash_limit
        self.crash_window = crash_window
        self.migrate_req = migrate_req

        self.num_workers = self._count_workers(config)
        self.capacity = 2 * self.num_workers + 4
        self.generation = 0
        self.workers: dict[int, _Worker] = {}
        self.shm: SharedMemory | None = None
        self.pid = os.getpid()

        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._old_handlers: dict[int, Any] = {}
        self._reload: _Reload | None = None
        self._stop_deadline: float | None = None
        self._stop_signal: int | None = None
        self._exit_code = EXIT_OK
        self._gen_ready = False  # the current generation has been fully READY once
        self._deaths: dict[int, deque[float]] = {}
        self._max_generation = 0

    # -- public ---------------------------------------------------------------

    @property
    def slots(self) -> WorkerSlots:
        assert self.shm is not None
        return self.shm.workers

    def run(self) -> int:
        title = "helix: master"
        if self.config_path:
            title += f" [{self.config_path}]"
        _set_title(title)
        srv = self.config.server
        try:
            check_bindable(srv.host, srv.port)
        except OSError as exc:
            self.log.error("%s", exc)
            return EXIT_ERROR
        self.shm = self._create_shm(self.config)
        if self.migrate_req:
            self._enable_migrate_req()
        self._install_signals()
        try:
            self.generation = self._max_generation = 1
            _preload(self.config)
            self.log.info(
                "master pid %d: starting %d workers on %s:%d",
                self.pid,
                self.num_workers,
                srv.host,
                srv.port,
            )
            self._maintain()
            return self._loop()
        except BaseException:
            self.log.exception("master: internal error; killing the workers")
            return EXIT_ERROR
        finally:
            self._kill_remaining()
            self._restore_signals()
            self.shm.close()
            self.shm = None

    # -- setup ----------------------------------------------------------------

    @staticmethod
    def _count_workers(config: Config) -> int:
        n = int(config.server.workers)
        if n < 0:
            raise ValueError(f"server.workers must be >= 0, got {n}")
        return n or os.cpu_count() or 1

    def _create_shm(self, config: Config) -> SharedMemory:
        layout = ShmLayout()
        layout.alloc(WORKER_TABLE, rows=self.capacity, cols=len(WORKER_FIELDS), dtype="Q")
        layout.alloc(RESTARTS_TABLE, rows=self.capacity, cols=1, dtype="Q")
        if self.plan_shm is not None:
            self.plan_shm(layout, config, self.capacity)
        return SharedMemory(layout)

    def _enable_migrate_req(self) -> None:
        try:
            with open(MIGRATE_REQ_PATH) as f:
                value = f.read().strip()
        except OSError:
            self.log.warning(
                "kernel has no net.ipv4.tcp_migrate_req (needs Linux >= 5.14): a reload "
                "may reset connections still queued on a retiring worker's listener"
            )
            return
        if value != "0":
            return
        try:
            with open(MIGRATE_REQ_PATH, "w") as f:
                f.write("1")
        except OSError as exc:
            self.log.warning(
                "net.ipv4.tcp_migrate_req is 0 and cannot be enabled (%s): a reload may "
                "reset connections queued on a retiring worker's listener; run "
                "'sysctl -w net.ipv4.tcp_migrate_req=1' as root for reset-free reloads",
                exc.strerror or exc,
            )
            return
        self.log.info(
            "enabled net.ipv4.tcp_migrate_req=1 (queued connections of a closing "
            "listener move to the other workers)"
        )

    def _install_signals(self) -> None:
        for sig in self.HANDLED:
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Signal context: enqueue only (SimpleQueue.put is reentrant).
        self._signals.put(signum)

    # -- main loop ------------------------------------------------------------

    def _loop(self) -> int:
        while True:
            try:
                signum: int | None = self._signals.get(timeout=self.TICK)
            except queue.Empty:
                signum = None
            while signum is not None:
                self._dispatch(signum)
                try:
                    signum = self._signals.get_nowait()
                except queue.Empty:
                    signum = None
            self._reap()
            now = time.monotonic()
            if self._stop_deadline is not None:
                if not self.workers:
                    self.log.info("master pid %d: stopped (exit %d)", self.pid, self._exit_code)
                    return self._exit_code
                if self._stop_tick(now):
                    return self._exit_code or EXIT_ERROR
                continue
            self._check_workers(now)
            if self._reload is not None:
                self._check_reload(now)
            if self._stop_deadline is None:
                self._maintain()

    def _dispatch(self, signum: int) -> None:
        name = signal.Signals(signum).name[3:].lower()
        handler = getattr(self, f"handle_{name}", None)
        if handler is not None:
            handler()

    # -- signal handlers (run in the main loop, not in signal context) -------

    def handle_chld(self) -> None:
        # Reaping happens right after every dispatch round.
        pass

    def handle_term(self) -> None:
        if self._stop_deadline is None:
            self.log.info("SIGTERM: graceful stop")
            self._begin_stop(EXIT_OK)

    def handle_int(self) -> None:
        if self._stop_deadline is not None:
            self.log.warning("SIGINT again: fast stop")
            self._force_stop()
        else:
            self.log.info("SIGINT: graceful stop (SIGINT again for a fast stop)")
            self._begin_stop(EXIT_OK)

    def handle_quit(self) -> None:
        self.log.warning("SIGQUIT: fast stop")
        if self._stop_deadline is None:
            self._begin_stop(EXIT_OK)
        self._force_stop()

    def handle_hup(self) -> None:
        if self._stop_deadline is not None:
            return
        if self.load_config is None:
            self.log.warning("SIGHUP: no config loader; nothing to reload")
            return
        if self._reload is not None:
            self.log.warning(
                "SIGHUP: reload to generation %d still in progress; ignored",
                self._reload.generation,
            )
            return
        self.log.info("SIGHUP: reloading the configuration")
        try:
            config = self.load_config()
            n = self._count_workers(config)
            srv, old = config.server, self.config.server
            if (srv.host, srv.port) != (old.host, old.port):
                check_bindable(srv.host, srv.port)
        except Exception as exc:
            self.log.error(
                "reload failed, keeping generation %d: %s: %s",
                self.generation,
                type(exc).__name__,
                exc,
            )
            return
        limit = self.capacity - self.num_workers
        if n > limit:
            self.log.warning(
                "reload: %d workers requested but the shared tables were sized at start; "
                "running %d (restart the master to grow)",
                n,
                limit,
            )
            n = limit
        free = self.capacity - len(self.workers)
        if n > free:
            self.log.error(
                "reload refused: %d workers needed, %d worker slots free (a previous "
                "generation is still draining); keeping generation %d",
                n,
                free,
                self.generation,
            )
            return
        self._max_generation += 1
        gen = self._max_generation
        self._reload = _Reload(gen, config, n, time.monotonic() + self.boot_timeout)
        self.log.info("reload: starting generation %d (%d workers)", gen, n)
        for number in range(n):
            self._spawn(number, gen, config)

    def handle_ttin(self) -> None:
        if self._stop_deadline is not None or self._reload is not None:
            return
        if self.num_workers + 1 > self.capacity - self.num_workers:
            self.log.warning("SIGTTIN: at the worker slot limit (%d workers)", self.num_workers)
            return
        self.num_workers += 1
        self.log.info("SIGTTIN: workers -> %d", self.num_workers)

    def handle_ttou(self) -> None:
        if self._stop_deadline is not None or self._reload is not None:
            return
        if self.num_workers <= 1:
            return
        self.num_workers -= 1
        self.log.info("SIGTTOU: workers -> %d", self.num_workers)
        for w in list(self.workers.values()):
            if w.generation == self.generation and w.number >= self.num_workers:
                self._retire(w)

    # -- workers --------------------------------------------------------------

    def _maintain(self) -> None:
        """Spawn the missing workers of the current generation."""
        have = {
            w.number
            for w in self.workers.values()
            if w.generation == self.generation and not w.retiring
        }
        for number in range(self.num_workers):
            if number not in have and self._spawn(number, self.generation, self.config) is None:
                return

    def _free_slot(self) -> int | None:
        used = {w.slot for w in self.workers.values()}
        for i in range(self.capacity):
            if i not in used:
                return i
        return None

    def _spawn(self, number: int, generation: int, config: Config) -> _Worker | None:
        slot = self._free_slot()
        if slot is None:
            self.log.error("no free worker slot (capacity %d)", self.capacity)
            return None
        self.slots.prepare(slot, generation)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        pid = os.fork()
        if pid == 0:
            self._child(slot, number, generation, config)
        w = _Worker(pid, slot, number, generation, time.monotonic())
        self.workers[pid] = w
        self.log.info("spawned %s in slot %d", w.describe(), slot)
        return w

    def _child(self, slot: int, number: int, generation: int, config: Config) -> None:
        """In the forked child: run the worker and leave with os._exit, never returning."""
        code = EXIT_ERROR
        try:
            for sig in self.HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            random.seed()
            pid = os.getpid()
            _set_title(f"helix: worker {number} (gen {generation})")
            assert self.shm is not None
            worker = WorkerContext(
                index=slot,
                number=number,
                generation=generation,
                pid=pid,
                master_pid=self.pid,
                shm=self.shm,
                slot=self.shm.workers.slot(slot),
                log=logging.getLogger("helix.worker"),
            )
            worker.slot.set_pid(pid)
            self.workers = {}
            result = self.worker_target(worker, config)
            code = EXIT_OK if result is None else int(result)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            try:
                logging.getLogger("helix.worker").exception("worker %d crashed", number)
            except BaseException:
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _send(self, w: _Worker, sig: int) -> None:
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:
            pass
        if sig == signal.SIGKILL:
            w.killed = True

    def _retire(self, w: _Worker, deadline: float | None = None) -> None:
        """SIGTERM a worker (graceful drain) with a SIGKILL deadline."""
        if w.retiring:
            if deadline is not None and w.kill_at is not None:
                w.kill_at = min(w.kill_at, deadline)
            return
        w.retiring = True
        grace = float(self.config.server.graceful_timeout) + self.STOP_MARGIN
        w.kill_at = deadline if deadline is not None else time.monotonic() + grace
        self._send(w, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            if self.shm is not None:
                self.slots.release(w.slot)
            self._on_exit(w, status)

    def _on_exit(self, w: _Worker, status: int) -> None:
        code = os.waitstatus_to_exitcode(status)
        if code < 0:
            sig = signal.Signals(-code)
            how = f"killed by {sig.name}"
            if sig == signal.SIGKILL and not w.killed:
                how += " - out of memory?"
        else:
            how = f"exited with code {code}"
            if code == BOOT_ERROR:
                how += " (cannot start: config/app error)"
        if w.retiring:
            level = logging.INFO if code == 0 else logging.WARNING
            self.log.log(level, "%s %s", w.describe(), how)
            return
        self.log.error("%s %s", w.describe(), how)
        if self._stop_deadline is not None:
            return
        reload = self._reload
        if reload is not None and w.generation == reload.generation:
            self._abort_reload(f"{w.describe()} {how}")
            return
        if code == BOOT_ERROR and not self._gen_ready:
            self.log.critical("workers cannot start; stopping the master")
            self._begin_stop(EXIT_BOOT_ERROR)
            return
        if self.shm is not None:  # it will be respawned: count the restart
            restarts = self.shm.table(RESTARTS_TABLE)
            restarts.view[w.number % restarts.rows] += 1
        now = time.monotonic()
        deaths = self._deaths.setdefault(w.number, deque())
        deaths.append(now)
        while deaths and now - deaths[0] > self.crash_window:
            deaths.popleft()
        if len(deaths) >= self.crash_limit:
            self.log.critical(
                "worker %d died %d times in %.0f s: crash loop; stopping the master",
                w.number,
                len(deaths),
                self.crash_window,
            )
            self._begin_stop(EXIT_BOOT_ERROR if code == BOOT_ERROR else EXIT_ERROR)

    def _check_workers(self, now: float) -> None:
        """Note READY transitions, enforce heartbeats and SIGKILL deadlines."""
        slots = self.slots
        timeout_ns = int(float(self.config.server.heartbeat_timeout) * 1e9)
        now_ns = time.monotonic_ns()
        ready = 0
        for w in list(self.workers.values()):
            if not w.ready_seen and slots.state(w.slot) == READY:
                w.ready_seen = True
                self.log.info("%s ready", w.describe())
            if w.generation == self.generation and not w.retiring and w.ready_seen:
                ready += 1
            if w.abort_at is None and not w.killed:
                age_ns = now_ns - slots.heartbeat(w.slot)
                if age_ns > timeout_ns:
                    self.log.error(
                        "%s missed its heartbeat for %.1f s; sending SIGABRT",
                        w.describe(),
                        age_ns / 1e9,
                    )
                    w.abort_at = now
                    self._send(w, signal.SIGABRT)
        if ready >= self.num_workers and not self._gen_ready:
            self._gen_ready = True
            self.log.info("generation %d ready (%d workers)", self.generation, ready)
        self._enforce_deadlines(now)

    def _enforce_deadlines(self, now: float) -> None:
        for w in list(self.workers.values()):
            if w.killed:
                continue
            if w.abort_at is not None and now - w.abort_at >= self.ABORT_GRACE:
                self.log.error("%s still alive after SIGABRT; sending SIGKILL", w.describe())
                self._send(w, signal.SIGKILL)
            elif w.kill_at is not None and now >= w.kill_at:
                self.log.warning(
                    "%s did not finish draining in time; sending SIGKILL", w.describe()
                )
                self._send(w, signal.SIGKILL)

    # -- reload ---------------------------------------------------------------

    def _check_reload(self, now: float) -> None:
        r = self._reload
        assert r is not None
        new = [w for w in self.workers.values() if w.generation == r.generation]
        if len(new) == r.workers and all(w.ready_seen for w in new):
            old = [w for w in self.workers.values() if w.generation != r.generation]
            self.log.info(
                "reload: generation %d ready; retiring generation %d (%d workers)",
                r.generation,
                self.generation,
                len(old),
            )
            self._reload = None
            self.config = r.config
            self.generation = r.generation
            self.num_workers = r.workers
            self._gen_ready = True
            self._deaths.clear()
            for w in old:
                self._retire(w)
        elif now > r.deadline:
            self._abort_reload(f"new workers not ready after {self.boot_timeout:.0f} s")

    def _abort_reload(self, reason: str) -> None:
        r = self._reload
        assert r is not None
        self._reload = None
        self.log.error(
            "reload to generation %d aborted (%s); keeping generation %d",
            r.generation,
            reason,
            self.generation,
        )
        for w in list(self.workers.values()):
            if w.generation == r.generation:
                self._retire(w)

    # -- stopping -------------------------------------------------------------

    def _begin_stop(self, code: int) -> None:
        if self._stop_deadline is not None:
            return
        self._exit_code = code
        self._reload = None
        grace = float(self.config.server.graceful_timeout) + self.STOP_MARGIN
        self._stop_deadline = time.monotonic() + grace
        for w in list(self.workers.values()):
            self._retire(w, self._stop_deadline)

    def _force_stop(self) -> None:
        now = time.monotonic()
        self._stop_deadline = min(self._stop_deadline or now, now)
        for w in list(self.workers.values()):
            w.retiring = True
            if not w.killed:
                self._send(w, signal.SIGKILL)

    def _stop_tick(self, now: float) -> bool:
        """While stopping: enforce deadlines; True when the master should give up waiting."""
        self._enforce_deadlines(now)
        assert self._stop_deadline is not None
        if now >= self._stop_deadline:
            for w in list(self.workers.values()):
                if not w.killed:
                    self.log.warning("%s still running at shutdown; SIGKILL", w.describe())
                    self._send(w, signal.SIGKILL)
        if now >= self._stop_deadline + self.KILL_WAIT:
            self.log.error(
                "workers %s did not exit after SIGKILL; giving up",
                sorted(self.workers),
            )
            return True
        return False

    def _kill_remaining(self) -> None:
        """Last resort on the way out: no child may outlive the master."""
        if not self.workers:
            return
        for w in list(self.workers.values()):
            if not w.killed:
                self._send(w, signal.SIGKILL)
        deadline = time.monotonic() + self.KILL_WAIT
        while self.workers and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.05)
                continue
            self.workers.pop(pid, None)


def _preload(config: Config) -> None:
    """Import what every worker imports, once, in the master, before the first fork.

    The workers then share those pages with the master and with each other (copy on
    write) instead of each holding its own copy, and a worker is ready as soon as it has
    built its app.  ``gc.freeze`` keeps the collector from touching (and so copying) the
    objects imported here.  Config-dependent state is still built in each worker; a reload
    needs no new import here (code does not change), and a feature a reload turns on is
    imported by the new workers as before.
    """
    import gc

    try:
        import uvloop  # noqa: F401

        import helix.app
        import helix.observe.access
        import helix.observe.helicone
        import helix.observe.metrics
        import helix.observe.status
        import helix.observe.tracing
        import helix.server.server  # noqa: F401
        from helix.providers import catalog

        for p in config.providers:
            catalog.spec(p.type)  # the provider modules this config uses
        from helix.client.tls import may_need_ca_bundle

        if may_need_ca_bundle(config.providers):
            import certifi  # noqa: F401  (imported on the first https connect: shared instead)
    except Exception:  # a worker reports it properly (BOOT_ERROR); never the master's fault
        logging.getLogger("helix.master").debug("preload failed", exc_info=True)
    gc.collect()
    gc.freeze()
