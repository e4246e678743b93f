# Sourced by scripts/test (and run by tests/integration/test_node_example.py): makes sure Node.js
# 20+ and npm exist and that examples/node has exactly the packages of its package-lock.json.
# `npm ci` runs only when the lock file changed since the last install (a stamp in node_modules
# holds its SHA-256); npm's download cache is .cache/npm (git-ignored), so a re-install after
# a lock change needs the registry only for new packages.
_mpcnet_node_example() {
    local dir="$PWD/examples/node"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "== installing nodejs and npm (apt-get)"
            apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm >/dev/null || return 1
        else
            echo "node/npm missing: install Node.js 20+ and npm (the Node example test needs them)" >&2
            return 1
        fi
    fi
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    if [ "$major" -lt 20 ]; then
        echo "node $(node --version) is too old: the Node example needs Node.js 20+" >&2
        return 1
    fi
    local want cache="$PWD/.cache/npm" stamp="$dir/node_modules/.mpcnet-lock-sha256"
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    mkdir -p "$cache"
    (
        flock 9  # parallel test workers: one installs, the others wait and find the stamp
        if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
            echo "== installing the Node example's packages (npm ci)"
            cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline --cache "$cache" >/dev/null || exit 1
            echo "$want" > "$stamp"
        fi
    ) 9>"$cache/../node-example.lock"
}
_mpcnet_node_example
