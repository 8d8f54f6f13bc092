#!/usr/bin/env bash
# The S3-compatible test server (s3s-fs): installed once, started on a free loopback port.
#
#   source scripts/s3-server.sh
#   s3_install            # cargo install s3s-fs 0.17.0 unless that exact version is present
#   s3_start DIR          # starts it over DIR, exports the CAIRN_TEST_S3_* and AWS_* variables
#   s3_stop               # stops the server s3_start started
#
#   moto_install          # a venv with moto[server] 5.2.5, every package pinned
#   moto_start            # starts moto_server, exports CAIRN_TEST_MOTO_ENDPOINT
#   moto_stop             # stops the server moto_start started
#
# s3s-fs serves a directory: each top-level folder is a bucket. It verifies SigV4
# signatures, so both keys must be given. Tests that kill and restart a server start
# their own instance from $CAIRN_TEST_S3FS_BIN instead of touching the shared one.

S3FS_VERSION=0.17.0

s3_install() {
    local bin="${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"
    if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -qF "$S3FS_VERSION"; then
        export CAIRN_TEST_S3FS_BIN="$bin"
        return 0
    fi
    echo "== installing s3s-fs $S3FS_VERSION (once per machine, a few minutes)"
    # 0.17.0 declares rust-version 1.96 but builds and runs on 1.95.
    cargo install "s3s-fs@$S3FS_VERSION" --features binary --locked --ignore-rust-version
    "$bin" --version | grep -qF "$S3FS_VERSION"
    export CAIRN_TEST_S3FS_BIN="$bin"
}

# A port nothing listens on right now (the kernel picks it).
s3_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

s3_start() {
    local dir="$1"
    mkdir -p "$dir/cairn-test"
    export AWS_ACCESS_KEY_ID=cairn-test-access
    export AWS_SECRET_ACCESS_KEY=cairn-test-secret-key
    export AWS_REGION=us-east-1
    local port
    port="$(s3_free_port)"
    "$CAIRN_TEST_S3FS_BIN" --host 127.0.0.1 --port "$port" \
        --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$dir" \
        >"$dir.log" 2>&1 &
    S3_SERVER_PID=$!
    export CAIRN_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
    export CAIRN_TEST_S3_BUCKET=cairn-test
    export CAIRN_TEST_S3_DIR="$dir"
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "== s3s-fs listening on $CAIRN_TEST_S3_ENDPOINT (pid $S3_SERVER_PID)"
            return 0
        fi
        if ! kill -0 "$S3_SERVER_PID" 2>/dev/null; then
            echo "s3s-fs exited at start; its log:" >&2
            cat "$dir.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "s3s-fs did not listen on port $port within 10 s" >&2
    return 1
}

s3_stop() {
    if [ -n "${S3_SERVER_PID:-}" ]; then
        kill "$S3_SERVER_PID" 2>/dev/null || true
        wait "$S3_SERVER_PID" 2>/dev/null || true
        S3_SERVER_PID=
    fi
}

# ---------------------------------------------------------------------------------
# moto: a second, independent S3 implementation (Python), so that tests do not only
# ever see s3s-fs's reading of the protocol. It keeps everything in memory, accepts
# any keys without checking signatures, and creates buckets on request.

MOTO_VERSION=5.2.5
MOTO_REQUIREMENTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/moto-requirements.txt"

moto_venv_version() {
    "$1/bin/python" -c 'from importlib.metadata import version; print(version("moto"))' \
        2>/dev/null
}

