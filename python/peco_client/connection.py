"""Finding the coordinator and building the channel, with the same rules as the `peco` CLI
(docs/SERVICE.md, "Data directory and discovery", "Security").

Discovery: the address comes from the `coordinator` argument, else $PECO_COORDINATOR, else
`<data_dir>/coordinator.addr`; the token from the `token` argument, else $PECO_TOKEN, else
`<data_dir>/user.token`; the data directory from the `data_dir` argument, else $PECO_DATA_DIR,
else `$HOME/.local/share/peco`. File contents are stripped of surrounding whitespace.

TLS is on when a CA file is given (`tls_ca`, else $PECO_TLS_CA): the coordinator's certificate is
verified against it. A client certificate (`tls_cert`/`tls_key`, else $PECO_TLS_CERT and
$PECO_TLS_KEY) is optional and needs the CA; `tls_server_name` is the name expected in the
coordinator's certificate when the address is an IP or another name. Without a CA the channel is
plaintext (the coordinator listens on loopback by default).
"""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional, Tuple

import grpc

from .errors import FailedPreconditionError, InternalError, InvalidArgumentError

# Largest message the client accepts (a ListJobs page, a checkpoint chunk).
MAX_RECEIVE_BYTES = 16 << 20

# Repeats calls refused with UNAVAILABLE (the coordinator restarting, a connection reset), as the
# CLI does. gRPC retries only before a response message arrived, so a retried stream never
# repeats events. ResumeJob is left out: a repeated resume could start a second attempt.
_RETRIED_METHODS = (
    "SubmitJob",
    "GetJob",
    "ListJobs",
    "CancelJob",
    "WatchJob",
    "ListCheckpoints",
    "DownloadCheckpoint",
    "ListWorkers",
)
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "peco.v1.JobService", "method": method}
                    for method in _RETRIED_METHODS
                ],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


@dataclass(frozen=True)
class Endpoint:
    """Where to connect, with which token and TLS files, and where each came from (for error
    messages: "coordinator argument", "$PECO_TOKEN", "/home/u/.local/share/peco/user.token")."""

    address: str
    address_source: str
    token: str
    token_source: str
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = ""

    @property
    def uses_tls(self) -> bool:
        """True when the channel is TLS (a CA file was given)."""
        return bool(self.tls_ca)


def resolve_data_dir(
    data_dir: Optional[str] = None, env: Optional[Mapping[str, str]] = None
) -> str:
    """Returns the data directory discovery reads: `data_dir`, else $PECO_DATA_DIR, else
    `$HOME/.local/share/peco` (`./.local/share/peco` when $HOME is unset)."""
    env = os.environ if env is None else env
    if data_dir:
        return str(data_dir)
    if env.get("PECO_DATA_DIR"):
        return env["PECO_DATA_DIR"]
    return f"{env.get('HOME') or '.'}/.local/share/peco"


def _read_trimmed(path: str, what: str) -> Optional[str]:
    """The stripped contents of `path`; None when it does not exist or holds only whitespace.

    Raises InternalError naming the file when it exists but cannot be read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise InternalError(f"reading {what}: {path}: {error}") from error
    return text or None


def _discover(
    given: Optional[str],
    argument: str,
    variable: str,
    path: str,
    what: str,
    hint: str,
    env: Mapping[str, str],
) -> "tuple[str, str]":
    """One discovered value and where it came from: the argument, else $variable in `env`, else
    the trimmed contents of `path`. FailedPreconditionError naming all three otherwise."""
    if given:
        return given, f"{argument} argument"
    if env.get(variable):
        return env[variable], f"${variable}"
    found = _read_trimmed(path, what)
    if found is None:
        raise FailedPreconditionError(
            f"no {what}: the {argument} argument and ${variable} are unset and {path} does not "
            f"exist or is empty {hint}"
        )
    return found, path


def resolve_endpoint(
    coordinator: Optional[str] = None,
    token: Optional[str] = None,
    data_dir: Optional[str] = None,
    tls_ca: Optional[str] = None,
    tls_cert: Optional[str] = None,
    tls_key: Optional[str] = None,
    tls_server_name: Optional[str] = None,
    env: Optional[Mapping[str, str]] = None,
) -> Endpoint:
    """Resolves the address, token and TLS files with the CLI's rules (see the module comment).

    `env` replaces os.environ (tests). Raises FailedPreconditionError naming every place tried
    when the address or the token is missing (the coordinator has not been started, or another
    data dir is meant), InternalError when a file exists but cannot be read, and
    InvalidArgumentError for a client certificate without a CA.
    """
    env = os.environ if env is None else env
    directory = resolve_data_dir(data_dir, env)

    address, address_source = _discover(
        coordinator, "coordinator", "PECO_COORDINATOR", f"{directory}/coordinator.addr",
        "coordinator address",
        "(is peco-coordinator running with this data dir? the data_dir argument or "
        "$PECO_DATA_DIR choose another)",
        env,
    )
    token_value, token_source = _discover(
        token, "token", "PECO_TOKEN", f"{directory}/user.token", "token",
        "(the coordinator writes it on first start)",
        env,
    )

    endpoint = Endpoint(
        address=address,
        address_source=address_source,
        token=token_value,
        token_source=token_source,
        tls_ca=tls_ca or env.get("PECO_TLS_CA", ""),
        tls_cert=tls_cert or env.get("PECO_TLS_CERT", ""),
        tls_key=tls_key or env.get("PECO_TLS_KEY", ""),
        tls_server_name=tls_server_name or "",
    )
    if endpoint.tls_cert and not endpoint.tls_ca:
        raise InvalidArgumentError(
            "tls_cert: needs tls_ca (or $PECO_TLS_CA), the CA that verifies the coordinator"
        )
    return endpoint


def _read_pem(path: str, argument: str) -> bytes:
    """The bytes of the PEM file `path`; InvalidArgumentError naming `argument` and the path
    when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidArgumentError(f"{argument}: cannot read {path}: {error.strerror}") from error


