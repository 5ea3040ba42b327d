"""tls_certs.py - a throw-away PKI for the TLS tests, made with the openssl command: a CA, server
certificates signed by it (good, expired, for another name, self-signed) and their keys.

    pki = make_pki(tmpdir)            # once per test module is enough (a few hundred ms)
    pki.ca                            # the CA certificate (PEM), for verify policies / cafile=
    pki.cert, pki.key                 # "mail.example.test" and 127.0.0.1..127.0.0.9, signed by ca
    pki.chain                         # cert followed by the CA: what a server presents
    pki.expired_cert, pki.expired_key # the same names, not valid after yesterday
    pki.wrong_cert, pki.wrong_key     # signed by ca, for "other.example.test" only
    pki.self_cert, pki.self_key       # self-signed, the good names, no CA

Every file is PEM; keys are unencrypted EC P-256 (fast to make and to handshake with).
"""
import os
import subprocess
from types import SimpleNamespace

GOOD_NAMES = ["mail.example.test", "localhost"] + ["127.0.0.%d" % i for i in range(1, 10)]


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)


def _san(names):
    parts = []
    for n in names:
        parts.append(("IP:" if n[0].isdigit() else "DNS:") + n)
    return "subjectAltName=" + ",".join(parts)


def _key(d, name):
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name,
         cwd=d)


def _signed(d, stem, names, ca_cert, ca_key, days_args):
    """A key and a certificate for names signed by the CA; days_args give its validity."""
    _key(d, stem + ".key")
    _run("req", "-new", "-key", stem + ".key", "-subj", "/CN=" + names[0], "-out", stem + ".csr",
         cwd=d)
    ext = os.path.join(d, stem + ".ext")
    with open(ext, "w") as f:
        f.write(_san(names) + "\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _run("x509", "-req", "-in", stem + ".csr", "-CA", ca_cert, "-CAkey", ca_key,
         "-CAcreateserial", "-extfile", ext, "-out", stem + ".crt", *days_args, cwd=d)
    return os.path.join(d, stem + ".crt"), os.path.join(d, stem + ".key")


def make_pki(directory, names=None):
    """Make the files in directory (created if missing); returns their paths."""
    names = names or GOOD_NAMES
    d = os.path.abspath(directory)
    os.makedirs(d, exist_ok=True)
    _key(d, "ca.key")
    _run("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=IMS test CA", "-days", "30",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext",
         "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.crt", cwd=d)
    ca = os.path.join(d, "ca.crt")
    ca_key = os.path.join(d, "ca.key")
    cert, key = _signed(d, "server", names, ca, ca_key, ["-days", "30"])
    # Expired: valid from 3 days ago to yesterday (openssl 3's x509 -not_before/-not_after are
    # 3.4+; Debian 12 has 3.0, so go through `ca` with explicit dates).
    _key(d, "expired.key")
    _run("req", "-new", "-key", "expired.key", "-subj", "/CN=" + names[0], "-out", "expired.csr",
         cwd=d)
    with open(os.path.join(d, "expired.ext"), "w") as f:
        f.write(_san(names) + "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    os.makedirs(os.path.join(d, "cadb"), exist_ok=True)
    open(os.path.join(d, "cadb", "index.txt"), "w").close()
    with open(os.path.join(d, "cadb", "serial"), "w") as f:
        f.write("1000\n")
    with open(os.path.join(d, "ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca=test\n[test]\ndir=%s/cadb\ndatabase=$dir/index.txt\n"
                "serial=$dir/serial\nnew_certs_dir=$dir\ndefault_md=sha256\npolicy=any\n"
                "unique_subject=no\n[any]\ncommonName=supplied\n" % d)
    _run("ca", "-batch", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key", "-in",
         "expired.csr", "-out", "expired.crt", "-startdate", _stamp(-3), "-enddate", _stamp(-1),
         "-extfile", "expired.ext", "-notext", cwd=d)
    wrong_cert, wrong_key = _signed(d, "wrong", ["other.example.test"], ca, ca_key,
                                    ["-days", "30"])
    _key(d, "self.key")
    _run("req", "-x509", "-new", "-key", "self.key", "-subj", "/CN=" + names[0], "-days", "30",
         "-addext", _san(names), "-out", "self.crt", cwd=d)
    chain = os.path.join(d, "chain.pem")
    with open(chain, "w") as out:
        for p in (cert, ca):
            with open(p) as f:
                out.write(f.read())
    for p in os.listdir(d):
        full = os.path.join(d, p)
        if os.path.isfile(full):
            os.chmod(full, 0o644)  # a service account must be able to read them in tests
    return SimpleNamespace(dir=d, ca=ca, ca_key=ca_key, cert=cert, key=key, chain=chain,
                           expired_cert=os.path.join(d, "expired.crt"),
                           expired_key=os.path.join(d, "expired.key"), wrong_cert=wrong_cert,
                           wrong_key=wrong_key, self_cert=os.path.join(d, "self.crt"),
                           self_key=os.path.join(d, "self.key"), names=list(names))


def _stamp(days):
    """openssl ca's date form (YYMMDDHHMMSSZ) for now + days."""
    import datetime
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days)
    return t.strftime("%y%m%d%H%M%SZ")


if __name__ == "__main__":
    import sys
    import tempfile
    p = make_pki(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
    print(p)
