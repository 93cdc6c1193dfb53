#!/usr/bin/env python3
"""A command codec for rekey (see "Command codec protocol" in the package doc).

rekey starts it once per run and writes one request per line on its stdin:

    open <key> <ciphertext>     ->  ok <plaintext>    or  err <reason>
    seal <key> <plaintext>      ->  ok <ciphertext>   or  err <reason>

every field standard base64. <key> is the secret's value as rekey holds it
(here: the base64 of a 32-byte AES key). Answers go to stdout, one line per
request, in order, flushed. It exits when stdin closes.

This one is AES-256-GCM, nonce || ciphertext || tag, with Python's
cryptography package: a stand-in for whatever an application really uses.
"""
import base64
import os
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main():
    out = sys.stdout
    for line in sys.stdin:
        parts = line.rstrip("\n").split(" ")
        if len(parts) != 3:
            out.write("err bad request\n")
            out.flush()
            continue
        verb, key_b64, data_b64 = parts
        try:
            key = base64.b64decode(base64.b64decode(key_b64), validate=True)
            data = base64.b64decode(data_b64, validate=True)
            aead = AESGCM(key)
            if verb == "open":
                res = aead.decrypt(data[:12], data[12:], None)
            elif verb == "seal":
                nonce = os.urandom(12)
                res = nonce + aead.encrypt(nonce, data, None)
            else:
                raise ValueError("unknown verb")
            out.write("ok " + base64.b64encode(res).decode() + "\n")
        except Exception:
            out.write("err does not open\n")
        out.flush()


if __name__ == "__main__":
    main()
