"""Two processes that ask for the packaged default model at once on a fresh data root both get it.

Found on the lent H100: the tau table and a mixed-precision search started side by side on a fresh data root,
both began converting the GGUF into the same `.partial` folder, and one died on a file the other had just
removed (FileNotFoundError: .../SmolLM2-135M-Instruct.partial/greenai_provenance.json)."""

from __future__ import annotations

import os
import subprocess
import sys

ASK = ("from greenai_dagster.core.models.default_model import ensure_default_checkpoint; "
       "print(ensure_default_checkpoint())")


def test_two_processes_converting_at_once_both_get_the_one_checkpoint(tmp_path):
    env = {**os.environ, "GREENAI_DATA": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", ASK], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    folders = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(folders) == 1
    folder = folders.pop()
    assert os.path.exists(os.path.join(folder, "model.safetensors"))
    assert os.path.exists(os.path.join(folder, "greenai_provenance.json"))
    assert not os.path.exists(folder + ".partial")
