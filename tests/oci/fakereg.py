#!/usr/bin/env python3
"""A small fake registry for fault tests: serves one OCI image layout as
REPO:latest over the distribution API and misbehaves on purpose.

  fakereg.py LAYOUT_DIR PORT_FILE LOG_FILE MODE

Modes: ok, cut (each blob's first GET is cut off halfway; Range resumes),
cut-norange (the same, but Range is ignored: the client must start over),
always503 (everything but /v2/ fails with 503),
503 (every path fails once with 503), 429 (the manifest gets 429 +
Retry-After: 1 once), corrupt (the largest blob is served with a flipped
byte), foreign-index (the tag resolves to an index with only linux/s390x),
schema1 (the tag resolves to a schema 1 manifest), bearer (a token server at
/token; /v2/ needs the token, which expires after 3 requests; blobs redirect
to another host name, which must not receive the Authorization header).
The port is written to PORT_FILE; one line per request goes to LOG_FILE.
"""
import hashlib
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

layout, port_file, log_file, mode = sys.argv[1:5]
lock = threading.Lock()
seen = {}
TOKEN_USES = 3  # bearer tokens "expire" after this many API requests
tokens = {}


def log(line):
    with lock, open(log_file, "a") as f:
        f.write(line + "\n")


def blob(digest):
    alg, hexd = digest.split(":", 1)
    p = os.path.join(layout, "blobs", alg, hexd)
    with open(p, "rb") as f:
        return f.read()


index = json.load(open(os.path.join(layout, "index.json")))
manifest_desc = index["manifests"][0]
manifest = blob(manifest_desc["digest"])
mtype = "application/vnd.oci.image.manifest.v1+json"
largest = max(json.loads(manifest)["layers"], key=lambda l: l["size"])["digest"]


def first_time(key):
    with lock:
        n = seen.get(key, 0)
        seen[key] = n + 1
        return n == 0


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body=b"", ctype="application/json", extra=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        host = self.headers.get("Host", "")
        auth = self.headers.get("Authorization")
        log(f"{self.command} {self.path} host={host} auth={'yes' if auth else 'no'} "
            f"range={self.headers.get('Range', '-')}")
        path = self.path
        if mode == "bearer":
            if path.startswith("/token"):
                if "scope=repository%3Atest%2Fbusybox%3Apull" not in path or "service=fake" not in path:
                    return self.send(400, b'{"errors":[{"code":"BAD","message":"scope"}]}')
                with lock:
                    tok = "tok-%d-%s" % (len(tokens), hashlib.sha256(os.urandom(8)).hexdigest()[:12])
                    tokens[tok] = TOKEN_USES
                return self.send(200, json.dumps({"token": tok, "expires_in": 60}).encode())
            if path.startswith("/redirected/"):
                if auth:
                    log("AUTH-ON-REDIRECT")
                return self.serve_blob(path[len("/redirected/"):])
            with lock:
                tok = auth[7:] if auth and auth.startswith("Bearer ") else None
                valid = tok in tokens and tokens[tok] > 0
                if valid:
                    tokens[tok] -= 1
            if not valid:
                port = self.server.server_address[1]
                ch = (f'Bearer realm="http://127.0.0.1:{port}/token",service="fake",'
                      f'scope="repository:test/busybox:pull"')
                return self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                                 extra={"WWW-Authenticate": ch})
        if mode == "always503" and path != "/v2/":
            return self.send(503, b'{"errors":[{"code":"UNAVAILABLE","message":"down"}]}')
        if mode == "503" and first_time(path):
            return self.send(503, b'{"errors":[{"code":"UNAVAILABLE"}]}')
        if path == "/v2/" or path == "/v2":
            return self.send(200, b"{}")
        if path.startswith("/v2/test/busybox/manifests/"):
            ref = path.rsplit("/", 1)[1]
            if mode == "429" and first_time("manifest"):
                return self.send(429, b'{"errors":[{"code":"TOOMANYREQUESTS"}]}',
                                 extra={"Retry-After": "1"})
            if mode == "foreign-index" and ref == "latest":
                idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                  "manifests": [dict(manifest_desc, platform={"os": "linux", "architecture": "s390x"})]}).encode()
                return self.send(200, idx, "application/vnd.oci.image.index.v1+json")
            if mode == "schema1" and ref == "latest":
                m = json.dumps({"schemaVersion": 1, "name": "test/busybox", "tag": "latest", "fsLayers": []}).encode()
                return self.send(200, m, "application/vnd.docker.distribution.manifest.v1+prettyjws")
            if ref in ("latest", manifest_desc["digest"]):
                return self.send(200, manifest, mtype,
                                 {"Docker-Content-Digest": manifest_desc["digest"]})
            return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        if path.startswith("/v2/test/busybox/blobs/"):
            digest = path.rsplit("/", 1)[1]
            if mode == "bearer":
                port = self.server.server_address[1]
                return self.send(307, b"", extra={"Location": f"http://localhost:{port}/redirected/{digest}"})
            return self.serve_blob(digest)
        self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')

    def serve_blob(self, digest):
        try:
            data = blob(digest)
        except (OSError, ValueError):
            return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
        if mode == "corrupt" and digest == largest:
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            data = bytes(data)
        rng = self.headers.get("Range")
        if mode == "cut-norange":
            rng = None  # a server that ignores Range: the client must restart
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            part = data[start:]
            return self.send(206, part, "application/octet-stream",
                             {"Content-Range": f"bytes {start}-{len(data)-1}/{len(data)}"})
        if mode in ("cut", "cut-norange") and len(data) > 1024 and first_time("cut" + digest):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            log(f"CUT {digest} at {len(data) // 2}")
            self.close_connection = True
            import socket
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send(200, data, "application/octet-stream")


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
