# Environment of the recipe. Works without Kaldi; adds Kaldi's tools when
# KALDI_ROOT points at a compiled Kaldi checkout (needed by stages 7-12 only).
UNSPEECH_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)   # also from a linked copy of the recipe
export UNSPEECH_ROOT
export PYTHONPATH=$UNSPEECH_ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ -x "$UNSPEECH_ROOT/.venv/bin/python" ]; then
  export PATH=$UNSPEECH_ROOT/.venv/bin:$PATH
fi
export PYTHONUNBUFFERED=1
# TensorFlow's own log lines are off (utils_py/tflog.py); UNSPEECH_TF_LOG=1 shows them
export LC_ALL=C
if [ -n "${KALDI_ROOT:-}" ] && [ -f "$KALDI_ROOT/tools/config/common_path.sh" ]; then
  export PATH=$KALDI_ROOT/egs/wsj/s5/utils:$KALDI_ROOT/tools/openfst/bin:$PATH
  . "$KALDI_ROOT/tools/config/common_path.sh"
  # Kaldi's egs/*/path.sh do this too: tools/env.sh sets e.g. OPENBLAS_NUM_THREADS=1
  [ -f "$KALDI_ROOT/tools/env.sh" ] && . "$KALDI_ROOT/tools/env.sh"
fi
true
