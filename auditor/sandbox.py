"""Run an untrusted model in a child process that cannot write outside the output folder
and cannot reach the network (Linux, no root needed).

``medaudit run`` (and ``harden``) re-execute themselves through :func:`run_in_child`; the
child enters the sandbox in :func:`child_main` before anything else is imported (NumPy
starts a BLAS thread on import, and both a new user namespace and Landlock need a
single-threaded process), then runs the same command line in-process. The sandbox:

* Landlock (kernel >= 5.13, ABI 1..7 handled here): the whole filesystem is readable and
  executable, writes are allowed beneath the ``writable`` folders (the output folder and a
  private temp folder that ``TMPDIR`` and the caches point to) and to ``/dev/null`` and
  GPU device nodes; with ABI >= 4 TCP bind/connect is denied, with ABI >= 6 signals and
  abstract UNIX sockets outside the sandbox are too.
* ``unshare(CLONE_NEWUSER | CLONE_NEWNET)``: a network namespace whose only interface is a
  loopback that is down, so no UDP/ICMP either.
* ``PR_SET_NO_NEW_PRIVS`` (no setuid escalation) and ``PR_SET_PDEATHSIG`` (the child dies
  with its parent); the child runs in its own session, without a controlling terminal
  (no TIOCSTI keystroke injection into the user's shell).

Where Landlock is missing the command runs in-process and says so (stderr, and
``results.json`` ``environment.sandbox``). Not covered: reading files (a model can read
what the user can and write it into the report), pathname UNIX sockets, CPU and memory.

Only the standard library is imported here: :func:`child_main` runs before NumPy/torch.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from auditor.errors import InputError  # standard library only, like this module

SWITCH_ENV = "MEDAUDIT_SANDBOX"  # "off": run in-process, as --no-sandbox does (the tests)
_SPEC_ENV = "MEDAUDIT_SANDBOX_SPEC"  # parent -> child: what the child may write
_CHILD_CODE = "import sys; sys.path[0] = {root!r}; from auditor.sandbox import child_main; child_main({entry!r})"

# Landlock syscalls have the same numbers on every architecture (allocated after the
# syscall tables were unified); struct layouts from include/uapi/linux/landlock.h.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000

_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_TRUNCATE = 1 << 14  # ABI 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
# Filesystem rights each ABI knows (bit 15, IOCTL_DEV of ABI 5, is left unhandled: GPU
# drivers are driven by ioctls on /dev nodes, and an ioctl is not a write to a file).
_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15}
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in the kernel header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_state: dict[str, Any] | None = None  # what this process runs under (results.json environment.sandbox)
_argv: list[str] | None = None  # the command line, when started as the `medaudit` program
_entry: str | None = None  # "module:function" that runs that command line (the CLI's main)


def state() -> dict[str, Any] | None:
    """How this process is confined: ``{"mode": "landlock+netns" | "landlock" | "none", ...}``
    with a ``reason`` when it is less than the full sandbox; None outside the CLI."""
    return dict(_state) if _state is not None else None


def remember_argv(argv: list[str], entry: str) -> None:
    """Called by the ``medaudit`` entry point: the arguments a sandboxed child re-runs and
    the ``module:function`` it runs them with (the CLI names itself, so this module, which
    sits below the CLI, never imports it)."""
    global _argv, _entry
    _argv, _entry = list(argv), entry


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = _libc()
        return max(int(libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                                    ctypes.c_uint32(_CREATE_RULESET_VERSION))), 0)
    except (OSError, AttributeError):
        return 0


def _landlock_restrict(libc: ctypes.CDLL, abi: int, writable: list[str]) -> None:
    """Confine this thread (and every thread and process it starts) to read-only access
    outside ``writable``; deny TCP and outside signals where the ABI can."""
    fs_all = (1 << _FS_BITS_BY_ABI.get(abi, 15)) - 1
    attr = _RulesetAttr(handled_access_fs=fs_all)
    size = 8  # an older kernel refuses non-zero fields it does not know
    if abi >= 4:
        attr.handled_access_net, size = _NET_BIND_TCP | _NET_CONNECT_TCP, 16
    if abi >= 6:
        attr.scoped, size = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL, 24
    ruleset = _check(libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                                  ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        rules = [("/", _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR)]
        rules += [(path, fs_all) for path in writable]
        rules += [(path, _FILE_RIGHTS & fs_all) for path in _device_files()]
        for path, access in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
                _check(libc.syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                                    ctypes.byref(rule), ctypes.c_uint32(0)), f"landlock_add_rule {path}")
            finally:
                os.close(fd)
        _check(libc.syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)


def _device_files() -> list[str]:
    """Device nodes opened for writing that are not files: /dev/null, and the GPU's."""
    found = ["/dev/null"]
    for folder, prefix in (("/dev", "nvidia"), ("/dev/dri", ""), ("/dev", "kfd")):
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue
        found += [os.path.join(folder, n) for n in names if n.startswith(prefix)
                  and not os.path.isdir(os.path.join(folder, n))]
    return found


def _unshare_network(libc: ctypes.CDLL) -> None:
    """A new user namespace (no root needed) holding a new, empty network namespace. The
    uid/gid maps keep the user's own ids, so files created in --out belong to them."""
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(ctypes.c_int(_CLONE_NEWUSER | _CLONE_NEWNET)), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)


def enter(writable: list[str], tmp: str, parent: int | None = None) -> dict[str, Any]:
    """Confine the calling (single-threaded) process to writing beneath ``writable`` and
    the private ``tmp`` folder; returns its sandbox state."""
    libc = _libc()
    if parent is not None:  # the child must not outlive a parent killed with SIGKILL
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + signal.SIGKILL)
    try:
        _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    except OSError as exc:
        return {"mode": "none", "reason": str(exc)}
    netns_error = None
    try:
        _unshare_network(libc)
    except OSError as exc:
        netns_error = f"no network namespace ({exc.strerror or exc})"
    abi = landlock_abi()
    try:
        if abi < 1:
            raise OSError(0, "Landlock is not available in this kernel")
        _landlock_restrict(libc, abi, [*writable, tmp])
    except OSError as exc:
        return {"mode": "none", "reason": f"{exc.strerror or exc}"}
    out: dict[str, Any] = {"mode": "landlock" if netns_error else "landlock+netns", "landlock_abi": abi,
                           "writable": list(writable)}
    if netns_error:
        tcp = "TCP blocked by Landlock" if abi >= 4 else "network NOT restricted (Landlock ABI < 4)"
        out["reason"] = f"{netns_error}; {tcp}"
    return out


def _warn(message: str) -> None:
    sys.stderr.write(f"medaudit: warning: {message}\n")
    sys.stderr.flush()


def child_main(entry: str) -> None:
    """Entry of the sandboxed child: confine, then run the parent's command line."""
    global _state
    spec = json.loads(os.environ.pop(_SPEC_ENV))
    _state = enter(spec["writable"], spec["tmp"], parent=spec["parent"])
    _state["child"] = True
    if _state["mode"] == "none":
        _warn(f"running WITHOUT a sandbox: {_state['reason']}")
    elif "reason" in _state:
        _warn(f"partial sandbox: {_state['reason']}")
    module, function = entry.split(":")
    sys.argv = [spec["argv0"], *sys.argv[1:]]  # results.json records the command as typed
    getattr(importlib.import_module(module), function)()


def _child_env(tmp: str) -> dict[str, str]:
    """Point every cache the audit may write (matplotlib's font list, fontconfig, torch
    inductor, CUDA and Triton kernels) into the private temp folder, instead of allowing
    writes to ~/.cache. Matplotlib's font list is copied over: rebuilding it costs seconds.
    joblib (through scikit-learn, through ART) is told not to probe for POSIX semaphores,
    which live in /dev/shm, outside the sandbox; medaudit runs no worker processes."""
    env = {"TMPDIR": tmp, "MPLCONFIGDIR": os.path.join(tmp, "matplotlib"),
           "XDG_CACHE_HOME": os.path.join(tmp, "cache"), "CUDA_CACHE_PATH": os.path.join(tmp, "nv"),
           "TRITON_CACHE_DIR": os.path.join(tmp, "triton"), "JOBLIB_MULTIPROCESSING": "0"}
    mpl_cache = os.environ.get("MPLCONFIGDIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "matplotlib")
    os.makedirs(env["MPLCONFIGDIR"])
    try:
        for name in os.listdir(mpl_cache):
            if name.startswith("fontlist") and name.endswith(".json"):
                shutil.copy(os.path.join(mpl_cache, name), env["MPLCONFIGDIR"])
    except OSError:
        pass  # no cache yet: the child builds one in its temp folder
    return env


def _unavailable_reason(no_sandbox: bool) -> str | None:
    """Why this command runs in-process, or None when it should re-run in a sandbox."""
    if _state is not None and _state.get("child"):
        return "in child"
    if no_sandbox:
        return "turned off (--no-sandbox)"
    if os.environ.get(SWITCH_ENV, "").strip().lower() in ("off", "0", "no", "false"):
        return f"turned off ({SWITCH_ENV}={os.environ[SWITCH_ENV]})"
    if _argv is None:
        return "not started as the medaudit command (library call)"
    if not sys.platform.startswith("linux"):
        return f"no sandbox on {sys.platform} (Linux Landlock only)"
    if landlock_abi() < 1:
        return "Landlock is not available in this kernel (Linux >= 5.13 with landlock in the LSM list)"
    return None


def confines(no_sandbox: bool = False) -> bool:
    """Whether :func:`run_in_child` would re-run this command in the sandbox: for a caller
    that must decide first (``--engine ray``, whose worker processes the sandbox cannot reach)."""
    return _unavailable_reason(no_sandbox) is None


def run_in_child(writable: list[Path], *, no_sandbox: bool = False, unconfined: str | None = None) -> int | None:
    """Re-run the current command in a sandboxed child that may write beneath ``writable``
    only; returns the child's exit code (128+N when killed by signal N). Returns None when
    the caller must go on in-process: inside the child itself, when turned off, or when the
    kernel offers no sandbox (then with a warning; :func:`state` records why). ``unconfined``
    names why this command runs outside a sandbox the kernel offers (warned and recorded)."""
    global _state
    reason = _unavailable_reason(no_sandbox) or unconfined
    if reason == "in child":
        return None
    if reason is not None:
        _state = {"mode": "none", "reason": reason}
        if "turned off" not in reason and "library" not in reason:
            _warn(f"running the model WITHOUT a sandbox: {reason}")
        return None
    folders = []
    for folder in writable:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)  # a rule needs an existing folder
        except OSError as exc:
            raise InputError(f"cannot create output folder {folder}: {exc.strerror or exc}") from None
        folders.append(os.path.realpath(folder))
    tmp = tempfile.mkdtemp(prefix="medaudit-sandbox-")
    try:
        env = {**os.environ, **_child_env(tmp),
               _SPEC_ENV: json.dumps({"writable": folders, "tmp": tmp, "parent": os.getpid(), "argv0": sys.argv[0]})}
        root = str(Path(__file__).resolve().parents[1])  # not the working directory: no stray modules
        return _wait_forwarding_signals([sys.executable, "-c", _CHILD_CODE.format(root=root, entry=_entry), *_argv], env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _wait_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """Start the child in its own session (terminal signals reach the parent only, which
    forwards each one exactly once) with stdout/stderr inherited; wait for it. A signal
    this process ignores (a job started with nohup or in the background) stays ignored."""
    forwarded = [sig for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                 if signal.getsignal(sig) is not signal.SIG_IGN]
    sys.stdout.flush()
    sys.stderr.flush()
    child = subprocess.Popen(command, env=env, start_new_session=True)
    previous = {sig: signal.signal(sig, lambda sig, _frame: child.send_signal(sig)) for sig in forwarded}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code if code >= 0 else 128 - code


def environment_fact() -> dict[str, Any]:
    """``{"sandbox": state}`` for ``results.json`` ``environment``; empty outside the CLI."""
    current = state()
    if current is None:
        return {}
    current.pop("child", None)
    return {"sandbox": current}
