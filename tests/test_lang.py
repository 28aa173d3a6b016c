"""Lexicon, lang dir and n-gram LM: local/prepare_dict.py and local/prepare_lang.sh."""
import gzip
import importlib.util
import os
import re
import subprocess
import sys

import pytest
from conftest import REPO, kaldi_env, need_tools, run_cmd, step_env

from utils_py.log import UnspeechError

DICT_PY = os.path.join(REPO, "local", "prepare_dict.py")
LANG_SH = os.path.join(REPO, "local", "prepare_lang.sh")
ZWNJ = "\u200c"

_spec = importlib.util.spec_from_file_location("prepare_dict", DICT_PY)
pd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pd)

DIGITS = "zero one two three four five six seven eight nine".split()
EN_TRAIN = [
    "one two three four five",
    "six seven eight nine zero",
    "don't touch the red button",
    "the cat sat on the mat",
    "i don't know the number nine",
    "she said zero and then one",
    "the red cat ate the fish",
    "two cats and a dog",
    "<unk> the dog sat",
    "five four three two one",
]
EN_TEST = ["the dog ate seven fish", "a zebra said hello"]          # zebra, hello: test only
FA_TRAIN = [
    f"من می{ZWNJ}خواهم کتاب بخوانم",
    "این کتاب خوب است",
    f"او می{ZWNJ}خواهد به خانه برود",
    "ما به مدرسه رفتیم",
    "کتابِ من کجاست",
    "خانه بزرگ است",
    f"آنها نامه{ZWNJ}ای نوشتند",
    "من خوب هستم",
    "این خانه زیباست",
    "او کتاب خواند",
]
FA_TEST = ["دریا آبی است"]                                             # دریا, آبی: test only