def load_tls_credentials(endpoint: Endpoint) -> grpc.ChannelCredentials:
    """Reads and checks the endpoint's TLS files and returns the channel credentials.

    Checked before any call, so a wrong path, a swapped file or a key that does not belong to its
    certificate is refused naming the argument instead of surfacing as a handshake failure.
    Raises InvalidArgumentError naming tls_ca, tls_cert or tls_key and the path.
    """
    if bool(endpoint.tls_cert) != bool(endpoint.tls_key):
        given, missing = ("tls_cert", "tls_key") if endpoint.tls_cert else ("tls_key", "tls_cert")
        raise InvalidArgumentError(f"{given}: needs {missing} as well")
    root = _read_pem(endpoint.tls_ca, "tls_ca")
    checker = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        checker.load_verify_locations(cadata=root.decode("ascii", errors="replace"))
    except (ssl.SSLError, ValueError) as error:
        raise InvalidArgumentError(
            f"tls_ca: {endpoint.tls_ca} holds no PEM certificate ({error})"
        ) from error
    chain: Optional[bytes] = None
    key: Optional[bytes] = None
    if endpoint.tls_cert:
        chain = _read_pem(endpoint.tls_cert, "tls_cert")
        key = _read_pem(endpoint.tls_key, "tls_key")
        try:
            checker.load_cert_chain(endpoint.tls_cert, endpoint.tls_key)
        except ssl.SSLError as error:
            raise InvalidArgumentError(
                f"tls_key: the key in {endpoint.tls_key} does not match the certificate in "
                f"{endpoint.tls_cert}, or one of them is not PEM ({error})"
            ) from error
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )


def create_channel(endpoint: Endpoint) -> grpc.Channel:
    """Creates the channel to `endpoint.address`: TLS when a CA is given, else plaintext; a
    16 MiB receive limit and the retry policy of SERVICE_CONFIG.

    Raises InvalidArgumentError for an empty address or token and for unusable TLS files.
    """
    if not endpoint.address:
        raise InvalidArgumentError("coordinator address is empty")
    if not endpoint.token:
        raise InvalidArgumentError("token is empty")
    options: List[Tuple[str, object]] = [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        ("grpc.enable_retries", 1),
        ("grpc.service_config", SERVICE_CONFIG),
    ]
    if not endpoint.uses_tls:
        return grpc.insecure_channel(endpoint.address, options=options)
    if endpoint.tls_server_name:
        options.append(("grpc.ssl_target_name_override", endpoint.tls_server_name))
    credentials = load_tls_credentials(endpoint)
    return grpc.secure_channel(endpoint.address, credentials, options=options)


def hint_for(endpoint: Endpoint, code: grpc.StatusCode, timeout: float) -> str:
    """The hint the CLI adds to an error: which address, token or deadline to check ("" for
    other codes)."""
    if code == grpc.StatusCode.UNAVAILABLE:
        tls = (
            f"; TLS verified by tls_ca {endpoint.tls_ca}"
            if endpoint.uses_tls
            else "; if it serves TLS, give tls_ca"
        )
        return f" (coordinator {endpoint.address} from {endpoint.address_source}{tls})"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f" (token from {endpoint.token_source})"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f" (no answer within timeout={timeout:g}s)"
    return ""


__all__ = [
    "Endpoint",
    "MAX_RECEIVE_BYTES",
    "SERVICE_CONFIG",
    "create_channel",
    "hint_for",
    "load_tls_credentials",
    "resolve_data_dir",
    "resolve_endpoint",
]
