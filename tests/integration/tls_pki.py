"""Certificates for the TLS integration tests, made with the openssl command:
a CA with a CRL, leaf certificates usable as server and client (SANs
127.0.0.1 and localhost unless told otherwise), an expired one, one from
another CA, and revocation. Python standard library + /usr/bin/openssl only.
"""

import os
import subprocess

_CA_CONF = """[ca]
default_ca = c
[c]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
crlnumber = {dir}/crlnumber
new_certs_dir = {dir}/issued
certificate = {dir}/ca.crt
private_key = {dir}/ca.key
default_md = sha256
default_days = 2
default_crl_days = 2
policy = anything
copy_extensions = copy
unique_subject = no
[anything]
commonName = supplied
"""


def _openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args),
                                               p.stderr.decode(errors="replace")))
    return p.stdout.decode(errors="replace")


class Ca:
    """A certificate authority in dir/<name>/ that issues leaf certificates
    into dir/ and keeps a CRL at dir/<name>/crl.pem."""

    def __init__(self, dir, name, key="rsa:2048"):
        self.dir = dir
        self.name = name
        self.home = os.path.join(dir, name)
        os.makedirs(os.path.join(self.home, "issued"), exist_ok=True)
        open(os.path.join(self.home, "index.txt"), "w").close()
        with open(os.path.join(self.home, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(self.home, "crlnumber"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(self.home, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.home))
        self.key_type = key
        _openssl("req", "-x509", "-newkey", key, "-nodes", "-days", "2",
                 "-keyout", "ca.key", "-out", "ca.crt", "-subj",
                 "/CN=%s" % name, cwd=self.home)
        self.cert = os.path.join(self.home, "ca.crt")
        self.crl = os.path.join(self.home, "crl.pem")
        self.gen_crl()

    def issue(self, name, cn=None, san="IP:127.0.0.1,DNS:localhost",
              start=None, end=None, key_file=None):
        """Issues dir/<name>.crt (and dir/<name>.key unless key_file, an
        existing key, is given). start/end: openssl ca dates
        (YYYYMMDDHHMMSSZ) for certificates valid elsewhere in time.
        Returns {"cert", "key", "serial"} (serial as upper-case hex)."""
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            if san:
                f.write("subjectAltName=%s\n" % san)
            f.write("extendedKeyUsage=serverAuth,clientAuth\n")
        key = key_file or os.path.join(self.dir, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        if key_file:
            _openssl("req", "-new", "-key", key, "-out", csr, "-subj",
                     "/CN=%s" % (cn or name), cwd=self.dir)
        else:
            _openssl("req", "-newkey", self.key_type, "-nodes", "-keyout", key,
                     "-out", csr, "-subj", "/CN=%s" % (cn or name),
                     cwd=self.dir)
        cert = os.path.join(self.dir, name + ".crt")
        args = ["ca", "-batch", "-config", self.conf, "-in", csr, "-out", cert,
                "-extfile", ext, "-notext"]
        if start:
            args += ["-startdate", start]
        if end:
            args += ["-enddate", end]
        _openssl(*args, cwd=self.dir)
        serial = _openssl("x509", "-in", cert, "-noout", "-serial",
                          cwd=self.dir).strip().split("=", 1)[1]
        return {"cert": cert, "key": key, "serial": serial.upper()}

    def revoke(self, leaf):
        _openssl("ca", "-config", self.conf, "-revoke", leaf["cert"],
                 cwd=self.dir)
        self.gen_crl()

    def gen_crl(self):
        """Rewrites crl.pem in place by rename, as an operator's tooling
        would (a reader never sees half a file)."""
        tmp = self.crl + ".tmp"
        _openssl("ca", "-config", self.conf, "-gencrl", "-out", tmp,
                 cwd=self.dir)
        os.replace(tmp, self.crl)
