# Sourced by the scripts: makes .venv (or $MPCNET_VENV) and installs the locked dependencies
# (requirements.lock: every transitive dependency pinned with its sha256, --require-hashes), then
# the project itself with --no-deps and --no-build-isolation (so nothing unlocked is fetched).
# Reinstalls only when pyproject.toml or requirements.lock changed since the last install. Sets $PY.
VENV="${MPCNET_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "== creating $VENV"
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.mpcnet-installed"
want="$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "== installing locked dependencies (requirements.lock) into $VENV"
    rm -f "$stamp"
    "$PY" -m pip install -q --disable-pip-version-check --require-hashes --only-binary :all: -r requirements.lock
    # (setuptools' notes about editable installs are shown only if the install fails)
    if ! out="$("$PY" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . 2>&1)"; then
        echo "$out" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
export PY
