#!/usr/bin/env bash
# Build (or bring up to date) .venv-innvestigate/: Python 3.6 with tensorflow 1.12.0,
# keras 2.2.4 and innvestigate 1.0.8, the environment of the RV-failure TF1 step (rule
# innvestigate_rvfailure; the same pins as envs/innvestigate.yaml). Idempotent. Needs a
# Python 3.6: PYTHON36=/path/to/python3.6, else python3.6 on PATH, else pyenv's 3.6.x.
# Without one it says so and exits 0 unless REQUIRE=1 (the step then stops with this advice).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-innvestigate
pins=(tensorflow==1.12.0 keras==2.2.4 innvestigate==1.0.8 'h5py<3' 'numpy==1.16.*')
want=$(printf '%s\n' "${pins[@]}" | sha256sum | cut -d' ' -f1)
stamp=$venv/.echogen-install
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi

is36() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 6))' 2>/dev/null; }
python=${PYTHON36:-}
if [ -z "$python" ]; then
    candidates=(python3.6)
    if command -v pyenv >/dev/null; then
        for v in "$(pyenv root)"/versions/3.6.*/bin/python; do candidates+=("$v"); done
    fi
    for candidate in "${candidates[@]}"; do
        if is36 "$candidate"; then python=$candidate; break; fi
    done
fi
if [ -z "$python" ] || ! is36 "$python"; then
    echo "no Python 3.6 found: the RV-failure TF1 step (innvestigate) needs one. Fix: install" \
        "Python 3.6 (e.g. pyenv install 3.6.15) and rerun with PYTHON36=/path/to/python3.6," \
        "or run the workflow with --sdm conda (envs/innvestigate.yaml), or set" \
        "rvfailure.innvestigate.enabled: false." >&2
    [ "${REQUIRE:-0}" = 1 ] && exit 1
    exit 0
fi

rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pip==21.3.1
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
echo "$want" > "$stamp"
echo "innvestigate (TF1) environment ready in $venv/" >&2