def write_text(path, sentences, prefix="utt"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{prefix}{i:03d} {s}\n" for i, s in enumerate(sentences)), encoding="utf-8")
    return str(path)


def read_lexicon(dict_dir):
    lex = {}
    for line in open(os.path.join(dict_dir, "lexicon.txt"), encoding="utf-8"):
        w, *ph = line.split()
        assert w not in lex, f"two pronunciations of {w}"
        lex[w] = ph
    return lex


def c_sorted_lines(path):
    lines = open(path, encoding="utf-8").read().splitlines()
    return lines == sorted(lines, key=lambda s: s.encode("utf-8")), lines


def run_dict(args):
    return run_cmd([DICT_PY] + [str(a) for a in args])


# ----------------------------------------------------------------------------- espeak

def test_espeak_phones_of_english_words():
    need_tools("espeak-ng")
    words = DIGITS + ["don't", "I'm", "hello", "won", "too", "ate", "button"]
    prons = pd.espeak_prons(words, "en-us")
    for w in words:
        ph = prons[w]
        assert ph, f"no phones for {w}"
        for p in ph:
            pd.check_phone(p)
            assert not set(p) & set("ˈˌ'_.%, ") and not p[0].isdigit(), (w, ph)
    assert prons["one"] == prons["won"] and prons["two"] == prons["too"] and prons["eight"] == prons["ate"]
    assert prons["two"][0] == "t" and prons["six"] == ["s", "ɪ", "k", "s"]
    assert prons["don't"][0] == "d" and prons["don't"][-2:] == ["n", "t"]
    assert len(set(map(tuple, (prons[d] for d in DIGITS)))) == 10


def test_espeak_batches_align_with_words():
    """One espeak-ng process for many words gives each word its own pronunciation, also
    around a word that espeak-ng splits into two lines or gives no phonemes."""
    need_tools("espeak-ng")
    words = ["seven", "hi...there", "nine", "-", "zero", "four", "don't"]
    batched = pd.espeak_prons(words, "en-us", batch=len(words))
    alone = {w: pd.espeak_prons([w], "en-us")[w] for w in words}
    assert batched == alone
    assert batched["-"] == [] and len(batched["hi...there"]) >= 4
    small = pd.espeak_prons(words, "en-us", batch=2, jobs=2)
    assert small == alone


def test_espeak_output_parsing():
    assert pd.espeak_line_to_phones("z_ˈiə_ɹ_oʊ") == ["z", "iə", "ɹ", "oʊ"]
    assert pd.espeak_line_to_phones("h_ˈaɪ ð_ˈɛɹ") == ["h", "aɪ", "ð", "ɛɹ"]
    assert pd.espeak_line_to_phones("ʃ_(fr)ˈa_t_o(en)") == ["ʃ", "a", "t", "o"]
    assert pd.espeak_line_to_phones("ˌa_ː_b") == ["aː", "b"]
    assert pd.espeak_line_to_phones("") == []


def test_espeak_dict_dir(tmp_path):
    need_tools("espeak-ng")
    train = write_text(tmp_path / "train" / "text", EN_TRAIN + ["what - now"])
    test = write_text(tmp_path / "test" / "text", EN_TEST, prefix="tst")
    out = tmp_path / "dict"
    p = run_dict([train, test, out])
    assert p.returncode == 0, p.stderr
    assert "WARNING" in p.stderr and "SPN: -" in p.stderr
    lex = read_lexicon(out)
    words = {w for s in EN_TRAIN + EN_TEST + ["what - now"] for w in s.split()}
    assert set(lex) == words | {"!SIL"}
    assert lex["<unk>"] == ["SPN"] and lex["!SIL"] == ["SIL"] and lex["-"] == ["SPN"]
    assert lex["zebra"] and lex["hello"]
    assert (out / "silence_phones.txt").read_text() == "SIL\nSPN\n"
    assert (out / "optional_silence.txt").read_text() == "SIL\n"
    assert (out / "extra_questions.txt").exists()
    ok, phones = c_sorted_lines(out / "nonsilence_phones.txt")
    assert ok and set(phones) == {p for ph in lex.values() for p in ph} - {"SIL", "SPN"}
    assert c_sorted_lines(out / "lexicon.txt")[0]
    assert sorted(os.listdir(tmp_path)) == ["dict", "test", "train"]   # no temp dirs left


# ----------------------------------------------------------------------------- grapheme

def test_grapheme_phones():
    word = f"می{ZWNJ}خواهم"
    assert pd.grapheme_phones(word) == ["م", "ی", "خ", "و", "ا", "ه", "م"]
    assert pd.grapheme_phones("کتابِ") == ["ک", "ت", "ا", "ب"]                  # kasra dropped
    assert pd.grapheme_phones("كتاب") == pd.grapheme_phones("کتاب")            # Arabic kaf = Persian kaf
    assert pd.grapheme_phones("بيت") == pd.grapheme_phones("بیت")              # Arabic yeh = Farsi yeh
    assert pd.grapheme_phones("کـتاب") == ["ک", "ت", "ا", "ب"]                 # tatweel
    assert pd.grapheme_phones("Don't") == ["d", "o", "n", "t"]
    # a mark that composes with its letter (NFKC) makes one letter, whichever way it was typed
    assert pd.grapheme_phones("Café") == pd.grapheme_phones("Cafe\u0301") == ["c", "a", "f", "é"]
    assert pd.grapheme_phones("\u0627\u0653ب") == pd.grapheme_phones("آب") == ["آ", "ب"]
    assert pd.grapheme_phones("۲۰") == [] and pd.grapheme_phones("...") == []


def test_grapheme_dict_dir_persian(tmp_path):
    train = write_text(tmp_path / "train" / "text", FA_TRAIN)
    test = write_text(tmp_path / "test" / "text", FA_TEST)
    out = tmp_path / "dict"
    p = run_dict(["--method", "grapheme", train, test, out])
    assert p.returncode == 0, p.stderr
    lex = read_lexicon(out)
    word = f"می{ZWNJ}خواهم"
    assert word in lex and "میخواهم" not in lex                   # the word keeps its ZWNJ
    assert lex[word] == ["م", "ی", "خ", "و", "ا", "ه", "م"]
    assert "کتابِ" in lex and lex["کتابِ"] == lex["کتاب"]
    assert "دریا" in lex
    ok, phones = c_sorted_lines(out / "nonsilence_phones.txt")
    assert ok and ZWNJ not in "".join(phones) and "\u0650" not in "".join(phones)
    assert all(len(ph) == 1 for ph in phones)
    assert c_sorted_lines(out / "lexicon.txt")[0]


def test_lexicon_in_byte_order(tmp_path):
    text = write_text(tmp_path / "text", ["zebra apple Zulu Äpfel _under émile b2b", "apple ab a"])
    out = tmp_path / "dict"
    p = run_dict(["--method", "grapheme", text, out])
    assert p.returncode == 0, p.stderr
    words = [line.split()[0] for line in (out / "lexicon.txt").read_text(encoding="utf-8").splitlines()]
    assert words == ["!SIL", "<unk>", "Zulu", "_under", "a", "ab", "apple", "b2b", "zebra", "Äpfel", "émile"]
    assert read_lexicon(out)["b2b"] == ["b", "b"]


def test_oov_word_option(tmp_path):
    text = write_text(tmp_path / "text", ["hello <UNK> world <unk>"])
    p = run_dict(["--method", "grapheme", "--oov-word", "<UNK>", text, tmp_path / "dict"])
    assert p.returncode == 0, p.stderr
    lex = read_lexicon(tmp_path / "dict")
    assert lex["<UNK>"] == ["SPN"] and lex["<unk>"] == ["u", "n", "k"]


def test_rerun_replaces_the_whole_dict_dir(tmp_path):
    text = write_text(tmp_path / "text", ["one two"])
    out = tmp_path / "dict"
    assert run_dict(["--method", "grapheme", text, out]).returncode == 0
    (out / "lexiconp.txt").write_text("stale 1.0 x\n")            # what Kaldi's prepare_lang.sh leaves
    write_text(tmp_path / "text", ["three"])
    assert run_dict(["--method", "grapheme", text, out]).returncode == 0
    assert not (out / "lexiconp.txt").exists()
    assert set(read_lexicon(out)) == {"!SIL", "<unk>", "three"}


# ----------------------------------------------------------------------------- errors

def one_error_line(p, *needles):
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR (prepare_dict): "), p.stderr
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", ["missing", "empty", "blank_line", "no_utt_id", "no_words", "reserved",
                                  "no_letters", "nbsp"])
