#!/usr/bin/env python3
"""An HTTP proxy in front of a test S3 server that behaves like real S3 stores do.

    python3 scripts/s3-quirk-proxy.py --port PORT --upstream http://127.0.0.1:UPSTREAM \
        --profile P1[,P2...] [--log FILE] [--upstream-timeout SECONDS]

The test servers (s3s-fs, moto) implement the AWS reading of S3. Stores that people
actually back up to differ from it, and cairn has to cope; this proxy lets the test
suite meet those differences without the stores themselves. Profiles, combinable:

  passthrough         no change.
  no-conditional      If-None-Match on any request -> 501 NotImplemented, not forwarded
                      (Backblaze B2).
  ignore-conditional  If-None-Match is dropped before forwarding, so a second
                      "create only" PUT silently replaces the object (GCS XML API, Garage).
  no-checksums        x-amz-checksum-*, x-amz-sdk-checksum-algorithm, x-amz-trailer,
                      Content-Encoding: aws-chunked or x-amz-content-sha256: STREAMING...
                      -> 501 NotImplemented; Content-MD5 is fine (Cloudflare R2,
                      older MinIO, Ceph). That includes x-amz-checksum-mode, which
                      AWS SDKs now put on every GET/HEAD unless told to validate
                      response checksums only "when required".
  hung                every request is read and never answered; the connection stays
                      open until the client gives up or the proxy exits.
  hung-after=N        the first N requests (counted over all connections) are answered,
                      every later one hangs as above.

Once the socket listens, exactly one line "listening on PORT" goes to stdout (so
--port 0 can be used and the port read back). --log FILE appends one JSON object
per request: method, path and query (raw, still percent-encoded), headers (names
lower-cased, values as the client sent them, repeats joined with ", "), status (null
when hung or when the client went away mid-body) and body_len (the de-chunked body).

Standard library only, so that it runs with whatever python3 is on the machine.
"""

import argparse
import http.client
import http.server
import json
import signal
import socket
import sys
import threading
import urllib.parse

# RFC 9110 section 7.6.1: meaningful for one hop only. The proxy re-frames every body
# itself (always with Content-Length), so none of these may be passed on.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

PROFILES = {"passthrough", "no-conditional", "ignore-conditional", "no-checksums", "hung"}

NOT_IMPLEMENTED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code>'
    "<Message>A header you provided implies functionality that is not implemented"
    "</Message><Header>{}</Header></Error>"
)


class Config:
    def __init__(self, profiles, hung_after, upstream, upstream_timeout, log_file):
        self.profiles = profiles
        # None: never hang; 0: hang from the first request on.
        self.hung_after = hung_after
        self.upstream = upstream
        self.upstream_timeout = upstream_timeout
        self.log_file = log_file
        self.log_lock = threading.Lock()
        self.count_lock = threading.Lock()
        self.requests_seen = 0

    def next_request_hangs(self):
        with self.count_lock:
            self.requests_seen += 1
            return self.hung_after is not None and self.requests_seen > self.hung_after

    def log(self, record):
        if self.log_file is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        # One write and a flush per line under a lock: tests read the file while the
        # proxy runs, and lines from parallel requests must never interleave.
        with self.log_lock:
            self.log_file.write(line)
            self.log_file.flush()


def parse_profiles(text):
    profiles, hung_after = set(), None
    for item in text.split(","):
        item = item.strip()
        if item.startswith("hung-after="):
            try:
                hung_after = int(item.split("=", 1)[1])
            except ValueError:
                raise argparse.ArgumentTypeError(f"hung-after needs a number: {item!r}") from None
            if hung_after < 0:
                raise argparse.ArgumentTypeError(f"hung-after needs N >= 0: {item!r}")
        elif item in PROFILES:
            profiles.add(item)
        else:
            raise argparse.ArgumentTypeError(
                f"unknown profile {item!r}; known: {', '.join(sorted(PROFILES))}, hung-after=N"
            )
    if {"no-conditional", "ignore-conditional"} <= profiles:
        raise argparse.ArgumentTypeError("no-conditional and ignore-conditional contradict")
    if "hung" in profiles:
        hung_after = 0
    return profiles, hung_after


