#!/usr/bin/env bash
# Lexicon, lang dir and n-gram LM for the recipe's GMM/chain stages (run.sh stage 7),
# with Kaldi's own tools:
#   local/prepare_dict.py        words of the text files -> <local-dir>/dict (espeak-ng or graphemes)
#   utils/prepare_lang.sh        dict -> <lang-dir> (L.fst, phones/, words.txt, ...)
#   utils/lang/make_kn_lm.py     Kneser-Ney LM of the TRAINING text -> <local-dir>/lm/lm.arpa.gz
#                                (--lm-order 1: local/make_word_loop_lm.py, a uniform word loop)
#   utils/format_lm.sh           <lang-dir> + LM -> <lang-test-dir> (G.fst)
# <lang-dir> and <lang-test-dir> are built under temp names (<dir>.tmp) and moved into
# place only when everything succeeded: a lang dir is complete or absent. A rerun with
# the same options and text files no newer than <lang-test-dir>/.done does nothing.
# Run it from the recipe dir; it links steps/ and utils/ to $KALDI_ROOT/egs/wsj/s5 there.
set -euo pipefail

lexicon_method=espeak
espeak_voice=en-us
oov_word='<unk>'
lm_order=3

help_message="Usage: $0 [options] <train-data-dir> <lexicon-data-dirs> <local-dir> <lang-dir> <lang-test-dir>
Makes a Kaldi lang dir and a lang dir with an n-gram LM (G.fst). The lexicon covers every
word of the text of <train-data-dir> and of each dir in the space-separated list
<lexicon-data-dirs> (e.g. \"data/train data/test\"); the LM is trained on the text of
<train-data-dir> only. Needs KALDI_ROOT (a compiled Kaldi); espeak-ng for --lexicon-method espeak.
Writes <local-dir>/dict (local/prepare_dict.py --help), <local-dir>/lang_tmp,
<local-dir>/lm/{train_text.txt,lm.arpa.gz}, logs in <local-dir>/log/, <lang-dir>, and
<lang-test-dir> (<lang-dir> + G.fst). Remove <lang-test-dir>/.done to force a rerun.
Options (default):
  --lexicon-method <m>  ($lexicon_method) espeak (espeak-ng phonemes) | grapheme (one phone per letter)
  --espeak-voice <v>    ($espeak_voice) espeak-ng voice, e.g. en-us, en-gb, fa, de
  --oov-word <w>        ($oov_word) the OOV word (pronounced SPN)
  --lm-order <n>        ($lm_order) n-gram order, 2..7 (Kaldi's make_kn_lm.py); 1: a uniform word loop
                        (digit strings: their counts are too even for Kneser-Ney discounting)
e.g. (from egs/tedlium/s5_unspeech):
  $0 --lexicon-method espeak --lm-order 3 data/train \"data/train data/test\" data/local data/lang data/lang_test"

here=$(dirname "$0")
. "$here/../steps_unspeech/parse_options.sh"

if [ $# -ne 5 ]; then
  printf '%s\n' "$help_message" >&2
  exit 1
fi
train=$1
lex_dirs=$2
local_dir=$3
lang=${4%/}
lang_test=${5%/}

err() { echo "ERROR (prepare_lang): $*" >&2; exit 1; }
log() { echo "$(basename "$0"): $*"; }

case $lexicon_method in espeak|grapheme) ;; *) err "--lexicon-method must be espeak or grapheme, got $lexicon_method" ;; esac
[[ $lm_order =~ ^[1-7]$ ]] || err "--lm-order must be 1 (word loop) or 2..7 (make_kn_lm.py), got $lm_order"
KALDI_ROOT=${KALDI_ROOT:-}
[ -n "$KALDI_ROOT" ] ||
  err "KALDI_ROOT is not set: export KALDI_ROOT=/path/to/kaldi (a compiled Kaldi; needed for utils/prepare_lang.sh, arpa2fst)"
[ -f "$KALDI_ROOT/egs/wsj/s5/utils/prepare_lang.sh" ] && [ -x "$KALDI_ROOT/src/lmbin/arpa2fst" ] ||
  err "KALDI_ROOT=$KALDI_ROOT is not a compiled Kaldi (no egs/wsj/s5/utils/prepare_lang.sh or src/lmbin/arpa2fst)"
[ -f ./path.sh ] ||
  err "no ./path.sh in $(pwd): run from the recipe dir (Kaldi's utils/validate_lang.pl sources ./path.sh)"
[ "$lang" != "$lang_test" ] || err "<lang-dir> and <lang-test-dir> must differ: $lang"

texts=("${train%/}/text")
for d in $lex_dirs; do
  case " ${texts[*]} " in *" ${d%/}/text "*) ;; *) texts+=("${d%/}/text") ;; esac
done
for t in "${texts[@]}"; do
  [ -f "$t" ] || err "text not found: $t"
done

# Only our own outputs are ever replaced.
for d in "$lang" "$lang_test"; do
  if [ -e "$d" ] && [ -n "$(ls -A "$d" 2>/dev/null)" ] && [ ! -f "$d/phones.txt" ]; then
    err "will not replace a non-empty directory without phones.txt (not a lang dir?): $d"
  fi
done

# Kaldi's scripts call steps/ and utils/ relative to the current dir, and need its binaries.
for d in steps utils; do
  [ -e $d ] || ln -s "$KALDI_ROOT/egs/wsj/s5/$d" $d
