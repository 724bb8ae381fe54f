#!/usr/bin/env bash
# Create (or bring up to date) the project's virtual environment in .venv/, and the TF1
# environment of the RV-failure innvestigate step in .venv-innvestigate/
# (envs/setup_innvestigate.sh). Idempotent: does nothing when both match their pins.
# Usage: bash envs/setup.sh        (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
    for candidate in python3.11 "$(command -v pyenv >/dev/null && pyenv root)/versions/3.11.7/bin/python"; do
        if [ -x "$(command -v "$candidate" 2>/dev/null || echo "$candidate")" ] \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            python=$candidate
            break
        fi
    done
fi
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || {
    echo "echogen needs Python 3.11 (torch 2.14.1 wheels); set PYTHON=/path/to/python3.11" >&2
    exit 1
}

stamp=.venv/.echogen-install
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    [ -x .venv/bin/python ] || "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[dev]'
    echo "$want" > "$stamp"
    echo "echogen environment ready in .venv/" >&2
fi
# The RV-failure TF1 step's own environment (.venv-innvestigate/, Python 3.6; idempotent).
# Its failure leaves .venv/ usable: the workflow then leaves the TF1 step out, saying why.
bash envs/setup_innvestigate.sh || echo "the TF1 environment (.venv-innvestigate/) was not" \
    "built; see the messages above (bash envs/setup_innvestigate.sh retries)" >&2
