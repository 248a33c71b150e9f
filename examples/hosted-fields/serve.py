#!/usr/bin/env python3
"""The example shop for cardvault Hosted Fields, against `cardvault serve --dev`.

    cargo run --release -- serve --dev --listen 127.0.0.1:8181     # terminal 1: the vault
    python3 examples/hosted-fields/serve.py           # terminal 2: the shop
    open http://127.0.0.1:8000/                        # the checkout

Each page load asks the vault for a fresh TOKENIZE session (POST /token with the dev merchant's
gateway password, which `serve --dev` writes next to its socket) bound to this shop's origin, and
serves checkout.html with that session, the vault's URL and the library's SRI hash. Standard
library only; the shop never sees a card number.
"""
import argparse
import base64
import hashlib
import http.server
import json
import pathlib
import time
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vault", default="http://127.0.0.1:8181", help="the daemon's --listen address, as a URL")
    p.add_argument("--port", type=int, default=8000, help="the shop's port on 127.0.0.1")
    p.add_argument("--dev-dir", default="/tmp/cardvault-dev", help="where serve --dev wrote merchant-password")
    p.add_argument("--merchant", default="890490")
    args = p.parse_args()
    vault = args.vault.rstrip("/")
    origin = f"http://127.0.0.1:{args.port}"
    password = (pathlib.Path(args.dev_dir) / "merchant-password").read_text().strip()
    with urllib.request.urlopen(f"{vault}/hosted-fields/v1/hosted-fields.js") as r:
        library = r.read()
    sri = "sha384-" + base64.b64encode(hashlib.sha384(library).digest()).decode()
    template = (HERE / "checkout.html").read_text()

    def new_session():
        form = urllib.parse.urlencode({
            "merchantId": args.merchant,
            "password": password,
            "action": "TOKENIZE",
            "timestamp": str(int(time.time() * 1000)),
            "allowOriginUrl": origin,
        }).encode()
        req = urllib.request.Request(f"{vault}/token", data=form,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(req) as r:
            return json.load(r)["token"]

    class Shop(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/":
                self.send_error(404)
                return
            page = (template.replace("{{VAULT}}", vault).replace("{{SRI}}", sri)
                    .replace("{{SESSION}}", new_session())).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Shop)
    print(f"example shop on {origin}/ (vault {vault}); Ctrl-C to stop")
    server.serve_forever()


if __name__ == "__main__":
    main()
