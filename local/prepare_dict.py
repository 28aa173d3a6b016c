#!/usr/bin/env python3
"""Make a Kaldi dict dir (lexicon.txt and the phone lists) for every word of Kaldi text files.

Called by local/prepare_lang.sh; its output is what Kaldi's utils/prepare_lang.sh reads.
"""
import concurrent.futures
import os
import re
import subprocess
import unicodedata

from utils_py.cli import parse_args, step_parser
from utils_py.kaldi.datadir import c_sorted
from utils_py.fileio import building_dir
from utils_py.log import UnspeechError, get_logger, run_step

SIL, SPN = "SIL", "SPN"
SIL_WORD = "!SIL"
RESERVED_WORDS = ("<s>", "</s>", "<eps>", "#0")  # Kaldi's lang tools refuse them as words
DICT_FILES = ("silence_phones.txt", "optional_silence.txt", "nonsilence_phones.txt",
              "extra_questions.txt", "lexicon.txt")
ESPEAK_BATCH = 1000  # words per espeak-ng call

EPILOG = f"""Methods:
  espeak    phonemes from espeak-ng (IPA, one phone per espeak phoneme, stress and
            syllable marks dropped; length marks stay on their vowel: 'iː'). Many words
            go to one espeak-ng process (one word a line), several processes at a time.
            A word espeak-ng gives no phonemes for (punctuation only, e.g. '-') is
            pronounced {SPN} like the OOV word, with a WARNING naming such words.
  grapheme  one phone per letter (Unicode category L*, NFKC, lower case), for languages
            without a lexicon (e.g. Persian). A letter with a mark that composes with
            it is one letter ('é', 'آ', typed either way). Other combining marks
            (harakat such as kasra, shadda) and
            format characters (ZWNJ U+200C, ZWJ U+200D), tatweel, digits and punctuation
            make no phone; they stay in the word. Arabic kaf and yeh (U+0643, U+064A)
            are the phones of Persian kaf and yeh (U+06A9, U+06CC). A word with no
            letter is an error.
Writes <dict-dir>/{{lexicon.txt,silence_phones.txt,optional_silence.txt,
nonsilence_phones.txt,extra_questions.txt}}: lexicon.txt has '{SIL_WORD} {SIL}' and
'<oov-word> {SPN}'; silence phones {SIL} {SPN}; extra_questions.txt is empty. Everything
sorted in LC_ALL=C (byte) order. The dir is built under a temp name and replaces
<dict-dir> as a whole (also dropping the lexiconp.txt that Kaldi's prepare_lang.sh
leaves there), so a dict dir is complete or absent.
Text files: Kaldi 'text' (<utt-id> <word> <word> ...; words split at spaces and tabs).
Example (from the recipe dir):
  local/prepare_dict.py --method espeak data/train/text data/test/text data/local/dict"""


# ----------------------------------------------------------------------------- text

_SPLIT = re.compile(r"[ \t\r\n\f\v]+")


def read_words(paths):
    """``{word: (file, line number)}`` of the first occurrence of each word of Kaldi text files.

    Raises UnspeechError on a missing or empty file, a line without an utterance id
    (blank, or starting with whitespace) and words with non-ASCII whitespace inside.
    """
    words = {}
    for path in paths:
        if not os.path.isfile(path):
            raise UnspeechError(f"text file not found: {path}")
        n_lines = 0
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    line = line.rstrip("\r\n")
                    if not line.strip() or line[0] in " \t":
                        raise UnspeechError(f"line {n} has no utterance id: {path}")
                    n_lines += 1
                    for w in _SPLIT.split(line.strip())[1:]:
                        if w not in words:
                            bad = next((c for c in w if c.isspace()), None)
                            if bad is not None:
                                raise UnspeechError(
                                    f"word {w!r} on line {n} holds whitespace U+{ord(bad):04X} "
                                    f"(Kaldi splits words at spaces and tabs only): {path}")
                            words[w] = (path, n)
        except UnicodeDecodeError as e:
            raise UnspeechError(f"not UTF-8 text (byte {e.start}): {path}") from None
        if n_lines == 0:
            raise UnspeechError(f"text file is empty: {path}")
    return words


# ----------------------------------------------------------------------------- espeak

_STRIP = set("ˈˌ.|‖‿-'%=,")        # stress, syllable and pause marks; no phone of their own
_LENGTH = set("ːˑ")                 # a lone length mark belongs to the phone before it
_LANG_SWITCH = re.compile(r"\([a-z]{2,3}(?:-[a-z0-9]+)*\)")   # '(fr)' ... '(en)' around borrowed words


