#!/usr/bin/env bash
# Binder runs what CI tests (issue 16): build a fresh virtual environment exactly as Binder does,
# from binder/requirements.txt and binder/postBuild, then execute notebook 01 and the dashboard in it.
#
# Binder pins the PyTorch CPU build through the PyTorch wheel index; that index is not reachable
# here, so its line is dropped and the torch pin swapped for the same torch==2.13.0 (CPU) CI tests,
# which pip finds on this machine. Everything else is installed as Binder would, from the file.
# pip's cache is reused (no --no-cache-dir), so a second run takes well under a minute.
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

grep -q -- '--extra-index-url https://download.pytorch.org/whl/cpu' binder/requirements.txt \
    || { echo "binder/requirements.txt no longer names the PyTorch CPU index; update tools/check_binder.sh" >&2; exit 1; }
grep -q '^torch==2\.13\.0' binder/requirements.txt \
    || { echo "binder/requirements.txt must pin the torch CI tests (torch==2.13.0)" >&2; exit 1; }
sed -e '/^--extra-index-url/d' -e 's/^torch==.*/torch==2.13.0/' binder/requirements.txt > "$work/requirements.txt"

python3 -m venv "$work/venv"
# a clean environment: nothing of the caller's virtualenv or PYTHONPATH leaks in
env -u PYTHONPATH -u VIRTUAL_ENV PATH="$work/venv/bin:$PATH" bash -euo pipefail -c '
    python -m pip install --quiet --upgrade pip >"$1/pip.log" 2>&1 || { cat "$1/pip.log" >&2; exit 1; }
    python -m pip install --quiet -r "$1/requirements.txt" >"$1/pip.log" 2>&1 || { cat "$1/pip.log" >&2; exit 1; }
    bash binder/postBuild >"$1/postBuild.log" 2>&1 || { cat "$1/postBuild.log" >&2; exit 1; }
    python -c "import lrp_widgets, torch, sys; print(\"binder environment: Python\", sys.version.split()[0], \"torch\", torch.__version__, \"lrp_widgets from\", lrp_widgets.__file__)"
    for notebook in notebooks/01_lrp_basics.ipynb notebooks/dashboard.ipynb; do
        start=$SECONDS
        jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=600 \
            --output-dir "$1/executed" "$notebook" >/dev/null 2>"$1/nbconvert.log" \
            || { cat "$1/nbconvert.log" >&2; echo "binder: $notebook FAILED" >&2; exit 1; }
        echo "binder: $notebook ran without errors ($((SECONDS - start)) s)"
    done
' check "$work"
