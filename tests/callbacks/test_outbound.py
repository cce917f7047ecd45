"""SSRF-safe outbound HTTP: what may be reached, that the checked address is the one
connected to, and that TLS checks the certificate against the host name. Real sockets only:
a local HTTP(S) server on loopback, and an injected resolver in place of DNS."""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.receiver import Answer, Receiver
from workflows import outbound

BODY = b'{"ok":true}'


def post(url: str, **kwargs: Any) -> outbound.Answer:
    return outbound.post(url, body=BODY, headers={"content-type": "application/json"}, **kwargs)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "169.254.170.2",
        "168.63.129.16",  # Azure's wire server, a public address
        "100.100.100.200",
        "169.254.1.1",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 (an address to refuse, not one to bind)
        "224.0.0.251",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:a00:1::",  # 6to4 around 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
    ],
)
def test_addresses_that_are_not_public_are_refused(address: str) -> None:
    assert outbound.why_refused(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_not_refused(address: str) -> None:
    assert outbound.why_refused(ipaddress.ip_address(address)) is None


@pytest.mark.django_db
def test_loopback_is_refused_without_the_allow_list_and_nothing_connects(settings: Any) -> None:
    settings.HITL_OUTBOUND_ALLOW = []
    receiver = Receiver().start()
    try:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "[::ffff:127.0.0.1]")):
            with pytest.raises(outbound.Refused, match="loopback"):
                post(url.replace("http:", "https:"))
        with pytest.raises(outbound.Refused, match="loopback"):
            post(
                "https://hooks.example.com/x",
                resolver=lambda host, port: ["::1"],
            )
        # Through the allow-list it is reached.
        settings.HITL_OUTBOUND_ALLOW = ["127.0.0.1"]
        assert post(receiver.url).status_code == 200
    finally:
        receiver.stop()
    assert len(receiver.requests) == 1


def test_a_name_resolving_to_a_private_or_metadata_address_is_refused(settings: Any) -> None:
    settings.HITL_OUTBOUND_ALLOW = ["127.0.0.1"]
    for answer, reason in (
        (["10.0.0.1"], "10.0.0.1 is a private address"),
        (["169.254.169.254"], "169.254.169.254 is a cloud metadata address"),
        (["fd00:ec2::254"], "fd00:ec2::254 is a cloud metadata address"),
        # One refused address among public ones refuses the request.
        (["93.184.216.34", "192.168.0.10"], "192.168.0.10 is a private address"),
    ):
        asked: list[tuple[str, int]] = []

        def resolver(
            host: str, port: int, answer: list[str] = answer, asked: list[Any] = asked
        ) -> list[str]:
            asked.append((host, port))
            return answer

        with pytest.raises(outbound.Refused) as refused:
            post("https://hooks.example.com/hitl", resolver=resolver)
        assert str(refused.value) == f"refused hooks.example.com: {reason}"
        assert asked == [("hooks.example.com", 443)]


def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(settings: Any) -> None:
    # A rebinding resolver: the first answer passes the check, a second would not. There is
    # no second lookup, and the request still names the host.
    settings.HITL_OUTBOUND_ALLOW = ["127.0.0.0/8"]
    answers = [["127.0.0.1"], ["10.0.0.1"]]
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers.pop(0)

    receiver = Receiver().start()
    try:
        answer = post(f"http://127.0.0.1:{receiver.port}/x", resolver=rebinding)
        assert answer.status_code == 200 and asked == []  # an IP literal is not resolved
        settings.HITL_OUTBOUND_ALLOW = ["127.0.0.0/8", "hooks.internal.test"]
        answer = post(f"http://hooks.internal.test:{receiver.port}/x", resolver=rebinding)
    finally:
        receiver.stop()
    assert answer.status_code == 200
    assert asked == ["hooks.internal.test"]
    assert receiver.requests[-1].headers["host"] == f"hooks.internal.test:{receiver.port}"


