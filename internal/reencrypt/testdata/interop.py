#!/usr/bin/env python3
"""Interop helper for the reencrypt tests, using Python's cryptography.

    interop.py aesgcm|fernet encrypt|decrypt KEYFILE INFILE OUTFILE

The key is read from KEYFILE (never argv). encrypt: INFILE holds one
base64 plaintext per line; OUTFILE gets one stored value per line
(aesgcm: base64 of nonce || ciphertext || tag, as apps store AESGCM
output with the nonce prepended; fernet: the token). decrypt: the reverse.
"""
import base64
import sys

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
import os


def main():
    codec, mode, keyfile, infile, outfile = sys.argv[1:6]
    key = open(keyfile).read().strip()
    lines = [l.rstrip("\n") for l in open(infile)]
    out = []
    if codec == "aesgcm":
        aead = AESGCM(base64.b64decode(key))
        for l in lines:
            if mode == "encrypt":
                nonce = os.urandom(12)
                out.append(base64.b64encode(nonce + aead.encrypt(nonce, base64.b64decode(l), None)).decode())
            else:
                raw = base64.b64decode(l)
                out.append(base64.b64encode(aead.decrypt(raw[:12], raw[12:], None)).decode())
    elif codec == "fernet":
        f = Fernet(key.encode())
        for l in lines:
            if mode == "encrypt":
                out.append(f.encrypt(base64.b64decode(l)).decode())
            else:
                out.append(base64.b64encode(f.decrypt(l.encode())).decode())
    else:
        raise SystemExit("unknown codec")
    with open(outfile, "w") as fh:
        fh.write("".join(x + "\n" for x in out))


if __name__ == "__main__":
    main()