moto_install() {
    local venv="${CAIRN_TEST_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/cairn-test/moto-$MOTO_VERSION}"
    # The marker is written last, so a venv left by an interrupted install is redone.
    # (importlib.metadata, not `import moto`: same answer, a fifth of the time.)
    if [ -f "$venv/.cairn-moto-installed" ] && [ "$(moto_venv_version "$venv")" = "$MOTO_VERSION" ]; then
        export CAIRN_TEST_MOTO_BIN="$venv/bin/moto_server"
        export CAIRN_TEST_PYTHON="$venv/bin/python"
        return 0
    fi
    # --clear empties the folder: only ever do that to a venv (or an empty folder),
    # never to a folder that CAIRN_TEST_VENV happens to name by mistake.
    if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ] && [ -n "$(ls -A "$venv" 2>/dev/null)" ]; then
        echo "$venv exists and is not a virtualenv; not touching it" >&2
        return 1
    fi
    echo "== installing moto $MOTO_VERSION into $venv (once per machine, about a minute)"
    python3 -m venv --clear "$venv" || return 1
    # pip byte-compiles as it installs (kept on purpose): where PYTHONDONTWRITEBYTECODE
    # is set, as on these machines, nothing else ever would, and every moto_server
    # start would take 4 s instead of 1.5 s.
    # --no-deps: the requirements file lists every package, so pip must not resolve
    # (and silently pick newer versions of) anything else; pip check then proves the
    # pinned set is complete and consistent.
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install \
        --quiet --no-input --no-deps -r "$MOTO_REQUIREMENTS" || return 1
    local problems
    if ! problems="$("$venv/bin/python" -m pip check)"; then
        printf '%s\n' "$problems" >&2
        return 1
    fi
    [ "$(moto_venv_version "$venv")" = "$MOTO_VERSION" ] || return 1
    touch "$venv/.cairn-moto-installed"
    export CAIRN_TEST_MOTO_BIN="$venv/bin/moto_server"
    export CAIRN_TEST_PYTHON="$venv/bin/python"
}

# The first line of the answer to a plain HTTP request, or nothing (pure bash, so the
# wait loop below costs no process per try). A subshell, so fd 3 never leaks.
moto_http_status() (
    port="$1" method="$2" path="$3"
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf '%s %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' \
        "$method" "$path" "$port" >&3
    read -r -t 2 line <&3 || exit 1
    printf '%s\n' "${line%$'\r'}"
)

# moto_start [LOGFILE]: LOGFILE defaults to a new file under ${TMPDIR:-/tmp}.
moto_start() {
    local log="${1:-}"
    if [ -z "$log" ]; then
        log="$(mktemp "${TMPDIR:-/tmp}/cairn-moto.XXXXXX.log")" || return 1
    fi
    # moto ignores the keys, but the AWS SDK insists on some; keep any already set
    # (s3_start's), since they are just as good here.
    export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-cairn-test-access}"
    export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-cairn-test-secret-key}"
    export AWS_REGION="${AWS_REGION:-us-east-1}"
    local port
    port="$(s3_free_port)"
    "$CAIRN_TEST_MOTO_BIN" --host 127.0.0.1 --port "$port" >"$log" 2>&1 &
    MOTO_SERVER_PID=$!
    export MOTO_SERVER_LOG="$log"
    export CAIRN_TEST_MOTO_ENDPOINT="http://127.0.0.1:$port"
    export CAIRN_TEST_MOTO_BUCKET=cairn-test
    # A deadline, not a count of tries: one try can itself wait up to 2 s.
    local deadline=$((SECONDS + 20))
    while [ "$SECONDS" -lt "$deadline" ]; do
        # Listening is not enough: moto binds before its app has loaded, so wait for a
        # real HTTP answer (GET / is ListBuckets).
        if moto_http_status "$port" GET / 2>/dev/null | grep -q '^HTTP/1\.[01] 200'; then
            # The bucket s3_start's folder provides, so both servers start alike.
            if ! moto_http_status "$port" PUT "/$CAIRN_TEST_MOTO_BUCKET" \
                | grep -q '^HTTP/1\.[01] 200'; then
                echo "moto did not create bucket $CAIRN_TEST_MOTO_BUCKET; its log:" >&2
                cat "$log" >&2
                moto_stop
                return 1
            fi
            echo "== moto $MOTO_VERSION listening on $CAIRN_TEST_MOTO_ENDPOINT (pid $MOTO_SERVER_PID)"
            return 0
        fi
        if ! kill -0 "$MOTO_SERVER_PID" 2>/dev/null; then
            echo "moto_server exited at start; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "moto_server did not answer on port $port within 20 s; its log:" >&2
    cat "$log" >&2
    moto_stop
    return 1
}

moto_stop() {
    if [ -n "${MOTO_SERVER_PID:-}" ]; then
        kill "$MOTO_SERVER_PID" 2>/dev/null || true
        wait "$MOTO_SERVER_PID" 2>/dev/null || true
        MOTO_SERVER_PID=
    fi
}