def checksum_header_refused(headers):
    """The name of the first header a store without checksum support rejects, or None."""
    for name, value in headers.items():
        lower = name.lower()
        if (
            lower.startswith("x-amz-checksum-")
            or lower in ("x-amz-sdk-checksum-algorithm", "x-amz-trailer")
            or (lower == "content-encoding" and "aws-chunked" in value.lower())
            or (lower == "x-amz-content-sha256" and value.upper().startswith("STREAMING"))
        ):
            return name
    return None


class QuirkHandler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1, so that clients keep their connections alive as they do with real S3.
    protocol_version = "HTTP/1.1"
    config = None  # set by main()
    # Small answers must not wait out a delayed ACK (40 ms on Linux) behind Nagle.
    disable_nagle_algorithm = True

    def setup(self):
        super().setup()
        # One upstream connection per client connection, kept alive across its
        # requests: no new TCP connection (and TIME_WAIT socket) per request.
        self.upstream_conn = None

    def finish(self):
        self.close_upstream()
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format, *args):
        # Quiet: tests read the JSON log instead; stderr stays for real errors.
        pass

    def parse_request(self):
        self.hangs = None
        return super().parse_request()

    def decide_hang(self):
        # Decided once per request, as early as possible (handle_expect_100 runs
        # before the body is read), and counted once.
        if self.hangs is None:
            self.hangs = self.config.next_request_hangs()
        return self.hangs

    def handle_expect_100(self):
        # A hung store does not even say "100 Continue"; the client sends the body
        # after its own wait, and then waits for an answer that never comes.
        if self.decide_hang():
            return True
        return super().handle_expect_100()

    def do_GET(self):
        self.proxy()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        length = int(length)
        if length < 0:
            raise ValueError("negative Content-Length")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ValueError("client closed the connection within the body")
        return body

    def read_chunked(self):
        parts = []
        while True:
            size_line = self.rfile.readline(65537)
            size = int(size_line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise ValueError("client closed the connection within a chunk")
            parts.append(chunk)
            self.rfile.readline(65537)  # the CRLF after the chunk data
        # Trailer fields, up to the empty line: dropped (S3 SDKs send their trailing
        # checksums inside an aws-chunked body, not as HTTP trailers).
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(parts)

    def proxy(self):
        method = self.command
        target = self.path
        # Absolute-form target (client told to use us as an HTTP proxy): keep only
        # path and query, which is what the upstream expects.
        if target.startswith(("http://", "https://")):
            split = urllib.parse.urlsplit(target)
            target = urllib.parse.urlunsplit(("", "", split.path or "/", split.query, ""))
        path, _, query = target.partition("?")
        record = {
            "method": method,
            "path": path,
            "query": query,
            "headers": {},
            "status": None,
            "body_len": 0,
        }
        for name, value in self.headers.items():
            key = name.lower()
            if key in record["headers"]:
                record["headers"][key] += ", " + value
            else:
                record["headers"][key] = value

        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self.config.log(record)
            return
        record["body_len"] = len(body) if body is not None else 0

        if self.decide_hang():
            self.config.log(record)
            self.hang()
            return

        profiles = self.config.profiles
        refused = None
        if "no-conditional" in profiles and "If-None-Match" in self.headers:
            refused = "If-None-Match"
        elif "no-checksums" in profiles:
            refused = checksum_header_refused(self.headers)
        if refused is not None:
            payload = NOT_IMPLEMENTED_XML.format(refused).encode()
            self.respond(
                method, 501, "Not Implemented",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(payload)))],
                payload,
            )
            record["status"] = 501
            self.config.log(record)
            return

        dropped = self.dropped_request_headers()
        forward = [(n, v) for n, v in self.headers.items() if n.lower() not in dropped]
        if body is not None:
            forward.append(("Content-Length", str(len(body))))
        try:
            status, reason, headers, payload = self.forward(method, target, forward, body)
        except (http.client.HTTPException, OSError) as err:
            self.close_upstream()
            payload = f"s3-quirk-proxy: upstream error: {err!r}\n".encode()
            status, reason = 502, "Bad Gateway"
            headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(payload)))]
        record["status"] = status
        self.respond(method, status, reason, headers, payload)
        self.config.log(record)

    def dropped_request_headers(self):
        # The request is re-framed with its own Content-Length; Expect was already
        # answered here (the body is read), so the upstream must not answer it again.
        dropped = set(HOP_BY_HOP) | {"content-length", "expect"}
        for token in self.headers.get("Connection", "").split(","):
            dropped.add(token.strip().lower())
        if "ignore-conditional" in self.config.profiles:
            dropped.add("if-none-match")
        return dropped

    def forward(self, method, target, headers, body):
        # A kept-alive upstream connection may have been closed by the upstream in
        # the meantime; that shows as an error before any answer, and only then is
        # the request sent once more, on a fresh connection.
        for attempt in (1, 2):
            fresh = self.upstream_conn is None
            if fresh:
                up = self.config.upstream
                cls = http.client.HTTPSConnection if up.scheme == "https" else http.client.HTTPConnection
                self.upstream_conn = cls(up.hostname, up.port, timeout=self.config.upstream_timeout)
            conn = self.upstream_conn
            if fresh:
                try:
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    self.close_upstream()
                    raise
            try:
                # Host (covered by the SigV4 signature) is passed on as the client sent
                # it, so neither Host nor Accept-Encoding may be made up by http.client.
                has_host = any(name.lower() == "host" for name, _ in headers)
                conn.putrequest(method, target, skip_host=has_host, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body)
                resp = conn.getresponse()
                payload = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close_upstream()
                if fresh or attempt == 2:
                    raise
                continue
            if resp.will_close:
                self.close_upstream()
            out = [(n, v) for n, v in resp.getheaders() if n.lower() not in HOP_BY_HOP]
            has_length = any(n.lower() == "content-length" for n, _ in out)
            # A HEAD answer's Content-Length is the object's size and stays; a body the
            # upstream sent chunked gets its length here, as it is sent re-framed.
            if not has_length and method != "HEAD" and resp.status not in (204, 304):
                out.append(("Content-Length", str(len(payload))))
            return resp.status, resp.reason, out, payload
        raise AssertionError("unreachable")

    def respond(self, method, status, reason, headers, payload):
        # Written by hand, not with send_response: that adds a Server and Date of our
        # own on top of the upstream's. Head and body go out in one write.
        lines = [f"{self.protocol_version} {status} {reason}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        lines.append("\r\n")
        out = "".join(lines).encode("latin-1")
        if method != "HEAD" and status not in (204, 304):
            out += payload
        try:
            self.wfile.write(out)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def hang(self):
        # Keep the socket open, answer nothing, until the client closes it (recv gives
        # b"" or fails) or the proxy exits (these are daemon threads). Anything the
        # client sends in the meantime is read and dropped.
        self.close_connection = True
        self.connection.settimeout(None)
        try:
            while self.connection.recv(65536):
                pass
        except OSError:
            pass

    def close_upstream(self):
        if self.upstream_conn is not None:
            try:
                self.upstream_conn.close()
            except OSError:
                pass
            self.upstream_conn = None


class QuirkServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # Otherwise server_close() waits for every handler thread, and a hung one never
    # ends: the proxy could not exit on SIGTERM.
    block_on_close = False
    # Many test clients connect at once; the default backlog of 5 drops connections.
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client going away mid-request (an OSError: reset, broken pipe, timeout) is
        # normal in tests; anything else is a bug here and gets its traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--profile", type=parse_profiles, default="passthrough")
    parser.add_argument("--log", help="append one JSON line per request to this file")
    parser.add_argument("--upstream-timeout", type=float, default=120.0,
                        help="seconds to wait on the upstream before answering 502")
    args = parser.parse_args()

    upstream = urllib.parse.urlsplit(args.upstream)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        parser.error(f"--upstream must be http://HOST:PORT, not {args.upstream!r}")
    if upstream.path not in ("", "/"):
        parser.error("--upstream must not have a path")

    profiles, hung_after = args.profile
    log_file = open(args.log, "a", encoding="utf-8") if args.log else None
    QuirkHandler.config = Config(profiles, hung_after, upstream, args.upstream_timeout, log_file)

    # SIGTERM ends serve_forever like Ctrl-C does, so the socket and log are closed
    # and the exit status is 0 either way.
    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    server = QuirkServer(("127.0.0.1", args.port), QuirkHandler)
    try:
        print(f"listening on {server.server_address[1]}", flush=True)
        server.serve_forever()
    finally:
        server.server_close()
        if log_file is not None:
            log_file.close()


if __name__ == "__main__":
    main()
