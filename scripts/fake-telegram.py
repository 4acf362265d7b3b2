#!/usr/bin/env python3
"""A stand-in for the Telegram Bot API for `make contract`, where api.telegram.org is out of
reach: POST /bot<token>/<method> answers in Telegram's envelope, as tests/api/fakes/telegram.rs
does, for the methods the server calls. Prints its port, then serves until killed."""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def result(method, body):
    chat = {"id": body.get("chat_id", 1), "type": "private", "first_name": "Contract"}
    message = {"message_id": 1, "date": int(time.time()), "chat": chat}
    if method == "createInvoiceLink":
        return "https://t.me/$contract-invoice"
    if method == "answerPreCheckoutQuery":
        return True
    if method == "sendMessage":
        return {**message, "text": body.get("text", "")}
    if method == "sendPhoto":
        size = {"file_id": "AgAC-contract", "file_unique_id": "AQAD-contract", "width": 1, "height": 1}
        return {**message, "photo": [size]}
    return None


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        method = self.path.rsplit("/", 1)[-1]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if self.headers.get("Content-Type", "").startswith("application/json") else {}
        except ValueError:
            body = {}
        value = result(method, body if isinstance(body, dict) else {})
        if value is None:
            status, reply = 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        else:
            status, reply = 200, {"ok": True, "result": value}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
