"""A population spread over processes, GPUs and machines, on torch.distributed.

A run launched as K processes (``torchrun --nproc-per-node K -m tempsched run ...``, or ``tempsched run
--procs K``, which starts them through torch's own launcher API) gives each process a contiguous slice
of the members (``Spread``, the engine's ``Placement``). Every process draws the same batches and trains
its slice; the processes meet twice an epoch:

- ``gather``: every member's mean training and selection losses, exactly (pickled Python floats are
  float64), and the noise-generator states of the members, which process 0 writes into state.pt;
- ``share``: for each member the epoch's plan copies from (under Algorithm 1, the best), the process
  that trains it broadcasts its weights and optimizer state once, one flat buffer per dtype, and every
  process gives them to the copying members it trains (a copy within one process sends nothing). On
  GPUs the buffers travel on the device (NCCL sends no CPU tensor), Adam's ``step`` included, and go
  back to the CPU where the optimizer keeps them.
- ``collect``: when members hold different states (PBT, halving), process 0, which writes state.pt
  and best.pt, receives the state of each one that no member it trains holds.

Selection, feedback and schedules run in every process on plain numbers, so they agree without
messages, and a member's numbers do not depend on which process trains it (its noise generator is
its own). Process 0 alone writes the run directory and calls the lifecycle hooks.

Faults: gloo waits 30 minutes in a collective by default, and in an epoch where one process trains
more members than another the quicker ones legitimately wait a long time. So processes do not wait
for each other inside a collective: they meet at a barrier on the rendezvous store, and a watchdog
thread in each process shows a sign of life every second and notices a process that showed none
for ``timeout`` seconds (kill -9, a lost machine) or that reported a failure. The main thread then
stops after its current batch with ``PeerLost``, one line on process 0, whose last complete
checkpoint stays intact. Collectives run with the same ``timeout`` as a backstop.

A ``--procs`` launcher hosts the store. Killed (kill -9, so it cannot stop its processes), it is
missed at once: each process has the kernel send it ``LAUNCHER_GONE`` when the launcher dies (torch
would send SIGINT, which reads as the user's Ctrl+C), and the run stops with ``PeerLost`` naming the
launcher. Where the kernel cannot do that, the watchdog sees the process's parent change.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import datetime as dt
import math
import multiprocessing.connection
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence, TypeVar

import torch
import torch.distributed as dist
import torch.multiprocessing

from tempsched.engine import Member, copy_member_state, spread_out
from tempsched.errors import UserError, describe_exception
from tempsched.orphans import die_with_parent

# How long the processes of a run may take to all arrive (imports, data loading, a second machine's
# command typed a little later); after that a missing process is an error, not a slow start.
JOIN_SECONDS = 300.0
DEFAULT_TIMEOUT = 60.0  # seconds without a sign of life before the run stops (``--peer-timeout``)
LOCALHOST = "127.0.0.1"
LAUNCHER = "TEMPSCHED_LAUNCHER"  # the pid of the ``--procs`` process that started this one
LAUNCHER_GONE = signal.SIGUSR1  # what the kernel sends a process that ``--procs`` started when the launcher dies
# torch's C++ side logs each failed request to a store it lost with a 20-line stack trace; a run that
# stops because its launcher is gone makes several. The processes report such a stop in one line.
QUIET_CPP = {"TORCH_CPP_LOG_LEVEL": "ERROR"}

T = TypeVar("T")


class PeerLost(UserError):
    """Another process of the run stopped (killed, its machine gone) or failed; this one stops too."""


def launched_world() -> int:
    """How many processes the launcher (torchrun, ``--procs``) started for this run; 1 without one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1") or "1")
    except ValueError:
        raise UserError(f"WORLD_SIZE must be a number of processes, got {os.environ['WORLD_SIZE']!r}") from None