def espeak_line_to_phones(line):
    """Phones of one line of ``espeak-ng -q --ipa --sep=_`` output."""
    phones = []
    for tok in re.split(r"[\s_]+", _LANG_SWITCH.sub(" ", line)):
        tok = unicodedata.normalize("NFC", "".join(c for c in tok if c not in _STRIP and c != "#"))
        if not tok:
            continue
        if all(c in _LENGTH for c in tok):
            if phones:
                phones[-1] += tok
            continue
        phones.append(tok)
    return phones


def _espeak(lines, voice):
    """Output lines of one espeak-ng call on ``lines`` (one input line each)."""
    try:
        p = subprocess.run(["espeak-ng", "-q", "--ipa", "--sep=_", "-v", voice],
                           input="".join(w + "\n" for w in lines), capture_output=True,
                           encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise UnspeechError("espeak-ng not found (apt-get install espeak-ng), "
                            "or use --method grapheme") from None
    if p.returncode != 0:
        msg = " ".join(p.stderr.split()) or f"exit code {p.returncode}"
        raise UnspeechError(f"espeak-ng -v {voice} failed: {msg}")
    out = p.stdout.split("\n")
    if out and out[-1] == "":
        out.pop()
    return out


def _espeak_aligned(words, voice):
    """One phone list per word. espeak-ng writes one line per input line, except that
    punctuation inside a word can split it ('hi...there'): a batch whose line count
    does not match is halved until each word is alone; a lone word's lines are joined."""
    out = _espeak(words, voice)
    if len(out) == len(words):
        return [espeak_line_to_phones(line) for line in out]
    if len(words) == 1:
        return [espeak_line_to_phones(" ".join(out))]
    half = len(words) // 2
    return _espeak_aligned(words[:half], voice) + _espeak_aligned(words[half:], voice)


def espeak_prons(words, voice, jobs=None, batch=ESPEAK_BATCH):
    """``{word: [phones]}`` from espeak-ng; a word without phonemes gets ``[]``."""
    words = list(words)
    batches = [words[i:i + batch] for i in range(0, len(words), batch)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(batches) or 1))
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        results = list(ex.map(lambda b: _espeak_aligned(b, voice), batches))
    return {w: ph for b, res in zip(batches, results) for w, ph in zip(b, res)}


# ----------------------------------------------------------------------------- grapheme

_DROP = {"\u0640"}  # ARABIC TATWEEL: stretches a letter, is no sound of its own
# One letter, two code points: Persian text mixes the Arabic forms in (Common Voice fa does).
_FOLD = {"\u0643": "\u06a9",   # ARABIC LETTER KAF -> KEHEH (Persian kaf)
         "\u064a": "\u06cc"}   # ARABIC LETTER YEH -> FARSI YEH


def grapheme_phones(word):
    """One phone per letter of ``word`` (NFKC, lower case); marks, ZWNJ/ZWJ, digits and
    punctuation make none."""
    phones = []
    for ch in unicodedata.normalize("NFKC", word):
        if ch in _DROP or not unicodedata.category(ch).startswith("L"):
            continue   # Mn/Mc/Me combining marks, Cf (ZWNJ, ZWJ, RLM, ...), N*, P*, S*
        for c in unicodedata.normalize("NFC", ch.lower()):   # 'İ'.lower() is 'i' + a combining dot
            if unicodedata.category(c).startswith("L"):
                phones.append(_FOLD.get(c, c))
    return phones


# ----------------------------------------------------------------------------- dict dir

def check_phone(phone):
    """Kaldi's rules for a phone symbol (utils/validate_dict_dir.pl)."""
    if (not phone or phone.startswith("#") or re.search(r"_[BESI]$", phone) or phone == "<eps>"
            or any(c.isspace() for c in phone) or phone in (SIL, SPN)):
        raise UnspeechError(f"internal: phone {phone!r} is not a valid Kaldi phone symbol")
    return phone


