# Kaldi-style option parsing for our bash scripts; source it after defining defaults.
#
#   nj=4; cmd=run.pl                 # defaults: every variable is an option
#   help_message="Usage: $0 [options] <data-dir>"
#   . parse_options.sh || exit 1     # --nj 8 --cmd "queue.pl" --some-flag true
#
# "--foo-bar value" and "--foo-bar=value" set foo_bar, which must already exist
# (unknown options are an error). "--config FILE" sources FILE first.
# "--help" / "-h" prints $help_message and exits 0.

while true; do
  [ $# -eq 0 ] && break
  case "$1" in
    --help|-h)
      printf '%s\n' "${help_message:-No help for $0}"
      exit 0 ;;
    --config)
      [ -f "$2" ] || { echo "ERROR ($(basename "$0")): config file not found: $2" >&2; exit 1; }
      . "$2"; shift 2 ;;
    --*=*)
      __name=${1%%=*}; __name=${__name#--}; __name=${__name//-/_}; __value=${1#*=}
      if [ -z "${!__name+set}" ]; then
        echo "ERROR ($(basename "$0")): unknown option: ${1%%=*}" >&2; exit 1
      fi
      printf -v "$__name" '%s' "$__value"; shift ;;
    --*)
      __name=${1#--}; __name=${__name//-/_}
      if [ -z "${!__name+set}" ]; then
        echo "ERROR ($(basename "$0")): unknown option: $1" >&2; exit 1
      fi
      [ $# -ge 2 ] || { echo "ERROR ($(basename "$0")): option $1 needs a value" >&2; exit 1; }
      printf -v "$__name" '%s' "$2"; shift 2 ;;
    *) break ;;
  esac
done
unset __name __value
true
