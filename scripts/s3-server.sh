#!/usr/bin/env bash
# The S3-compatible test server (s3s-fs): installed once, started on a free loopback port.
#
#   source scripts/s3-server.sh
#   s3_install            # cargo install s3s-fs 0.17.0 unless that exact version is present
#   s3_start DIR          # starts it over DIR, exports the CAIRN_TEST_S3_* and AWS_* variables
#   s3_stop               # stops the server s3_start started
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