done
. ./path.sh
. "$KALDI_ROOT/tools/config/common_path.sh"
export PATH=$KALDI_ROOT/egs/wsj/s5/utils:$KALDI_ROOT/tools/openfst/bin:$PATH
export LC_ALL=C

stamp=$lang_test/.done
settings="lexicon-method=$lexicon_method espeak-voice=$espeak_voice oov-word=$oov_word lm-order=$lm_order
lm-text=$train/text lexicon-texts=${texts[*]}"
if [ -f "$stamp" ] && [ -f "$lang/L.fst" ] && [ -f "$lang_test/G.fst" ] &&
   [ "$(cat "$stamp")" = "$settings" ]; then
  newer=
  for t in "${texts[@]}"; do
    if [ "$t" -nt "$stamp" ]; then newer=$t; fi
  done
  if [ -z "$newer" ]; then
    log "$lang and $lang_test are up to date (remove $stamp to redo)"
    exit 0
  fi
fi

logdir=$local_dir/log
mkdir -p "$logdir" "$local_dir/lm" 2>/dev/null || err "cannot create $logdir"
. "$here/../steps_unspeech/lock_dir.sh" "$local_dir"   # a second run into the same <local-dir> stops here
dict=$local_dir/dict
lang_tmp=$lang.tmp
lang_test_tmp=$lang_test.tmp
rm -rf "$lang_tmp" "$lang_test_tmp"

# failed <what> <log>: one ERROR line with the first error line of the log.
failed() {
  local first
  first=$(grep -m1 -E 'ERROR|Error|error' "$2" 2>/dev/null | sed 's/^[[:space:]-]*>*[[:space:]]*//' || true)
  rm -rf "$lang_tmp" "$lang_test_tmp"
  err "$1 failed (log: $2)${first:+: $first}"
}

start=$SECONDS
log "lexicon ($lexicon_method) of ${texts[*]} -> $dict"
if ! "$here/prepare_dict.py" --method "$lexicon_method" --espeak-voice "$espeak_voice" --oov-word "$oov_word" \
    "${texts[@]}" "$dict" > "$logdir/prepare_dict.log" 2>&1; then
  line=$(grep -m1 '^ERROR (prepare_dict)' "$logdir/prepare_dict.log" || true)
  [ -n "$line" ] && { echo "$line" >&2; exit 1; }
  failed local/prepare_dict.py "$logdir/prepare_dict.log"
fi
grep WARNING "$logdir/prepare_dict.log" >&2 || true

log "Kaldi's utils/prepare_lang.sh -> $lang"
rm -rf "$local_dir/lang_tmp"
utils/prepare_lang.sh "$dict" "$oov_word" "$local_dir/lang_tmp" "$lang_tmp" > "$logdir/prepare_lang.log" 2>&1 ||
  failed utils/prepare_lang.sh "$logdir/prepare_lang.log"

if [ "$lm_order" = 1 ]; then
  lm_what="word-loop LM (local/make_word_loop_lm.py)"
  make_lm() { "$here/make_word_loop_lm.py" "$1" "$2"; }
else
  lm_what="$lm_order-gram Kneser-Ney LM (utils/lang/make_kn_lm.py)"
  make_lm() { python3 utils/lang/make_kn_lm.py -ngram-order "$lm_order" -text "$1" -lm "$2"; }
fi
log "$lm_what of $train/text"
lm_text=$local_dir/lm/train_text.txt
lm=$local_dir/lm/lm.arpa.gz
awk '{ $1 = ""; if (NF > 1) print substr($0, 2) }' "$train/text" > "$lm_text.tmp"
[ -s "$lm_text.tmp" ] || { rm -f "$lm_text.tmp"; err "no words in $train/text to train the LM on"; }
mv "$lm_text.tmp" "$lm_text"
if ! { make_lm "$lm_text" "$lm.arpa.tmp" && gzip -c "$lm.arpa.tmp" > "$lm.tmp" && mv "$lm.tmp" "$lm"; } \
     > "$logdir/make_lm.log" 2>&1; then
  rm -f "$lm.arpa.tmp" "$lm.tmp"
  failed "${lm_what% (*}" "$logdir/make_lm.log"
fi
rm -f "$lm.arpa.tmp"

log "Kaldi's utils/format_lm.sh -> $lang_test"
utils/format_lm.sh "$lang_tmp" "$lm" "$dict/lexicon.txt" "$lang_test_tmp" > "$logdir/format_lm.log" 2>&1 ||
  failed utils/format_lm.sh "$logdir/format_lm.log"
utils/validate_lang.pl --skip-determinization-check "$lang_test_tmp" > "$logdir/validate_lang.log" 2>&1 ||
  failed utils/validate_lang.pl "$logdir/validate_lang.log"
printf '%s\n' "$settings" > "$lang_test_tmp/.done"

# Into place: the old <lang-test-dir> goes first, so a kill in between leaves none, never a stale one.
rm -rf "$lang_test" "$lang"
mv "$lang_tmp" "$lang"
mv "$lang_test_tmp" "$lang_test"

ngrams=$(gunzip -c "$lm" | awk '/^ngram [0-9]+=/ { split($2, a, "="); n += a[2] } END { print n + 0 }')
log "wrote $lang ($(wc -l < "$dict/lexicon.txt") lexicon words, $(wc -l < "$dict/nonsilence_phones.txt")" \
    "non-silence phones) and $lang_test (G.fst: $lm_order-gram LM, $ngrams n-grams, of $train/text)" \
    "in $((SECONDS - start)) s"
