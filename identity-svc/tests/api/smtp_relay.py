"""An SMTP relay for the API tests, built on aiosmtpd (PyPI).

It listens on 127.0.0.1:<port>, offers STARTTLS with the given certificate and requires it
before anything else (with --implicit: TLS from the first byte instead), requires AUTH (PLAIN
or LOGIN, only over TLS) for one user whose password
is in the SMTP_RELAY_PASSWORD environment variable, and writes each accepted message to
<dir>/<n>.eml (written to a temporary name, then renamed). It prints "ready" once it accepts
connections and runs until its standard input closes or it is killed.

Usage: smtp_relay.py --port P --dir D --cert C --key K --user U [--implicit]
"""

import argparse
import os
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Inbox:
    def __init__(self, directory):
        self.directory = directory
        # A relay restarted on the same directory keeps numbering after what it holds.
        self.count = len([n for n in os.listdir(directory) if n.endswith(".eml")])

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        final = os.path.join(self.directory, f"{self.count:04}.eml")
        partial = final + ".part"
        with open(partial, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(partial, final)
        return "250 OK queued"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--implicit", action="store_true")
    args = parser.parse_args()
    password = os.environ["SMTP_RELAY_PASSWORD"]

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    if args.implicit:
        # aiosmtpd's auth_require_tls looks for STARTTLS only; here every byte is over TLS.
        tls = {"ssl_context": context, "auth_require_tls": False}
    else:
        tls = {"tls_context": context, "require_starttls": True, "auth_require_tls": True}
    controller = Controller(
        Inbox(args.dir),
        hostname="127.0.0.1",
        port=args.port,
        auth_required=True,
        authenticator=authenticator(args.user, password),
        **tls,
    )
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