def test_answers_are_read_only_up_to_the_cap_and_redirects_are_not_followed(
    settings: Any,
) -> None:
    settings.HITL_OUTBOUND_ALLOW = ["127.0.0.1"]
    settings.HITL_OUTBOUND_MAX_RESPONSE_BYTES = 100
    receiver = Receiver().start()
    receiver.answer(
        Answer(200, body=b"x" * 200_000),
        Answer(307, headers=(("Location", receiver.url + "/elsewhere"),)),
        Answer(429, headers=(("Retry-After", "30"),)),
    )
    try:
        big = post(receiver.url)
        moved = post(receiver.url)
        limited = post(receiver.url)
    finally:
        receiver.stop()
    assert (big.status_code, big.excerpt) == (200, "x" * 100)
    assert moved.status_code == 307
    assert [r.path for r in receiver.requests] == ["/hooks"] * 3
    assert (limited.status_code, limited.retry_after) == (429, "30")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://hooks.example.com/x", "must start with https://"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://:pw@hooks.example.com/x", "credentials"),
        ("http://hooks.example.com/x", "plain http"),
        ("https:///x", "no host"),
        ("https://10.1.2.3/x", "private"),
        ("https://[::1]/x", "loopback"),
        ("https://169.254.169.254/latest", "metadata"),
        ("https://hooks.example.com:99999/x", "not a valid URL"),
    ],
)
def test_endpoint_urls_are_checked_when_created(url: str, problem: str, settings: Any) -> None:
    settings.HITL_OUTBOUND_ALLOW = []
    with pytest.raises(outbound.Refused, match=problem):
        outbound.check_url(url)


def test_plain_http_and_private_literals_pass_only_through_the_allow_list(settings: Any) -> None:
    settings.HITL_OUTBOUND_ALLOW = ["127.0.0.1", "10.0.0.0/8", "hooks.lan"]
    assert outbound.check_url("http://127.0.0.1:8080/x#frag") == "http://127.0.0.1:8080/x"
    assert outbound.check_url("http://10.9.8.7/x") == "http://10.9.8.7/x"
    assert outbound.check_url("http://hooks.lan/x") == "http://hooks.lan/x"
    assert (
        outbound.check_url("https://hooks.example.com/x?a=1") == "https://hooks.example.com/x?a=1"
    )
    with pytest.raises(outbound.Refused):
        outbound.check_url("http://192.168.1.1/x")


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
    assert outbound.retry_after_seconds("120", now) == 120
    assert outbound.retry_after_seconds("Mon, 07 Jan 2030 10:00:00 GMT", now) == 3600
    assert outbound.retry_after_seconds("Mon, 07 Jan 2030 08:00:00 GMT", now) == 0
    assert outbound.retry_after_seconds("soon", now) is None
    assert outbound.retry_after_seconds(None, now) is None


# --- TLS: the certificate is checked against the host name, not the address ----------------


def _certificate(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for hooks.example.test only."""
    now = datetime.now(UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("hitl test CA"))
        .issuer_name(name("hitl test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("hooks.example.test"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("hooks.example.test")]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@pytest.fixture
def tls_receiver(tmp_path: Path, settings: Any) -> Iterator[tuple[Receiver, ssl.SSLContext, list]]:
    settings.HITL_OUTBOUND_ALLOW = ["127.0.0.1"]
    ca, cert, key = _certificate(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    names: list[str | None] = []
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)
    receiver = Receiver(ssl_context=server_context).start()
    client = ssl.create_default_context(cafile=str(ca))
    yield receiver, client, names
    receiver.stop()


def test_tls_sends_the_host_name_as_sni_and_verifies_the_certificate_against_it(
    tls_receiver: tuple[Receiver, ssl.SSLContext, list],
) -> None:
    receiver, client, names = tls_receiver
    to_loopback = lambda host, port: ["127.0.0.1"]  # noqa: E731
    url = f"https://hooks.example.test:{receiver.port}/hooks"

    answer = post(url, resolver=to_loopback, ssl_context=client)

    assert answer.status_code == 200
    assert names == ["hooks.example.test"]
    assert receiver.requests[0].headers["host"] == f"hooks.example.test:{receiver.port}"
    # The same server, reached by another name or by its address, does not verify.
    for other in (f"https://other.example.test:{receiver.port}/hooks", receiver.url):
        with pytest.raises(outbound.OutboundError, match="CERTIFICATE_VERIFY_FAILED"):
            post(other, resolver=to_loopback, ssl_context=client)
    assert len(receiver.requests) == 1
