# Source from a step script to hold an exclusive lock on its output directory
# for the rest of the script (released on exit, even on kill -9):
#
#   . "$(dirname "$0")/lock_dir.sh" "$dir"
#
# A second run of a step into the same directory stops at once with
# "ERROR (<script>): <dir> is in use by another run (...)". Same lock file
# (<dir>/.lock, flock) as utils_py.fileio.dir_lock. Sets an EXIT trap (empties the
# lock file); a script with its own EXIT trap must empty <dir>/.lock there itself.
__lockdir=$1
mkdir -p "$__lockdir" 2>/dev/null || { echo "ERROR ($(basename "$0")): cannot create directory: $__lockdir" >&2; exit 1; }
{ exec {__lockfd}<>"$__lockdir/.lock"; } 2>/dev/null ||
  { echo "ERROR ($(basename "$0")): cannot create the lock file: $__lockdir/.lock" >&2; exit 1; }
if ! flock -n "$__lockfd"; then
  __holder=$(head -n1 "$__lockdir/.lock" 2>/dev/null)
  echo "ERROR ($(basename "$0")): $__lockdir is in use by another run (${__holder:-another process}); wait for it or stop it, then rerun" >&2
  exit 1
fi
printf '%s, pid %s\n' "$(basename "$0")" "$$" > "$__lockdir/.lock"
# Emptied again at exit: a finished run leaves the directory byte-identical to a rerun's.
trap ": > $(printf '%q' "$(cd "$__lockdir" && pwd)/.lock")" EXIT
unset __lockdir
