"""A throwaway PKI for the TLS tests, made with the `openssl` command line.

make_pki(dir) writes, under dir:
  ca.pem / ca.key           a test CA (ECDSA P-256)
  server.pem / server.key   an ECDSA P-256 server certificate for localhost and
                            127.0.0.1, signed by the CA (serial 0x1001)
  fullchain.pem             server.pem followed by ca.pem (a chain after the cert)
  second.pem / second.key   another server certificate, its own key (serial 0x1002)
  expired.pem / expired.key a server certificate that expired in 2021 (serial 0x1003)
  other.key                 a key that matches none of the certificates
  notpem.pem                a file that is not PEM at all
and returns a Pki with those paths and helpers (fingerprints, SPKI hashes,
ssl contexts trusting the CA).
"""
import base64
import hashlib
import ssl
import subprocess
from pathlib import Path

SAN = "subjectAltName=DNS:localhost,IP:127.0.0.1"

CA_CONF = """\
[ ca ]
default_ca = testca
[ testca ]
dir = {d}
database = {d}/index.txt
new_certs_dir = {d}/newcerts
serial = {d}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[ anything ]
commonName = supplied
[ leaf ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = DNS:localhost,IP:127.0.0.1
"""


def openssl(*args, cwd=None, input=None):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd, input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    if p.returncode != 0:
        raise AssertionError("openssl %s failed: %s" % (" ".join(map(str, args)), p.stderr.decode()))
    return p.stdout


class Pki:
    def __init__(self, d):
        self.dir = Path(d)
        for name in ("ca", "server", "second", "expired"):
            setattr(self, name, self.dir / (name + ".pem"))
            setattr(self, name + "_key", self.dir / (name + ".key"))
        self.fullchain = self.dir / "fullchain.pem"
        self.other_key = self.dir / "other.key"
        self.notpem = self.dir / "notpem.pem"

    def der(self, cert):
        return openssl("x509", "-in", cert, "-outform", "DER")

    def fingerprint(self, cert):
        """sha256 of the certificate's DER (compare with getpeercert(binary_form=True))."""
        return hashlib.sha256(self.der(cert)).hexdigest()

    def spki_sha256_b64(self, cert):
        """base64 sha256 of the SubjectPublicKeyInfo, as Chromium's
        --ignore-certificate-errors-spki-list wants it (computed with openssl)."""
        pub = openssl("x509", "-in", cert, "-pubkey", "-noout")
        der = openssl("pkey", "-pubin", "-outform", "DER", input=pub)
        digest = openssl("dgst", "-sha256", "-binary", input=der)
        return base64.b64encode(digest).decode()

    def client_context(self, maximum=None, alpn=None):
        """A client context that trusts the test CA only and checks the name."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if maximum:
            ctx.maximum_version = maximum
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx


def _key(path):
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


def make_pki(d):
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    (d / "newcerts").mkdir(exist_ok=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1001\n")
    conf = d / "ca.cnf"
    conf.write_text(CA_CONF.format(d=d))
    p = Pki(d)
    _key(p.ca_key)
    openssl("req", "-new", "-x509", "-key", p.ca_key, "-out", p.ca, "-days", "30", "-subj",
            "/CN=wspush test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")

    def leaf(name, cn, dates=("-days", "30")):
        key, cert, csr = d / (name + ".key"), d / (name + ".pem"), d / (name + ".csr")
        _key(key)
        openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/CN=" + cn)
        openssl("ca", "-batch", "-config", conf, "-extensions", "leaf", "-cert", p.ca, "-keyfile",
                p.ca_key, "-in", csr, "-out", cert, "-notext", *dates)
    leaf("server", "localhost")                      # serial 1001
    leaf("second", "localhost second")               # serial 1002
    leaf("expired", "localhost expired", ("-startdate", "20200101000000Z",
                                          "-enddate", "20210101000000Z"))  # serial 1003
    p.fullchain.write_bytes(p.server.read_bytes() + p.ca.read_bytes())
    _key(p.other_key)
    p.notpem.write_bytes(b"this is not a PEM file\n\x00\x01\x02\xff\n")
    return p