def make_lexicon(words, method, voice="en-us", oov_word="<unk>", log=None, jobs=None):
    """``{word: [phones]}`` for ``words`` (``{word: (file, line)}``), with the OOV word and !SIL.
    Returns (lexicon, words pronounced SPN for lack of phonemes)."""
    for w, path in words.items():
        if w in RESERVED_WORDS:
            raise UnspeechError(f"reserved word {w} on line {path[1]} (Kaldi cannot have it in a lexicon): {path[0]}")
    todo = [w for w in words if w not in (oov_word, SIL_WORD)]
    no_phones = []
    if method == "espeak":
        prons = espeak_prons(todo, voice, jobs=jobs)
        for w in todo:
            if not prons[w]:
                no_phones.append(w)
                prons[w] = [SPN]
        if no_phones and log:
            shown = " ".join(c_sorted(no_phones)[:10])
            log.warning(f"{len(no_phones)} word(s) without espeak-ng phonemes are pronounced {SPN}: "
                        f"{shown}{' ...' if len(no_phones) > 10 else ''}")
    elif method == "grapheme":
        prons = {}
        for w in todo:
            ph = grapheme_phones(w)
            if not ph:
                raise UnspeechError(f"word {w!r} on line {words[w][1]} has no letter to make a phone of "
                                    f"(grapheme lexicon; normalise numbers and punctuation in the text): "
                                    f"{words[w][0]}")
            prons[w] = ph
    else:
        raise UnspeechError(f"unknown --method {method} (espeak or grapheme)")
    for w in todo:
        if prons[w] != [SPN]:
            for p in prons[w]:
                check_phone(p)
    prons[oov_word] = [SPN]
    prons[SIL_WORD] = [SIL]
    return prons, no_phones


def dict_files(lexicon):
    """``{file name: text}`` of the dict dir of ``lexicon``."""
    phones = c_sorted({p for ph in lexicon.values() for p in ph} - {SIL, SPN})
    if not phones:
        raise UnspeechError("no non-silence phones: the lexicon has no real word")
    lex_lines = c_sorted(f"{w} {' '.join(ph)}" for w, ph in lexicon.items())
    lines = lambda xs: "".join(x + "\n" for x in xs)  # noqa: E731
    return {
        "silence_phones.txt": lines([SIL, SPN]),
        "optional_silence.txt": lines([SIL]),
        "nonsilence_phones.txt": lines(phones),
        "extra_questions.txt": "",
        "lexicon.txt": lines(lex_lines),
    }


def write_dict_dir(dict_dir, files):
    """Build the dict dir under a temp name, then let it replace ``dict_dir`` as a whole.
    An existing ``dict_dir`` must look like a dict dir (has lexicon.txt) or be empty."""
    with building_dir(dict_dir, marker="lexicon.txt") as tmp:
        for name in DICT_FILES:
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(files[name])
                f.flush()
                os.fsync(f.fileno())


def main(argv=None):
    p = step_parser(__doc__.strip().splitlines()[0], EPILOG)
    p.add_argument("--method", default="espeak", choices=("espeak", "grapheme"),
                   help="where pronunciations come from")
    p.add_argument("--espeak-voice", default="en-us", help="espeak-ng voice (language), e.g. en-us, en-gb, fa, de")
    p.add_argument("--oov-word", default="<unk>", help=f"the OOV word, pronounced {SPN}")
    p.add_argument("--espeak-jobs", type=int, default=0, help="espeak-ng processes at a time (0: one per CPU)")
    p.add_argument("texts", nargs="+", metavar="TEXT", help="Kaldi text files (e.g. data/train/text data/test/text)")
    p.add_argument("dict_dir", metavar="DICT_DIR", help="output dict dir, e.g. data/local/dict")
    args = parse_args(p, argv)
    log = get_logger("prepare_dict")
    oov = args.oov_word
    if not oov or any(c.isspace() for c in oov) or oov in RESERVED_WORDS or oov == SIL_WORD:
        raise UnspeechError(f"--oov-word must be one word other than {' '.join(RESERVED_WORDS)} {SIL_WORD}, "
                            f"got {oov!r}")
    words = read_words(args.texts)
    if not [w for w in words if w not in (oov, SIL_WORD)]:
        raise UnspeechError(f"no words in the text files (only utterance ids or {oov}): {' '.join(args.texts)}")
    lexicon, _ = make_lexicon(words, args.method, voice=args.espeak_voice, oov_word=oov, log=log,
                              jobs=args.espeak_jobs or None)
    files = dict_files(lexicon)
    write_dict_dir(args.dict_dir, files)
    log.info(f"wrote {args.dict_dir}: {len(lexicon)} words ({args.method}"
             f"{' ' + args.espeak_voice if args.method == 'espeak' else ''}), "
             f"{files['nonsilence_phones.txt'].count(chr(10))} non-silence phones")


if __name__ == "__main__":
    run_step("prepare_dict", main)
