# Kaldi-style option parsing for our bash scripts; source it after defining defaults.
#
#   nj=4; cmd=run.pl                 # defaults: every variable is an option
#   help_message="Usage: $0 [options] <data-dir>"
#   . parse_options.sh || exit 1     # --nj 8 --cmd "queue.pl" --some-flag true
#
# "--foo-bar value" and "--foo-bar=value" set foo_bar, which must already exist.
# "--help" / "-h" prints $help_message and exits 0.
#
# Without pass-through (scripts that own all their options), unknown options are an
# error and "--config FILE" sources FILE (bash variable assignments) first.
#
# Pass-through (the wrappers of a Python step, which owns every option but the job
# options): declare the array `passthrough=()` and set `passthrough_help` to the Python
# step before sourcing. Options not defined here, and "--config FILE" (Kaldi's meaning:
# a file of --name=value lines, read by the Python step), are appended to "${passthrough[@]}"
# unchanged; "--help" prints $help_message, then the Python step's --help.

__pass=false
if declare -p passthrough 2>/dev/null | grep -q '^declare -a'; then __pass=true; fi
while true; do
  [ $# -eq 0 ] && break
  case "$1" in
    --help|-h)
      printf '%s\n' "${help_message:-No help for $0}"
      if $__pass && [ -n "${passthrough_help:-}" ]; then
        printf '\nOptions of %s (passed through; it owns their defaults and ranges):\n' "$(basename "$passthrough_help")"
        "$passthrough_help" --help
      fi
      exit 0 ;;
    --config)
      if $__pass; then
        [ $# -ge 2 ] || { echo "ERROR ($(basename "$0")): option $1 needs a value" >&2; exit 1; }
        passthrough+=("$1" "$2"); shift 2; continue
      fi
      [ -f "$2" ] || { echo "ERROR ($(basename "$0")): config file not found: $2" >&2; exit 1; }
      . "$2"; shift 2 ;;
    --*=*)
      __name=${1%%=*}; __name=${__name#--}; __name=${__name//-/_}; __value=${1#*=}
      if [ -z "${!__name+set}" ] || [ "$__name" = passthrough ]; then
        $__pass && { passthrough+=("$1"); shift; continue; }
        echo "ERROR ($(basename "$0")): unknown option: ${1%%=*}" >&2; exit 1
      fi
      printf -v "$__name" '%s' "$__value"; shift ;;
    --*)
      __name=${1#--}; __name=${__name//-/_}
      if [ -z "${!__name+set}" ] || [ "$__name" = passthrough ]; then
        $__pass || { echo "ERROR ($(basename "$0")): unknown option: $1" >&2; exit 1; }
        [ $# -ge 2 ] || { echo "ERROR ($(basename "$0")): option $1 needs a value" >&2; exit 1; }
        passthrough+=("$1" "$2"); shift 2; continue
      fi
      [ $# -ge 2 ] || { echo "ERROR ($(basename "$0")): option $1 needs a value" >&2; exit 1; }
      printf -v "$__name" '%s' "$2"; shift 2 ;;
    *) break ;;
  esac
done
unset __name __value __pass
true