def test_bad_input(tmp_path, case):
    text = tmp_path / "text"
    good = "u1 hello world\n"
    content = {"empty": "", "blank_line": good + "\n" + good.replace("u1", "u2"),
               "no_utt_id": good + " hello again\n", "no_words": "u1\nu2 <unk>\n",
               "reserved": good + "u2 a <s> b\n", "no_letters": good + "u2 it costs 20 dollars\n",
               "nbsp": "u1 hello\u00a0world\n"}.get(case)
    if content is not None:
        text.write_text(content, encoding="utf-8")
    out = tmp_path / "dict"
    p = run_dict(["--method", "grapheme", text, out])
    line = one_error_line(p, text)
    assert {"missing": "not found", "empty": "empty", "blank_line": "line 2 has no utterance id",
            "no_utt_id": "line 2 has no utterance id", "no_words": "no words", "reserved": "reserved word <s>",
            "no_letters": "'20' on line 2", "nbsp": "U+00A0"}[case] in line
    assert not out.exists()


def test_espeak_errors(tmp_path):
    need_tools("espeak-ng")
    text = write_text(tmp_path / "text", ["hello"])
    one_error_line(run_dict(["--espeak-voice", "qqq", text, tmp_path / "d"]), "qqq")
    env = dict(step_env(), PATH=str(tmp_path / "empty"))                       # no espeak-ng on PATH
    p = subprocess.run([sys.executable, DICT_PY, text, str(tmp_path / "d")], env=env,
                       capture_output=True, text=True)
    one_error_line(p, "espeak-ng not found")
    assert not (tmp_path / "d").exists()


