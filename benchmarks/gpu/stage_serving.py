"""Stage what the end-to-end run (benchmarks/gpu/end_to_end.sh) needs beyond stage_site.py's closure.

    python benchmarks/gpu/stage_serving.py OUT_DIR        # e.g. .gpu/d (git-ignored), one device call

Two things the lent GPU machine lacks and `greenai run` alone never needed:
- llama-cpp-python, for `greenai llm-server` (the `llm` coordinator's offline endpoint). It is a ctypes
  binding: its `.so` files are plain shared libraries (no CPython extension module), so this machine's
  installed package, built for any x86-64 CPU with AVX2, loads under the target's Python 3.12. Its
  libraries need GLIBC 2.34 / GLIBCXX 3.4.29 and libgomp.so.1; this machine's libgomp is packed beside
  them as `gomp/` for a target image without one (end_to_end.sh adds it to LD_LIBRARY_PATH only then).
- dagster-webserver, for `dagster dev` (webserver + daemon + the coordinator sensor) and its /graphql
  launch path, with its UI bundle (a person may open the UI through a tunnel; GraphQL alone would not need it).
Plus the pure-Python packages both need that stage_site.py's closure lacks (pydantic-settings, diskcache).
uvicorn's optional compiled speed-ups (httptools, websockets, watchfiles) stay out: uvicorn falls back
to h11 and asyncio, and GraphQL over HTTP needs no websocket.
"""
from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import tarfile
from pathlib import Path

from stage_site import pack

PACKAGES = ["llama-cpp-python", "dagster-webserver", "pydantic-settings", "diskcache"]
# llama-cpp-python's build also installs copies of its libraries and C headers at site-packages/lib and
# include; the binding loads the ones in llama_cpp/lib
DROP = ("lib/", "include/", "bin/")


def extension_modules(name: str) -> list[str]:
    """The distribution's CPython extension modules (`*.cpython-*.so`, `*.abi3.so`): none may be packed."""
    return [str(f) for f in md.distribution(name).files or []
            if str(f).endswith(".so") and (".cpython-" in str(f) or ".abi3." in str(f))]


def libgomp() -> Path | None:
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "libgomp.so.1 " in line and "x86-64" in line:
            return Path(line.split("=>")[-1].strip()).resolve()
    return None


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        found = extension_modules(name)
        if found:
            raise SystemExit(f"{name} holds CPython extension modules built for this Python: {found}")
    pack(out / "serving.tar.xz", PACKAGES, shared_libraries=True, drop=DROP)
    gomp = libgomp()
    if gomp is not None:
        with tarfile.open(out / "gomp.tar.xz", "w:xz") as tar:
            tar.add(gomp, arcname="gomp/libgomp.so.1")
    else:
        (out / "gomp.tar.xz").unlink(missing_ok=True)
    for f in sorted(out.iterdir()):
        print(f"{f.stat().st_size / 2**20:7.2f} MiB  {f.name}")
    print("packed:", ", ".join(f"{n} {md.version(n)}" for n in PACKAGES))


if __name__ == "__main__":
    main()
