"""The local cluster's credentials: a CA, serving and client certificates, tokens, kubeconfigs.

Standard library only (openssl does the cryptography). Made once per state folder; a new
PKI_VERSION makes them again.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from pathlib import Path

from node import NODE_IP, NODE_NAME

PKI_VERSION = "2"


class PKIError(RuntimeError):
    """A failure with a message meant for the person at the terminal."""


def openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise PKIError(f"openssl {args[0]} failed: {res.stderr.strip()}")


def sign(pki: Path, name: str, subject: str, ext: str) -> None:
    """A key and a certificate for `name`, signed by the local CA."""
    (pki / f"{name}.cnf").write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
        + ext
        + "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=pki,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "3650",
        "-extfile",
        f"{name}.cnf",
        "-extensions",
        "ext",
        cwd=pki,
    )


def make_certs(pki: Path) -> None:
    marker = pki / "version"
    if marker.exists() and marker.read_text() == PKI_VERSION:
        return
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True)
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=modelfactory-local-ca",
        cwd=pki,
    )
    sign(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        f"subjectAltName=IP:127.0.0.1,IP:10.0.0.1,IP:{NODE_IP},DNS:localhost,"
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        "DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    # The API server's identity towards kubelets (logs, exec) and aggregated APIs (metrics).
    sign(
        pki,
        "kubelet-client",
        "/CN=kube-apiserver-kubelet-client/O=system:masters",
        "extendedKeyUsage=clientAuth\n",
    )
    sign(pki, "front-proxy-client", "/CN=front-proxy-client", "extendedKeyUsage=clientAuth\n")
    openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    # Fresh random tokens per cluster: the API server listens on the node's address too.
    admin, node = secrets.token_hex(16), secrets.token_hex(16)
    (pki / "tokens.csv").write_text(
        f'{admin},admin,admin,"system:masters"\n'
        f'{node},system:node:{NODE_NAME},node,"system:nodes"\n'
    )
    (pki / "admin.token").write_text(admin)
    (pki / "node.token").write_text(node)
    marker.write_text(PKI_VERSION)


def kubeconfig_text(server: str, ca: Path, token: str, user: str = "admin") -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "local",
                    "context": {"cluster": "local", "user": user, "namespace": "default"},
                }
            ],
            "current-context": "local",
        },
        indent=2,
    )
