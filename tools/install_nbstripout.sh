#!/bin/sh
# Install the nbstripout git filter in a git checkout (what `make env` runs): notebooks are
# staged and committed without outputs, execution counts or widget state, while the working
# copy keeps them. .gitattributes (committed) routes *.ipynb through the filter named
# "nbstripout"; the filter's command lives in .git/config, which this script writes.
# Without it, git ignores those attributes. Harmless outside a git checkout (a tarball).
#
#   tools/install_nbstripout.sh [PYTHON] [REPO]     # defaults: python3, the current folder
#
# PYTHON must have nbstripout installed (requirements.txt pins it). Cell ids are kept
# (--keep-id) so that a notebook without outputs is staged byte for byte as it is.
set -eu
py=${1:-python3}
repo=${2:-.}
cd "$repo"
if [ ! -e .git ]; then
    echo "nbstripout filter not installed: $(pwd) is not a git checkout (no .git)"
    exit 0
fi
if ! command -v git >/dev/null 2>&1; then
    echo "nbstripout filter not installed: git is not on PATH"
    exit 0
fi
case "$py" in
    */*) py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")" ;;
    *) py=$(command -v "$py") ;;
esac
if ! "$py" -m nbstripout --version >/dev/null 2>&1; then
    echo "nbstripout filter not installed: $py has no nbstripout (pip install nbstripout)" >&2
    exit 0
fi
clean="\"$py\" -m nbstripout --keep-id"
if [ "$(git config --local --get filter.nbstripout.clean || true)" = "$clean" ] &&
   [ "$(git config --local --get filter.nbstripout.required || true)" = "true" ]; then
    exit 0                                   # already installed
fi
if ! { git config --local filter.nbstripout.clean "$clean" &&
        git config --local filter.nbstripout.smudge cat &&
        git config --local filter.nbstripout.required true &&
        git config --local diff.ipynb.textconv "$clean -t"; }; then
    echo "nbstripout filter not installed: git config failed in $(pwd)" >&2
    exit 0
fi
echo "nbstripout filter installed in $(pwd)/.git/config: notebooks are committed without outputs"
