#!/usr/bin/env bash
# Put `arbiter` on PATH as a link to a checkout's venv, without taking it from another one.
#   bash deploy/path-link.sh TARGET LINK     (bootstrap: .venv/bin/arbiter /usr/local/bin/arbiter)
# The link is made where LINK is absent, and moved only where it is a link that points
# nowhere any more (its checkout was deleted) or into this same checkout. A link into
# another checkout whose venv is still there is left alone, and this says so: a
# throw-away clone (a CI run, a test before a commit) must not leave `arbiter` pointing
# into a directory that is about to be deleted. A file that is not a link is never touched.
set -euo pipefail
target=$1 link=$2
[[ -x $target ]] || { echo "path-link: $target is not executable" >&2; exit 1; }
if [[ -e $link && ! -L $link ]]; then
  echo "path-link: $link is a file, not a link: left alone (run $target directly)"
  exit 0
fi
if [[ -L $link ]]; then
  now=$(readlink "$link")
  if [[ $now == "$target" ]]; then
    echo "path-link: $link -> $target"
    exit 0
  fi
  if [[ -e $now ]]; then  # a live venv of another checkout
    echo "path-link: $link points to $now (another checkout's venv, still there): left alone; this checkout's is $target"
    exit 0
  fi
  echo "path-link: $link pointed to $now, which is gone: moved to $target"
fi
mkdir -p "$(dirname "$link")"
ln -sfn "$target" "$link"
echo "path-link: $link -> $target"