def usable_cpus() -> int:
    """Logical CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _store_prefix() -> str:
    """Where this run's keys live in the rendezvous store: a torchrun that restarts its workers reuses its
    store, so each attempt has its own."""
    return f"tempsched/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None and default is not None:
        return default
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UserError(f"launched as one of several processes, but {name} is {value!r}, not a number "
                        "(torchrun sets it)") from None


class Group:
    """This process's place in a run of several: rank, the rendezvous store, the process group, a watchdog.

    Every process calls the same methods in the same order (barriers are numbered), so they pair up.
    """

    def __init__(self, timeout: float) -> None:
        self.rank = _env_int("RANK")
        self.world = _env_int("WORLD_SIZE")
        self.local_rank = _env_int("LOCAL_RANK", self.rank)
        self.local_world = _env_int("LOCAL_WORLD_SIZE", self.world)
        self.timeout = timeout
        self.failure: str | None = None  # set by the watchdog; the main thread raises it at the next check
        self._barriers = 0
        self._stop = threading.Event()
        self.launcher = _env_int(LAUNCHER) if LAUNCHER in os.environ else None
        prefix = _store_prefix()
        addr, port = os.environ.get("MASTER_ADDR", LOCALHOST), _env_int("MASTER_PORT", 29500)
        try:
            base, _, _ = next(dist.rendezvous("env://", timeout=dt.timedelta(seconds=JOIN_SECONDS)))
            # The watchdog talks to the store on a connection of its own: it must not wait behind the
            # main thread's requests.
            watch = dist.TCPStore(addr, port, is_master=False, timeout=dt.timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"rank {self.rank} cannot reach the run's rendezvous at {addr}:{port}: "
                            f"{describe_exception(exc)}") from None
        self.store = dist.PrefixStore(prefix, base)
        self._watch_store = dist.PrefixStore(prefix, watch)
        self._arrive_all()
        try:
            dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo",
                                    store=dist.PrefixStore(f"{prefix}/pg", base), rank=self.rank,
                                    world_size=self.world, timeout=dt.timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"rank {self.rank} cannot connect to the run's other processes: "
                            f"{describe_exception(exc)}") from None
        if self.local_world > 1:
            # One torch thread pool per core, not per process: K processes with a pool each as wide as
            # the machine would oversubscribe it (``--threads`` overrides this).
            torch.set_num_threads(max(1, usable_cpus() // self.local_world))
        if self.launcher is not None:
            signal.signal(LAUNCHER_GONE, self._on_launcher_gone)  # kept to the end: see _on_launcher_gone
        self._watchdog = threading.Thread(target=self._watch, name="tempsched-watchdog", daemon=True)
        self._watchdog.start()

    def _on_launcher_gone(self, signum: int, frame: Any) -> None:
        """The kernel's word that the launcher died: stop now. It comes again as the launcher's process passes
        this one on; ignored from then on, also after ``close``, so that it cannot cut short the clean-up or
        process 0's line (its default action ends the process)."""
        signal.signal(LAUNCHER_GONE, signal.SIG_IGN)
        raise PeerLost(self._launcher_gone())

    def _orphaned(self) -> bool:
        """Whether the ``--procs`` launcher that started this process is gone (the process has passed to
        another parent)."""
        return self.launcher is not None and os.getppid() != self.launcher

    def _launcher_gone(self) -> str:
        return f"the tempsched process that launched this run (pid {self.launcher}) was killed"

    def _store_lost(self, exc: BaseException) -> str:
        """Why the rendezvous store stopped answering: a ``--procs`` launcher hosts it."""
        if self.launcher is not None:
            return self._launcher_gone()
        return f"lost touch with the run's other processes ({describe_exception(exc)})"

    @property
    def leads(self) -> bool:
        """Whether this is process 0, which writes the run directory and calls the lifecycle hooks."""
        return self.rank == 0

    def _arrive_all(self) -> None:
        """Wait until every process has joined, each with its first sign of life in the store."""
        self.store.set(f"alive/{self.rank}", "0")
        self.store.add("joined", 1)
        deadline = time.monotonic() + JOIN_SECONDS
        while (joined := self.store.add("joined", 0)) < self.world:
            if time.monotonic() > deadline:
                raise UserError(f"only {joined} of {self.world} processes joined the run within "
                                f"{JOIN_SECONDS:g} s: start the same command on every machine")
            time.sleep(0.05)

    def _watch(self) -> None:
        """The watchdog thread: a sign of life every ``interval`` seconds, and the others' signs checked."""
        interval = min(1.0, self.timeout / 5)
        peers = [r for r in range(self.world) if r != self.rank]
        last: dict[int, tuple[bytes, float]] = {}
        beat = 0
        while not self._stop.wait(interval):
            beat += 1
            if self._orphaned():
                self.failure = self._launcher_gone()
                return
            try:
                self._watch_store.set(f"alive/{self.rank}", str(beat))
                if self._watch_store.add("failed", 0):
                    self.failure = self._reported_failure(peers) or self.failure
                states = self._watch_store.multi_get([f"alive/{r}" for r in peers])
            except Exception as exc:  # the store's host (process 0 or the launcher) is gone
                self.failure = self._store_lost(exc)
                return
            now = time.monotonic()
            for peer, state in zip(peers, states):
                if state == b"done":
                    continue
                seen, since = last.get(peer, (b"", now))
                if state != seen:
                    last[peer] = (state, now)
                elif now - since > self.timeout:
                    self.failure = self.failure or (
                        f"rank {peer} of {self.world} stopped answering: no sign of life for {self.timeout:g} s "
                        "(killed, or its machine is gone)")
            if self.failure:
                return

    def _reported_failure(self, peers: list[int]) -> str | None:
        for peer in peers:
            if self._watch_store.check([f"failed/{peer}"]):
                reason = self._watch_store.get(f"failed/{peer}").decode(errors="replace")
                return f"rank {peer} of {self.world} failed: {reason}"
        return None

    def check(self) -> None:
        """Raise ``PeerLost`` if the watchdog found a process stopped or failed."""
        if self.failure is not None:
            raise PeerLost(self.failure)

    def barrier(self) -> None:
        """Wait until every process got here; a long wait is fine while all of them show signs of life."""
        self._barriers += 1
        key = f"barrier/{self._barriers}"
        try:
            self.store.add(key, 1)
            pause = 0.0005
            while self.store.add(key, 0) < self.world:
                self.check()
                time.sleep(pause)
                pause = min(2 * pause, 0.02)
        except (RuntimeError, ValueError) as exc:  # the store's host is gone
            raise PeerLost(self.failure or self._store_lost(exc)) from None

    def collective(self, what: str, call: Callable[[], T]) -> T:
        """Run a torch.distributed call; its failure (a peer's connection closed, the timeout) is ``PeerLost``."""
        try:
            return call()
        except (RuntimeError, ValueError) as exc:
            raise PeerLost(self.failure or f"lost touch with the run's other processes while {what} "
                           f"({describe_exception(exc)})") from None

    def publish(self, value: Any) -> None:
        """Process 0 sends ``value`` to every other process (which call ``receive``)."""
        assert self.leads
        self.barrier()
        self.collective("sending the run's start", lambda: dist.broadcast_object_list([value], src=0))

    def receive(self) -> Any:
        """What process 0 ``publish``-ed; waits as long as process 0 shows signs of life."""
        self.barrier()
        box: list[Any] = [None]
        self.collective("receiving the run's start", lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (pickled, so Python floats arrive bit for bit)."""
        self.barrier()
        out: list[Any] = [None] * self.world
        self.collective("gathering the epoch's losses", lambda: dist.all_gather_object(out, value))
        return out

    def use_device(self, name: str) -> None:
        """Give this process its own GPU (local rank k: GPU k) when the run uses CUDA."""
        if name == "cpu" or not torch.cuda.is_available():
            return  # 'cuda' without a GPU: the task says so in its own words
        if torch.cuda.device_count() < self.local_world:
            raise UserError(f"{self.local_world} processes on this machine need {self.local_world} GPUs for "
                            f"--device {name}, torch sees {torch.cuda.device_count()}: start fewer processes")
        torch.cuda.set_device(self.local_rank)

    def fail(self, reason: str) -> None:
        """Tell the other processes this one failed (they stop; process 0 reports ``reason``)."""
        with contextlib.suppress(Exception):
            self.store.set(f"failed/{self.rank}", reason[:500])
            self.store.add("failed", 1)

    def close(self) -> None:
        """Stop the watchdog, tell the others this process is done, leave the process group."""
        self._stop.set()
        self._watchdog.join()
        with contextlib.suppress(Exception):
            self.store.set(f"alive/{self.rank}", "done")
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


@contextlib.contextmanager
def joined(timeout: float = DEFAULT_TIMEOUT) -> Iterator[Group | None]:
    """This process's ``Group`` when a launcher started it as one of several, else None.

    A failure here is told to the others. A process other than 0 prints no user error of its own:
    process 0 reports it (its rank and message), so the run ends with one line, and this one exits 2.
    """
    if launched_world() <= 1:
        yield None
        return
    group = Group(timeout)
    try:
        yield group
    except UserError as exc:
        group.fail(str(exc))
        if group.leads:
            raise
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        group.fail("interrupted")
        if group.leads:
            raise
        raise SystemExit(130) from None
    except BaseException as exc:
        group.fail(describe_exception(exc))
        raise
    finally:
        group.close()


@dataclass(frozen=True)
class _Slot:
    """Where a tensor of a member's state goes: its dtype and shape, and whether it lives on the CPU."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    on_cpu: bool


@dataclass(frozen=True)
class _Ref:
    """A tensor of the optimizer state, by its place in the member's tensor list."""

    index: int


@dataclass(frozen=True)
class _Layout:
    """Everything of a member's state but the tensors' data: sent as one small object before them."""

    slots: list[_Slot]
    params: int
    buffers: int
    optimizer: dict[str, Any]  # Optimizer.state_dict() with each tensor replaced by a _Ref


def _member_state(member: Member) -> tuple[_Layout, list[torch.Tensor]]:
    """The weights, buffers and optimizer state of a member trained here, as a layout and its tensors."""
    assert member.model is not None and member.optimizer is not None
    params, buffers = list(member.model.parameters()), list(member.model.buffers())
    tensors = [t.detach() for t in params + buffers]
    saved = member.optimizer.state_dict()
    state: dict[Any, dict[str, Any]] = {}
    for key, entries in saved["state"].items():
        state[key] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                state[key][name] = _Ref(len(tensors))
                tensors.append(value)
            else:
                state[key][name] = value
    slots = [_Slot(t.dtype, tuple(t.shape), t.device.type == "cpu") for t in tensors]
    return _Layout(slots, len(params), len(buffers), {"state": state, "param_groups": saved["param_groups"]}), tensors


def _load_member_state(member: Member, layout: _Layout, tensors: list[torch.Tensor]) -> None:
    """Give a member trained here the state ``_member_state`` took from another (received ``tensors``)."""
    assert member.model is not None and member.optimizer is not None
    params, buffers = list(member.model.parameters()), list(member.model.buffers())
    if (len(params), len(buffers)) != (layout.params, layout.buffers):
        raise RuntimeError(f"the best member's model has {layout.params} parameters and {layout.buffers} buffers, "
                           f"this process's {len(params)} and {len(buffers)}: the processes built different models")
    with torch.no_grad():
        for target, value in zip(params + buffers, tensors[:len(params) + len(buffers)], strict=True):
            target.copy_(value)

    def restored(value: Any) -> Any:
        if not isinstance(value, _Ref):
            return copy.deepcopy(value)
        device = "cpu" if layout.slots[value.index].on_cpu else tensors[value.index].device
        return tensors[value.index].to(device).clone()  # its own memory, not a view of the received buffer

    state = {key: {name: restored(value) for name, value in entries.items()}
             for key, entries in layout.optimizer["state"].items()}
    member.optimizer.load_state_dict({"state": state, "param_groups": copy.deepcopy(layout.optimizer["param_groups"])})


class Spread:
    """The engine's ``Placement`` for a run over several processes: contiguous slices of the members.

    Process r trains members ``bounds[r] .. bounds[r+1] - 1``; the slices differ in size by at most
    one, and process 0, which also writes the files, gets the smaller ones.
    """

    def __init__(self, group: Group, members: int) -> None:
        if group.world > members:
            raise UserError(f"{group.world} processes for {members} members: each process trains at least one "
                            f"member, so start at most {members} processes (or train more members)")
        self.group = group
        self.bounds = [r * members // group.world for r in range(group.world + 1)]
        self.mine = range(self.bounds[group.rank], self.bounds[group.rank + 1])

    def owns(self, k: int) -> bool:
        return k in self.mine

    def owner(self, k: int) -> int:
        """The rank that trains member ``k``."""
        return bisect.bisect_right(self.bounds, k) - 1

    def check(self) -> None:
        self.group.check()

    def gather(self, members: Sequence[Member], trained: Sequence[int], train_losses: list[float],
               losses: list[float]) -> tuple[list[float], list[float]]:
        own = [(k, train, loss, members[k].noise()) for k, train, loss in zip(trained, train_losses, losses,
                                                                             strict=True)]
        every = [item for part in self.group.all_gather(own) for item in part]
        for k, _, _, noise in every:
            if not self.owns(k):
                members[k].noise_state = noise
        at = [k for k, *_ in every]
        return (spread_out(len(members), at, [train for _, train, _, _ in every]),
                spread_out(len(members), at, [loss for _, _, loss, _ in every]))

    def share(self, members: Sequence[Member], copies: Sequence[tuple[int, int]]) -> None:
        targets: dict[int, list[int]] = {}
        for dst, src in copies:
            targets.setdefault(src, []).append(dst)
        for src, dsts in sorted(targets.items()):
            owner, mine = self.owner(src), [members[k] for k in dsts if self.owns(k)]
            if all(self.owner(k) == owner for k in dsts):  # nothing to send: the copies stay in one process
                for m in mine:
                    copy_member_state(members[src], m)
                continue
            if self.group.rank == owner:
                source = members[src]
                layout, tensors = _member_state(source)
                self.group.collective("sending a member", lambda: dist.broadcast_object_list([layout], src=owner))
                self._broadcast(layout, tensors, owner, _device_of(source))
            else:
                box: list[Any] = [None]
                self.group.collective("receiving a member", lambda: dist.broadcast_object_list(box, src=owner))
                received = self._broadcast(box[0], None, owner, _device_of(members[self.mine[0]]))
                if not mine:
                    continue  # every process takes part in a broadcast, also one that keeps nothing of it
                source = mine[0]
                _load_member_state(source, box[0], received)
            for m in mine:
                if m is not source:
                    copy_member_state(source, m)

    def collect(self, members: Sequence[Member], groups: dict[int, list[int]]) -> None:
        for m in members:
            m.fetched = None
        for src, group in sorted(groups.items()):
            if any(self.owner(k) == 0 for k in group):
                continue  # process 0 trains a member that holds this state
            owner = self.owner(src)
            box: list[Any] = [_on_cpu(members[src].weights()) if self.group.rank == owner else None]
            self.group.collective("sending a member to process 0", lambda: dist.broadcast_object_list(box, src=owner))
            if self.group.leads:
                members[src].fetched = box[0]

    def _broadcast(self, layout: _Layout, tensors: list[torch.Tensor] | None, src: int,
                   device: torch.device) -> list[torch.Tensor]:
        """Send ``tensors`` from ``src`` to every process, one flat buffer per dtype on ``device`` (the
        members'); returns them (on a receiver: views of the received buffers, in the layout's order)."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(layout.slots)
        for dtype in dict.fromkeys(slot.dtype for slot in layout.slots):
            places = [i for i, slot in enumerate(layout.slots) if slot.dtype == dtype]
            sizes = [math.prod(layout.slots[i].shape) for i in places]
            if tensors is not None:
                flat = torch.cat([tensors[i].reshape(-1).to(device) for i in places])
            else:
                flat = torch.empty(sum(sizes), dtype=dtype, device=device)
            self.group.collective("sharing the best member", lambda: dist.broadcast(flat, src=src))
            for i, piece in zip(places, flat.split(sizes), strict=True):
                out[i] = piece.view(layout.slots[i].shape)
        return out


def _on_cpu(value: Any) -> Any:
    """``value`` (state dicts) with every tensor copied to the CPU, where process 0 writes checkpoints from."""
    if torch.is_tensor(value):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def _device_of(member: Member) -> torch.device:
    """Where a member's weights live, and so where its state travels."""
    assert member.model is not None
    return next(member.model.parameters()).device


def check_launch(procs: int, members: int, device: str) -> None:
    """Refuse a ``--procs`` launch that cannot work, before any process starts."""
    if launched_world() > 1:
        raise UserError("--procs starts its own processes: leave it out when torchrun (or another launcher) "
                        "started this one")
    if procs > members:
        raise UserError(f"--procs {procs} for {members} members: each process trains at least one member, "
                        f"so use at most --procs {members}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but torch sees no CUDA device")
    if device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() < procs:
        raise UserError(f"--procs {procs} on --device {device} needs {procs} GPUs, torch sees "
                        f"{torch.cuda.device_count()}: use --procs {torch.cuda.device_count()} or --device cpu")


def _start_rank(local_rank: int, entry: Callable[[T], None], job: T, env: dict[str, str]) -> None:
    """What each process ``launch`` starts runs: ``entry(job)`` with torchrun's environment for its rank."""
    die_with_parent(int(env[LAUNCHER]), LAUNCHER_GONE)
    os.environ.update(env, RANK=str(local_rank), LOCAL_RANK=str(local_rank))
    entry(job)


def launch(entry: Callable[[T], None], job: T, procs: int, timeout: float) -> int:
    """Run ``entry(job)`` in ``procs`` processes on this machine as one run; returns process 0's exit status.

    ``entry`` is a module-level function and ``job`` picklable: each process is spawned and imports them
    afresh (the CLI's ``--procs`` passes ``cli.run.train_rank`` and the configuration it resolved).

    What ``torchrun --nproc-per-node procs`` does on one machine: this process hosts the rendezvous
    store (port 0: the system picks a free one, no race with other runs) and sets the environment
    torchrun sets, so every process joins exactly as under torchrun; they are started with
    ``torch.multiprocessing.start_processes``. Process 0 reports errors itself; if it is killed, this
    process says so (``PeerLost``). The others get ``timeout`` seconds and a little more to notice
    a failure and stop on their own before they are terminated.
    """
    # Held until this function returns, after every process has ended.
    store = dist.TCPStore(LOCALHOST, 0, procs, is_master=True, wait_for_workers=False,
                          timeout=dt.timedelta(seconds=JOIN_SECONDS))
    env = {"MASTER_ADDR": LOCALHOST, "MASTER_PORT": str(store.port), "WORLD_SIZE": str(procs),
           "LOCAL_WORLD_SIZE": str(procs), "TORCHELASTIC_USE_AGENT_STORE": "True", LAUNCHER: str(os.getpid())}
    quiet = {k: v for k, v in QUIET_CPP.items() if k not in os.environ}  # read as torch loads, so set here
    os.environ.update(quiet)
    try:
        context = torch.multiprocessing.start_processes(_start_rank, args=(entry, job, env), nprocs=procs,
                                                        join=False, start_method="spawn")
    finally:
        for key in quiet:
            del os.environ[key]
    codes = _wait(context.processes, dist.PrefixStore(_store_prefix(), store), grace=timeout + 10)
    first = codes[0]
    if first < 0:
        raise PeerLost(f"rank 0 of {procs} was killed by {signal.Signals(-first).name}")
    return first


def _wait(processes: Sequence[Any], store: dist.Store, grace: float) -> list[int]:
    """Wait for every process; once one fails (or Ctrl+C), the rest get ``grace`` seconds, then are stopped."""
    deadline: float | None = None
    pending = list(processes)
    while pending:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            ready = multiprocessing.connection.wait([p.sentinel for p in pending], left)
        except KeyboardInterrupt:
            _pass_on_interrupt(pending, store)
            deadline = deadline or time.monotonic() + grace
            continue
        if not ready:
            for p in pending:
                p.terminate()
            for p in pending:
                p.join(5)
                if p.exitcode is None:
                    p.kill()
                    p.join()
            break
        for p in pending:
            if p.sentinel in ready:
                p.join()
                if p.exitcode and deadline is None:
                    deadline = time.monotonic() + grace
                if p.exitcode < 0:  # killed: it told nobody, so tell the others now, not after their timeout
                    with contextlib.suppress(Exception):
                        store.set(f"failed/{processes.index(p)}", f"killed by {signal.Signals(-p.exitcode).name}")
                        store.add("failed", 1)
        pending = [p for p in pending if p.exitcode is None]
    return [int(p.exitcode) for p in processes]


def _pass_on_interrupt(processes: Sequence[Any], store: dist.Store, settle: float = 2.0) -> None:
    """A Ctrl+C in a terminal reaches every process, a SIGINT sent to this one alone does not. A process
    that got it tells the others through the store (``Group.fail``); if none did within ``settle`` seconds,
    pass it on. Never twice: a second interrupt would cut short process 0's message and clean-up."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline and any(p.is_alive() for p in processes):
        if store.add("failed", 0):
            return
        time.sleep(0.05)
    for p in processes:
        if p.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGINT)
