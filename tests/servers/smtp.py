"""A real SMTP server (aiosmtpd) for vigil's tests, with what its command line lacks.

    smtp.py --port PORT --maildir DIR [--starttls CERT KEY | --smtps CERT KEY] [--auth USER:PASSWORD]

--starttls offers STARTTLS and refuses mail before it; --smtps speaks TLS from the first
byte; --auth requires PLAIN or LOGIN authentication (after STARTTLS, under --starttls). Delivered messages
go to a Maildir. Runs until killed.
"""

import argparse
import ssl
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult


def tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = getattr(auth_data, "login", None) == self.user and getattr(auth_data, "password", None) == self.password
        # handled=False: aiosmtpd answers 535 itself on a failure.
        return AuthResult(success=ok, handled=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--smtps", nargs=2, metavar=("CERT", "KEY"))
    ap.add_argument("--auth", metavar="USER:PASSWORD")
    a = ap.parse_args()

    smtp = {}
    if a.starttls:
        smtp.update(tls_context=tls_context(*a.starttls), require_starttls=True)
    if a.auth:
        user, _, password = a.auth.partition(":")
        # Under --smtps every byte is TLS, but aiosmtpd only knows about STARTTLS (and warns).
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        smtp.update(authenticator=Authenticator(user, password), auth_required=True, auth_require_tls=not a.smtps)
    kwargs = {"ssl_context": tls_context(*a.smtps)} if a.smtps else {}
    controller = Controller(Mailbox(a.maildir), hostname="127.0.0.1", port=a.port, **kwargs, **smtp)
    controller.start()
    print(f"listening on 127.0.0.1:{a.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
