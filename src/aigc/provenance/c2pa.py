"""C2PA content credentials: signing aigc's files and reading any file's manifest, through ``c2pa-python``.

A saved PNG, JPEG, WebP, WAV or MP4 gets a signed C2PA manifest (``result.save(path, credentials=...)``, or a
default from :func:`set_default_credentials` / the ``AIGC_C2PA_CREDENTIALS`` folder) holding:

* ``claim_generator_info``: ``aigc <version>``, with the backend, the model id and the weights fingerprint;
* a ``c2pa.actions.v2`` assertion with one ``c2pa.created`` action whose ``digitalSourceType`` is IPTC's
  ``trainedAlgorithmicMedia`` (what C2PA readers show as "made with AI");
* the aigc provenance record as the assertion :data:`RECORD_LABEL` (``{"format": "aigc.record/1", "json":
  "<the record's JSON text>"}``), so :func:`aigc.replay` works from the manifest alone, e.g. after a tool rewrote
  the file's metadata but kept its content credentials.

Signing needs a key and a certificate chain that C2PA accepts: an end-entity certificate with the
``digitalSignature`` key usage and an e-mail-protection or document-signing extended key usage, issued by a CA
(c2pa refuses self-signed end-entity certificates). :func:`init_credentials` (``aigc credentials init``) makes
such a pair under a throw-away development CA, for trying the feature out: C2PA readers will say the signer is
*untrusted* (a certificate from a CA on the C2PA trust list is what makes it trusted), but the manifest and its
hashes are checked all the same, and :func:`read_manifest` can be told to trust the development CA.

Example:
    >>> creds = init_credentials("my-credentials")  # doctest: +SKIP
    >>> aigc.generate("image", "an ankle boot", seed=7).save("boot.png", credentials=creds)  # doctest: +SKIP
    >>> read_manifest("boot.png").valid  # doctest: +SKIP
    True
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aigc._version import __version__
from aigc.errors import BackendUnavailable, InvalidRequest, ProvenanceError

__all__ = ["MIME_TYPES", "RECORD_LABEL", "Credentials", "Manifest", "default_credentials", "init_credentials",
           "read_manifest", "resolve_credentials", "set_default_credentials", "sign_file"]

logger = logging.getLogger(__name__)

#: The label of the assertion holding the aigc record.
RECORD_LABEL = "org.aigc.record"
#: IPTC's digital source type for media made by a trained model.
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: The formats aigc signs, by suffix.
MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
              ".wav": "audio/wav", ".mp4": "video/mp4"}
CHAIN_FILE, KEY_FILE, CA_FILE = "chain.pem", "key.pem", "ca.pem"
_ENV = "AIGC_C2PA_CREDENTIALS"


def _c2pa() -> Any:
    try:
        import c2pa
    except ImportError:
        raise BackendUnavailable("C2PA content credentials need c2pa-python", extra="c2pa") from None
    return c2pa


@dataclass(frozen=True)
class Credentials:
    """A signing key and its certificate chain (PEM), leaf first.

    Attributes:
        chain: the end-entity certificate, then the CAs that issued it.
        key: the private key (PKCS#8 PEM, unencrypted).
        algorithm: ``"es256"`` (P-256 keys), ``"es384"``, ``"es512"``, ``"ps256"`` or ``"ed25519"``.
        trust_anchors: CA certificates (PEM) that :func:`read_manifest` trusts when reading files signed with
            these credentials (the development CA of :func:`init_credentials`).
        timestamp_url: an RFC 3161 time-stamp authority, or ``None`` (offline).

    Example:
        >>> creds = Credentials.load("my-credentials")  # doctest: +SKIP
    """

    chain: bytes = field(repr=False)
    key: bytes = field(repr=False)
    algorithm: str = "es256"
    trust_anchors: bytes | None = field(default=None, repr=False)
    timestamp_url: str | None = None

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Credentials:
        """Read ``chain.pem``, ``key.pem`` and (if there) ``ca.pem`` from a folder made by :func:`init_credentials`.

        Raises:
            InvalidRequest: the folder lacks ``chain.pem`` or ``key.pem``.
        """
        path = Path(folder).expanduser()
        chain, key, ca = path / CHAIN_FILE, path / KEY_FILE, path / CA_FILE
        if not chain.is_file() or not key.is_file():
            raise InvalidRequest("credentials", os.fspath(folder), f"no {CHAIN_FILE} and {KEY_FILE} there",
                                 "pass a folder made by `aigc credentials init`, or aigc.provenance.Credentials(...)")
        algorithm = "ed25519" if b"ED25519" in key.read_bytes().upper() else "es256"
        return cls(chain=chain.read_bytes(), key=key.read_bytes(), algorithm=algorithm,
                   trust_anchors=ca.read_bytes() if ca.is_file() else None)

    def _signer(self) -> Any:
        c2pa = _c2pa()
        info = c2pa.C2paSignerInfo(self.algorithm.encode(), self.chain, self.key,
                                   self.timestamp_url.encode() if self.timestamp_url else None)
        try:
            return c2pa.Signer.from_info(info)
        except c2pa.C2paError as e:
            raise InvalidRequest("credentials", self, f"c2pa cannot sign with them: {e}", "pass a key and its "
                                 "certificate chain in PEM, e.g. from `aigc credentials init`") from None


_default: Credentials | None = None
_default_lock = threading.Lock()


def set_default_credentials(credentials: Credentials | str | os.PathLike[str] | None) -> None:
    """Sign every file ``save`` writes in a C2PA format with ``credentials`` (a folder or :class:`Credentials`);
    ``None`` turns it off. ``save(..., credentials=False)`` still skips it for one call.

    Example:
        >>> aigc.provenance.set_default_credentials("my-credentials")  # doctest: +SKIP
    """
    global _default
    resolved = None if credentials is None else _as_credentials(credentials)
    with _default_lock:
        _default = resolved


def default_credentials() -> Credentials | None:
    """The default set by :func:`set_default_credentials`, else the folder named by ``AIGC_C2PA_CREDENTIALS``."""
    with _default_lock:
        if _default is not None:
            return _default
    folder = os.environ.get(_ENV)
    return Credentials.load(folder) if folder else None


def _as_credentials(value: object) -> Credentials:
    if isinstance(value, Credentials):
        return value
    if isinstance(value, (str, os.PathLike)):
        return Credentials.load(value)
    raise InvalidRequest("credentials", value, "must be aigc.provenance.Credentials, a folder, None or False",
                         "pass credentials='my-credentials' (made by `aigc credentials init`)")


def resolve_credentials(credentials: object, path: Path) -> Credentials | None:
    """The credentials a ``save`` to ``path`` signs with: ``False`` none, ``None`` the default (skipped, with a
    log line, for formats C2PA does not cover here), else the ones given (which need a C2PA format).

    Raises:
        InvalidRequest: credentials given for a format aigc does not sign, or not credentials at all.
    """
    if credentials is False:
        return None
    signable = path.suffix.lower() in MIME_TYPES
    if credentials is None:
        found = default_credentials()
        if found is not None and not signable:
            logger.info("%s: not signing (aigc signs %s)", path.name, ", ".join(MIME_TYPES))
            return None
        return found
    resolved = _as_credentials(credentials)
    if not signable:
        raise InvalidRequest("credentials", "<credentials>", f"aigc writes C2PA manifests into "
                             f"{', '.join(MIME_TYPES)} files, not {path.suffix or 'a folder'}",
                             "save to one of those formats, or pass credentials=False")
    _c2pa()
    return resolved


def _manifest(record: dict[str, Any], text: str, title: str) -> dict[str, Any]:
    generator = {"name": "aigc", "version": __version__}
    for name in ("backend", "model", "weights"):
        if record.get(name) is not None:
            generator[f"org.aigc.{name}"] = str(record[name])
    return {
        "claim_generator_info": [generator],
        "title": title,
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": "aigc", "version": __version__},
            }]}},
            # the record's JSON text as it is: assertions are CBOR, which would turn a list of small ints
            # (seeds) into a byte string
            {"label": RECORD_LABEL, "data": {"format": record.get("format", ""), "json": text}},
        ],
    }


def sign_file(path: Path, *, record: str | None, credentials: Credentials, title: str | None = None) -> None:
    """Replace ``path`` (PNG, JPEG, WebP, WAV or MP4, by suffix) with a copy holding a signed manifest.

    ``path`` is a temporary file of a save in progress: the save's commit makes it visible.

    Raises:
        InvalidRequest: unsupported suffix, or credentials c2pa refuses.
        ProvenanceError: c2pa failed to sign the file.
    """
    c2pa = _c2pa()
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        raise InvalidRequest("path", str(path), "aigc signs PNG, JPEG, WebP, WAV and MP4", "save as one of those")
    data = json.loads(record) if record else {}
    if not isinstance(data, dict):
        raise InvalidRequest("record", record, "not a JSON object", "pass a record's to_json()")
    settings = c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}})
    out = io.BytesIO()
    try:
        manifest = _manifest(data, record or "{}", title or path.name)
        with c2pa.Context(settings=settings) as context, c2pa.Builder(manifest, context) as builder:
            signer = credentials._signer()
            with open(path, "rb") as source:
                builder.sign(signer, mime, source, out)
    except c2pa.C2paError as e:
        raise ProvenanceError(f"{path.name}: c2pa could not sign it: {e}") from None
    path.write_bytes(out.getvalue())


@dataclass(frozen=True)
class Manifest:
    """The active C2PA manifest of a file, as ``c2pa-python``'s reader validated it.

    Attributes:
        state: c2pa's validation state: ``"Trusted"``, ``"Valid"`` (signature and hashes check out, the signer is
            not on a trust list) or ``"Invalid"``.
        valid: the signature and every hash check out (``state`` is ``"Valid"`` or ``"Trusted"``).
        trusted: the signer chains to a trusted CA (``state == "Trusted"``).
        failures: the validation failure codes (``"assertion.dataHash.mismatch"``, ``"signingCredential.untrusted"``).
        generator: the claim generator (``"aigc 0.1.0"``, ``"Adobe Photoshop ..."``).
        signer: the signing certificate's common name and issuer.
        ai_generated: the manifest says the content was made by a trained model.
        record: the aigc record it holds (JSON text), or ``None``.
    """

    state: str
    valid: bool
    trusted: bool
    failures: tuple[str, ...]
    generator: str
    signer: str
    ai_generated: bool
    record: str | None


def read_manifest(path: str | os.PathLike[str], *, trust: bytes | None = None) -> Manifest | None:
    """The active C2PA manifest of any file ``c2pa-python`` reads, validated; ``None`` when it has none.

    Args:
        path: the file.
        trust: CA certificates (PEM) to trust besides nothing (e.g. ``Credentials.load(folder).trust_anchors``).

    Raises:
        BackendUnavailable: c2pa-python is not installed (``pip install 'aigc[c2pa]'``).
    """
    c2pa = _c2pa()
    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if trust:
        settings["trust"] = {"user_anchors": trust.decode("utf-8")}
    try:
        with c2pa.Context(settings=c2pa.Settings.from_dict(settings)) as context, \
                open(path, "rb") as stream, c2pa.Reader(None, stream, None, context) as reader:
            active = reader.get_active_manifest()
            state = reader.get_validation_state() or "Invalid"
            results = reader.get_validation_results() or {}
    except c2pa.C2paError as e:
        logger.debug("%s: no readable C2PA manifest: %s", path, e)
        return None
    if not active:
        return None
    failures = tuple(str(f.get("code")) for f in (results.get("activeManifest") or {}).get("failure", []))
    info = (active.get("claim_generator_info") or [{}])[0]
    generator = " ".join(str(info[k]) for k in ("name", "version") if k in info) or str(
        active.get("claim_generator", ""))
    signature = active.get("signature_info") or {}
    signer = ", ".join(str(signature[k]) for k in ("common_name", "issuer") if signature.get(k))
    record = None
    ai = False
    for assertion in active.get("assertions") or []:
        label, data = assertion.get("label"), assertion.get("data")
        if label == RECORD_LABEL and isinstance(data, dict) and isinstance(data.get("json"), str):
            record = data["json"]
        if isinstance(label, str) and label.startswith("c2pa.actions") and isinstance(data, dict):
            ai = ai or any(isinstance(a, dict) and str(a.get("digitalSourceType", "")).endswith(
                ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")) for a in data.get("actions", []))
    return Manifest(state=state, valid=state in ("Valid", "Trusted"), trusted=state == "Trusted",
                    failures=failures, generator=generator, signer=signer, ai_generated=ai, record=record)


def init_credentials(folder: str | os.PathLike[str], *, name: str = "aigc development signer",
                     days: int = 365, overwrite: bool = False) -> Credentials:
    """Make a development signing pair: a CA (``ca.pem``), and an ES256 key (``key.pem``, mode 0600) with a
    certificate it issued (``chain.pem``: the certificate, then the CA's).

    For development only: no C2PA reader trusts this CA, so they report the signer as untrusted (the manifest's
    signature and hashes are still checked). For published content, sign with a certificate from a CA on the
    C2PA trust list. The CA's own key is not kept: nothing else can be signed under it.

    Raises:
        InvalidRequest: the folder already holds credentials (pass ``overwrite=True``) or ``days`` is not positive.

    Example:
        >>> creds = init_credentials("my-credentials")  # doctest: +SKIP
        >>> creds.algorithm  # doctest: +SKIP
        'es256'
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise BackendUnavailable("making credentials needs the cryptography package", extra="c2pa") from None
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidRequest("days", days, "must be a positive number of days", "pass days=365")
    path = Path(folder).expanduser()
    if not overwrite and ((path / KEY_FILE).exists() or (path / CHAIN_FILE).exists()):
        raise InvalidRequest("folder", os.fspath(folder), "already holds credentials",
                             "pick another folder, or pass overwrite=True (CLI: --force) to replace them")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aigc development CA (untrusted)"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aigc development")])
    usage = dict.fromkeys(("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"), False)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=days))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(**{**usage, "key_cert_sign": True, "crl_sign": True}), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aigc development")])
    leaf = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(**{**usage, "digital_signature": True}), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + ca.public_bytes(pem)
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    from aigc._media.atomic import atomic_path, atomic_write_bytes

    path.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path / CA_FILE, ca.public_bytes(pem))
    atomic_write_bytes(path / CHAIN_FILE, chain)
    with atomic_path(path / KEY_FILE) as tmp:  # readable by its owner only, before the key is written
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
    return Credentials(chain=chain, key=key_pem, algorithm="es256", trust_anchors=ca.public_bytes(pem))
