"""Stage what `greenai run` needs beyond the GPU image's packages, for a lent GPU machine without network.

    python benchmarks/gpu/stage_site.py OUT_DIR

Run here (where the project is installed). Pure-Python distributions of the project's dependency
closure that the image lacks are packed from this machine's site-packages into `pure.tar.xz` (sources
only: no bytecode, no compiled modules; those with optional C speed-ups fall back to Python); the
ones that need compiled code are downloaded as CPython 3.12 manylinux wheels (`pip download`). The
lent machine unpacks both into one folder on PYTHONPATH (`benchmarks/gpu/first_command.sh`).
Left out on purpose (not imported by `greenai run`): the deployment extras (Kubernetes, PostgreSQL),
the webserver's UI bundle, bitsandbytes (QLoRA only), cryptography (codecarbon's login CLI only),
nltk (not imported by lm-eval's scoring here), pycountry's translations.
"""
from __future__ import annotations

import importlib.metadata as md
import re
import subprocess
import sys
import tarfile
from pathlib import Path

from packaging.requirements import Requirement

# the GPU image's packages (device KINDS.md, read 2026-11-17)
IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning
lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson
ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache
protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy
seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton typer
typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp""".split()
SKIP = {"cryptography", "authlib", "joserfc", "kubernetes", "dagster-k8s", "dagster-postgres", "psycopg2-binary",
        "bitsandbytes", "google-auth", "pyasn1", "pyasn1-modules", "requests-oauthlib", "oauthlib", "durationpy",
        "websocket-client", "dagster-webserver", "httptools", "watchfiles", "websockets", "greenai-dagster",
        "nltk"}
DROP = ("pycountry/locales/",)   # translations of country names: not read by codecarbon
# compiled, with no pure-Python fallback: fetched as cp312 wheels
COMPILED = {"duckdb", "pydantic-core", "moocore", "cffi", "rapidfuzz", "jiter"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str) -> dict[str, str]:
    seen: dict[str, str | None] = {}

    def walk(name: str, extras: tuple = ()) -> None:
        key = norm(name)
        if key in seen:
            return
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            seen[key] = None
            return
        seen[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                continue
            walk(req.name, tuple(req.extras))

    walk(root)
    image = {norm(n) for n in IMAGE}
    return {k: v for k, v in seen.items() if v and k not in image and k not in SKIP}


def pack(tar_path: Path, names: list[str], shared_libraries: bool = False, drop: tuple[str, ...] = DROP) -> None:
    """Each named distribution's installed files (dist-info included) into one xz tarball, paths relative to
    site-packages. No bytecode (the target's Python compiles its own). `.so` files are left out unless
    `shared_libraries`: a CPython extension built for this machine's Python would not load on the target's,
    but a ctypes library (llama-cpp-python's) does. Paths starting with one of `drop` are left out."""
    with tarfile.open(tar_path, "w:xz", preset=9) as tar:
        for name in names:
            dist = md.distribution(name)
            base = Path(dist.locate_file(""))
            for f in dist.files or []:
                s = str(f)
                if "__pycache__" in s or s.endswith(".pyc") or s.startswith("..") or s.startswith(drop):
                    continue
                if ".so" in Path(s).suffixes and not shared_libraries:
                    continue
                path = base / f
                if path.is_file():
                    tar.add(path, arcname=s)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    wanted = closure("greenai-dagster")
    pure = {k: v for k, v in wanted.items() if k not in COMPILED}
    pack(out / "pure.tar.xz", sorted(pure))
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(out)]
    for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
              "manylinux2014_x86_64", "manylinux1_x86_64"):
        pip += ["--platform", p]
    subprocess.run(pip + [f"{n}=={wanted[n]}" for n in sorted(COMPILED) if n in wanted], check=True)
    print("pure:", len(pure), "compiled:", sorted(n for n in COMPILED if n in wanted))


if __name__ == "__main__":
    main()
