#!/usr/bin/env bash
# Kaldi's decoding scripts score through local/score.sh; ours is Kaldi's own
# steps/score_kaldi.sh (WER per LM weight and word insertion penalty, best_wer).
exec steps/score_kaldi.sh "$@"