def test_will_not_replace_other_dirs(tmp_path):
    text = write_text(tmp_path / "text", ["hello"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("x\n")
    one_error_line(run_dict(["--method", "grapheme", text, tmp_path / "data"]), "without lexicon.txt")
    assert (tmp_path / "data" / "precious.txt").exists()


def test_make_lexicon_reserved_words():
    with pytest.raises(UnspeechError, match="reserved word #0"):
        pd.make_lexicon({"#0": ("t", 3)}, "grapheme")


# ----------------------------------------------------------------------------- prepare_lang.sh

PATH_SH = """export KALDI_ROOT=${KALDI_ROOT:?}
. $KALDI_ROOT/tools/config/common_path.sh
export PATH=$KALDI_ROOT/egs/wsj/s5/utils:$KALDI_ROOT/tools/openfst/bin:$PATH
export LC_ALL=C
# test hook: Kaldi's format_lm.sh sources this file too; make its arpa2fst fail
if [ -n "${TEST_FAIL_ARPA2FST:-}" ]; then arpa2fst() { echo "ERROR: arpa2fst made to fail" >&2; return 1; }; fi
"""


def make_recipe_dir(root, method):
    """A recipe-like dir (local/, steps_unspeech/ links, path.sh) with data/{train,test}/text."""
    root.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.join(REPO, "local"), root / "local")
    os.symlink(os.path.join(REPO, "steps_unspeech"), root / "steps_unspeech")
    (root / "path.sh").write_text(PATH_SH)
    train, test = (EN_TRAIN, EN_TEST) if method == "espeak" else (FA_TRAIN, FA_TEST)
    write_text(root / "data" / "train" / "text", train)
    write_text(root / "data" / "test" / "text", test, prefix="tst")
    return str(root)


def run_lang(cwd, env, *opts):
    return subprocess.run(["local/prepare_lang.sh", *opts, "data/train", "data/train data/test", "data/local",
                           "data/lang", "data/lang_test"], cwd=cwd, env=env, capture_output=True, text=True)


def arpa_unigrams(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        text = f.read()
    orders = [int(n) for n in re.findall(r"^ngram (\d+)=", text, re.M)]
    uni = text.split("\\1-grams:\n")[1].split("\n\n")[0]
    return orders, {line.split()[1] for line in uni.splitlines() if line.strip()}


@pytest.mark.parametrize("method", ["espeak", "grapheme"])
def test_prepare_lang_with_kaldi(tmp_path, kaldi_root, method):
    if method == "espeak":
        need_tools("espeak-ng")
    cwd = make_recipe_dir(tmp_path / "recipe", method)
    env = kaldi_env(kaldi_root)
    p = run_lang(cwd, env, "--lexicon-method", method, "--lm-order", "3")
    assert p.returncode == 0, p.stdout + p.stderr
    d = tmp_path / "recipe" / "data"
    assert (d / "lang_test" / "G.fst").stat().st_size > 0 and (d / "lang" / "L.fst").exists()
    assert os.path.realpath(tmp_path / "recipe" / "utils") == os.path.join(kaldi_root, "egs", "wsj", "s5", "utils")
    v = subprocess.run(["utils/validate_lang.pl", "data/lang_test"], cwd=cwd, env=env, capture_output=True, text=True)
    assert v.returncode == 0 and "SUCCESS [validating lang directory data/lang_test]" in v.stdout, v.stdout + v.stderr
    words = {line.split()[0] for line in (d / "lang_test" / "words.txt").read_text(encoding="utf-8").splitlines()}
    test_only = ["zebra", "hello"] if method == "espeak" else ["دریا", "آبی"]
    assert set(test_only) <= words                               # the lexicon covers the test text
    assert (f"می{ZWNJ}خواهم" in words) == (method == "grapheme")
    orders, unigrams = arpa_unigrams(d / "local" / "lm" / "lm.arpa.gz")
    assert len(orders) == 3
    assert not set(test_only) & unigrams                         # the LM is of the training text only
    assert ("nine" in unigrams) == (method == "espeak")
    assert not [x for x in os.listdir(d) if ".tmp" in x]
    # a rerun with the same inputs does nothing; new text redoes it
    p2 = run_lang(cwd, env, "--lexicon-method", method, "--lm-order", "3")
    assert p2.returncode == 0 and "up to date" in p2.stdout, p2.stdout + p2.stderr
    p3 = run_lang(cwd, env, "--lexicon-method", method, "--lm-order", "2")
    assert p3.returncode == 0 and "up to date" not in p3.stdout, p3.stdout + p3.stderr
    assert len(arpa_unigrams(d / "local" / "lm" / "lm.arpa.gz")[0]) == 2


def test_prepare_lang_failure_keeps_the_old_lang(tmp_path, kaldi_root):
    cwd = make_recipe_dir(tmp_path / "recipe", "grapheme")
    env = kaldi_env(kaldi_root)
    assert run_lang(cwd, env, "--lexicon-method", "grapheme").returncode == 0
    d = tmp_path / "recipe" / "data"
    old_words = (d / "lang_test" / "words.txt").read_text(encoding="utf-8")
    write_text(d / "train" / "text", FA_TRAIN + ["پرنده پرید"])
    env_fail = dict(env, TEST_FAIL_ARPA2FST="1")
    p = run_lang(cwd, env_fail, "--lexicon-method", "grapheme")
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()
    assert err[-1].startswith("ERROR (prepare_lang): utils/format_lm.sh failed (log: data/local/log/format_lm.log)")
    assert "arpa2fst made to fail" in err[-1]
    assert (d / "lang_test" / "words.txt").read_text(encoding="utf-8") == old_words   # old, complete
    assert (d / "lang_test" / "G.fst").exists() and (d / "lang" / "L.fst").exists()
    assert not [x for x in os.listdir(d) if ".tmp" in x]
    p = run_lang(cwd, env, "--lexicon-method", "grapheme")                # not "up to date": text is newer
    assert p.returncode == 0 and "up to date" not in p.stdout, p.stdout + p.stderr
    assert "پرنده" in (d / "lang_test" / "words.txt").read_text(encoding="utf-8")
    # a bad word stops it at the lexicon with prepare_dict's own one-line error
    write_text(d / "train" / "text", FA_TRAIN + ["۲۰ سال"])
    p = run_lang(cwd, env, "--lexicon-method", "grapheme")
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1].startswith("ERROR (prepare_dict): word '۲۰'")


def test_prepare_lang_usage_errors(tmp_path):
    cwd = make_recipe_dir(tmp_path / "recipe", "grapheme")
    env = step_env()
    env.pop("KALDI_ROOT", None)
    p = run_lang(cwd, env)
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith("ERROR (prepare_lang): KALDI_ROOT is not set")
    env["KALDI_ROOT"] = str(tmp_path)
    p = run_lang(cwd, env)
    assert p.returncode == 1 and "is not a compiled Kaldi" in p.stderr
    p = run_lang(cwd, env, "--lm-order", "8")
    assert p.returncode == 1 and "--lm-order must be 1 (word loop) or 2..7" in p.stderr
    fake = tmp_path / "kaldi"                                   # passes the KALDI_ROOT check, runs nothing
    for f in ("egs/wsj/s5/utils/prepare_lang.sh", "src/lmbin/arpa2fst"):
        (fake / f).parent.mkdir(parents=True, exist_ok=True)
        (fake / f).write_text("exit 1\n")
        (fake / f).chmod(0o755)
    env["KALDI_ROOT"] = str(fake)
    (tmp_path / "recipe" / "data" / "lang").mkdir()
    (tmp_path / "recipe" / "data" / "lang" / "precious.txt").write_text("x\n")
    p = run_lang(cwd, env)
    assert p.returncode == 1 and "not a lang dir?): data/lang" in p.stderr, p.stderr
    assert (tmp_path / "recipe" / "data" / "lang" / "precious.txt").exists()
    os.remove(tmp_path / "recipe" / "path.sh")
    p = run_lang(cwd, env)
    assert p.returncode == 1 and "no ./path.sh in" in p.stderr and "run from the recipe dir" in p.stderr
    assert not os.path.lexists(tmp_path / "recipe" / "utils")     # no links made outside a recipe dir
    p = subprocess.run(["local/prepare_lang.sh", "--help"], cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("Usage: local/prepare_lang.sh [options] <train-data-dir>")
    assert "--lexicon-method <m>  (espeak)" in p.stdout and "--lm-order <n>        (3)" in p.stdout
    p = subprocess.run([DICT_PY, "--help"], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and "--method {espeak,grapheme}" in p.stdout and "(default: espeak)" in p.stdout


def test_word_loop_lm_where_kneser_ney_cannot_discount(tmp_path, kaldi_root):
    """Digit strings whose every n-gram is frequent (FSDD): Kneser-Ney fails with one clear
    line; --lm-order 1 makes a uniform word loop that Kaldi's format_lm.sh takes."""
    need_tools("espeak-ng")
    cwd = make_recipe_dir(tmp_path / "recipe", "espeak")
    digits = "zero one two three four five six seven eight nine".split()
    lines = [" ".join(digits[i % 10:] + digits[:i % 10]) for i in range(60)]
    write_text(tmp_path / "recipe" / "data" / "train" / "text", lines)
    write_text(tmp_path / "recipe" / "data" / "test" / "text", lines[:3], prefix="tst")
    env = kaldi_env(kaldi_root)
    p = run_lang(cwd, env, "--lm-order", "3")
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("ERROR (prepare_lang): 3-gram Kneser-Ney LM failed"), p.stderr
    p = run_lang(cwd, env, "--lm-order", "1")
    assert p.returncode == 0, p.stdout + p.stderr
    orders, unigrams = arpa_unigrams(tmp_path / "recipe" / "data" / "local" / "lm" / "lm.arpa.gz")
    assert orders == [1] and unigrams == set(digits) | {"<s>", "</s>"}
    v = subprocess.run(["utils/validate_lang.pl", "data/lang_test"], cwd=cwd, env=env, capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr
