"""unit_sandbox.py - msexchangeimc.service's confinement without systemd: read a unit's settings,
run a program inside them, and check an strace of that run against them.

As a program (as root):  unit_sandbox.py [--state-root DIR] [--drop-cap CAP]... UNIT -- PROG ARGS
it enters a mount namespace of its own and builds there what the unit's ProtectSystem=strict,
ReadWritePaths=, ProtectKernelTunables=, ProtectControlGroups=, PrivateTmp= and ProtectHome=
make of the file system; then it bounds the capabilities to CapabilityBoundingSet= (less each
--drop-cap), sets NoNewPrivileges=, loads the unit's SystemCallFilter= (with
SystemCallErrorNumber= and RestrictAddressFamilies=) through libseccomp, and executes PROG, as
systemd would have done between its fork and the exec. --state-root stands for the unit's
IMS_ROOT wherever the unit names it (a test's state root instead of /var/lib/ims). Not
emulated: PrivateDevices= and ProtectProc= (trace_check looks at the paths instead),
MemoryDenyWriteExecute= (trace_check looks at the mappings), the other seccomp-made
Restrict*= and Protect*= settings. Exit status 125 when the sandbox cannot be made.

As a module: read_unit, allowed_syscalls, and trace_check (the strace -f -y output of a run
against a unit: the problems found, one line each; calls, the calls of such a trace)."""
import ctypes
import errno
import os
import re
import subprocess
import sys

# Linux capability numbers (linux/capability.h), in order: CAP_CHOWN is 0.
CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"]
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
EXIT_SANDBOX = 125
# What PrivateDevices= leaves in /dev (systemd's namespace.c: mount_private_dev).
PRIVATE_DEV = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty",
               "/dev/log", "/dev/stdin", "/dev/stdout", "/dev/stderr"}
PRIVATE_DEV_TREES = ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/hugepages", "/dev/fd")
HOME_TREES = ("/home", "/root", "/run/user")  # ProtectHome=yes


# --- the unit ------------------------------------------------------------------------------


def read_unit(path):
    """The [Service] settings of a unit file: {key: [value, ...]} in file order (a key given
    again adds a value; an empty value resets the list, as systemd does)."""
    settings, section = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section != "[Service]" or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if value == "":
                settings[key] = []
            else:
                settings.setdefault(key, []).append(value)
    return settings


def unit_env(settings):
    """Environment= of the unit: {name: value}."""
    env = {}
    for value in settings.get("Environment", []):
        for item in value.split():
            if "=" in item:
                k, v = item.split("=", 1)
                env[k] = v
    return env


def unit_bool(settings, key):
    values = settings.get(key, [])
    return bool(values) and values[-1].lower() in ("yes", "true", "1", "on")


def unit_words(settings, key):
    words = []
    for value in settings.get(key, []):
        words += value.split()
    return words


def syscall_groups():
    """systemd's system call groups (systemd-analyze syscall-filter): {"@name": [members]}."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"],
                         capture_output=True, text=True, check=True).stdout
    groups, current = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif not line.strip():
            current = None
        elif current and not line.strip().startswith("#"):
            groups[current].append(line.strip())
    return groups


def _expand(name, groups, depth=0):
    if not name.startswith("@"):
        return {name}
    assert depth < 8 and name in groups, f"unknown system call group {name}"
    names = set()
    for member in groups[name]:
        names |= _expand(member, groups, depth + 1)
    return names


def allowed_syscalls(settings, groups=None):
    """The system calls SystemCallFilter= lets through, as systemd.exec(5) reads its lines: the
    first says allow-list or deny-list, later ~lines take names away, later plain ones add."""
    groups = groups or syscall_groups()
    lines = settings.get("SystemCallFilter", [])
    assert lines and not lines[0].startswith("~"), "SystemCallFilter= is no allow-list"
    allowed = _expand("@default", groups)  # systemd always allows these
    for line in lines:
        deny = line.startswith("~")
        names = set()
        for word in line.lstrip("~").split():
            names |= _expand(word, groups)
        allowed = allowed - names if deny else allowed | names
    return allowed


def state_root_paths(settings, state_root):
    """ReadWritePaths=, with the unit's IMS_ROOT (and what is under it) moved to state_root."""
    unit_root = unit_env(settings).get("IMS_ROOT")
    paths = []
    for p in unit_words(settings, "ReadWritePaths"):
        p = p.lstrip("-+")
        if state_root and unit_root and (p == unit_root or p.startswith(unit_root + "/")):
            p = state_root + p[len(unit_root):]
        paths.append(p)
    return paths


# --- the sandbox ---------------------------------------------------------------------------


def _mount(*args):
    subprocess.run(["mount", *args], check=True, stdin=subprocess.DEVNULL)


def _under(path, trees):
    return any(path == t or path.startswith(t.rstrip("/") + "/") for t in trees)


def _mounts():
    """(mount point, per-mount options) of this namespace, outermost first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            out.append((point, fields[5].split(",")))
    return out


def _file_system(settings, rw_paths):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS):
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount("--make-rprivate", "/")
    strict = (settings.get("ProtectSystem") or [""])[-1] == "strict"
    for p in rw_paths:
        _mount("--bind", p, p)  # its own mount: the read-only remounts below pass it by
    if strict:
        api = ["/dev", "/proc"]
        if not unit_bool(settings, "ProtectKernelTunables"):
            api.append("/sys")
        for point, opts in _mounts():
            if _under(point, api) or _under(point, rw_paths) or "ro" in opts:
                continue
            flags = [o for o in opts if o in ("nosuid", "nodev", "noexec")]
            _mount("-o", ",".join(["remount", "bind", "ro"] + flags), point)
    if unit_bool(settings, "ProtectKernelTunables"):
        _mount("--bind", "/proc/sys", "/proc/sys")
        _mount("-o", "remount,bind,ro,nosuid,nodev,noexec", "/proc/sys")
    if unit_bool(settings, "PrivateTmp"):
        for d in ("/tmp", "/var/tmp"):
            if os.path.isdir(d) and not _under(d, rw_paths):
                _mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", d)
    if (settings.get("ProtectHome") or [""])[-1] == "yes":
        for d in HOME_TREES:
            if os.path.isdir(d):
                _mount("-t", "tmpfs", "-o", "ro,mode=000,nosuid,nodev,noexec", "tmpfs", d)


def _capabilities(settings, drop):
    keep = set(unit_words(settings, "CapabilityBoundingSet")) - set(drop)
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for number in range(last + 1):
        name = CAPS[number] if number < len(CAPS) else None
        if name not in keep and libc.prctl(PR_CAPBSET_DROP, number, 0, 0, 0):
            raise OSError(ctypes.get_errno(), f"PR_CAPBSET_DROP {name or number}")
    if unit_bool(settings, "NoNewPrivileges") and libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0):
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")


def _syscall_filter(settings):
    import seccomp  # python3-seccomp; only the sandbox needs it

    code = (settings.get("SystemCallErrorNumber") or ["EPERM"])[-1]
    f = seccomp.SyscallFilter(defaction=seccomp.ERRNO(getattr(errno, code)))
    families = unit_words(settings, "RestrictAddressFamilies")
    for name in sorted(allowed_syscalls(settings)):
        if name == "socket" and families:
            continue
        try:
            f.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError):
            pass  # a name of another architecture (chown32, ...)
    for fam in families:
        f.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, FAMILIES[fam]))
    f.load()


def main(argv):
    state_root, drop, i = None, [], 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] == "--state-root":
            state_root, i = argv[i + 1], i + 2
        elif argv[i] == "--drop-cap":
            drop.append(argv[i + 1].upper())
            i += 2
        else:
            break
    if len(argv) < i + 3 or argv[i + 1] != "--":
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    unit, prog = argv[i], argv[i + 2:]
    try:
        settings = read_unit(unit)
        _file_system(settings, state_root_paths(settings, state_root))
        _capabilities(settings, drop)
        _syscall_filter(settings)
        os.execv(prog[0], prog)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.stderr.write(f"unit_sandbox: {e}\n")
        return EXIT_SANDBOX


# --- checking a trace ----------------------------------------------------------------------

# The path arguments (0-based positions) of the calls that name files; a dirfd is the argument
# just before an *at call's path.
PATH_ARGS = {
    "open": [0], "creat": [0], "openat": [1], "openat2": [1], "mkdir": [0], "mkdirat": [1],
    "rename": [0, 1], "renameat": [1, 3], "renameat2": [1, 3], "unlink": [0], "unlinkat": [1],
    "rmdir": [0], "link": [0, 1], "linkat": [1, 3], "symlink": [1], "symlinkat": [2],
    "chmod": [0], "fchmodat": [1], "chown": [0], "lchown": [0], "fchownat": [1],
    "truncate": [0], "utimensat": [1], "access": [0], "faccessat": [1], "faccessat2": [1],
    "stat": [0], "lstat": [0], "newfstatat": [1], "statx": [1], "statfs": [0],
    "readlink": [0], "readlinkat": [1], "chdir": [0], "execve": [0], "inotify_add_watch": [1],
    "mknod": [0], "mknodat": [1], "getxattr": [0], "lgetxattr": [0],
}
WRITING = {"creat", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink", "unlinkat",
           "rmdir", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmodat", "chown",
           "lchown", "fchownat", "truncate", "utimensat", "mknod", "mknodat"}
AT_CALLS = {"openat", "openat2", "mkdirat", "renameat", "renameat2", "unlinkat", "linkat",
            "symlinkat", "fchmodat", "fchownat", "utimensat", "faccessat", "faccessat2",
            "newfstatat", "statx", "readlinkat", "mknodat"}
CALL_RE = re.compile(r"^(\d+)\s+([a-z_0-9]+)\((.*)$")
RESUMED_RE = re.compile(r"^(\d+)\s+<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
UNFINISHED = " <unfinished ...>"


def _split_args(text):
    """The top-level arguments of a strace call text "a, {b, c}, "d"..." and what follows the
    closing parenthesis (" = result")."""
    args, cur, depth, i, quote = [], "", 0, 0, False
    while i < len(text):
        c = text[i]
        if quote:
            cur += c
            if c == "\\" and i + 1 < len(text):
                cur += text[i + 1]
                i += 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote, cur = True, cur + c
        elif c in "([{" or (c == "<" and re.search(r"(\d|AT_FDCWD)$", cur)):
            depth, cur = depth + 1, cur + c
        elif c in ")]}>" and depth > 0:
            depth, cur = depth - 1, cur + c
        elif c == ")" and depth == 0:
            args.append(cur.strip())
            return args, text[i + 1:]
        elif c == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    args.append(cur.strip())
    return args, ""


def _unquote(arg):
    m = re.match(r'^"((?:[^"\\]|\\.)*)"', arg)
    if not m:
        return None
    return re.sub(r"\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)", lambda e: _unescape(e.group(1)), m.group(1))


def _unescape(s):
    table = {"n": "\n", "t": "\t", "r": "\r", "v": "\v", "f": "\f", '"': '"', "\\": "\\"}
    if s[0] == "x":
        return chr(int(s[1:], 16))
    if s[0].isdigit():
        return chr(int(s, 8))
    return table.get(s, s)


def _fd_path(arg):
    m = re.match(r"^(?:\d+|AT_FDCWD)<(/[^>]*)>", arg)
    return m.group(1) if m else None


def calls(lines, start_re):
    """(pid, name, args, result) of every call in a strace -f -y log from the first execve
    matching start_re on; unfinished calls joined with their resumption."""
    pending, started = {}, False
    for line in lines:
        m = RESUMED_RE.match(line)
        if m:
            pid, name, rest = m.groups()
            if pid in pending:
                pname, head = pending.pop(pid)
                text = head + rest
                args, result = _split_args(text)
                if started:
                    yield pid, pname, args, result
            continue
        m = CALL_RE.match(line)
        if not m:
            continue  # "--- SIGTERM ---", "+++ exited with 0 +++"
        pid, name, text = m.groups()
        if not started and name == "execve" and re.search(start_re, text) and \
                re.search(r"= 0$", text):
            started = True
        if text.endswith(UNFINISHED):
            pending[pid] = (name, text[:-len(UNFINISHED)])
            continue
        args, result = _split_args(text)
        if started:
            yield pid, name, args, result


def trace_check(lines, settings, state_root, exe, groups=None):
    """The problems a strace -f -y -s 1024 log of exe's run shows against the unit: system
    calls outside SystemCallFilter=, address families outside RestrictAddressFamilies=, writes
    outside ReadWritePaths= (state_root for the unit's IMS_ROOT), paths that ProtectHome=,
    PrivateDevices= or ProtectProc= take away, and mappings both writable and executable
    (MemoryDenyWriteExecute=). A list of lines, empty when all is well."""
    allowed = allowed_syscalls(settings, groups)
    families = set(unit_words(settings, "RestrictAddressFamilies"))
    rw = state_root_paths(settings, state_root)
    problems, pids = [], set()
    run = list(calls(lines, r'^"' + re.escape(exe) + '"'))
    for pid, _, _, _ in run:
        pids.add(pid)
    for pid, name, args, result in run:
        where = f"{name}({', '.join(args)[:160]}) {result.strip()[:60]}"
        if name not in allowed:
            problems.append(f"system call outside SystemCallFilter=: {where}")
        if name in ("socket", "socketpair") and families and args:
            fam = args[0].split("|")[0]
            if name == "socket" and fam not in families:
                problems.append(f"address family outside RestrictAddressFamilies=: {where}")
        if name in ("mmap", "mprotect", "pkey_mprotect") and len(args) > 2:
            if "PROT_WRITE" in args[2] and "PROT_EXEC" in args[2]:
                problems.append(f"writable and executable memory: {where}")
        flags = ", ".join(args[1:3])
        for path in _paths(name, args):
            writes = name in WRITING or (name in ("open", "openat", "openat2") and
                                         re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", flags))
            failed_exists = name in ("mkdir", "mkdirat") and "EEXIST" in result
            if writes and not failed_exists and not _under(path, rw):
                problems.append(f"write outside ReadWritePaths= {rw}: {where}")
            if _under(path, HOME_TREES):
                problems.append(f"a path ProtectHome= hides: {where}")
            if path.startswith("/dev/") and path not in PRIVATE_DEV and \
                    not _under(path, PRIVATE_DEV_TREES):
                problems.append(f"a device PrivateDevices= leaves out: {where}")
            m = re.match(r"^/proc/(\d+)(/|$)", path)
            if m and m.group(1) not in pids:
                problems.append(f"another process's /proc (ProtectProc=invisible): {where}")
        if name in ("connect", "bind", "sendto", "sendmsg"):
            for sun in re.findall(r'sun_path="([^"]*)"', ", ".join(args)):
                if _under(sun, HOME_TREES):
                    problems.append(f"a socket ProtectHome= hides: {where}")
    if not run:
        problems.append(f"no execve of {exe} in the trace")
    return problems


def _paths(name, args):
    """The absolute paths a call names: its path arguments, relative ones resolved against the
    directory of their dirfd (strace -y shows it) or of AT_FDCWD."""
    out = []
    for pos in PATH_ARGS.get(name, []):
        if pos >= len(args):
            continue
        p = _unquote(args[pos])
        if p is None or p == "":
            continue
        if not p.startswith("/"):
            base = _fd_path(args[pos - 1]) if name in AT_CALLS and pos > 0 else None
            if base is None:
                continue  # relative to a cwd the trace does not show
            p = os.path.join(base, p)
        out.append(os.path.normpath(p))
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
